"""Health runs through the real Pulumi engine, exactly as .github/workflows/health.yml runs them.

The command is the one ``_pulumi.yml`` runs for ``health: true`` (recorded from the workflow's own
step script: literal ``--target`` URNs from .github/scripts/stack_facts.py, ``--config
home-derp:validateNonce=health-<run>-<attempt>``, ``--skip-plugin-pre-install``,
``HOME_DERP_HEALTH_RUN=1``), replayed by the real CLI (tests/engine/workflow.py). The relay is
made unhealthy for real: its derper container is stopped on the real dockerd.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components import derpmap, naming
from tests.engine.stacks import Stack
from tests.engine.workflow import operation, recorded_calls, replay
from tests.engine.world import World

#: Outputs a health run recomputes (the outside check); every other output must stay as it was.
#: What a health run computes anew: the verdict, and the usage record it appends a run to
#: (docs/guide/usage.md); every other output is carried over.
RECOMPUTED = ("validation", "usage")


@dataclass
class Deployed:
    stack: Stack
    outputs: dict[str, Any]
    policy: str


@pytest.fixture(scope="module")
def deployed(engine_world: World) -> Iterator[Deployed]:
    stack = Stack.new(engine_world, "health", 911, 12311, 3411)
    stack.configure()
    up = stack.up()
    yield Deployed(stack, up["outputs"], engine_world.tailscale.policy)
    stack.destroy(check=False)


def health_run(stack: Stack, run_id: str, tmp_path: Path) -> dict[str, Any]:
    call = operation(recorded_calls(stack, "up", health=True, run_id=run_id))
    assert call.health_run and "--skip-plugin-pre-install" in call.args
    return replay(stack, call, tmp_path / f"events-{run_id}.jsonl")


def kept(outputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in outputs.items() if k not in RECOMPUTED}


# 4a. A green health run re-judges the relay and leaves every other stack output as the deploy
#     left it (certificate, container, image, relay host), and it starts no provider the run
#     does not use: no Docker, Cloudflare, ACME or TLS plugin.
def test_healthy_health_run_keeps_the_outputs(
    deployed: Deployed, engine_world: World, tmp_path: Path
) -> None:
    stack = deployed.stack
    before = len(engine_world.plugin_calls())
    reply = health_run(stack, "801", tmp_path)
    assert reply["ok"], reply["stdout"] + reply["stderr"]
    started = {c["plugin"] for c in engine_world.plugin_calls()[before:] if c["method"] == "start"}
    assert started == set(), f"a health run started provider plugins: {started}"
    outputs = stack.outputs()
    assert kept(outputs) == kept(deployed.outputs)
    assert outputs["validation"]["healthy"] is True
    assert outputs["validation"]["checkedAt"] != deployed.outputs["validation"]["checkedAt"]
    history = outputs["usage"]["history"]
    assert len(history) == len(deployed.outputs["usage"]["history"]) + 1, history
    assert engine_world.tailscale.policy == deployed.policy


# 4b/4c. A relay whose derper is down is drained by the next health run (which fails: the gate),
#        and the first healthy run afterwards restores the region to exactly its bytes.
def test_unhealthy_is_drained_then_restored(
    deployed: Deployed, engine_world: World, tmp_path: Path
) -> None:
    stack = deployed.stack
    derper = naming.container_name(stack.region, stack.code)
    engine_world.docker("stop", derper)
    try:
        stack.configure(validateTimeout=5)
        red = health_run(stack, "802", tmp_path)
    finally:
        engine_world.docker("start", derper)
        stack.configure()
    assert not red["ok"]
    assert "failed" in red["stdout"] and "drained" in red["stdout"]
    region = derpmap.find_region(engine_world.tailscale.policy, stack.region)
    assert region is not None and derpmap.region_drained(region)
    assert stack.outputs()["validation"]["drained"] is True
    green = health_run(stack, "803", tmp_path)
    assert green["ok"], green["stdout"] + green["stderr"]
    assert engine_world.tailscale.policy == deployed.policy
    outputs = stack.outputs()
    assert outputs["validation"]["drained"] is False
    assert kept(outputs) == kept(deployed.outputs)
