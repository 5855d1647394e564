"""One relay host for every doctor test (tests/doctor/world.py); each test starts it healthy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components.host import SSH_OPTS_ENV
from tests.doctor.world import World, world
from tests.peers.sshd import sshd_factory


@pytest.fixture(scope="session")
def relay() -> Iterator[World]:
    """The relay host namespace with dockerd, sshd and the API peers (about 10 s to build)."""
    with sshd_factory() as start, world(start) as w:
        yield w


@pytest.fixture
def host(relay: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The relay host, healthy; the doctor's own process finds the CLI stand-in and trusts sshd."""
    monkeypatch.setenv("PATH", f"{relay.bin_dir}:{relay.environ()['PATH']}")
    monkeypatch.setenv(SSH_OPTS_ENV, " ".join(relay.sshd.client_options))
    relay.reset()
    yield relay
    relay.reset()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep this directory's tests on one xdist worker (tests/run uses ``--dist loadgroup``):
    one relay host per worker, not one each."""
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here + "/"):
            item.add_marker(pytest.mark.xdist_group("doctor-host"))
