"""The product's netcheck (components.netcheck) against the real derper of the tailnet.

The relay host's derper runs in its namespace with ``-certmode manual`` (a test CA), a custom
``-a :8443`` and ``-stun-port 3479``, ``-http-port -1`` and ``-verify-clients`` against the relay
host's real tailscaled; netcheck probes it from the root namespace over the LAN, IPv4 and IPv6.
Client verification is judged from outside (the connection closes) and, here, also read from
derper's own log: the line names the random key netcheck sent (the verify_clients check's
``data["client_key"]``) and why derper refused it (tailscale.com@v1.102.5/derp/derpserver/
derpserver.go:676 logs the error of :1028-1029; the reasons are :1590-1601).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from components.netcheck import RelayTarget, Report, check_relay
from tests.peers.daemons import wait_until
from tests.peers.derper import (
    NOT_AUTHORIZED,
    QUERY_FAILED,
    Derper,
    cause_of,
    rejection_for,
    start_derper,
)
from tests.peers.ports import free_port
from tests.peers.tailnet import (
    HOME,
    RELAY_DERP_PORT,
    RELAY_STUN_PORT,
    Tailnet,
    isolated_host,
    start_tailscaled,
    wait_backend,
)


def _relay_target(net: Tailnet) -> RelayTarget:
    return RelayTarget(
        HOME.hostname,
        RELAY_DERP_PORT,
        RELAY_STUN_PORT,
        net.relay.host.addresses,
        ca_file=net.pki.ca_file,
        expect_verify_clients=True,
    )


def _client_key(report: Report, address: str) -> str:
    """The random key netcheck's admission probe sent to ``address`` (64 hex)."""
    data = report.check("verify_clients", address).data
    assert "client_key" in data, f"netcheck does not expose its probe's client key: {data}"
    return str(data["client_key"])


def _reason_for(derper: Derper, client_key: str) -> str:
    """derper's rejection reason for ``client_key`` (waits briefly for the line)."""
    found = wait_until(
        f"derper's rejection line for nodekey:{client_key}",
        lambda: rejection_for(derper.log(), client_key),
        5.0,
        [derper.daemon],
    )
    return found.reason


# Every check passes against the real derper over IPv4 and IPv6 (TLS with the test CA, both
# HTTPS endpoints, DERP upgrade, STUN, verification on and proven by derper's own log line), and
# the server key netcheck reads in the DERP handshake is the one derper keeps in its -c file.
def test_netcheck_passes_against_real_derper(net: Tailnet) -> None:
    report = check_relay(_relay_target(net), timeout=5, evidence_source=net.derper.evidence())
    assert report.ok, report.format_text()
    relay = net.relay.host
    for address in relay.addresses:
        tls = report.check("tls", address)
        assert tls.data["version"] == "TLSv1.3" and tls.data["alpn"] == "http/1.1", tls
        assert HOME.hostname in tls.data["names"], tls
        assert report.check("https", address).ok
        assert report.check("derp", address).data["server_public_key"] == net.derper.public_key
        verify = report.check("verify_clients", address)
        assert verify.data["verify_clients"] is True and verify.data["cause"] == "not_authorized"
    assert report.server_public_key == net.derper.public_key
    # STUN answers on both families and maps us to the root namespace's LAN address.
    v4, v6 = report.check("stun", relay.v4), report.check("stun", relay.v6)
    assert v4.data["mapped"].startswith(f"{net.lan.gateway_v4}:"), v4
    assert v6.data["mapped"].startswith(f"[{net.lan.gateway_v6}]:"), v6


# A random key is refused because the relay's tailscaled does not know it: derper's real line
# names exactly the key netcheck sent, from our LAN address, "not authorized".
def test_random_key_not_authorized_in_derper_log(net: Tailnet) -> None:
    report = check_relay(_relay_target(net), timeout=5)
    assert report.failed() == [
        report.check("verify_clients", address) for address in net.relay.host.addresses
    ], report.format_text()  # verification expected, derper's log not read: not proven
    sources = {net.relay.host.v4: net.lan.gateway_v4, net.relay.host.v6: f"[{net.lan.gateway_v6}]"}
    for address, source in sources.items():
        key = _client_key(report, address)
        found = rejection_for(net.derper.log(), key)
        assert found is not None, f"no derper line for nodekey:{key}"
        assert found.reason == f"peer nodekey:{key} {NOT_AUTHORIZED}", found
        assert found.addr.rsplit(":", 1)[0] == source, found
        assert cause_of(found.reason) == "not_authorized"


# How long after its start derper keeps retrying an unreachable tailscaled socket: the LocalAPI
# client retries while the *calling* process is younger than 2 s, and up to 5 s while any process
# named tailscaled exists (tailscale.com@v1.102.5/safesocket/safesocket.go:43-59,62-77). A probe
# in that window stalls instead of being rejected, so these derpers are probed once older.
SAFESOCKET_RETRY_S = 5.0


@pytest.fixture(scope="module")
def blind_derpers(
    net: Tailnet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Derper]]:
    """derper with -verify-clients where it cannot ask tailscaled: the socket is not there
    (not mounted); tailscaled was stopped (SIGTERM, like ``systemctl stop tailscaled``: it
    removes its socket); tailscaled died (SIGKILL: the socket file stays, nobody listens)."""
    tmp = tmp_path_factory.mktemp("blind")
    files = net.pki.files("good")
    with contextlib.ExitStack() as stack:
        bare = stack.enter_context(isolated_host())
        sockets = {"socket-missing": tmp / "not-mounted" / "tailscaled.sock"}
        for case, sig in (
            ("tailscaled-stopped", signal.SIGTERM),
            ("tailscaled-killed", signal.SIGKILL),
        ):
            node = start_tailscaled(case, bare, tmp / f"tailscaled-{case}", net.ca_bundle)
            stack.callback(node.stop)
            wait_backend(node, ("NeedsLogin", "NoState", "Stopped"))
            os.kill(node.daemon.process.pid, sig)
            node.daemon.process.wait(10)
            sockets[case] = node.socket
        assert not sockets["tailscaled-stopped"].exists()
        assert sockets["tailscaled-killed"].is_socket()
        started = time.monotonic()
        derpers = {}
        for case, sock in sockets.items():
            derpers[case] = start_derper(
                tmp / case,
                hostname=HOME.hostname,
                cert_file=files.cert_file,
                key_file=files.key_file,
                derp_port=free_port(("127.0.0.1",), socket.SOCK_STREAM),
                stun_port=free_port(("127.0.0.1",), socket.SOCK_DGRAM),
                listen_ip="127.0.0.1",
                verify_socket=sock,
                addresses=("127.0.0.1",),
            )
            stack.callback(derpers[case].stop)
        time.sleep(max(0.0, SAFESOCKET_RETRY_S + 0.5 - (time.monotonic() - started)))
        yield derpers


# derper cannot ask tailscaled (socket not mounted / tailscaled stopped or dead): from outside
# this looks exactly like verification working (the connection closes), so without derper's log
# the checker calls admission unconfirmed, never passed; only derper's log tells the difference —
# "failed to query local tailscaled status", not "not authorized" — and with it the check fails.
@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("socket-missing", "connect: no such file or directory"),
        ("tailscaled-stopped", "connect: no such file or directory"),
        ("tailscaled-killed", "connect: connection refused"),
    ],
    ids=["socket-missing", "tailscaled-stopped", "tailscaled-killed"],
)
def test_unreachable_tailscaled_in_derper_log(
    net: Tailnet, blind_derpers: dict[str, Derper], case: str, error: str
) -> None:
    derper = blind_derpers[case]
    target = RelayTarget(
        HOME.hostname,
        derper.derp_port,
        derper.stun_port,
        ("127.0.0.1",),
        ca_file=net.pki.ca_file,
        expect_verify_clients=True,
    )
    report = check_relay(target, timeout=5)
    check = report.check("verify_clients", "127.0.0.1")
    assert not check.ok and check.data["verify_clients"] is True, report.format_text()
    assert check.data["cause"] == "unconfirmed" and report.verdict == "failed"
    key = _client_key(report, "127.0.0.1")
    reason = _reason_for(derper, key)
    assert reason.startswith(f"{QUERY_FAILED} nodekey:{key}: "), reason
    assert NOT_AUTHORIZED not in reason
    assert f"dial unix {derper.socket}: {error}" in reason, reason
    assert cause_of(reason) == "tailscaled_unreachable"
    read = check_relay(target, timeout=5, evidence_source=derper.evidence())
    proven = read.check("verify_clients", "127.0.0.1")
    assert proven.data["cause"] == "tailscaled_unreachable" and not proven.ok, read.format_text()
