"""A ``controlPlane: headscale`` stack through the real Pulumi engine (docs/guide/headscale.md).

The relay host of the world (tests/engine/world.py) also runs headscale here, the guide's
default (``headscaleHost`` empty: the relay host itself): a real headscale started in the relay
host's namespace for this module, listening on its LAN address, its debug listener on that host's
loopback (``/debug/derp`` answers loopback only, docs/upstream/headscale.md#debug-derp), reading
the user's DERP map file (``derp.paths``: a region of the user's and comments) every 2 s. One more
real tailscaled on the LAN is a client of that tailnet, trusting pebble's root like the world.

The stack is the product's own: ``__main__.py`` under the real CLI builds derper from the
product's Dockerfile in the private dockerd and starts it with ``-verify-client-url=<headscale>
/verify`` and no tailscaled socket, validation probes it (derper's own log line for the random
key is the admission verdict), and ``HeadscaleDerpRegion`` writes region 900 into the file only
after that. What happened outside is read from the outside: the file's bytes, headscale's
``/debug/derp``, the client's ``tailscale debug derp-map`` / ``netcheck`` / status and its own log
(``magicsock: derp-900 connected`` is logged on derper's ServerInfo frame,
tailscale.com@v1.102.5/wgengine/magicsock/derp.go:608-611, which derper sends only after the
admission check passed, derp/derpserver/derpserver.go:1028-1030 and :1077).
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components import headscale_derpmap, naming
from components.headscale import HeadscaleHost, served_region
from tests.engine.stacks import Stack, changes
from tests.engine.workflow import operation, recorded_calls, replay
from tests.engine.world import RELAY_IPV6, World, wait_for
from tests.peers.derper import rejections
from tests.peers.headscale import Headscale, start_headscale
from tests.peers.netns import run_in_netns
from tests.peers.ports import free_port
from tests.peers.tailnet import Node, start_tailscaled, wait_backend

REGION = 900
#: headscale's derp.update_frequency (derp.auto_update_enabled: true): the product waits for one
#: re-read after each write (components/headscale.py wait_served).
REFRESH = "2s"
#: The keys a headscale stack does not have: no Tailscale API, no socket (docs/guide/headscale.md).
TAILSCALE_ONLY = ("tailscale:apiKey", "tailscale:baseUrl", "home-derp:tailscaleSocket")
#: The user's DERP map file before home-derp: block style, comments, a region of their own.
USER_DERP_FILE = """# DERP regions of this tailnet, kept by hand (home-derp adds its own below)
regions:
  # the user's own region: it refuses connections, and must stay exactly as written
  999:
    regionid: 999
    regioncode: none
    regionname: None   # a comment after a value
    nodes:
      - name: 999a
        regionid: 999
        hostname: derp.none.test
        ipv4: 127.0.0.1
        ipv6: none
        stunport: -1
        derpport: 1
# end of file: nothing after this line is home-derp's
"""
POLICY = '{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}]}\n'


@dataclass
class HeadscaleStack(Stack):
    """A stack whose config has no Tailscale-only key."""

    def config(self) -> dict[str, tuple[Any, bool]]:
        return {k: v for k, v in super().config().items() if k not in TAILSCALE_ONLY}


@dataclass
class Deployed:
    stack: Stack
    first: dict[str, Any]
    headscale: Headscale
    derp_file: Path
    debug_address: str
    client: Node
    destroyed: bool = False


def _free_tcp_port(world: World, address: str) -> int:
    return run_in_netns(world.relay.name, lambda: free_port((address,), socket.SOCK_STREAM))


@pytest.fixture(scope="module")
def deployed(engine_world: World) -> Iterator[Deployed]:
    """headscale on the relay host, a client logged in to it, region 900 deployed once."""
    world, relay = engine_world, engine_world.relay
    workdir = world.root / "headscale-stack"
    debug_address = f"127.0.0.1:{_free_tcp_port(world, '127.0.0.1')}"
    hs = start_headscale(
        workdir / "headscale",
        listen_ip=relay.v4,
        port=_free_tcp_port(world, relay.v4),
        grpc_port=_free_tcp_port(world, "127.0.0.1"),
        derp_map=None,
        derp_text=USER_DERP_FILE,
        policy=POLICY,
        derp_update_frequency=REFRESH,
        metrics_listen_addr=debug_address,
        prefix=relay.prefix,
    )
    client: Node | None = None
    deployed: Deployed | None = None
    try:
        host = world.lan.add_host("hsclient")
        # The relay's global /64 is on the relay host's LAN link (world.py): on-link here too.
        prefix = RELAY_IPV6.rsplit("::", 1)[0] + "::/64"
        route = ["ip", "-n", host.name, "-6", "route", "add", prefix, "dev", "eth0"]
        subprocess.run(route, check=True, capture_output=True, timeout=20)
        client = start_tailscaled("hsclient", host, workdir / "client", world.ca_bundle)
        wait_backend(client, ("NeedsLogin", "NoState", "Stopped"))
        key = hs.preauth_key(hs.create_user("owner"))
        client.cli(
            "up",
            f"--login-server={hs.url}",
            f"--auth-key={key}",
            "--hostname=laptop",
            "--accept-dns=false",
            "--timeout=60s",
            timeout=90,
        )
        wait_backend(client, ("Running",), 60)

        stack = HeadscaleStack.new(
            world,
            "hs",
            REGION,
            12300,
            3400,
            controlPlane="headscale",
            headscaleUrl=hs.url,
            headscaleConfig=str(hs.config_file),
            headscaleDerpFile=str(workdir / "headscale" / "derp.yaml"),
            headscaleDebugAddress=debug_address,
            # the client has no DNS for the relay's name: the map carries the address
            pinIpv6=True,
        )
        stack.configure()
        first = stack.up()
        derp_file = workdir / "headscale" / "derp.yaml"
        deployed = Deployed(stack, first, hs, derp_file, debug_address, client)
        yield deployed
    finally:
        if deployed is not None and not deployed.destroyed:
            deployed.stack.destroy(check=False)  # a failed test leaves nothing running
        if client is not None:
            client.daemon.stop()
        hs.stop()


def _file(deployed: Deployed) -> str:
    return deployed.derp_file.read_text()


def _served(deployed: Deployed) -> dict[str, Any] | None:
    debug = run_in_netns(
        deployed.stack.world.relay.name,
        lambda: HeadscaleHost("unix:///").debug_derp(deployed.debug_address),
    )
    return served_region(debug, REGION)


def _client_region(client: Node) -> dict[str, Any] | None:
    regions = dict(client.json("debug", "derp-map").get("Regions") or {})
    return regions.get(str(REGION))


def _derper_log(world: World, stack: Stack) -> str:
    name = naming.container_name(stack.region, stack.code)
    done = world.docker("logs", name)
    return done.stdout + done.stderr


def _health_run(stack: Stack, run_id: str, tmp_path: Path) -> dict[str, Any]:
    call = operation(recorded_calls(stack, "up", health=True, run_id=run_id))
    assert call.health_run
    targets = [a for a in call.args if "HeadscaleDerpRegion" in a]
    assert targets, f"a headscale health run must target the DERP map file resource: {call.args}"
    return replay(stack, call, tmp_path / f"events-{run_id}.jsonl")


# 1. `up` writes region 900 into the file headscale reads, after validation judged the product's
#    derper healthy; headscale serves it; every byte the product did not write is the user's.
def test_up_publishes_into_headscales_file(deployed: Deployed, engine_world: World) -> None:
    out = deployed.first["outputs"]
    assert set(changes(deployed.first)) == {"create"}
    assert out["validation"]["healthy"] is True
    text = _file(deployed)
    assert headscale_derpmap.remove_region(text, REGION) == USER_DERP_FILE
    ours = headscale_derpmap.find_region(text, REGION)
    assert ours is not None and ours["nodes"][0]["hostname"] == deployed.stack.hostname
    assert ours["nodes"][0]["ipv6"] == RELAY_IPV6 and "nomeasurenohome" not in ours
    # in the policy's key order, whatever order the engine delivered the region's keys in
    assert list(ours) == ["regionid", "regioncode", "regionname", "nodes"], ours
    served = _served(deployed)
    assert served is not None and served["nodes"][0]["hostname"] == deployed.stack.hostname
    # The engine wrote the file only after the validation: the region resource depends on it.
    urns = {r["urn"]: r for r in deployed.stack.resources()}
    (region_urn,) = [u for u in urns if u.endswith("::relay-900-headscale-region")]
    (validation_urn,) = [u for u in urns if u.endswith("::relay-900-validation")]
    assert validation_urn in urns[region_urn].get("dependencies", []), urns[region_urn]


# 2. derper runs with headscale's /verify and fails closed, with no tailscaled socket; the probe's
#    random key was refused by /verify, as derper's own log says (the stack's admission verdict).
def test_admission_through_verify_from_derpers_log(deployed: Deployed, engine_world: World) -> None:
    stack = deployed.stack
    name = naming.container_name(stack.region, stack.code)
    derper = json.loads(engine_world.docker("inspect", name).stdout)[0]
    argv = [*(derper["Config"]["Entrypoint"] or []), *(derper["Config"]["Cmd"] or [])]
    assert f"-verify-client-url={deployed.headscale.url}/verify" in argv, argv
    assert "-verify-client-url-fail-open=false" in argv, argv
    assert not any("tailscale" in m.get("Source", "") for m in derper["Mounts"]), derper["Mounts"]
    admission = deployed.first["outputs"]["validation"]["admission"]
    assert admission["cause"] == "denied" and admission["ok"] is True, admission
    log = _derper_log(engine_world, stack)
    denied = [line for line in log.splitlines() if "admission controller: nodekey:" in line]
    assert denied and all(line.endswith(" not allowed") for line in denied), log[-2000:]


# 3. A real client of the tailnet gets region 900 from headscale, measures it, homes on it, and
#    derper admits it through /verify: the client's DERP connection got derper's ServerInfo.
def test_real_client_homes_on_the_region(deployed: Deployed, engine_world: World) -> None:
    client = deployed.client
    region = wait_for("region 900 in the client's map", lambda: _client_region(client))
    assert region["Nodes"][0]["HostName"] == deployed.stack.hostname
    assert region["Nodes"][0]["IPv6"] == RELAY_IPV6
    report = json.loads(client.cli("netcheck", "--format=json", timeout=60).stdout)
    assert report["PreferredDERP"] == REGION, report
    assert str(REGION) in report["RegionLatency"], report
    wait_for("the client homed on region 900", lambda: client.status()["Self"]["Relay"] == "hs")
    wait_for(
        "the client's DERP connection to region 900 admitted",
        lambda: f"magicsock: derp-{REGION} connected" in client.log(),
        timeout=60,
    )
    mine = client.nodekey.removeprefix("nodekey:")
    log = _derper_log(engine_world, deployed.stack)
    assert mine not in {r.client for r in rejections(log)}, log[-2000:]


# 4. A health run (the workflow's own command) with derper stopped is red and drains the region in
#    the file (clients stop measuring it); derper back, the next health run restores the bytes.
def test_health_run_drains_then_restores(
    deployed: Deployed, engine_world: World, tmp_path: Path
) -> None:
    stack = deployed.stack
    published = _file(deployed)
    derper = naming.container_name(stack.region, stack.code)
    engine_world.docker("stop", derper)
    try:
        stack.configure(validateTimeout=5)
        red = _health_run(stack, "901", tmp_path)
    finally:
        engine_world.docker("start", derper)
        stack.configure()
    assert not red["ok"], red["stdout"]
    assert "drained" in red["stdout"], red["stdout"]
    drained = _file(deployed)
    assert headscale_derpmap.remove_region(drained, REGION) == USER_DERP_FILE
    assert (headscale_derpmap.find_region(drained, REGION) or {}).get("nomeasurenohome") is True
    assert stack.outputs()["validation"]["drained"] is True
    wait_for(
        "NoMeasureNoHome on region 900 in the client's map",
        lambda: (_client_region(deployed.client) or {}).get("NoMeasureNoHome") is True,
    )

    green = _health_run(stack, "902", tmp_path)
    assert green["ok"], green["stdout"] + green["stderr"]
    assert _file(deployed) == published
    assert stack.outputs()["validation"]["drained"] is False
    wait_for(
        "region 900 measured again by the client",
        lambda: not (_client_region(deployed.client) or {}).get("NoMeasureNoHome"),
    )


# 5. `destroy` gives the user's file back byte for byte, and headscale stops serving region 900.
def test_destroy_gives_back_the_file(deployed: Deployed) -> None:
    deployed.stack.destroy()
    deployed.destroyed = True
    assert deployed.stack.resources() == []
    assert _file(deployed) == USER_DERP_FILE
    assert _served(deployed) is None
    wait_for(
        "region 900 gone from the client's map", lambda: _client_region(deployed.client) is None
    )
