"""The real tailscale CLI's JSON, as host discovery reads it, locally and over a real sshd.

Fields and Go types as upstream declares them (tailscale.com@v1.102.5):

* ``tailscale version --daemon --json``: ``version.Meta`` (version/prop.go:257-324:
  ``majorMinorPatch`` :260, ``short`` :270, ``long`` :274, ``daemonLong`` :310 (omitempty, set
  from the daemon's status, cmd/tailscale/cli/version.go:68-82), ``cap`` :323);
* ``tailscale status --json``: ``ipnstate.Status`` (ipn/ipnstate/ipnstate.go:31-90:
  ``Version`` :33, ``BackendState`` :42, ``TailscaleIPs`` :48, ``Self`` :49,
  ``MagicDNSSuffix`` :63, ``CurrentTailnet`` :67 (``TailnetStatus`` :171-186), ``Peer`` :80 keyed
  by node key) whose ``Self`` and peers are ``PeerStatus`` (:233-341: ``PublicKey`` :236,
  ``HostName`` :237, ``DNSName`` :241, ``TailscaleIPs`` :250, ``Tags`` :256 omitempty,
  ``CurAddr`` :265, ``Relay`` :266, ``PeerRelay`` :267, ``Online`` :275).

The node is the relay host (tagged, logged in to headscale); netip.Addr and key.NodePublic
marshal as text, so they are JSON strings (``nodekey:<64 hex>``).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from tests.peers.daemons import run
from tests.peers.headscale import BASE_DOMAIN
from tests.peers.sshd import Sshd, sshd_factory
from tests.peers.tailnet import Node, Tailnet
from tests.peers.tools import tool, version_of

NODEKEY = re.compile(r"^nodekey:[0-9a-f]{64}$")


def _local(node: Node, *args: str) -> dict[str, Any]:
    return dict(json.loads(node.cli(*args).stdout))


def _over_ssh(sshd: Sshd, node: Node, *args: str) -> dict[str, Any]:
    """The same command through the real OpenSSH client and sshd (a shell on the host)."""
    remote = shlex.join([str(tool("tailscale")), f"--socket={node.socket}", *args])
    argv = [
        "ssh",
        *sshd.client_options,
        "-o",
        "BatchMode=yes",
        "-p",
        str(sshd.port),
        f"{sshd.user}@127.0.0.1",
        remote,
    ]
    return dict(json.loads(run(argv, timeout=30).stdout))


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 with throwaway keys (tests/peers/sshd.py)."""
    with sshd_factory() as start:
        yield start()


def _assert_version_meta(meta: dict[str, Any]) -> None:
    want = version_of("tailscaled")
    assert isinstance(meta["majorMinorPatch"], str) and meta["majorMinorPatch"] == want, meta
    assert isinstance(meta["short"], str) and meta["short"].startswith(want), meta
    assert isinstance(meta["long"], str) and meta["long"].startswith(want), meta
    assert isinstance(meta["daemonLong"], str) and meta["daemonLong"].startswith(want), meta
    assert isinstance(meta["cap"], int) and meta["cap"] > 0, meta


def _assert_peer_status(ps: dict[str, Any], where: str) -> None:
    assert NODEKEY.match(ps["PublicKey"]), (where, ps["PublicKey"])
    assert isinstance(ps["HostName"], str) and ps["HostName"], where
    assert isinstance(ps["DNSName"], str), where
    assert isinstance(ps["TailscaleIPs"], list) and ps["TailscaleIPs"], where
    for ip in ps["TailscaleIPs"]:
        ipaddress.ip_address(ip)
    for name in ("CurAddr", "Relay", "PeerRelay"):
        assert isinstance(ps[name], str), (where, name)
    assert isinstance(ps["Online"], bool), where
    assert all(isinstance(t, str) for t in ps.get("Tags", [])), where


def _assert_status(st: dict[str, Any], node: Node, peers: int) -> None:
    assert st["BackendState"] == "Running", st["BackendState"]
    assert isinstance(st["Version"], str) and st["Version"].startswith(version_of("tailscaled"))
    assert [ipaddress.ip_address(ip).version for ip in st["TailscaleIPs"]] == [4, 6]
    self = st["Self"]
    _assert_peer_status(self, "Self")
    assert self["HostName"] == node.label
    assert self["DNSName"] == f"{node.label}.{BASE_DOMAIN}.", self["DNSName"]
    assert self["TailscaleIPs"] == st["TailscaleIPs"]
    assert isinstance(st["Peer"], dict) and len(st["Peer"]) == peers
    for key, peer in st["Peer"].items():
        assert NODEKEY.match(key) and peer["PublicKey"] == key
        _assert_peer_status(peer, key)
    tailnet = st["CurrentTailnet"]
    assert isinstance(tailnet, dict), st.get("CurrentTailnet")
    assert isinstance(tailnet["Name"], str)
    assert tailnet["MagicDNSSuffix"] == BASE_DOMAIN == st["MagicDNSSuffix"], tailnet
    assert isinstance(tailnet["MagicDNSEnabled"], bool)


# `tailscale version --daemon --json` of a real node: version.Meta with the running daemon's
# daemonLong, all of the declared types.
def test_version_daemon_json(net: Tailnet) -> None:
    _assert_version_meta(_local(net.relay, "version", "--daemon", "--json"))


# `tailscale status --json` of a real, logged-in node: the fields discovery reads, typed as
# upstream declares them, for Self and every peer; Self carries the relay's tag.
def test_status_json(net: Tailnet) -> None:
    st = _local(net.relay, "status", "--json")
    _assert_status(st, net.relay, len(net.clients))
    assert st["Self"]["Tags"] == ["tag:relay"]


# Over real ssh both commands print the same JSON as locally (same fields, same values where
# they are not live counters).
def test_cli_json_over_ssh(net: Tailnet, sshd: Sshd) -> None:
    version = _over_ssh(sshd, net.relay, "version", "--daemon", "--json")
    _assert_version_meta(version)
    assert version == _local(net.relay, "version", "--daemon", "--json")
    st = _over_ssh(sshd, net.relay, "status", "--json")
    _assert_status(st, net.relay, len(net.clients))
    local = _local(net.relay, "status", "--json")
    assert st.keys() == local.keys()
    assert st["Self"]["PublicKey"] == local["Self"]["PublicKey"]
    assert st["Peer"].keys() == local["Peer"].keys()
