"""Fixtures for the tests against the real Tailscale programs (tests/peers/tailnet.py).

One tailnet per session (~12 s to start on 2 cores): headscale, two derpers, five tailscaled.
The binaries come from ``tests/tools/install``; a missing one fails the tests with that command.
A failing test shows the logs of every daemon of the tailnet. ``HOME_DERP_TAILNET_DIR=DIR``
keeps the tailnet's files (logs, state, configs) in DIR after the run.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.peers.reach import ReachNet
from tests.peers.tailnet import Tailnet, tailnet

KEEP_ENV = "HOME_DERP_TAILNET_DIR"


@pytest.fixture(scope="session")
def net() -> Iterator[Tailnet]:
    """The converged tailnet: every node Running, seeing all peers, admitted by derper."""
    assert os.geteuid() == 0, "the tailnet tests need root (network namespaces, iptables)"
    keep = os.environ.get(KEEP_ENV)
    workdir = Path(keep) if keep else None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with tailnet(workdir) as t:
        yield t


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failure carries the logs of every daemon of the tailnet (read while they still run)."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    if report.failed:
        for value in funcargs.values():
            if isinstance(value, Tailnet | ReachNet):
                report.sections.append(("tailnet daemons", value.describe()))
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep this directory's tests on one xdist worker (tests/run uses ``--dist loadgroup``):
    one tailnet (and one product derper build) per worker, not one each."""
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here + "/"):
            item.add_marker(pytest.mark.xdist_group("tailnet"))
