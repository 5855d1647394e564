"""Servers that close the connection after a response.

Go's Transport sends a request again on a new connection when a *reused* connection closes
before the answer starts, and never reuses one whose response said ``Connection: close``
(go1.26.8 src/net/http/transport.go:818-863). The checker does the same (http1.KeepAlive), so
such a server is HTTP and DERP as usual, while a TLS service that really is not HTTP still
fails as one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from components.netcheck import check_relay
from components.netcheck.errors import HttpError
from components.netcheck.http1 import KeepAlive
from tests.peers.aio import BackgroundLoop
from tests.peers.certs import Pki
from tests.peers.relay import local_relay


# A server that says Connection: close and one that closes silently are both derper: every
# check passes, on a new connection after each response, and the https row says so.
@pytest.mark.parametrize("variant", ["close_after_response", "idle_close"])
def test_server_closing_after_each_response(bg: BackgroundLoop, pki: Pki, variant: str) -> None:
    with local_relay(bg=bg, pki=pki, fault=variant) as r:
        report = check_relay(
            r.target(addresses=("::1",)), timeout=3, stun_timeout=0.5, evidence_source=r.evidence()
        )
        requests = list(r.derp.state.requests)
    assert report.ok, report.format_text()
    https = report.check("https", "::1")
    assert https.data["reconnects"] == 1 and "reconnected" in https.detail
    # each request reached the server exactly once: the one sent into the closed connection
    # never arrived, its retry did (and the upgrade after the settling HEAD)
    assert sorted(requests) == [
        "GET /derp",
        "GET /derp/probe",
        "GET /generate_204",
        "HEAD /derp/probe",
    ]


# A TLS service that is not HTTP (it greets like OpenSSH) fails https and derp, without a
# reconnect hiding it; verify_clients is skipped because DERP failed.
def test_service_that_is_not_http(bg: BackgroundLoop, pki: Pki) -> None:
    with local_relay(bg=bg, pki=pki, fault="not_http") as r:
        report = check_relay(r.target(addresses=("::1",)), timeout=3, stun_timeout=0.5)
    https = report.check("https", "::1")
    assert not https.ok and "not an HTTP response: 'SSH-2.0-OpenSSH" in https.detail
    assert https.hint == "a non-HTTP service answers TLS on this port"
    assert https.data == {"kind": "not-http", "reconnects": 0}
    derp = report.check("derp", "::1")
    assert not derp.ok and derp.data["kind"] == "not-http"
    verify = report.check("verify_clients", "::1")
    assert verify.skipped and verify.detail == "skipped (DERP failed)"


@asynccontextmanager
async def closes_at_once() -> AsyncIterator[int]:
    """A TCP server that accepts and closes before any response."""

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


class _Plain:
    """A plain TCP stream for KeepAlive (tls.TlsSession minus TLS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


# A fresh connection that closes without an answer is not retried (Go: "no reason the server
# should've hung up on us"): one connection, HttpError "closed".
def test_fresh_connection_is_not_retried() -> None:
    async def run() -> tuple[str, int, int]:
        opened = 0

        async with closes_at_once() as port:

            async def connect() -> _Plain:
                nonlocal opened
                opened += 1
                return _Plain(*await asyncio.open_connection("127.0.0.1", port))

            conn = KeepAlive(await connect(), connect)
            try:
                await conn.request("GET", "/derp/probe", "derp.test")
            except HttpError as exc:
                return str(exc.nothing_received), opened, conn.reconnects
            finally:
                conn.close()
        raise AssertionError("a closed connection answered")

    assert asyncio.run(run()) == ("True", 1, 0)
