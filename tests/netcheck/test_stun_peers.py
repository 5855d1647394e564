"""STUN probes against real coturn and the strict derper-like responder, on 127.0.0.1 and ::1."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aioice import stun as aio

from components.netcheck.stun import stun_probe
from components.netcheck.stun_codec import binding_request, new_txid, parse_response
from tests.peers.coturn import Coturn
from tests.peers.ports import family_of
from tests.peers.stun_server import stun_server

HOSTS = ("127.0.0.1", "::1")


# coturn accepts our Tailscale-format request and we parse its mapped address (our own socket).
@pytest.mark.parametrize("host", HOSTS)
def test_coturn_answers_tailscale_request(turn: Coturn, host: str) -> None:
    res = asyncio.run(stun_probe(host, turn.port, timeout=2.0))
    assert len(res.rtts_ms) == 3 and res.sent == 3
    assert res.mapped == res.local
    assert res.median_ms is not None and res.median_ms < 50


# The strict responder answers our request on both families with the sender's address.
@pytest.mark.parametrize("host", HOSTS)
def test_strict_responder_answers_our_request(host: str) -> None:
    with stun_server() as server:
        res = asyncio.run(stun_probe(host, server.port, timeout=2.0))
    assert res.mapped == res.local and len(res.rtts_ms) == 3
    assert server.answered == 3


# Like derper, the strict responder stays silent for a generic STUN binding request.
@pytest.mark.parametrize("host", HOSTS)
def test_strict_responder_ignores_generic_request(host: str) -> None:
    generic = aio.Message(aio.Method.BINDING, aio.Class.REQUEST)
    generic.attributes["FINGERPRINT"] = 0
    with stun_server() as server, socket.socket(family_of(host), socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(bytes(generic), (host, server.port))
        with pytest.raises(TimeoutError):
            s.recvfrom(2048)
        txid = new_txid()  # the same socket then gets an answer to Tailscale's request
        s.sendto(binding_request(txid), (host, server.port))
        assert parse_response(s.recvfrom(2048)[0], txid)[0] == txid
    assert server.ignored == 1 and server.answered == 1


# The prober keeps netcheck's plan: 3 tries spaced 100 ms, done as soon as all three answered.
def test_probe_timing_plan() -> None:
    with stun_server() as server:
        start = time.perf_counter()
        res = asyncio.run(stun_probe("127.0.0.1", server.port, timeout=3.0))
        elapsed = time.perf_counter() - start
    assert res.sent == 3 and len(res.rtts_ms) == 3
    assert 0.19 <= elapsed < 0.6


# A silent server costs exactly the STUN timeout, never more.
def test_probe_timeout_is_bounded() -> None:
    with stun_server(silent=True) as server:
        start = time.perf_counter()
        res = asyncio.run(stun_probe("::1", server.port, timeout=0.5))
        elapsed = time.perf_counter() - start
    assert res.rtts_ms == () and res.mapped is None and res.sent == 3
    assert 0.45 <= elapsed < 1.0
