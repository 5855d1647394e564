"""Who reaches the devices homed on our region, with the real programs (docs/guide/reach.md).

One tailnet per topology (``tests/peers/reach.py``): device a is homed on region 900, device e has
IPv4 only, UDP between devices is blocked so every path is DERP. The same tests run in every
topology and expect what upstream does there:

==================  =======================================  ===========================
topology            region 900                                e → a (a homed on 900)
==================  =======================================  ===========================
ipv6-only           one node, ``IPv4: "none"``                no reply (upstream, below)
dual-stack          one node with IPv4 (port forward)         pong via DERP(home)
companion           home node + companion with IPv4, meshed   pong via DERP(home)
companion-one-way   the same, only the companion dials home   no reply
==================  =======================================  ===========================

Why e gets no reply in ``ipv6-only`` (tailscale.com@v1.102.5): e sends to a's *home* region
(wgengine/magicsock/endpoint.go:1530-1550 sets the peer's ``derpAddr`` from its ``HomeDERP``;
derp.go:339-388 opens "a connection to derp-900 for" it), and dials that region's node over tcp6
only, since its ``IPv4`` is "none" (derp/derphttp/derphttp_client.go:721-727, :809-817): "connect:
network is unreachable". Once that connection exists it is preferred to the reverse route through
the region a's packets came from (derp.go:357-366 before :368-382), so e stays unable to answer
even after a pinged it. If a release changes this, ``test_ipv4_only_device_reaches_the_region``
fails in ``ipv6-only`` and says so.

Why a one-way mesh is not enough: a derper forwards a packet to another node's client only when
it has registered that node as a forwarder for the client, which only the side that *dials* does
(cmd/derper/mesh.go:74-77: ``AddPacketForwarder`` on the watch connection it opened, the only
caller of derp/derpserver/derpserver.go:2271-2299; lookupDest :1301-1323): every node must dial
every other one.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components import container
from components import reach as reach_rules
from components.gate import verdict_problems
from components.mesh import MESH_KEY
from components.settings.topology import mesh_peer
from components.tailnet import TailnetDerpRegion
from components.validation import RelayValidation, RelayValidationArgs, validation_trigger
from tests.mocks import dynamic_inputs
from tests.peers.daemons import wait_until
from tests.peers.derper import Derper, admitted, short_key
from tests.peers.dns_server import DnsServer, dns_server
from tests.peers.reach import TOPOLOGIES, ReachNet, reach_tailnet
from tests.peers.tailnet import FAR, HOME, Node
from tests.peers.tailscale_api import TailscaleApiPeer
from tests.peers.tools import tool
from tests.provider_host import ProviderHost, urn_for

# cmd/tailscale/cli/ping.go:174: "pong from %s (%s%s) via %v in %v"
PONG = re.compile(r"^pong from (?P<name>\S+) \([^)]*\) via (?P<via>\S+) in (?P<ms>\d+)ms$", re.M)
# cmd/tailscale/cli/ping.go: a ping that got no pong at all ends with "no reply"
NO_REPLY = "no reply"


@dataclass(frozen=True)
class Expect:
    """What upstream does in one topology."""

    e_home: str  # the region e makes its home
    e_reaches_region: bool  # e → a and e → the relay host answer
    a_reaches_e: bool
    region_ipv4: bool
    mesh: tuple[bool, bool] | None  # (companion dials home, home dials companion)


EXPECT = {
    "ipv6-only": Expect(FAR.code, False, True, False, None),
    "dual-stack": Expect(HOME.code, True, True, True, None),
    "companion": Expect(HOME.code, True, True, True, (True, True)),
    "companion-one-way": Expect(HOME.code, False, False, True, (True, False)),
}


@pytest.fixture(scope="module", params=[*TOPOLOGIES, "companion-one-way"])
def reach(request: pytest.FixtureRequest) -> Iterator[ReachNet]:
    """One converged tailnet per topology (~5 s each on 2 cores)."""
    assert os.geteuid() == 0, "the tailnet tests need root (network namespaces, iptables)"
    topology = request.param
    one_way = topology == "companion-one-way"
    with reach_tailnet("companion" if one_way else topology, home_dials_companion=not one_way) as t:
        yield t


def expect(net: ReachNet) -> Expect:
    return EXPECT[net.name]


def ping(src: Node, dst: Node, count: int, timeout: str = "5s") -> tuple[str, int]:
    done = src.cli(
        "ping", "--until-direct=false", "-c", str(count), "--timeout", timeout, dst.ipv4,
        timeout=count * 6 + 10, check=False,
    )  # fmt: skip
    return done.stdout + done.stderr, done.returncode


def pongs(src: Node, dst: Node, within: float = 30.0) -> list[re.Match[str]]:
    """Pongs from ``dst`` (the first disco ping may be lost while the DERP path is set up)."""

    def answered() -> list[re.Match[str]] | None:
        out, _ = ping(src, dst, 3, "2s")
        found = list(PONG.finditer(out))
        return found if len(found) >= 2 else None

    return wait_until(f"{src.label} → {dst.label}: pongs", answered, within, [src.daemon], 0.5)


def frames_from(log: str, node: Node) -> int:
    """Packets derper read from ``node`` (frameSendPacket is type 4; DERP_DEBUG_LOGS)."""
    return len(
        re.findall(
            rf"derp client \S+?{re.escape(short_key(node.nodekey))}: read frame type 4 ", log
        )
    )


# e (IPv4 only) → a and → the relay host, both homed on region 900; then a → e; then e → a again.
# In the topologies with an IPv4 path every ping is answered via DERP(home) and e's packets were
# read by a derper of region 900; in ipv6-only e gets no reply (its tailscaled tried region 900
# over tcp6 only: "network is unreachable") although a reaches e via DERP(far), and still none
# after that; with a one-way mesh nobody gets through.
def test_ipv4_only_device_reaches_the_region(reach: ReachNet) -> None:
    want = expect(reach)
    a, e, relay = reach.a, reach.e, reach.relay
    assert a.status()["Self"]["Relay"] == HOME.code
    assert relay.status()["Self"]["Relay"] == HOME.code
    assert e.status()["Self"]["Relay"] == want.e_home
    if want.e_reaches_region:
        region_derper = reach.companion_derper or reach.home
        before = frames_from(region_derper.log(), e)
        for target in (a, relay):
            found = pongs(e, target)
            assert {p["via"] for p in found} == {f"DERP({HOME.code})"}, found
            # path latency: the near region both ways, never through far (2 x 80 ms)
            assert min(int(p["ms"]) for p in found) < 2 * FAR.rtt_ms, found
        assert frames_from(region_derper.log(), e) > before
    else:
        for target in (a, relay):
            out, code = ping(e, target, 2, "4s")
            assert code != 0 and NO_REPLY in out and not PONG.search(out), out
    if want.a_reaches_e:
        via = {p["via"] for p in pongs(a, e)}
        assert via == {f"DERP({want.e_home})"}, via
    else:
        out, code = ping(a, e, 2, "4s")
        assert code != 0 and not PONG.search(out), out
    if reach.topology == "ipv6-only":
        out, code = ping(e, a, 2, "4s")
        assert code != 0 and not PONG.search(out), f"e reached a after a pinged it: {out}"
    peer_a = e.status()["Peer"][a.nodekey]
    assert peer_a["Relay"] == HOME.code and peer_a["CurAddr"] == "", peer_a  # DERP, no direct
    if reach.topology == "ipv6-only":
        log = e.log()
        assert "magicsock: adding connection to derp-900 for" in log
        assert re.search(r"connect to region 900 \(home\): dial tcp6 \S+: connect: network is "
                         r"unreachable", log), log[-3000:]  # fmt: skip
        assert "dial tcp4" not in "\n".join(ln for ln in log.splitlines() if "region 900" in ln)


# The mesh: every packet between a (on the home node) and e (on the companion) crosses it. The
# receiving derper logs "received forwarded packet from <src> via <mesh peer>" (derpserver.go:1281,
# DERP_DEBUG_LOGS) — home for e's packets (the companion dialled home), the companion for a's
# (home dialled the companion). One way only: home still gets e's packets, the companion none.
# Pings are sent until the derpers log what is expected: a packet sent while the sender's DERP
# connection to region 900 is still being set up is lost (a single ping of each made this test
# fail under load, 1 run in 3 of tests/netcheck + tests/real_tailnet with -n 2).
def test_mesh_forwards_both_ways(reach: ReachNet) -> None:
    mesh = expect(reach).mesh
    if mesh is None:
        assert "mesh(" not in reach.home.log()  # one node: no -mesh-with
        assert reach.companion_derper is None
        return
    assert reach.companion_derper is not None

    def forwarded(log: str, src: Node) -> int:
        return len(
            re.findall(
                rf"received forwarded packet from {re.escape(short_key(src.nodekey))} via", log
            )
        )

    def seen() -> bool:
        ping(reach.e, reach.a, 1, "2s")
        ping(reach.a, reach.e, 1, "2s")
        home = forwarded(reach.home.log(), reach.e) > 0
        companion = forwarded(reach.companion_derper.log(), reach.a) > 0  # type: ignore[union-attr]
        return (home, companion) == mesh

    wait_until(f"forwarded packets {mesh}", seen, 45.0, reach.daemons, 0.5)
    assert (forwarded(reach.home.log(), reach.e) > 0) is mesh[0]
    assert (forwarded(reach.companion_derper.log(), reach.a) > 0) is mesh[1]


def host_of(address: str) -> str:
    """The host of derper's ``ip:port`` / ``[ip]:port`` client address."""
    return address.rpartition(":")[0].strip("[]")


# Region 900's derpers run as the product deploys them (tests/peers/product_process.py): each with
# `container.derper_command` of its node's settings, as uid 65532, the mesh key drawn by MeshKey
# and uploaded by the init container. In the companion topology both derpers read that key
# ("Got mesh key from static file", "DERP mesh key configured": cmd/derper/derper.go:239,250) from
# the same 0600 file derper's user owns, and dial the other by its hostname — derper logs the
# dial target it was given (`mesh("h:p"): will dial "h:p" for "h:p"`, cmd/derper/mesh.go:50,59),
# resolved from the records the product publishes: the mesh connection, made with the dialing
# server's own key (mesh.go:52) and registered by the other (derpserver.go:772), arrives at home
# from the companion's IPv6 address (home publishes no A record) and at the companion from the
# relay host. Without a companion, no mesh flag and no key.
def test_region_derpers_run_as_the_product_deploys_them(reach: ReachNet) -> None:
    assert reach.home_node is not None
    nodes = [reach.home_node] + ([reach.companion_node] if reach.companion_node else [])
    for node in nodes:
        assert node.product_command == container.derper_command(node.settings)
        status = Path(f"/proc/{node.derper.daemon.process.pid}/status").read_text()
        uid = container.derper_user(node.settings).partition(":")[0]
        assert re.search(rf"^Uid:\t{uid}\t{uid}\t", status, re.M), status
        assert re.search(r"^CapEff:\t0+$", status, re.M), status
    home_log = reach.home.log()
    if reach.companion_node is None:
        assert not any(a.startswith("-mesh") for a in reach.home_node.product_command)
        assert "No mesh key configured" in home_log
        return
    companion = reach.companion_node
    keys = []
    for node in nodes:
        mesh_file = node.host_path(container.MESH_KEY_FILE)
        st = mesh_file.stat()
        owner = int(container.derper_user(node.settings).partition(":")[0])
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, owner), mesh_file
        keys.append(mesh_file.read_text())
        log = node.derper.log()
        assert "Got mesh key from static file" in log and "DERP mesh key configured" in log
    assert keys[0] == keys[1] and MESH_KEY.match(keys[0])
    for node, peer in ((reach.home_node, companion), (companion, reach.home_node)):
        target = mesh_peer(peer.settings.hostname, peer.settings.ports)
        if node is reach.home_node and not reach.home_dials_companion:
            assert "mesh(" not in home_log
            continue
        assert f"-mesh-with={target}" in node.argv
        assert f'mesh("{target}"): will dial "{target}" for "{target}"' in node.derper.log()

    def mesh_from(receiver: Derper, dialer: Derper) -> set[str]:
        return {host_of(a) for a in admitted(receiver.log(), dialer.public_key)}

    assert reach.companion is not None
    want_home = {reach.companion.host.v6}  # home publishes AAAA only
    relay_addresses = set(reach.relay.host.addresses)

    def connected() -> bool:
        into_companion = mesh_from(companion.derper, reach.home)
        home_ok = not reach.home_dials_companion or bool(into_companion)
        return mesh_from(reach.home, companion.derper) == want_home and home_ok

    wait_until("the mesh connections", connected, 20.0, reach.daemons, 0.5)
    assert mesh_from(companion.derper, reach.home) <= relay_addresses
    if not reach.home_dials_companion:
        assert mesh_from(companion.derper, reach.home) == set()


# --------------------------------------------------------------- the health run from a runner

URN = urn_for("pulumi-python:dynamic/homederp:RelayValidation", "relay-900-validation")
REGION_URN = urn_for("pulumi-python:dynamic/homederp:TailnetDerpRegion", "relay-900-tailnet-region")
API_KEY = "tskey-api-reach"
USER_POLICY = '{\n  // the user\'s own policy\n  "acls": [],\n}\n'


def tailscale_shim(directory: Path, node: Node) -> Path:
    """``tailscale`` on this machine's PATH talking to ``node``'s tailscaled (the runner's)."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "tailscale"
    shim.write_text(f'#!/bin/sh\nexec {tool("tailscale")} --socket={node.socket} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return directory


def device_of(node: Node) -> dict[str, Any]:
    """The node as the API's device list says it with ``fields=all``: its magicsock endpoints are
    what ``tailscale status`` shows as ``Self.Addrs`` (wgengine/magicsock/magicsock.go:3962-3970;
    tailscale/tailscale@afec2d41b/publicapi/device.md:110-113)."""
    me = node.status()["Self"]
    return {
        "name": f"{node.label}.reach.test",
        "hostname": node.label,
        "nodeKey": me["PublicKey"],
        "addresses": me["TailscaleIPs"],
        "clientConnectivity": {"endpoints": me.get("Addrs") or []},
    }


def health_run(
    reach: ReachNet, runner: Node, tmp: Path, api: TailscaleApiPeer, resolver: DnsServer
) -> dict[str, Any]:
    """RelayValidation in a real provider process on "a runner": its sockets have IPv6 (like a
    GitHub-hosted runner's through an exit node), its own tailscaled is ``runner``'s, and
    derper's log cannot be read from it (the health run's ssh goes over the tailnet)."""
    front = reach.region()["Nodes"][0]
    addresses = [front["IPv6"]]
    args = RelayValidationArgs(
        hostname=HOME.hostname,
        derp_port=front["DERPPort"],
        stun_port=front["STUNPort"],
        expected_addresses=addresses,
        expect_verify_clients=True,
        timeout_seconds=0,
        trigger=validation_trigger("health-run", "", addresses, f"health-{runner.label}"),
        resolvers=[resolver.spec],
        ca_file=str(reach.workdir / "pki-home" / "ca.pem"),
        docker_host=f"unix://{tmp}/no-docker-here.sock",
        container="derper-900-home",
        region_ipv4=expect(reach).region_ipv4,
    )
    inputs = dynamic_inputs(lambda: RelayValidation("relay-900-validation", args))
    shim = tailscale_shim(tmp / f"bin-{runner.label}", runner)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    with ProviderHost(timeout=90, env=env) as host:
        host.configure(
            {
                "tailscale:apiKey": API_KEY,
                "tailscale:baseUrl": api.base_url,
                "tailscale:tailnet": "-",
            }
        )
        checked = host.check(URN, {}, inputs)
        assert checked.failures == []
        return dict(host.create(URN, checked.inputs).outputs)


def region_after(verdict: bool | None, reach: ReachNet, api: TailscaleApiPeer) -> tuple[str, str]:
    """(policy before, policy after) our published region follows ``verdict``."""
    api.policy = USER_POLICY
    inputs = dynamic_inputs(
        lambda: TailnetDerpRegion("relay-900-tailnet-region", region=reach.region())
    )
    with ProviderHost(timeout=60) as host:
        host.configure({"tailscale:apiKey": API_KEY, "tailscale:baseUrl": api.base_url})
        checked = host.check(REGION_URN, {}, {**inputs, "healthy": True})
        created = host.create(REGION_URN, checked.inputs)
        before = api.policy
        host.update(
            created.id, created.outputs, {**checked.inputs, "healthy": verdict}, urn=REGION_URN
        )
        return before, api.policy


# A health run whose runner has IPv4 only, against a healthy relay: in ipv6-only its tailscaled's
# endpoints show no IPv6, so instead of "unconfirmed" (which drained the region every run) the
# verdict is "not judged: this runner has no path to a region with no IPv4", the region's bytes
# stay as they are, and the gate turns the run red with that sentence. The same runner judges a
# region that has IPv4 (an unreadable log is then a real failure), and a runner with IPv6 of its
# own (a) is judged in every topology. The API's device list names e — and only e — as a device
# the IPv6-only region leaves out.
def test_health_run_from_an_ipv4_only_runner(reach: ReachNet, tmp_path: Path) -> None:
    want = expect(reach)
    api = TailscaleApiPeer(
        policy=USER_POLICY,
        api_keys={API_KEY: ("policy_file", "devices:core:read")},
        devices=[device_of(n) for n in reach.nodes],
    )
    with api, dns_server() as resolver:
        resolver.set_addresses(HOME.hostname, [reach.region()["Nodes"][0]["IPv6"]])
        e_run = health_run(reach, reach.e, tmp_path, api, resolver)
        a_run = health_run(reach, reach.a, tmp_path, api, resolver)
        failed = {c["name"] for c in e_run["checks"] if not c["ok"]}
        assert failed == {"verify_clients"}, e_run["checks"]  # the relay itself is healthy
        assert e_run["admission"]["cause"] == "unconfirmed"
        assert a_run["healthy"] is False and a_run["admission"]["cause"] == "unconfirmed"
        if want.region_ipv4:
            assert e_run["healthy"] is False, e_run.get("diagnosis")
            assert "reach" not in e_run  # a region with IPv4 leaves nobody out
            return
        # the engine's wire drops None values: no verdict is an absent `healthy`
        assert e_run.get("healthy") is None and e_run.get("ok") is None
        assert e_run["diagnosis"].startswith(reach_rules.NOT_JUDGED), e_run["diagnosis"]
        assert "no IPv6" in e_run["diagnosis"]
        assert e_run["reach"]["withoutIpv6"] == ["e.reach.test"], e_run["reach"]
        assert e_run["reach"]["devices"] == len(reach.nodes)
        before, after = region_after(e_run.get("healthy"), reach, api)
        assert after == before and "NoMeasureNoHome" not in after
        gate = verdict_problems(
            {"mode": "enforce", "healthy": None, "diagnosis": e_run["diagnosis"]}
        )
        assert gate and gate[0].startswith(reach_rules.NOT_JUDGED)  # red, nothing drained
        before, after = region_after(a_run["healthy"], reach, api)
        assert "NoMeasureNoHome" in after and "NoMeasureNoHome" not in before
