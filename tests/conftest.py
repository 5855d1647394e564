"""Suite-wide fixtures: one Pulumi mocks instance, installed for every test.

``set_mocks`` is process-wide, so one :class:`RelayMocks` is installed by an autouse fixture and
reset before every test. The mocks and the helpers that run the program live in ``tests/mocks.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mocks import (
    FAKE_TOKEN,
    FAKE_ZONE_ID,
    ROOT,
    Registered,
    RelayMocks,
    evaluate,
    home_config,
    install_mocks,
    resolve,
    run_program,
    set_config,
    stack_config,
)

__all__ = [
    "FAKE_TOKEN",
    "FAKE_ZONE_ID",
    "ROOT",
    "Registered",
    "RelayMocks",
    "evaluate",
    "home_config",
    "resolve",
    "run_program",
    "set_config",
    "stack_config",
]


@pytest.fixture(autouse=True)
def mocks() -> Iterator[RelayMocks]:
    """Installs the suite's mocks (process-wide) and clears what the last test registered."""
    yield install_mocks()
