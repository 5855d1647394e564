"""``components/peer_relay.py``: the relay host's tailscaled as a Tailscale Peer Relay.

Against a real ``tailscaled`` (v1.102.5, tests/peers/tailscaled.py) with the real ``tailscale``
CLI: the pref really set, the UDP port really bound and cleared, static endpoints through the
provider, a port held by another program, and the real "Access denied" of a non-operator user.
What a real daemon cannot be made to show here (a CLI without the relay flags, a pref accepted
but never bound) uses the stand-in of tests/peers/tailscale_cli.py. The relay between two real
clients (c→d ``via peer-relay``) is tests/real_tailnet/test_peer_relay.py; the grant in the
tailnet policy is tests/test_tailnet.py.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from components import peer_relay
from components.host import HostChannel
from tests.peers.tailscale_cli import CliScenario
from tests.peers.tailscaled import RealTailscaled
from tests.peers.tools import tool

LOCAL = "unix:///var/run/docker.sock"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def udp_bound(port: int) -> bool:
    out = subprocess.run(["ss", "-Hlun", f"sport = :{port}"], capture_output=True, text=True)
    return peer_relay.is_bound(out.stdout, port)


# Set, confirmed bound (tailscaled really listens), then cleared: the host is as it was.
def test_real_peer_relay_set_and_cleared(
    real_tailscaled: RealTailscaled, cli_on_path: Path
) -> None:
    port = free_udp_port()
    channel = HostChannel(LOCAL)
    peer_relay.enable(channel, real_tailscaled.socket, port, [])
    assert udp_bound(port)
    shown = subprocess.run(
        [str(tool("tailscale")), f"--socket={real_tailscaled.socket}", "get", "relay-server-port"],
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == str(port)
    peer_relay.disable(channel, real_tailscaled.socket, with_endpoints=False)
    deadline = time.monotonic() + 5
    while udp_bound(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not udp_bound(port)


def _pref(daemon: RealTailscaled, name: str) -> str:
    shown = subprocess.run(
        [str(tool("tailscale")), f"--socket={daemon.socket}", "get", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.strip()


# Static endpoints (a port-forwarded public IPv4) reach the daemon's prefs through the provider;
# an update without them clears them (an `ipv4` removed from the stack), and delete leaves the
# daemon as it was.
def test_real_peer_relay_static_endpoint_set_updated_cleared(
    real_tailscaled: RealTailscaled, cli_on_path: Path
) -> None:
    port = free_udp_port()
    provider = peer_relay.PeerRelayServerProvider()
    props = {"docker_host": LOCAL, "socket": real_tailscaled.socket, "port": port}
    with_v4 = {**props, "static_endpoints": [f"203.0.114.7:{port}"]}
    created = provider.create(with_v4)
    assert _pref(real_tailscaled, "relay-server-static-endpoints") == f"203.0.114.7:{port}"
    updated = provider.update(created.id, created.outs, {**props, "static_endpoints": []})
    assert _pref(real_tailscaled, "relay-server-static-endpoints") == ""
    assert _pref(real_tailscaled, "relay-server-port") == str(port) and udp_bound(port)
    provider.delete(created.id, updated.outs)
    assert _pref(real_tailscaled, "relay-server-port") == ""


# A port another program holds is refused before the pref is set: "bound" afterwards would be
# that program's socket, and the grant would be published for a relay that does not listen.
def test_real_port_held_by_another_program(
    real_tailscaled: RealTailscaled, cli_on_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("0.0.0.0", 0))
        port = other.getsockname()[1]
        with pytest.raises(peer_relay.PeerRelayError, match=f"UDP port {port} is already in use"):
            peer_relay.enable(HostChannel(LOCAL), real_tailscaled.socket, port, [])
    assert _pref(real_tailscaled, "relay-server-port") == ""


# A user who may not change prefs gets the real "Access denied", turned into the fix.
def test_real_access_denied(real_tailscaled: RealTailscaled, cli_on_path: Path) -> None:
    nobody = HostChannel(
        LOCAL, command_prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    )
    with pytest.raises(peer_relay.PeerRelayError) as err:
        peer_relay.enable(nobody, real_tailscaled.socket, free_udp_port(), [])
    assert "may not change tailscaled's prefs" in str(err.value)
    assert "tailscale set --operator=$USER" in str(err.value)


# A CLI without the relay flags (older than the feature): "needs tailscaled >= 1.86".
def test_cli_without_relay_flags(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    stand_in(CliScenario(no_relay_flags=True))
    with pytest.raises(peer_relay.PeerRelayError, match=r"needs tailscaled\s+>= 1.86"):
        peer_relay.enable(HostChannel(LOCAL), sock, 40000, [])


# The pref accepted but nothing listens (a port taken by another program): a clear error.
def test_port_never_bound(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    stand_in(CliScenario())
    port = free_udp_port()
    with pytest.raises(peer_relay.PeerRelayError, match=f"nothing listens on UDP {port}"):
        peer_relay.enable(HostChannel(LOCAL), sock, port, [], timeout=1)


# Pure: who the grant's dst names — the host's own Tailscale IPv4 even when it is tagged (a tag
# names every device that carries it), a tag only when the user chose one — and whether a node
# is among the sources.
def test_grant_destination_and_membership() -> None:
    from tests.mocks import HostFacts

    facts = HostFacts(tags=("tag:derp",)).tailscaled_facts("/x")
    assert peer_relay.grant_destination(facts) == "100.101.102.103"
    assert peer_relay.grant_destination(facts, "tag:derp") == "tag:derp"
    status = {
        "Self": {"Tags": ["tag:laptop"], "TailscaleIPs": ["100.64.0.7"], "UserID": 5},
        "User": {"5": {"LoginName": "alice@example.com"}},
    }
    assert peer_relay.member_of(["*"], status) is True
    assert peer_relay.member_of(["tag:laptop"], status) is True
    assert peer_relay.member_of(["100.64.0.0/24"], status) is True
    assert peer_relay.member_of(["autogroup:member"], status) is False  # tagged devices are not
    assert peer_relay.member_of(["group:family"], status) is None  # cannot tell from here
    untagged = {"Self": {"TailscaleIPs": ["100.64.0.8"], "UserID": 5}, "User": status["User"]}
    assert peer_relay.member_of(["alice@example.com"], untagged) is True
