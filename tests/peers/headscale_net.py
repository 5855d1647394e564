"""A real headscale tailnet whose DERP map file the product edits (controlPlane: headscale).

Built from the pieces of ``tests/peers/tailnet.py`` (the isolated LAN, real tailscaled nodes, the
delay relay), with its own topology so the shared tailnet stays as it is::

    root namespace            hub namespace (bridge, sinks everything else)
      headscale (HTTP), its       ├─ relay  .2  derper "home" with -verify-client-url=<hs>/verify,
      debug listener on           │             tailscaled (tag:relay) only as the peer relay
      127.0.0.1, delay fronts     ├─ a      .3  tailscaled (tag:client)
                                  ├─ b      .4  tailscaled (tag:client)
                                  ├─ c      .5  tailscaled (tag:relay-client)
                                  ├─ d      .6  tailscaled (tag:relay-client)
                                  └─ far    .7  derper "far" (no verification)

* headscale reads ``derp.yaml`` (``derp.paths``), a hand-written block-style file with comments
  that holds only region 901 "far" at first, and re-reads it every ``REFRESH`` (derp.
  auto_update_enabled, headscale@v0.29.3/hscontrol/app.go:286-373); its debug listener
  (``metrics_listen_addr``) answers ``/debug/derp`` on loopback.
* The home derper's verification flags are the product's own
  (``components.container.derper_command`` for a ``controlPlane: headscale`` stack parsed by
  ``components.settings.parse_settings``, which reads headscale's real config through
  ``components.headscale.HeadscaleHost``).
* Clients reach region 900 through the near delay relay (``NEAR_RTT_MS``) and 901 through the
  far one (``FAR_RTT_MS``), only at the fronts' addresses, which the DERP map pins; UDP only to
  the root and the relay host, so client↔client traffic needs DERP (or, for c and d once the
  product wrote the grant into headscale's policy, the relay host's peer relay).
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi

from components import container, derpmap
from components.headscale import HeadscaleHost
from components.settings import Environment, RelaySettings, Verdict, parse_settings
from tests.peers.aio import background_loop
from tests.peers.certs import Pki, make_pki
from tests.peers.daemons import Daemon, describe_all, wait_until
from tests.peers.delay import delay_relay
from tests.peers.derper import Derper, start_derper
from tests.peers.headscale import Headscale, start_headscale
from tests.peers.ports import free_port
from tests.peers.tailnet import (
    FAR,
    HOME,
    RELAY_DERP_PORT,
    RELAY_STUN_PORT,
    Lan,
    Node,
    _add_front,
    _join_all,
    _quiet_cancelled,
    lan,
    start_tailscaled,
)

REFRESH = "2s"  # derp.update_frequency: headscale re-reads the file this often
REFRESH_SECONDS = 2.0
CLIENTS = ("a", "b")

POLICY = """// headscale policy v2 (HuJSON), kept by hand: every node may reach every node.
{
  "tagOwners": {
    "tag:client": ["tester@"],
    "tag:relay": ["tester@"],
    "tag:relay-client": ["tester@"],
  },
  // no peer-relay grant yet: home-derp adds it (tests/real_tailnet/test_headscale.py)
  "grants": [
    {"src": ["*"], "dst": ["*"], "ip": ["*"]},
  ],
}
"""
RELAY_CLIENTS = ("c", "d")


def derp_file_text(far_v4: str, far_v6: str, derp_port: int, stun_port: int) -> str:
    """What a headscale user keeps in derp.paths: comments, block style, derp-example.yaml's
    lower-case keys (headscale@v0.29.3/derp-example.yaml:1-17)."""
    return f"""# DERP regions of this tailnet (kept by hand; home-derp adds its own region below)
regions:
  # region 1 of Tailscale's map would be disabled like this; our map has no URLs at all
  1: null

  901:   # the far relay: kept exactly as written
    regionid: 901
    regioncode: far
    regionname: Far   # a comment after a value
    nodes:
      - name: 901a
        regionid: 901
        hostname: {FAR.hostname}
        ipv4: {far_v4}
        ipv6: "{far_v6}"
        stunport: {stun_port}
        derpport: {derp_port}
# end of file: nothing after this line is ours
"""


@dataclass(frozen=True)
class Front:
    """Where clients reach a region: the delay relay's ports on the root's LAN addresses."""

    v4: str
    v6: str
    derp_port: int
    stun_port: int


@dataclass
class HeadscaleNet:
    lan: Lan
    workdir: Path
    headscale: Headscale
    clients: dict[str, Node]
    """a and b: the clients that home on a region."""
    relay_node: Node
    relay_clients: dict[str, Node]
    """c and d: may use the relay host's peer relay once granted."""
    home_derper: Derper
    home_front: Front
    far_derper: Derper
    pki: Pki
    derp_file: Path
    original: str
    """The DERP map file as the user wrote it."""
    debug_address: str
    verdict: Verdict
    """The product's settings for this stack, with headscale's real config read."""
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def settings(self) -> RelaySettings:
        return self.verdict.require()

    def region(self) -> dict[str, Any]:
        """Our region as the program builds it (derpmap.home_region), at the fronts."""
        f = self.home_front
        return derpmap.region_to_dict(
            derpmap.home_region(
                region_id=HOME.id,
                region_code=HOME.code,
                region_name=HOME.name,
                hostname=HOME.hostname,
                derp_port=f.derp_port,
                stun_port=f.stun_port,
                ipv4=f.v4,
                ipv6=f.v6,
                pin_ipv6=True,
            )
        )

    def describe(self) -> str:
        return describe_all(self.daemons)


def stack_config(hs: Headscale, derp_file: Path, debug_address: str) -> dict[str, str]:
    """A ``controlPlane: headscale`` stack for this headscale (raw strings, as Pulumi hands
    them over)."""
    return {
        "hostname": HOME.hostname,
        "zone": "home.test",
        "ipv6": "2606:4700:4700::64",
        "ipv4": "none",
        "derpPort": "12345",
        "stunPort": "3478",
        "controlPlane": "headscale",
        "headscaleUrl": hs.url,
        "headscaleHost": "unix:///",
        "headscaleConfig": str(hs.config_file),
        "headscaleDerpFile": str(derp_file),
        "headscaleDebugAddress": debug_address,
        "dockerHost": "tcp://relay.home.test:2376",
        "tailscaleVersion": "1.102.5",
    }


def parse(raw: dict[str, str]) -> Verdict:
    # The rules only ask whether a token is configured (as the doctor does, a marker stands for
    # it: a real Output needs an event loop, which a module fixture may not have).
    env = Environment(cloudflare_api_token=cast("pulumi.Output[str]", object()))
    return parse_settings(raw, env=env, headscale=lambda url: HeadscaleHost(url))


NODES = 1 + len(CLIENTS) + len(RELAY_CLIENTS)


def wait_home(clients: dict[str, Node], code: str, timeout: float = 90.0) -> None:
    """Every client's home DERP (``Self.Relay``) is ``code`` and it sees every other node."""

    def ready() -> bool:
        for node in clients.values():
            st = node.status()
            peers = list((st.get("Peer") or {}).values())
            if st.get("BackendState") != "Running" or st["Self"].get("Relay") != code:
                return False
            if len(peers) != NODES - 1:
                return False
        return True

    daemons = [n.daemon for n in clients.values()]
    wait_until(f"every client homed on {code!r}", ready, timeout, daemons, 0.5)


@contextlib.contextmanager
def headscale_net(workdir: Path | None = None) -> Iterator[HeadscaleNet]:
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hsn-")))
        net_lan = stack.enter_context(lan())
        relay_host, *hosts, far_host = net_lan.add_hosts(["relay", *CLIENTS, *RELAY_CLIENTS, "far"])
        client_hosts = dict(zip((*CLIENTS, *RELAY_CLIENTS), hosts, strict=True))
        allowed = [net_lan.gateway_v4, net_lan.gateway_v6, *relay_host.addresses]
        for host in client_hosts.values():
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

        nodes = {
            label: start_tailscaled(label, host, workdir / label, ca_bundle)
            for label, host in client_hosts.items()
        }
        nodes["relay"] = start_tailscaled("relay", relay_host, workdir / "relay", ca_bundle)
        for node in nodes.values():
            owned(node.daemon)
        clients = {label: nodes[label] for label in CLIENTS}

        loop = stack.enter_context(background_loop())
        loop.loop.set_exception_handler(_quiet_cancelled)
        near = stack.enter_context(delay_relay(HOME.rtt_ms, loop))
        far_delay = stack.enter_context(delay_relay(FAR.rtt_ms, loop))
        fronts = (net_lan.gateway_v4, net_lan.gateway_v6)

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
        far_ports = [
            _add_front(far_delay, kind, fronts, [(far_host.v4, port), (far_host.v6, port)])
            for kind, port in (("tcp", RELAY_DERP_PORT), ("udp", RELAY_STUN_PORT))
        ]
        home_ports = [
            _add_front(near, kind, fronts, [(relay_host.v4, port), (relay_host.v6, port)])
            for kind, port in (("tcp", RELAY_DERP_PORT), ("udp", RELAY_STUN_PORT))
        ]
        home_front = Front(*fronts, *home_ports)

        original = derp_file_text(*fronts, *far_ports)
        debug_address = f"127.0.0.1:{free_port(('127.0.0.1',), socket.SOCK_STREAM)}"
        hs = start_headscale(
            workdir / "headscale",
            listen_ip=net_lan.gateway_v4,
            port=free_port((net_lan.gateway_v4,), socket.SOCK_STREAM),
            grpc_port=free_port(("127.0.0.1",), socket.SOCK_STREAM),
            derp_map=None,
            derp_text=original,
            policy=POLICY,
            derp_update_frequency=REFRESH,
            metrics_listen_addr=debug_address,
        )
        owned(hs.daemon)
        derp_file = workdir / "headscale" / "derp.yaml"
        verdict = parse(stack_config(hs, derp_file, debug_address))
        settings = verdict.require()

        # The product's derper flags for this stack: admission through headscale's /verify.
        verify_flags = [
            flag
            for flag in container.derper_command(settings)
            if flag.startswith("-verify-client-url")
        ]
        home_files = pki.files("good")
        home_derper = start_derper(
            workdir / "derper-home",
            hostname=HOME.hostname,
            cert_file=home_files.cert_file,
            key_file=home_files.key_file,
            derp_port=RELAY_DERP_PORT,
            stun_port=RELAY_STUN_PORT,
            prefix=relay_host.prefix,
            addresses=relay_host.addresses,
            extra_args=verify_flags,
            debug_logs=True,
        )
        owned(home_derper.daemon)

        user = hs.create_user("tester")
        tags = {**dict.fromkeys(CLIENTS, "tag:client"), "relay": "tag:relay"}
        tags.update(dict.fromkeys(RELAY_CLIENTS, "tag:relay-client"))
        made = {tag: hs.preauth_key(user, [tag]) for tag in sorted(set(tags.values()))}
        keys = {label: made[tag] for label, tag in tags.items()}
        _join_all(list(nodes.values()), hs, keys, daemons)
        net = HeadscaleNet(
            net_lan,
            workdir,
            hs,
            clients,
            nodes["relay"],
            {label: nodes[label] for label in RELAY_CLIENTS},
            home_derper,
            home_front,
            far_derper,
            pki,
            derp_file,
            original,
            debug_address,
            verdict,
            daemons,
        )
        wait_home(clients, FAR.code)
        yield net


def on_each_client(net: HeadscaleNet, fn: Any) -> list[Any]:
    with ThreadPoolExecutor(len(net.clients)) as pool:
        return list(pool.map(fn, net.clients.values()))


def derp_map_of(node: Node) -> dict[str, Any]:
    """The DERP map the client holds: ``tailscale debug derp-map`` (tailcfg.DERPMap JSON)."""
    return dict(node.json("debug", "derp-map"))


def wait_client_map(net: HeadscaleNet, check: Any, what: str, timeout: float = 30.0) -> None:
    def ready() -> bool:
        return all(check(derp_map_of(node)) for node in net.clients.values())

    wait_until(what, ready, timeout, net.daemons, 0.5)
