"""Suite-wide fixtures: one Pulumi mocks instance, installed for every test.

``set_mocks`` is process-wide, so one :class:`RelayMocks` is installed by an autouse fixture and
reset before every test. The mocks and the helpers that run the program live in ``tests/mocks.py``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mocks import (
    FAKE_TOKEN,
    FAKE_ZONE_ID,
    ROOT,
    HostFacts,
    Registered,
    RelayMocks,
    evaluate,
    home_config,
    host_factory,
    install_mocks,
    resolve,
    run_program,
    set_config,
    stack_config,
)
from tests.peers.cloudflare_api import CloudflarePeer
from tests.peers.sshd import Sshd
from tests.peers.sshd import sshd_factory as _sshd_factory
from tests.peers.tailscale_cli import CliScenario, install_cli
from tests.peers.tailscaled import RealTailscaled
from tests.peers.tailscaled import real_tailscaled as _real_tailscaled
from tests.peers.tools import tool

__all__ = [
    "FAKE_TOKEN",
    "FAKE_ZONE_ID",
    "ROOT",
    "HostFacts",
    "Registered",
    "RelayMocks",
    "cli_on_path",
    "evaluate",
    "home_config",
    "real_tailscaled",
    "resolve",
    "run_program",
    "set_config",
    "sock",
    "stack_config",
    "stand_in",
]


@pytest.fixture(autouse=True)
def relay_host(monkeypatch: pytest.MonkeyPatch) -> HostFacts:
    """The relay host every program evaluation reads: healthy unless a test changes it.

    Only the one I/O edge (``components.relay_host.LiveHost``) is replaced; host reads themselves
    are tested against the real tailscale CLI, tailscaled and sshd (tests/test_tailscaled.py).
    """
    from components import relay_host

    facts = HostFacts()
    monkeypatch.setattr(relay_host, "LiveHost", host_factory(facts))
    for name in ("GITHUB_ACTIONS", "RUNNER_ENVIRONMENT", "HOME_DERP_HEALTH_RUN"):
        monkeypatch.delenv(name, raising=False)
    return facts


@pytest.fixture(scope="session")
def cloudflare_api() -> Iterator[CloudflarePeer]:
    """The Cloudflare API every program evaluation asks (components/dns.py looks the relay's
    records up for adoption): the faithful peer on loopback, so no test reaches Cloudflare."""
    peer = CloudflarePeer()
    peer.add_zone("example.com", FAKE_ZONE_ID)
    peer.add_token(FAKE_TOKEN)
    with peer.serve() as running:
        yield running


@pytest.fixture(autouse=True)
def cloudflare_base_url(cloudflare_api: CloudflarePeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``CLOUDFLARE_BASE_URL`` (the provider's variable) points every lookup at the peer."""
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", cloudflare_api.base_url)


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
        asyncio.set_event_loop(loop)  # a test's own asyncio.run() leaves no current loop
        pending = asyncio.all_tasks(loop)
        loop.run_until_complete(asyncio.gather(*pending, asyncio.sleep(0), return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()
        gc.unfreeze()  # __main__.py freezes what it built; many runs share this process


@pytest.fixture
def sshd_factory() -> Iterator[Callable[..., Sshd]]:
    """Starts real sshd processes on 127.0.0.1 (optionally in a netns); stops them afterwards."""
    with _sshd_factory() as start:
        yield start


# --- the relay host's tailscaled: the real daemon, or the CLI stand-in ---------------------------


@pytest.fixture
def real_tailscaled() -> Iterator[RealTailscaled]:
    """A real, logged-out tailscaled with its own socket (tests/peers/tailscaled.py)."""
    with _real_tailscaled() as daemon:
        yield daemon


@pytest.fixture
def cli_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real tailscale CLI first on this process's PATH (the unix:// channel runs it here)."""
    directory = tool("tailscale").parent
    monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")
    return directory


@pytest.fixture
def sock(tmp_path: Path) -> str:
    """A socket file where the stand-in is pointed (the real CLI dials it; the stand-in only
    checks that it exists, as a missing one reads as a daemon that is down)."""
    path = tmp_path / "run" / "tailscaled.sock"
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    return str(path)


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[CliScenario], Path]:
    """Installs the ``tailscale`` CLI stand-in (tests/peers/tailscale_cli.py) for a scenario,
    first on PATH."""

    def install(scenario: CliScenario) -> Path:
        directory = tmp_path / "bin"
        install_cli(directory, scenario)
        monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")
        return directory

    return install
