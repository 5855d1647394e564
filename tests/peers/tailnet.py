"""A real tailnet in network namespaces: headscale, two real derpers, real tailscaled nodes.

Topology (everything is torn down on exit, also after a failure)::

    root namespace            hub namespace: bridge br0, a switch; its own address
      LAN .1 / ::1 ── veth ──  .254 / ::fe is every node's default route (a sink)
      headscale (HTTP)           │
      delay relays (fronts)      ├─ relay  .2  tailscaled (tag:relay) + derper "home"
                                 ├─ a      .3  tailscaled (tag:client)
                                 ├─ b      .4  tailscaled (tag:client)
                                 ├─ c      .5  tailscaled (tag:relay-client)
                                 ├─ d      .6  tailscaled (tag:relay-client)
                                 └─ far    .7  derper "far" (no tailscaled)

* No namespace can reach anything but this LAN: the hub does not forward, so the default route
  (tailscaled wants one) ends there. The root namespace only joins the LAN with one veth.
* headscale listens on the root namespace's LAN address (``server_url``): the nodes cannot
  reach the root's loopback.
* The relay host is a namespace: its tailscaled (``-verify-clients`` asks it over its socket)
  and derper run there, as on a home server where both share the host's network (derper in
  Docker with host networking: tests/peers/dockerd.py starts dockerd in this namespace). The
  relay host is deliberately not the root namespace: a tailscaled there would bind the
  machine's port 41641 and see its real interfaces and routes (netcheck, DNS, port mapping).
* Clients reach both regions only through the userspace delay relay in the root namespace
  (tests.peers.delay; no netem in this kernel): region 900 "home" at ``NEAR_RTT_MS``, region 901
  "far" at ``FAR_RTT_MS``. The DERP map pins the front addresses (``IPv4``/``IPv6``), so no DNS
  is needed. derper therefore sees clients at the root's LAN address, as behind a NAT.
* Clients may send UDP only to the root (STUN through the fronts) and to the relay host
  (iptables/ip6tables in their namespace): client↔client traffic needs DERP or the peer relay.
* tailscaled uses ``--tun=userspace-networking``: the tests need magicsock paths (DERP, peer
  relay, disco/TSMP pings), not kernel routing, and netstack leaves each namespace's routes and
  netfilter alone — our isolation rules stay the only ones. ``--no-logs-no-support`` (no log
  upload), ``SSL_CERT_FILE`` = the test CAs (derper's certificates), ``--accept-dns=false``.
* Policy (HuJSON, headscale policy v2): everyone may reach everyone; tag:relay-client nodes get
  ``tailscale.com/cap/relay`` on the relay host (its peer relay server). Clients a/b have no such
  grant, so their path between each other is DERP whatever the relay server does: magicsock
  only uses relay servers it holds ``cap/relay-target`` for (tailscale.com@v1.102.5/wgengine/
  magicsock/magicsock.go:2947) and the server only allocates for holders of ``cap/relay``
  (magicsock.go:2492).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.peers.aio import BackgroundLoop, background_loop
from tests.peers.certs import Pki, make_pki
from tests.peers.daemons import Daemon, DaemonError, describe_all, run, start, wait_until
from tests.peers.delay import DelayRelay, delay_relay
from tests.peers.derper import Derper, admitted, start_derper
from tests.peers.headscale import Headscale, start_headscale
from tests.peers.netns import run_in_netns
from tests.peers.ports import free_port
from tests.peers.tools import tool

T = TypeVar("T")
PREFIX = "hdt"  # namespaces and root-side veths: hdt<pid>h<n> (hub), hdt<pid>n<n> (hosts)
NEAR_RTT_MS = 20.0
FAR_RTT_MS = 80.0
RELAY_DERP_PORT = 8443  # inside the relay namespace: custom ports, like a home server
RELAY_STUN_PORT = 3479
RELAY_SERVER_PORT = 40000  # the peer relay's UDP port (tailscale set --relay-server-port)
TAILSCALED_PORT = 41641
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_counter = 0
_lock = threading.Lock()


# ------------------------------------------------------------------------------------ the LAN


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=20)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _ip_batch(commands: Sequence[str], netns: str | None = None) -> None:
    """Several ``ip`` commands in one process (``ip [-n NS] -batch -``): set-up stays fast."""
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True,
                          text=True, check=False, timeout=30)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}\n" + "\n".join(commands))


def _next_id() -> int:
    global _counter
    with _lock:
        _counter += 1
        return _counter


@contextlib.contextmanager
def isolated_host(label: str = "isolated") -> Iterator[LanHost]:
    """A namespace with nothing but loopback: whatever runs there reaches nothing at all."""
    cleanup_stale()
    name = f"{PREFIX}{os.getpid()}n{_next_id()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield LanHost(label, name, "127.0.0.1", "::1")
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def cleanup_stale() -> None:
    """Namespaces of test runs that died without cleaning up (their pid is gone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for m in re.finditer(rf"^({PREFIX}(\d+)[hn]\d+)", out, re.M):
        if not os.path.exists(f"/proc/{m.group(2)}"):
            subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True, check=False)


def _free_subnet() -> int:
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        n = random.randrange(1, 250)
        if f"10.214.{n}." not in used and f"fd42:214:{n:x}::" not in used:
            return n
    raise RuntimeError("no free 10.214.x.0/24 subnet")


@dataclass(frozen=True)
class LanHost:
    """A namespace on the LAN: ``eth0`` with one IPv4 and one IPv6 address (``v6`` empty: an
    IPv4-only host, IPv6 disabled on ``eth0``: no address, not even link-local, and no route)."""

    label: str
    name: str  # the netns
    v4: str
    v6: str

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a for a in (self.v4, self.v6) if a)

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a thread inside the namespace (its sockets live there)."""
        return run_in_netns(self.name, fn)

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.prefix, *argv], check=check, timeout=20)

    def isolate_udp(self, allowed: Sequence[str]) -> None:
        """Drop UDP to/from every LAN address but ``allowed`` (IPv4 and IPv6, link-local too)."""
        for restore, family in (("iptables-restore", 4), ("ip6tables-restore", 6)):
            peers = [a for a in allowed if ipaddress.ip_address(a).version == family]
            rules = ["*filter"]
            for chain, flag, direction in (("OUTPUT", "-o", "-d"), ("INPUT", "-i", "-s")):
                rules += [f"-A {chain} {flag} eth0 -p udp {direction} {a} -j ACCEPT" for a in peers]
                rules.append(f"-A {chain} {flag} eth0 -p udp -j DROP")
            rules.append("COMMIT")
            argv = [*self.prefix, restore, "--noflush"]
            done = subprocess.run(argv, input="\n".join(rules) + "\n", capture_output=True,
                                  text=True, check=False, timeout=20)  # fmt: skip
            if done.returncode:
                raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


@dataclass
class Lan:
    """The hub namespace's bridge, the root namespace's port on it, and the hosts."""

    n: int
    hub: str
    root_if: str
    hosts: list[LanHost] = field(default_factory=list)

    @property
    def gateway_v4(self) -> str:  # the root namespace on the LAN
        return f"10.214.{self.n}.1"

    @property
    def gateway_v6(self) -> str:
        return f"fd42:214:{self.n:x}::1"

    def add_host(self, label: str) -> LanHost:
        return self.add_hosts([label])[0]

    def add_hosts(self, labels: Sequence[str], ipv4_only: Sequence[str] = ()) -> list[LanHost]:
        """New namespaces on the bridge, in order: .2, .3, … (default route to the sink); the
        labels in ``ipv4_only`` get no IPv6 at all."""
        n, new = self.n, []
        for label in labels:
            k = len(self.hosts) + 2
            name = f"{PREFIX}{os.getpid()}n{_next_id()}"
            v6 = "" if label in ipv4_only else f"fd42:214:{n:x}::{k:x}"
            new.append(LanHost(label, name, f"10.214.{n}.{k}", v6))
            self.hosts.append(new[-1])
        _ip_batch([f"netns add {h.name}" for h in new])
        ports = [(f"p{self.hosts.index(h) + 2}", h) for h in new]
        _ip_batch(
            [f"link add {p} type veth peer name eth0 netns {h.name}" for p, h in ports]
            + [f"link set {p} master br0 up" for p, _ in ports],
            self.hub,
        )
        for h in new:
            if not h.v6:  # before the link is up, so the kernel adds no link-local address
                run([*h.prefix, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"])
            v6 = [f"addr add {h.v6}/64 dev eth0 nodad", f"route add ::/0 via fd42:214:{n:x}::fe"]
            _ip_batch(
                [
                    "link set lo up",
                    f"addr add {h.v4}/24 dev eth0",
                    *(v6[:1] if h.v6 else []),
                    "link set eth0 up",
                    f"route add default via 10.214.{n}.254",
                    *(v6[1:] if h.v6 else []),
                ],
                h.name,
            )
        return new

    def close(self) -> None:
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.root_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.hub], capture_output=True, check=False)


@contextlib.contextmanager
def lan() -> Iterator[Lan]:
    """An isolated LAN 10.214.N.0/24 + fd42:214:N::/64; the root namespace is .1 / ::1."""
    cleanup_stale()
    n = _free_subnet()
    k = _next_id()
    net = Lan(n, f"{PREFIX}{os.getpid()}h{k}", f"{PREFIX}{os.getpid()}r{k}"[-15:])
    _ip("netns", "add", net.hub)
    try:
        # The hub's own address is every node's default route, a sink: it does not forward.
        run(["ip", "netns", "exec", net.hub, "sysctl", "-qw", "net.ipv4.ip_forward=0",
             "net.ipv6.conf.all.forwarding=0"])  # fmt: skip
        _ip_batch(
            [
                "link set lo up",
                "link add br0 type bridge",
                f"addr add 10.214.{n}.254/24 dev br0",
                f"addr add fd42:214:{n:x}::fe/64 dev br0 nodad",
                "link set br0 up",
            ],
            net.hub,
        )
        _ip("link", "add", net.root_if, "type", "veth", "peer", "name", "up0", "netns", net.hub)
        _ip_batch(["link set up0 master br0 up"], net.hub)
        _ip_batch(
            [
                f"addr add {net.gateway_v4}/24 dev {net.root_if}",
                f"addr add {net.gateway_v6}/64 dev {net.root_if} nodad",
                f"link set {net.root_if} up",
            ]
        )
        yield net
    finally:
        net.close()


# ------------------------------------------------------------------------------- tailscaled


@dataclass
class Node:
    """A real tailscaled in a LAN namespace, driven with the real tailscale CLI."""

    label: str
    host: LanHost
    workdir: Path
    socket: Path
    daemon: Daemon
    env: dict[str, str]

    def cli_argv(self, *args: str) -> list[str]:
        return [*self.host.prefix, str(tool("tailscale")), "--socket", str(self.socket), *args]

    def cli(
        self, *args: str, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``tailscale --socket S ARGS`` inside the node's namespace (netcheck probes from it)."""
        return run(
            self.cli_argv(*args), env=self.env, timeout=timeout, check=check, daemons=[self.daemon]
        )

    def json(self, *args: str, timeout: float = 30.0) -> Any:
        return json.loads(self.cli(*args, timeout=timeout).stdout)

    def status(self) -> dict[str, Any]:
        return dict(self.json("status", "--json"))

    @property
    def ipv4(self) -> str:
        return next(ip for ip in self.status()["Self"]["TailscaleIPs"] if "." in ip)

    @property
    def nodekey(self) -> str:
        return str(self.status()["Self"]["PublicKey"])

    def log(self) -> str:
        return self.daemon.log()

    def stop(self) -> None:
        self.daemon.stop()


def start_tailscaled(label: str, host: LanHost, workdir: Path, ca_bundle: Path) -> Node:
    """tailscaled with its own state dir and socket (see the module docstring for the flags)."""
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # derper in a container (another uid) must reach the socket
    sock = workdir / "tailscaled.sock"
    env = {"PATH": SYS_PATH, "HOME": str(workdir), "SSL_CERT_FILE": str(ca_bundle)}
    argv = [
        *host.prefix,
        str(tool("tailscaled")),
        "--tun=userspace-networking",
        "--statedir",
        str(workdir / "state"),
        "--socket",
        str(sock),
        "--port",
        str(TAILSCALED_PORT),
        "--no-logs-no-support",
    ]
    daemon = start(f"tailscaled {label}", argv, workdir / "tailscaled.log", env=env)
    return Node(label, host, workdir, sock, daemon, env)


def wait_backend(node: Node, states: Sequence[str], timeout: float = 20.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = node.status()
        return st if st.get("BackendState") in states else None

    return wait_until(
        f"tailscaled {node.label} in {'/'.join(states)}", probe, timeout, [node.daemon]
    )


# ------------------------------------------------------------------------------- the tailnet


@dataclass(frozen=True)
class RegionSpec:
    id: int
    code: str
    name: str
    hostname: str
    rtt_ms: float


HOME = RegionSpec(900, "home", "Home", "derp.home.test", NEAR_RTT_MS)
FAR = RegionSpec(901, "far", "Far", "derp.far.test", FAR_RTT_MS)


@dataclass
class Region:
    """A region as clients see it: the delay relay's front ports on the root's LAN address."""

    spec: RegionSpec
    derper: Derper
    front_v4: str
    front_v6: str
    derp_port: int  # front ports (what the DERP map says)
    stun_port: int

    def map_entry(self) -> dict[str, Any]:
        s = self.spec
        node = {
            "Name": f"{s.id}a",
            "RegionID": s.id,
            "HostName": s.hostname,
            "IPv4": self.front_v4,
            "IPv6": self.front_v6,
            "STUNPort": self.stun_port,
            "DERPPort": self.derp_port,
        }
        return {"RegionID": s.id, "RegionCode": s.code, "RegionName": s.name, "Nodes": [node]}


def derp_map(regions: Sequence[Region]) -> dict[str, Any]:
    """tailcfg.DERPMap JSON (the shape ``components.netcheck.load_derp_map`` reads)."""
    return {"Regions": {str(r.spec.id): r.map_entry() for r in regions}}


POLICY = """// home-derp test tailnet: headscale policy v2 (HuJSON), grants only.
{
  // pre-auth keys of the user "tester" may apply these tags
  "tagOwners": {
    "tag:relay": ["tester@"],
    "tag:client": ["tester@"],
    "tag:relay-client": ["tester@"],
  },
  "grants": [
    // every node may reach every node: the tests ping between them
    {"src": ["*"], "dst": ["*"], "ip": ["*"]},
    // the peer relay: tag:relay-client nodes may allocate endpoints on the relay host's
    // relay server (tailscale.com/cap/relay; headscale compiles the relay-target companion)
    {"src": ["tag:relay-client"], "dst": ["tag:relay"], "app": {"tailscale.com/cap/relay": []}},
  ],
}
"""

CLIENTS = {"a": "tag:client", "b": "tag:client", "c": "tag:relay-client", "d": "tag:relay-client"}


@dataclass
class Tailnet:
    lan: Lan
    workdir: Path
    headscale: Headscale
    relay: Node
    clients: dict[str, Node]
    home: Region
    far: Region
    pki: Pki  # the home relay's CA (its ca_file trusts derp.home.test)
    far_pki: Pki
    ca_bundle: Path  # both CAs: what tailscaled trusts
    derp_map: dict[str, Any]
    derp_map_file: Path
    delay_loop: BackgroundLoop
    daemons: list[Daemon] = field(default_factory=list)
    startup_seconds: float = 0.0
    converged_log_offset: int = 0  # derper's log length once the tailnet had converged

    @property
    def nodes(self) -> list[Node]:
        return [self.relay, *self.clients.values()]

    @property
    def derper(self) -> Derper:
        return self.home.derper

    def describe(self) -> str:
        return describe_all(self.daemons)

    def node(self, label: str) -> Node:
        return self.relay if label == "relay" else self.clients[label]


def _quiet_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The delay relay's open TCP pumps are cancelled at teardown; that is no error."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def _add_front(
    relay: DelayRelay, kind: str, fronts: tuple[str, str], targets: Sequence[Any]
) -> int:
    """One port on both front addresses (v4, v6) forwarding to ``targets`` (one per front)."""
    for _ in range(20):
        add = relay.add_tcp if kind == "tcp" else relay.add_udp
        port = add(fronts[0], targets[0])
        try:
            add(fronts[1], targets[1], port)
            return port
        except OSError:
            continue  # taken on v6: the v4 listener stays idle; try another
    raise RuntimeError(f"no {kind} port free on both {fronts}")


def _join_all(
    nodes: Sequence[Node], hs: Headscale, keys: dict[str, str], all_daemons: list[Daemon]
) -> None:
    """``tailscale up`` on every node at once; each must reach Running."""

    def up(node: Node) -> None:
        wait_backend(node, ("NeedsLogin", "NoState", "Stopped"))
        node.cli(
            "up",
            f"--login-server={hs.url}",
            f"--auth-key={keys[node.label]}",
            f"--hostname={node.label}",
            "--accept-dns=false",
            "--timeout=60s",
            timeout=90,
        )

    with ThreadPoolExecutor(len(nodes)) as pool:
        for f in [pool.submit(up, n) for n in nodes]:
            try:
                f.result()
            except DaemonError as exc:
                raise DaemonError(f"{exc}\n{describe_all(all_daemons)}") from None


def wait_converged(net: Tailnet, timeout: float = 60.0) -> None:
    """Every node Running, sees all other nodes with their home DERP, and is admitted by derper."""
    expected = len(net.nodes) - 1

    def ready() -> bool:
        for node in net.nodes:
            st = node.status()
            peers = list((st.get("Peer") or {}).values())
            if st.get("BackendState") != "Running" or st["Self"].get("Relay") != HOME.code:
                return False
            if len(peers) != expected or any(p.get("Relay") != HOME.code for p in peers):
                return False
        log = net.derper.log()
        return all(admitted(log, n.nodekey) for n in net.nodes)

    wait_until(
        "the tailnet to converge (Running, all peers, home DERP, admitted)",
        ready,
        timeout,
        net.daemons,
        0.5,
    )


@contextlib.contextmanager
def tailnet(workdir: Path | None = None) -> Iterator[Tailnet]:
    """The whole tailnet of the module docstring, converged; torn down afterwards."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hdt-")))
        started = time.monotonic()
        net_lan = stack.enter_context(lan())
        relay_host, *client_hosts, far_host = net_lan.add_hosts(["relay", *CLIENTS, "far"])
        hosts = dict(zip(CLIENTS, client_hosts, strict=True))
        allowed = [net_lan.gateway_v4, net_lan.gateway_v6, *relay_host.addresses]
        for host in hosts.values():
            host.isolate_udp(allowed)

        pki = make_pki(workdir / "pki-home", HOME.hostname)
        far_pki = make_pki(workdir / "pki-far", FAR.hostname)
        ca_bundle = workdir / "ca-bundle.pem"
        ca_bundle.write_text(Path(pki.ca_file).read_text() + Path(far_pki.ca_file).read_text())

        daemons: list[Daemon] = []

        def owned(d: Daemon) -> Daemon:
            daemons.append(d)
            stack.callback(d.stop)
            return d

        # Nodes first: tailscaled takes the longest to come up.
        relay = start_tailscaled("relay", relay_host, workdir / "relay", ca_bundle)
        owned(relay.daemon)
        clients = {}
        for label, host in hosts.items():
            clients[label] = start_tailscaled(label, host, workdir / label, ca_bundle)
            owned(clients[label].daemon)

        loop = stack.enter_context(background_loop())
        loop.loop.set_exception_handler(_quiet_cancelled)
        near_delay = stack.enter_context(delay_relay(HOME.rtt_ms, loop))
        far_delay = stack.enter_context(delay_relay(FAR.rtt_ms, loop))
        fronts = (net_lan.gateway_v4, net_lan.gateway_v6)

        # far: a second real derper in its own namespace, reached only through the fronts
        far_files = far_pki.files("good")
        far_derper = start_derper(
            workdir / "derper-far",
            hostname=FAR.hostname,
            cert_file=far_files.cert_file,
            key_file=far_files.key_file,
            derp_port=RELAY_DERP_PORT,
            stun_port=RELAY_STUN_PORT,
            prefix=far_host.prefix,
            addresses=far_host.addresses,
        )
        owned(far_derper.daemon)
        far = Region(
            FAR,
            far_derper,
            *fronts,
            _add_front(
                far_delay,
                "tcp",
                fronts,
                [(far_host.v4, RELAY_DERP_PORT), (far_host.v6, RELAY_DERP_PORT)],
            ),
            _add_front(
                far_delay,
                "udp",
                fronts,
                [(far_host.v4, RELAY_STUN_PORT), (far_host.v6, RELAY_STUN_PORT)],
            ),
        )

        # home: the relay host's derper, verifying clients against the relay's tailscaled.
        wait_backend(relay, ("NeedsLogin", "NoState", "Stopped"))
        home_files = pki.files("good")
        home_derper = start_derper(
            workdir / "derper-home",
            hostname=HOME.hostname,
            cert_file=home_files.cert_file,
            key_file=home_files.key_file,
            derp_port=RELAY_DERP_PORT,
            stun_port=RELAY_STUN_PORT,
            prefix=relay_host.prefix,
            verify_socket=relay.socket,
            debug_logs=True,
            addresses=relay_host.addresses,
        )
        owned(home_derper.daemon)
        home = Region(
            HOME,
            home_derper,
            *fronts,
            _add_front(
                near_delay,
                "tcp",
                fronts,
                [(relay_host.v4, RELAY_DERP_PORT), (relay_host.v6, RELAY_DERP_PORT)],
            ),
            _add_front(
                near_delay,
                "udp",
                fronts,
                [(relay_host.v4, RELAY_STUN_PORT), (relay_host.v6, RELAY_STUN_PORT)],
            ),
        )
        dmap = derp_map([home, far])
        derp_map_file = workdir / "derpmap.json"
        derp_map_file.write_text(json.dumps(dmap, indent=2))

        hs = start_headscale(
            workdir / "headscale",
            listen_ip=net_lan.gateway_v4,
            port=free_port((net_lan.gateway_v4,), socket.SOCK_STREAM),
            grpc_port=free_port(("127.0.0.1",), socket.SOCK_STREAM),
            derp_map=dmap,
            policy=POLICY,
        )
        owned(hs.daemon)
        user = hs.create_user("tester")
        tags = {"relay": "tag:relay", **CLIENTS}
        distinct = sorted(set(tags.values()))
        with ThreadPoolExecutor(len(distinct)) as pool:
            made = list(pool.map(lambda tag: hs.preauth_key(user, [tag]), distinct))
        keys = {label: made[distinct.index(tag)] for label, tag in tags.items()}

        net = Tailnet(
            net_lan,
            workdir,
            hs,
            relay,
            clients,
            home,
            far,
            pki,
            far_pki,
            ca_bundle,
            dmap,
            derp_map_file,
            loop,
            daemons,
        )
        # All at once. derper admits a client only once the relay's tailscaled has it in its
        # netmap, so a client that dials first is rejected ("not authorized") and retries;
        # joining the relay first would avoid that race but cost ~3 s.
        _join_all([relay, *clients.values()], hs, keys, daemons)
        # The peer relay server (tailscale.com@v1.102.5/cmd/tailscale/cli/set.go:94).
        relay.cli("set", f"--relay-server-port={RELAY_SERVER_PORT}")
        wait_converged(net)
        net.startup_seconds = time.monotonic() - started
        net.converged_log_offset = len(home_derper.log())
        yield net
