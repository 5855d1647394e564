"""Fixtures of the real-engine tests: one world per session (tests/engine/world.py).

The world takes ~15 s to start (headscale, tailscaled, dockerd, pebble, the peers); every test of
this directory shares it, on one xdist worker (``--dist loadgroup``), each with stacks of its own
(own names, region ids and ports), so they do not see each other's resources.
``HOME_DERP_ENGINE_DIR=DIR`` keeps the world's files (state, logs, plugin calls) in a new
directory under DIR.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.world import World, world

KEEP_ENV = "HOME_DERP_ENGINE_DIR"


@pytest.fixture(scope="session")
def engine_world() -> Iterator[World]:
    """The relay host and its peers, up for the whole session."""
    assert os.geteuid() == 0, "the engine tests need root (network namespaces, dockerd)"
    keep = os.environ.get(KEEP_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="world-", dir=keep))
        with world(root) as w:
            yield w
        return
    with tempfile.TemporaryDirectory(prefix="hde-") as tmp, world(Path(tmp)) as w:
        yield w


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One world per worker: keep this directory's tests on one xdist worker."""
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here + "/"):
            item.add_marker(pytest.mark.xdist_group("engine"))
