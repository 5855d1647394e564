"""The peer relay end to end: two clients that cannot exchange UDP reach each other through the
relay host's peer relay server, not DERP.

The relay host runs ``tailscale set --relay-server-port=40000`` (tailscale.com@v1.102.5/cmd/
tailscale/cli/set.go:94, "UDP port number … for the relay server to bind to"); headscale's
policy grants ``tailscale.com/cap/relay`` on the relay (tag:relay) to tag:relay-client nodes c
and d — a user-grantable capability in headscale 0.29 (github.com/juanfont/headscale@v0.29.3/
hscontrol/policy/v2/types.go:2377-2383), which adds the reversed ``cap/relay-target`` companion
rule for the clients (policy/v2/filter.go:26-33); headscale's own end-to-end test of this is
integration/grant_cap_test.go:67-420. c and d may only send UDP to the root namespace and the
relay host. ``tailscale ping`` prints ``pong from <name> (<ip>) via peer-relay(<ip:port:vni:N>)
in <ms>`` for such a path (cmd/tailscale/cli/ping.go:154-158,174).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from components.host import CommandResult
from components.peer_relay import CLIENT_CONFIRM_TIMEOUT, confirmation_from_client
from tests.peers.daemons import wait_until
from tests.peers.tailnet import RELAY_SERVER_PORT, Tailnet

VIA_PEER_RELAY = re.compile(
    r"^pong from (?P<name>\S+) \([^)]*\) "
    r"via peer-relay\((?P<addr>\S+):(?P<port>\d+):vni:(?P<vni>\d+)\) in \d+ms$",
    re.M,
)


# c → d: a pong comes back via the relay host's peer relay (its LAN address, port 40000), the
# relay server counts the session, and c's status shows the peer-relay path, no direct address.
def test_clients_reach_each_other_via_peer_relay(net: Tailnet) -> None:
    c, d, relay = net.clients["c"], net.clients["d"], net.relay
    d_ip = d.ipv4

    def relayed() -> re.Match[str] | None:
        # Relay discovery is triggered by traffic (the first pongs may still come via DERP).
        out = c.cli(
            "ping", "--until-direct=false", "-c", "3", "--timeout", "3s", d_ip, check=False
        ).stdout
        return VIA_PEER_RELAY.search(out)

    pong = wait_until("a pong from d via peer-relay", relayed, 45.0, net.daemons, 0.5)
    assert pong["name"] == "d"
    assert pong["addr"].strip("[]") in relay.host.addresses, pong.group(0)
    assert int(pong["port"]) == RELAY_SERVER_PORT, pong.group(0)

    sessions = relay.cli("debug", "peer-relay-sessions").stdout
    assert f"Server port: {RELAY_SERVER_PORT}\n" in sessions, sessions
    count = re.search(r"Sessions count: (\d+)", sessions)
    assert count and int(count.group(1)) >= 1, sessions
    assert f"VNI: {pong['vni']}\n" in sessions, sessions

    peer_d = c.status()["Peer"][d.nodekey]
    assert peer_d["PeerRelay"].startswith(f"{pong['addr']}:{RELAY_SERVER_PORT}:vni:"), peer_d
    assert peer_d["CurAddr"] == "", peer_d


# The grant decides who may use the relay: c (tag:relay-client) lists the relay host among its
# candidate peer relay servers, a (tag:client, no cap/relay grant) lists none
# (`tailscale debug peer-relay-servers`: the candidates' Tailscale IPs, magicsock.go:4484-4500).
def test_only_granted_clients_see_the_relay_server(net: Tailnet) -> None:
    relay_ips = set(net.relay.status()["Self"]["TailscaleIPs"])

    def candidates(label: str) -> set[str]:
        out = net.clients[label].cli("debug", "peer-relay-servers").stdout
        return set(json.loads(out) or [])

    assert candidates("c") & relay_ips, (candidates("c"), relay_ips)
    assert not candidates("a"), candidates("a")


def _as_node(node: Any) -> Callable[[Sequence[str]], CommandResult]:
    """The product's "this machine" runner, inside a node's namespace against its socket."""

    def run_local(command: Sequence[str]) -> CommandResult:
        assert command[0] == "tailscale", command
        done = node.cli(*command[1:], check=False)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    return run_local


# The product's client confirmation (components/peer_relay.py) against real nodes: c, granted,
# confirms; a is not among tag:relay-client (said so, without waiting); a with sources "*" waits
# the bounded time and reports that it did not see the relay.
def test_product_confirmation_from_real_clients(net: Tailnet) -> None:
    relay_ips = list(net.relay.status()["Self"]["TailscaleIPs"])
    c, a = net.clients["c"], net.clients["a"]
    yes = confirmation_from_client(_as_node(c), relay_ips, ["tag:relay-client"], timeout=20)
    assert yes["confirmed"] is True, yes
    outside = confirmation_from_client(_as_node(a), relay_ips, ["tag:relay-client"], timeout=20)
    assert outside["confirmed"] is None and "not among" in outside["detail"], outside
    started = time.monotonic()
    unseen = confirmation_from_client(_as_node(a), relay_ips, ["*"], timeout=3)
    assert unseen["confirmed"] is False and "within 3s" in unseen["detail"], unseen
    assert time.monotonic() - started < 15


def _as_nobody(node: Any) -> Callable[[Sequence[str]], CommandResult]:
    """The product's "this machine" runner for a user who is neither root nor tailscaled's
    operator (nobody, via setpriv), inside the node's namespace against its socket."""

    def run_local(command: Sequence[str]) -> CommandResult:
        assert command[0] == "tailscale", command
        argv = [*node.host.prefix, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                *node.cli_argv(*command[1:])[len(node.host.prefix):]]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=node.env, timeout=30)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    return run_local


# Listing peer relay servers needs write access to the LocalAPI (every debug action does:
# docs/upstream/localapi.md#debug-needs-write). For granted client c run as nobody, the product's
# confirmation reads the status (read access), then reports the real "Access denied" with the fix
# at once, instead of polling until its 60 s timeout and blaming the relay.
def test_confirmation_without_write_access_says_so_at_once(net: Tailnet) -> None:
    # The tailnet's directory is 0700; nobody must be able to reach the (0666) socket below it.
    net.workdir.chmod(net.workdir.stat().st_mode | 0o011)
    relay_ips = list(net.relay.status()["Self"]["TailscaleIPs"])
    started = time.monotonic()
    result = confirmation_from_client(
        _as_nobody(net.clients["c"]),
        relay_ips,
        ["tag:relay-client"],
        timeout=CLIENT_CONFIRM_TIMEOUT,
    )
    elapsed = time.monotonic() - started
    assert result["confirmed"] is None, result
    assert "Access denied: debug access denied" in result["detail"], result
    assert "sudo tailscale set --operator=$USER" in result["detail"], result
    assert elapsed < CLIENT_CONFIRM_TIMEOUT / 4, elapsed
