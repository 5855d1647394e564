"""A second real tailnet for "who can reach devices homed on our region": an IPv4-only device,
region 900 in one of the product's three topologies, and (for one of them) a meshed companion
derper. Built from the same parts as ``tests/peers/tailnet.py`` (namespaces on an isolated LAN,
headscale, real derpers behind the userspace delay relay, real tailscaled with
``--tun=userspace-networking``); torn down on exit, also after a failure.

Hosts (``.2``, ``.3`` … of the LAN)::

    relay      tailscaled (tag:relay) + derper "home", -verify-clients through it
    a          tailscaled (tag:client), dual stack: a device at home, homed on region 900
    e          tailscaled (tag:client), IPv4 ONLY: eth0 has IPv6 disabled (no address, not even
               link-local, no route), like an office network or a GitHub-hosted runner
    far        derper "far", region 901 (dual stack), where e can always go
    companion  (topology "companion") tailscaled (tag:relay) + derper "companion", meshed with
               "home", -verify-clients through its own tailscaled

Region 900's derpers are the product's: the stack's config for the topology (``stack_config``)
parsed by ``components.settings.parse_settings``, each node (the home one, and
``node_settings`` of the companion) deployed as its containers would be
(tests/peers/product_process.py: ``container.derper_command``'s flags as uid 65532, the mesh key
drawn by ``MeshKey``'s provider and written by the init container's upload). Their names resolve
in the relay and companion namespaces to what the stack publishes
(``components.dns.published_addresses``), each public address standing for the namespace's LAN
address. Region 900 in the DERP map is written by the product's own
``components.derpmap.home_region`` (what the stack publishes), with the fronts pinned since the
clients' namespaces have no DNS:

* ``ipv6-only``: one node, ``IPv4: "none"``; home has an IPv6 front only.
* ``dual-stack``: one node with IPv4 (a port forward at home): fronts on both families.
* ``companion``: the home node (``IPv4: "none"``, IPv6 front) first, then the companion node with
  both families; the two derpers mesh with the product's ``-mesh-with=<hostname>:<port>`` and
  ``-mesh-psk-file``: the companion dials home over IPv6 (home publishes an AAAA record only),
  home dials the companion by its A and AAAA records.

Clients may send UDP only to the root namespace (STUN through the fronts): a↔e and e↔relay
traffic needs DERP. e's UDP rules allow IPv4 only (it has no IPv6 anyway).

headscale shuffles each region's nodes with a generator seeded by ``dns.base_domain``
(github.com/juanfont/headscale@v0.29.3/hscontrol/derp/derp.go:134-191, seed at :167-176), while
Tailscale's control plane serves them in the policy's order, "in priority order"
(tailscale.com@v1.102.5/tailcfg/derpmap.go:128-140). The base domain here (``reach.test``) is one
whose shuffle keeps the home node first; the fixture checks the map a node really received.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pulumi

from components import container, derpmap
from components.dns import published_addresses
from components.settings import Environment, RelaySettings, parse_settings
from components.settings.topology import node_settings
from tests.mocks import HostFacts, HostProbeAdapter
from tests.peers import docker_container
from tests.peers.aio import background_loop
from tests.peers.certs import make_pki
from tests.peers.daemons import Daemon, DaemonError, describe_all, wait_until
from tests.peers.delay import DelayRelay, delay_relay
from tests.peers.derper import Derper, admitted, start_derper
from tests.peers.headscale import derp_map_yaml, start_headscale
from tests.peers.ports import free_port
from tests.peers.product_process import (
    NodeDeployment,
    deploy,
    hosts_file,
    hosts_lines,
    new_mesh_key,
)
from tests.peers.tailnet import (
    FAR,
    HOME,
    POLICY,
    RELAY_DERP_PORT,
    RELAY_STUN_PORT,
    Lan,
    LanHost,
    Node,
    RegionSpec,
    _quiet_cancelled,
    lan,
    start_tailscaled,
    wait_backend,
)
from tests.peers.tools import version_of

Topology = Literal["ipv6-only", "dual-stack", "companion"]
TOPOLOGIES: tuple[Topology, ...] = ("ipv6-only", "dual-stack", "companion")
COMPANION_HOSTNAME = "derp-companion.home.test"
BASE_DOMAIN = "reach.test"  # its shuffle keeps a two-node region in order (module docstring)
TAGS = {"relay": "tag:relay", "companion": "tag:relay", "a": "tag:client", "e": "tag:client"}
ZONE = "home.test"
# What the stack publishes (public addresses: settings refuse the LAN's private ones), and where
# each of them is in the test world (``lan_address_of``).
HOME_PUBLISHED_V6 = "2409:8a00::10"
HOME_PUBLISHED_V4 = "203.0.114.10"
COMPANION_PUBLISHED_V4 = "203.0.114.9"
COMPANION_PUBLISHED_V6 = "2a01:4f8:c0c:9a1e::1"


@dataclass
class Fronts:
    """Where clients reach one derper: the delay relay's ports on the root's LAN addresses."""

    v4: str | None  # None: no IPv4 front (the node has no IPv4)
    v6: str | None
    derp_port: int
    stun_port: int


@dataclass
class ReachNet:
    topology: Topology
    lan: Lan
    workdir: Path
    headscale: Any
    relay: Node
    a: Node
    e: Node
    companion: Node | None
    home: Derper
    companion_derper: Derper | None
    far: Derper
    derp_map: dict[str, Any]
    daemons: list[Daemon] = field(default_factory=list)
    startup_seconds: float = 0.0
    home_dials_companion: bool = True
    home_node: NodeDeployment | None = None  # region 900's derpers, as the product deploys them
    companion_node: NodeDeployment | None = None

    @property
    def name(self) -> str:
        """The topology, and "companion-one-way" for a mesh the home derper does not dial."""
        one_way = self.topology == "companion" and not self.home_dials_companion
        return "companion-one-way" if one_way else self.topology

    @property
    def nodes(self) -> list[Node]:
        return [n for n in (self.relay, self.a, self.e, self.companion) if n is not None]

    def describe(self) -> str:
        return describe_all(self.daemons)

    def region(self, region_id: int = HOME.id) -> dict[str, Any]:
        return dict(self.derp_map["Regions"][str(region_id)])


def _front(
    relay: DelayRelay, kind: str, fronts: tuple[str | None, str | None], target: LanHost, port: int
) -> int:
    """One port on each front address given (the same number on both), forwarding to
    ``target``'s address of that family."""
    for _ in range(20):
        add = relay.add_tcp if kind == "tcp" else relay.add_udp
        chosen = 0
        try:
            for front, dest in zip(fronts, (target.v4, target.v6), strict=True):
                if front is not None:
                    chosen = add(front, (dest, port), chosen)
            return chosen
        except OSError:
            continue  # taken on the second family: try another number
    raise RuntimeError(f"no {kind} port free on {fronts}")


def _fronts(
    relay: DelayRelay, net_lan: Lan, target: LanHost, *, ipv4: bool, ipv6: bool = True
) -> Fronts:
    addrs = (net_lan.gateway_v4 if ipv4 else None, net_lan.gateway_v6 if ipv6 else None)
    return Fronts(
        *addrs,
        derp_port=_front(relay, "tcp", addrs, target, RELAY_DERP_PORT),
        stun_port=_front(relay, "udp", addrs, target, RELAY_STUN_PORT),
    )


def stack_config(topology: Topology, relay: Node) -> dict[str, str]:
    """The home stack's ``home-derp:`` config for ``topology``."""
    raw = {
        "hostname": HOME.hostname,
        "zone": ZONE,
        "ipv6": HOME_PUBLISHED_V6,
        "ipv4": HOME_PUBLISHED_V4 if topology == "dual-stack" else "none",
        "derpPort": str(RELAY_DERP_PORT),
        "stunPort": str(RELAY_STUN_PORT),
        "regionId": str(HOME.id),
        "regionCode": HOME.code,
        "regionName": HOME.name,
        "verifyClients": "true",
        "tailscaleSocket": str(relay.socket),
        "dockerHost": "ssh://root@relay." + ZONE,
    }
    if topology == "companion":
        raw |= {
            "companionHostname": COMPANION_HOSTNAME,
            "companionDockerHost": "ssh://root@vps." + ZONE,
            "companionIpv4": COMPANION_PUBLISHED_V4,
            "companionIpv6": COMPANION_PUBLISHED_V6,
        }
    return raw


def product_settings(topology: Topology, nodes: dict[str, Node]) -> RelaySettings:
    """The stack's settings as the product parses them (the hosts' facts injected, as in
    tests/real_tailnet/test_product_derper.py: tailscaled at the tailnet's release)."""
    facts = HostFacts(addresses=[HOME_PUBLISHED_V6], version=version_of("tailscaled"))
    vps = HostFacts(addresses=[COMPANION_PUBLISHED_V6], version=version_of("tailscaled"))
    return docker_container.plain_args(
        lambda: parse_settings(
            stack_config(topology, nodes["relay"]),
            env=Environment(cloudflare_api_token=pulumi.Output.secret("cf-test")),
            host=HostProbeAdapter(facts),
            companion_host=HostProbeAdapter(vps),
        ).require()
    )


def published_records(nodes: Any) -> dict[str, dict[str, str]]:
    """hostname → {record type → address} of each node's settings, as the stack publishes."""
    return {s.hostname: published_addresses(s.addresses) for s in nodes}


def lan_address_of(hosts: dict[str, LanHost]) -> dict[str, str]:
    """Each published address → the LAN address of the namespace that stands for it."""
    where = {HOME_PUBLISHED_V6: hosts["relay"].v6, HOME_PUBLISHED_V4: hosts["relay"].v4}
    if "companion" in hosts:
        where |= {
            COMPANION_PUBLISHED_V4: hosts["companion"].v4,
            COMPANION_PUBLISHED_V6: hosts["companion"].v6,
        }
    return where


def region_900(topology: Topology, home: Fronts, companion: Fronts | None) -> dict[str, Any]:
    """Region 900 as the product writes it (``derpmap.home_region``), the fronts pinned."""
    companions = ()
    if companion is not None:
        companions = (
            derpmap.relay_node(
                region_id=HOME.id,
                index=1,
                hostname=COMPANION_HOSTNAME,
                derp_port=companion.derp_port,
                stun_port=companion.stun_port,
                ipv4=companion.v4,
                ipv6=companion.v6,
                pin_ipv6=True,
            ),
        )
    region = derpmap.home_region(
        region_id=HOME.id,
        region_code=HOME.code,
        region_name=HOME.name,
        hostname=HOME.hostname,
        derp_port=home.derp_port,
        stun_port=home.stun_port,
        ipv4=home.v4 if topology == "dual-stack" else None,
        ipv6=home.v6,
        pin_ipv6=True,
        companions=companions,
    )
    return derpmap.region_to_dict(region)


def far_region(spec: RegionSpec, fronts: Fronts) -> dict[str, Any]:
    node = {
        "Name": f"{spec.id}a",
        "RegionID": spec.id,
        "HostName": spec.hostname,
        "IPv4": fronts.v4,
        "IPv6": fronts.v6,
        "STUNPort": fronts.stun_port,
        "DERPPort": fronts.derp_port,
    }
    return {"RegionID": spec.id, "RegionCode": spec.code, "RegionName": spec.name, "Nodes": [node]}


def served_node_names(node: Node, region_id: int = HOME.id) -> list[str]:
    """The node names of a region in the DERP map ``node``'s tailscaled really holds."""
    dm = node.json("debug", "derp-map")
    return [n["Name"] for n in dm["Regions"][str(region_id)]["Nodes"]]


def wait_reach_converged(net: ReachNet, timeout: float = 60.0) -> None:
    """Every node Running with every peer; relay and a homed on 900 and admitted by home; e
    homed where its topology lets it (far, or 900) and admitted by the derper it reaches."""
    expected = len(net.nodes) - 1
    e_home = FAR.code if net.topology == "ipv6-only" else HOME.code
    e_derper = {"ipv6-only": net.far, "dual-stack": net.home}.get(net.topology)
    e_derper = e_derper or net.companion_derper

    def ready() -> bool:
        for node in net.nodes:
            st = node.status()
            if st.get("BackendState") != "Running" or len(st.get("Peer") or {}) != expected:
                return False
        if net.relay.status()["Self"].get("Relay") != HOME.code:
            return False
        if net.a.status()["Self"].get("Relay") != HOME.code:
            return False
        if net.e.status()["Self"].get("Relay") != e_home:
            return False
        log = net.home.log()
        if not (admitted(log, net.relay.nodekey) and admitted(log, net.a.nodekey)):
            return False
        # far runs without DERP_DEBUG_LOGS: a connection from e is enough there
        return e_derper is net.far or bool(e_derper and admitted(e_derper.log(), net.e.nodekey))

    wait_until(
        f"the {net.topology} tailnet to converge (Running, all peers, homes, admitted)",
        ready,
        timeout,
        net.daemons,
        0.5,
    )


@contextlib.contextmanager
def reach_tailnet(
    topology: Topology, workdir: Path | None = None, *, home_dials_companion: bool = True
) -> Iterator[ReachNet]:
    """The tailnet of the module docstring in ``topology``, converged; torn down afterwards.

    ``home_dials_companion=False`` leaves ``-mesh-with`` off the home derper (it still holds the
    mesh key, so it accepts the companion's mesh connection): a mesh in one direction only."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hdr-")))
        started = time.monotonic()
        net_lan = stack.enter_context(lan())
        labels = ["relay", "a", "e", "far"] + (["companion"] if topology == "companion" else [])
        hosts = dict(zip(labels, net_lan.add_hosts(labels, ipv4_only=["e"]), strict=True))
        hosts["a"].isolate_udp([net_lan.gateway_v4, net_lan.gateway_v6])
        hosts["e"].isolate_udp([net_lan.gateway_v4])

        pkis = {
            "home": make_pki(workdir / "pki-home", HOME.hostname),
            "far": make_pki(workdir / "pki-far", FAR.hostname),
            "companion": make_pki(workdir / "pki-companion", COMPANION_HOSTNAME),
        }
        ca_bundle = workdir / "ca-bundle.pem"
        ca_bundle.write_text("".join(Path(p.ca_file).read_text() for p in pkis.values()))

        daemons: list[Daemon] = []

        def owned(d: Daemon) -> Daemon:
            daemons.append(d)
            stack.callback(d.stop)
            return d

        nodes: dict[str, Node] = {}
        for label in ("relay", "a", "e", "companion"):
            if label in hosts:
                nodes[label] = start_tailscaled(label, hosts[label], workdir / label, ca_bundle)
                owned(nodes[label].daemon)

        loop = stack.enter_context(background_loop())
        loop.loop.set_exception_handler(_quiet_cancelled)
        near = stack.enter_context(delay_relay(HOME.rtt_ms, loop))
        far_delay = stack.enter_context(delay_relay(FAR.rtt_ms, loop))

        far_files = pkis["far"].files("good")
        far = start_derper(
            workdir / "derper-far",
            hostname=FAR.hostname,
            cert_file=far_files.cert_file,
            key_file=far_files.key_file,
            derp_port=RELAY_DERP_PORT,
            stun_port=RELAY_STUN_PORT,
            prefix=hosts["far"].prefix,
            addresses=hosts["far"].addresses,
        )
        owned(far.daemon)
        far_fronts = _fronts(far_delay, net_lan, hosts["far"], ipv4=True)

        # Region 900's derpers as the product deploys them (tests/peers/product_process.py):
        # the flags of `container.derper_command` for the parsed settings of each node, the mesh
        # key drawn by `MeshKey`'s provider and written by the init container's upload, names
        # resolved from the records the product publishes.
        settings = product_settings(topology, nodes)
        nodes_settings = {"relay": settings}
        if settings.companion is not None:
            nodes_settings["companion"] = node_settings(settings, settings.companion)
        stack.enter_context(
            hosts_file(
                [hosts[label].name for label in nodes_settings],
                hosts_lines(published_records(nodes_settings.values()), lan_address_of(hosts)),
            )
        )
        mesh_key = new_mesh_key() if settings.companion is not None else None
        for label in nodes_settings:
            wait_backend(nodes[label], ("NeedsLogin", "NoState", "Stopped"))

        def product_derper(label: str, drop: tuple[str, ...] = ()) -> NodeDeployment:
            node_set = nodes_settings[label]
            deployed = deploy(
                workdir / f"derper-{label}",
                node_set,
                pkis["companion" if label == "companion" else "home"],
                prefix=hosts[label].prefix,
                ca_bundle=ca_bundle,
                mesh_key=mesh_key,
                # one tailscaleSocket for both hosts; here they share a filesystem
                host_paths={container.SOCKET_DIR: nodes[label].socket.parent},
                drop_flags=drop,
                addresses=hosts[label].addresses,
            )
            owned(deployed.derper.daemon)
            return deployed

        # the one-way variant: home's -mesh-with left off (it still holds the key)
        home_node = product_derper("relay", () if home_dials_companion else ("-mesh-with",))
        home = home_node.derper
        home_fronts = _fronts(near, net_lan, hosts["relay"], ipv4=topology == "dual-stack")
        companion_derper, companion_fronts, companion_node = None, None, None
        if topology == "companion":
            companion_node = product_derper("companion")
            companion_derper = companion_node.derper
            companion_fronts = _fronts(near, net_lan, hosts["companion"], ipv4=True)

        dmap = {
            "Regions": {
                str(HOME.id): region_900(topology, home_fronts, companion_fronts),
                str(FAR.id): far_region(FAR, far_fronts),
            }
        }
        (workdir / "derpmap.json").write_text(json.dumps(dmap, indent=2))
        hs = start_headscale(
            workdir / "headscale",
            listen_ip=net_lan.gateway_v4,
            port=free_port((net_lan.gateway_v4,), socket.SOCK_STREAM),
            grpc_port=free_port(("127.0.0.1",), socket.SOCK_STREAM),
            derp_map=dmap,
            policy=POLICY,
            base_domain=BASE_DOMAIN,
        )
        owned(hs.daemon)
        (workdir / "derp.yaml").write_text(derp_map_yaml(dmap))
        user = hs.create_user("tester")
        tags = sorted({TAGS[label] for label in nodes})
        with ThreadPoolExecutor(len(tags)) as pool:
            made = dict(zip(tags, pool.map(lambda t: hs.preauth_key(user, [t]), tags), strict=True))

        def up(node: Node) -> None:
            wait_backend(node, ("NeedsLogin", "NoState", "Stopped"))
            node.cli(
                "up",
                f"--login-server={hs.url}",
                f"--auth-key={made[TAGS[node.label]]}",
                f"--hostname={node.label}",
                "--accept-dns=false",
                "--timeout=60s",
                timeout=90,
            )

        with ThreadPoolExecutor(len(nodes)) as pool:
            for f in [pool.submit(up, n) for n in nodes.values()]:
                try:
                    f.result()
                except DaemonError as exc:
                    raise DaemonError(f"{exc}\n{describe_all(daemons)}") from None

        net = ReachNet(
            topology,
            net_lan,
            workdir,
            hs,
            nodes["relay"],
            nodes["a"],
            nodes["e"],
            nodes.get("companion"),
            home,
            companion_derper,
            far,
            dmap,
            daemons,
            home_dials_companion=home_dials_companion,
            home_node=home_node,
            companion_node=companion_node,
        )
        wait_reach_converged(net)
        if topology == "companion":
            order = served_node_names(net.a)
            if order != ["900a", "900b"]:
                raise DaemonError(
                    f"headscale served region 900's nodes as {order}, not home first: its "
                    f"shuffle seeded by dns.base_domain {BASE_DOMAIN!r} changed; pick a base "
                    "domain whose shuffle keeps the order (module docstring)"
                )
        net.startup_seconds = time.monotonic() - started
        yield net
