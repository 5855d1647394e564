"""IPv6 STUN from a host whose kernel prefers a temporary (privacy) address.

The relay host (tests.peers.privacy_host) publishes its stable address, but a STUN server bound
to the wildcard — derper's default ``-a :PORT`` — answers from whatever source the kernel
prefers: the temporary address. The checker's connected socket drops that reply; its second
listen, on an unconnected socket, names the address the answer came from and the fixes. Run
against the faithful wildcard peer (tests.peers.stun_server) and against the real derper.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.netcheck.report import Check
from components.netcheck.stun import check_stun
from tests.peers.certs import Pki
from tests.peers.derper import start_derper
from tests.peers.privacy_host import PrivacyHost, privacy_host
from tests.peers.stun_server import stun_server, wildcard_socket

STUN_TIMEOUT = 0.6
RETRY_BUDGET = 1.0


@pytest.fixture
def host() -> Iterator[PrivacyHost]:
    """A fresh relay/client namespace pair for each test (~0.1 s): sysctls and firewall rules one
    test changes never reach another."""
    with privacy_host() as h:
        yield h


def probe_from_client(host: PrivacyHost, port: int, retry: bool = True) -> Check:
    """The stun check of the stable address, run on the client side of the veth."""

    async def run() -> Check:
        deadline = asyncio.get_running_loop().time() + STUN_TIMEOUT + RETRY_BUDGET
        return await check_stun(
            host.stable, port, STUN_TIMEOUT, deadline=deadline if retry else None
        )

    return host.client.run(lambda: asyncio.run(run()))


def bound_socket(address: str) -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((address, 0))
    return s


# The test host really has the trap: an unbound socket's reply would leave from the temporary.
def test_the_kernel_prefers_the_temporary_address(host: PrivacyHost) -> None:
    assert host.temporary != host.stable
    assert host.source_towards_client() == host.temporary


# A wildcard STUN server answers from the temporary address: the probe says so and how to fix it.
def test_reply_from_the_privacy_address_is_named(host: PrivacyHost) -> None:
    with stun_server([host.relay.run(wildcard_socket)]) as server:
        check = probe_from_client(host, server.port)
    assert not check.ok
    assert f"answered from [{host.temporary}]:{server.port}" in check.detail
    assert check.data["reply_from"] == f"[{host.temporary}]:{server.port}"
    hint = check.hint or ""
    assert "use_tempaddr=1" in hint and f"-a [{host.stable}]:PORT" in hint
    assert "never a temporary one" in hint


# Without the second listen the same server is just "no answer": what the old checker said.
def test_connected_socket_alone_sees_nothing(host: PrivacyHost) -> None:
    with stun_server([host.relay.run(wildcard_socket)]) as server:
        check = probe_from_client(host, server.port, retry=False)
    assert not check.ok and check.detail.startswith("no answer from UDP")
    assert server.answered >= 1 and "reply_from" not in check.data  # it did answer


# Fix 1: bound to the published address (derper -a [stable]:PORT), replies leave from it.
def test_server_bound_to_the_published_address_passes(host: PrivacyHost) -> None:
    with stun_server([host.relay.run(lambda: bound_socket(host.stable))]) as server:
        check = probe_from_client(host, server.port)
    assert check.ok, check.detail
    assert check.data["mapped"].startswith(f"[{host.client_address}]:")


# Fix 2: use_tempaddr=1 keeps the privacy address but makes the stable one preferred.
def test_use_tempaddr_1_makes_the_wildcard_server_pass(host: PrivacyHost) -> None:
    sysctl = f"net.ipv6.conf.{host.relay.interface}.use_tempaddr"
    host.relay.sh("sysctl", "-qw", f"{sysctl}=1")
    try:
        # The kernel may keep a cached route's source for a moment after the sysctl.
        deadline = time.monotonic() + 3
        while host.source_towards_client() != host.stable and time.monotonic() < deadline:
            time.sleep(0.05)
        assert host.source_towards_client() == host.stable
        with stun_server([host.relay.run(wildcard_socket)]) as server:
            check = probe_from_client(host, server.port)
    finally:
        host.relay.sh("sysctl", "-qw", f"{sysctl}=2")
    assert check.ok, check.detail


# A stateful firewall on the client side (what home routers run) drops the reply even on an
# unconnected socket: then only "no answer" remains, and the second listen says it found none.
def test_stateful_firewall_drops_the_reply_too(host: PrivacyHost) -> None:
    ip6tables = shutil.which("ip6tables")
    assert ip6tables, "ip6tables is required (apt-get install iptables)"
    rules = [
        ["INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["INPUT", "-p", "udp", "-j", "DROP"],
    ]
    for rule in rules:
        host.client.sh(ip6tables, "-A", *rule)
    try:
        with stun_server([host.relay.run(wildcard_socket)]) as server:
            check = probe_from_client(host, server.port)
    finally:
        for rule in rules:
            host.client.sh(ip6tables, "-D", *rule)
    assert not check.ok and "none on an unconnected socket either" in check.detail
    assert server.answered >= 1 and check.data["retried_unconnected"] is True  # it did answer


# The real derper with its default -a :PORT shows the same trap; bound to -a [stable]:PORT it
# passes (tailscale.com@v1.102.5/cmd/derper/derper.go:61,70,178-185).
@pytest.mark.parametrize("bind", ["wildcard", "stable"])
def test_real_derper(host: PrivacyHost, pki: Pki, tmp_path: Path, bind: str) -> None:
    files = pki.files("good")
    derper = start_derper(
        tmp_path,
        hostname="derp.test",
        cert_file=files.cert_file,
        key_file=files.key_file,
        derp_port=8443,
        stun_port=3478,
        listen_ip=host.stable if bind == "stable" else "",
        prefix=["ip", "netns", "exec", host.relay.namespace],
    )
    try:
        check = probe_from_client(host, 3478)
    finally:
        derper.stop()
    if bind == "stable":
        assert check.ok, check.detail
    else:
        assert not check.ok
        assert check.data["reply_from"] == f"[{host.temporary}]:3478", check.detail
