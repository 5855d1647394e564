"""Real tailnet nodes use the relay: derper admits them, and a client's traffic really passes it.

Clients a and b may not exchange UDP (iptables in their namespaces) and hold no peer-relay grant,
so the only path between them is DERP, through our region "home" (the relay host's derper,
reached through the delay relay). derper runs with DERP_DEBUG_LOGS, so its log names every
client it registered and every frame it read (tailscale.com@v1.102.5/derp/derpserver/
derpserver.go:376, :772, :1045, :1120).
"""

from __future__ import annotations

import re

from tests.peers.derper import admitted, rejections, short_key
from tests.peers.tailnet import HOME, Node, Tailnet

# cmd/tailscale/cli/ping.go:174: "pong from %s (%s%s) via %v in %v"
PONG = re.compile(
    r"^pong from (?P<name>\S+) \((?P<ip>[^),]+)[^)]*\) via (?P<via>\S+) in (?P<ms>\d+)ms$", re.M
)


def _frames_from(log: str, node: Node) -> int:
    """Frames derper read from ``node`` (frameSendPacket is type 4, derp/derp.go)."""
    tag = re.escape(short_key(node.nodekey))
    return len(re.findall(rf"derp client \S+?{tag}: read frame type 4 ", log))


# Every node of the tailnet was admitted by the relay's derper with -verify-clients (the relay's
# real tailscaled knows their keys), none is rejected once the tailnet has converged (a node
# that dials before the relay's netmap has it is rejected once, then retries), and each made
# "home" its DERP home.
def test_relay_admits_every_tailnet_node(net: Tailnet) -> None:
    log = net.derper.log()
    keys = {node.label: node.nodekey for node in net.nodes}
    for label, key in keys.items():
        assert admitted(log, key), f"derper never registered {label} ({key})\n{log[-3000:]}"
    rejected = {r.client for r in rejections(log[net.converged_log_offset :])}
    assert not rejected & {k.removeprefix("nodekey:") for k in keys.values()}
    relay_peers = net.relay.status()["Peer"]
    for label, node in net.clients.items():
        assert keys[label] in relay_peers, f"the relay's tailscaled does not know {label}"
        assert node.status()["Self"]["Relay"] == HOME.code


# a → b: every pong comes back "via DERP(home)" (no direct path can form), derper read a's
# packets while it happened, and a's status shows no direct address for b.
def test_client_relays_through_home_derp(net: Tailnet) -> None:
    a, b = net.clients["a"], net.clients["b"]
    before = _frames_from(net.derper.log(), a)
    out = a.cli("ping", "--until-direct=false", "-c", "2", "--timeout", "5s", b.ipv4).stdout
    pongs = list(PONG.finditer(out))
    assert len(pongs) == 2, out
    assert {p["via"] for p in pongs} == {f"DERP({HOME.code})"}, out
    assert {p["name"] for p in pongs} == {"b"}, out
    assert _frames_from(net.derper.log(), a) >= before + 2
    peer_b = a.status()["Peer"][b.nodekey]
    assert peer_b["CurAddr"] == "" and peer_b["Relay"] == HOME.code, peer_b
    assert peer_b["PeerRelay"] == "", peer_b
