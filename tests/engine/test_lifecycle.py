"""A stack's life through the real Pulumi engine: first `up`, an `up` with nothing to do, the
preview of a config change as the pull-request comment shows it, and `destroy`.

The relay of this module has a peer relay too (``peerRelayPort``), so destroy must also clear the
host tailscaled's pref and the grant. Every result is the real CLI's; what happened outside is
read from the real dockerd, the Cloudflare and Tailscale API peers and the host's tailscaled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components import derpmap, naming
from tests.engine.stacks import Stack, changes
from tests.engine.workflow import operation, recorded_calls, replay, report
from tests.engine.world import World

PEER_RELAY_PORT = 40010


@dataclass
class Deployed:
    stack: Stack
    first: dict[str, Any]
    policy_before: str
    calls_before: int


@pytest.fixture(scope="module")
def deployed(engine_world: World) -> Iterator[Deployed]:
    """Region 910 deployed once from empty state (scenario 1's `up`)."""
    stack = Stack.new(engine_world, "life", 910, 12310, 3410, peerRelayPort=PEER_RELAY_PORT)
    stack.configure()
    policy_before = engine_world.tailscale.policy
    calls_before = len(engine_world.plugin_calls())
    first = stack.up()
    yield Deployed(stack, first, policy_before, calls_before)


def container(world: World, stack: Stack) -> dict[str, Any]:
    name = naming.container_name(stack.region, stack.code)
    return dict(json.loads(world.docker("inspect", name).stdout)[0])


def relay_server_port(world: World) -> str:
    return world.node.cli("get", "relay-server-port").stdout.strip()


# 1. From empty state one `up` creates everything: the real derper runs (built from the product's
#    Dockerfile), validation passes against it (derper's own log proves admission), the region
#    is in the tailnet policy, the record in Cloudflare, the peer relay bound.
def test_first_up_creates_a_working_relay(deployed: Deployed, engine_world: World) -> None:
    stack, out = deployed.stack, deployed.first["outputs"]
    assert set(changes(deployed.first)) == {"create"}
    derper = container(engine_world, stack)
    assert derper["State"]["Running"] and derper["Config"]["User"] == "65532:65532"
    assert out["containerId"] == derper["Id"]
    validation = out["validation"]
    assert validation["healthy"] is True and validation["drained"] is False
    assert validation["admission"]["cause"] == "not_authorized"
    region = derpmap.find_region(engine_world.tailscale.policy, stack.region)
    assert region == out["derpRegion"]
    records = engine_world.cloudflare.records_of(stack.hostname)
    assert [(r.type, r.content) for r in records] == [("AAAA", out["addresses"][0])]
    assert relay_server_port(engine_world) == str(PEER_RELAY_PORT)
    assert out["peerRelay"]["bound"] is True
    started = {c["plugin"] for c in engine_world.plugin_calls()[deployed.calls_before :]}
    assert {"docker", "cloudflare", "tls", "acme"} <= started


# 2. A second `up` with nothing changed changes nothing: no image rebuilt, no container replaced,
#    no probe re-run, the same outputs.
def test_second_up_changes_nothing(deployed: Deployed, engine_world: World) -> None:
    stack = deployed.stack
    before = len(engine_world.plugin_calls())
    again = stack.up()
    assert changes(again) == {}
    calls = engine_world.plugin_calls()[before:]
    writes = [c for c in calls if c["method"] in ("Create", "Update", "Delete")]
    assert writes == [], writes
    assert again["outputs"] == deployed.first["outputs"]


# 3. The preview of a config change, run as preview.yml runs it, and the pull-request comment
#    pulumi_report.py makes of the real engine's event log: what changes, and nothing changed.
def test_preview_of_a_config_change_is_the_comment(
    deployed: Deployed, engine_world: World, tmp_path: Path
) -> None:
    stack = deployed.stack
    stack.configure(regionName="Alpha Renamed")
    try:
        call = operation(recorded_calls(stack, "preview"))
        events = tmp_path / "events.jsonl"
        reply = replay(stack, call, events)
        assert reply["ok"], reply["stdout"] + reply["stderr"]
        comment = report(stack, "preview", reply, events)
    finally:
        stack.configure()
    assert f"`pulumi preview` succeeded for stack `{stack.name}`" in comment
    # The region is updated in place; the gate and the usage record show an update because
    # publication's outputs are unknown until then (the `up` below then changes nothing more).
    # Nothing is replaced, created or deleted.
    assert re.search(r"\*\*Resources:\*\* \d+ same, 3 update\n", comment), comment
    assert '~ RegionName: "Life" => "Alpha Renamed"' in comment, comment
    assert "relay-910-tailnet-region" in comment
    assert derpmap.find_region(engine_world.tailscale.policy, stack.region)["RegionName"] == "Life"
    assert changes(stack.up()) == {}


# 9. `destroy` leaves nothing: no container, volume or record, the tailnet policy byte-equal to
#    before the first `up` (region and grant withdrawn), the host's peer relay pref cleared.
def test_destroy_leaves_nothing(deployed: Deployed, engine_world: World) -> None:
    stack = deployed.stack
    stack.destroy()
    assert stack.resources() == []
    names = engine_world.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in names if f"-{stack.region}-" in n], names
    volumes = engine_world.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if f"-{stack.region}-" in v], volumes
    assert engine_world.cloudflare.records_of(stack.hostname) == []
    assert engine_world.tailscale.policy == deployed.policy_before
    assert relay_server_port(engine_world) == ""
