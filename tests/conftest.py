"""Suite-wide fixtures: one Pulumi mocks instance, installed for every test.

``set_mocks`` is process-wide, so one :class:`RelayMocks` is installed by an autouse fixture and
reset before every test. The mocks and the helpers that run the program live in ``tests/mocks.py``.
"""

from __future__ import annotations

import asyncio
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
    """Installs the suite's mocks (process-wide) and clears what the last test registered.

    Each test also gets its own event loop: pulumi's test runner uses the current loop, and the
    probe tests' ``asyncio.run`` leaves none (or a closed one) behind.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield install_mocks()
    finally:
        # Let the root Stack's registration (queued by set_mocks) finish before the loop goes.
        pending = asyncio.all_tasks(loop)
        loop.run_until_complete(asyncio.gather(*pending, asyncio.sleep(0), return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()
