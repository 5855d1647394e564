"""Fixtures for the netcheck tests: real peers on loopback (see tests/peers for the API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from tests.peers.aio import BackgroundLoop, background_loop
from tests.peers.certs import Pki, make_pki
from tests.peers.coturn import Coturn, coturn
from tests.peers.relay import LocalRelay, local_relay

SERVER_KEY = PrivateKey.generate()


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    """One background event loop for every in-process async peer."""
    with background_loop() as loop:
        yield loop


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A root → intermediate → leaf chain for derp.test in every variant (good, expired, ...)."""
    return make_pki(Path(tmp_path_factory.mktemp("pki")), "derp.test", bytes(SERVER_KEY.public_key))


@pytest.fixture(scope="session")
def turn() -> Iterator[Coturn]:
    """coturn on 127.0.0.1 and ::1; a missing turnserver fails the tests (never skips)."""
    with coturn() as server:
        yield server


@pytest.fixture
def relay(bg: BackgroundLoop, pki: Pki) -> Iterator[LocalRelay]:
    """The good relay: faithful DERP over trusted TLS, verification on, strict STUN."""
    with local_relay(bg=bg, pki=pki, private_key=SERVER_KEY) as r:
        yield r
