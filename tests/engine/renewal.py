"""A certificate renewal through the real engine, with the relay's availability measured around it.

A second pebble of the world issues certificates valid ``VALIDITY_DAYS`` (fewer than the
certificate's ``min_days_remaining``, 30), so the `up` after the first one renews: the ACME
provider's diff finds the certificate due (docs/upstream/bridged-providers.md#acme-certificate),
and the new certificate reaches derper however the product rolls it out. While that `up` runs, a
prober in the relay host (tests/engine/availability.py) checks DERP (TLS on derpPort) and STUN
every 20 ms. Shared by tests/engine/test_renewal.py (what happens) and bench/renewal_downtime.py
(how long derper is down).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import naming
from tests.engine.availability import Prober, probing
from tests.engine.stacks import Stack, changes
from tests.engine.world import RELAY_IPV6, World

#: More than the gate's renewal alarm (21 days), fewer than min_days_remaining (30).
VALIDITY_DAYS = 25


@dataclass
class Renewal:
    stack: Stack
    before: dict[str, Any]
    after: dict[str, Any]
    changes: dict[str, int]
    stdout: str
    container_before: dict[str, Any]
    container_after: dict[str, Any]
    derp_down: float
    stun_down: float
    up_seconds: float
    probes: int


def container(world: World, stack: Stack) -> dict[str, Any]:
    name = naming.container_name(stack.region, stack.code)
    return dict(json.loads(world.docker("inspect", name).stdout)[0])


def renew(
    world: World,
    name: str,
    region: int,
    derp_port: int,
    stun_port: int,
    project: Path | None = None,
) -> Renewal:
    """Deploy a relay whose certificate is due, then run the `up` that renews it, probing.
    ``project`` deploys another tree of the project (bench/renewal_downtime.py compares)."""
    ca = world.add_pebble(f"pebble-{name}", VALIDITY_DAYS * 86400)
    stack = Stack.new(
        world, name, region, derp_port, stun_port, project=project, acmeServer=ca.directory_url
    )
    stack.configure()
    first = stack.up()
    before_container = container(world, stack)
    prober = Prober(
        world.relay.name, RELAY_IPV6, stack.hostname, derp_port, stun_port, str(world.ca_bundle)
    )
    with probing(prober):
        time.sleep(1.0)  # a baseline: both answer before the renewal starts
        started = time.monotonic()
        second = stack.up()
        up_seconds = time.monotonic() - started
        time.sleep(1.0)
    return Renewal(
        stack=stack,
        before=first["outputs"],
        after=second["outputs"],
        changes=changes(second),
        stdout=second["stdout"],
        container_before=before_container,
        container_after=container(world, stack),
        derp_down=prober.longest("derp"),
        stun_down=prober.longest("stun"),
        up_seconds=up_seconds,
        probes=min(len(prober.samples.get(s, [])) for s in ("derp", "stun")),
    )
