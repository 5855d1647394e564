"""A minimal HTTP/1.1 client over an open (TLS) stream: enough for derper's endpoints.

No HTTP library: the DERP upgrade must read the 101 head and then raw frames from the same
stream (derpserver/handler.go:55-63 writes the 101 itself, then hands the connection to the
DERP server), and the checks need exact status codes and headers, nothing more.

``KeepAlive`` reuses one connection for several requests the way Go's net/http Transport does,
including its one retry: a request on a *reused* connection whose answer never started (the
server closed the idle connection, or said ``Connection: close``) is sent again on a new
connection; on a fresh connection it is not (shouldRetryRequest, go1.26.8
src/net/http/transport.go:818-863; errServerClosedIdle, transport.go:1023).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import HttpError

MAX_HEAD = 16 * 1024
MAX_BODY = 256 * 1024


@dataclass(frozen=True)
class ResponseHead:
    version: str  # "HTTP/1.1"
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def closes(self) -> bool:
        """The server will close after this response (RFC 9112 §9.6; HTTP/1.0 without
        keep-alive, RFC 9112 §9.3)."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if "close" in tokens:
            return True
        return self.version == "HTTP/1.0" and "keep-alive" not in tokens


@dataclass(frozen=True)
class Response(ResponseHead):
    body: bytes = b""


def request_bytes(
    method: str, path: str, host: str, headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: home-derp-netcheck"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_head(reader: asyncio.StreamReader) -> ResponseHead:
    """Status line + headers, stopping exactly at the blank line (frames may follow)."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise HttpError("closed", "connection closed before any response") from None
        if not exc.partial.startswith(b"HTTP/1."[: len(exc.partial)]):
            first = exc.partial.split(b"\r\n", 1)[0].decode("latin-1")
            raise HttpError("not-http", f"not an HTTP response: {first[:60]!r}") from None
        raise HttpError(
            "truncated", f"connection closed after {len(exc.partial)} bytes of response"
        ) from None
    except asyncio.LimitOverrunError:
        raise HttpError("too-long", "response head too long") from None
    except (ConnectionResetError, ssl.SSLError) as exc:
        raise HttpError("reset", f"connection reset before any response ({exc})") from None
    if len(raw) > MAX_HEAD:
        raise HttpError("too-long", "response head too long")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError("not-http", f"not an HTTP response: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return ResponseHead(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


async def read_body(reader: asyncio.StreamReader, method: str, head: ResponseHead) -> bytes:
    status, headers = head.status, head.headers
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise HttpError("not-http", f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                await reader.readline()
                return body
            body += await reader.readexactly(size)
            await reader.readline()
            if len(body) > MAX_BODY:
                raise HttpError("too-long", "response body too long")
    if "content-length" in headers:
        if not headers["content-length"].isdigit():
            raise HttpError("not-http", f"bad Content-Length {headers['content-length']!r}")
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise HttpError("too-long", "response body too long")
        return await reader.readexactly(length)
    return await reader.read(MAX_BODY)


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    host: str,
    headers: dict[str, str] | None = None,
    *,
    head_only: bool = False,
) -> Response:
    """One request and its response; ``head_only`` leaves the body (or frames) unread."""
    try:
        writer.write(request_bytes(method, path, host, headers))
        await writer.drain()
    except (ConnectionError, ssl.SSLError) as exc:
        raise HttpError("reset", f"connection closed while sending the request ({exc})") from None
    head = await read_head(reader)
    if head_only:
        return Response(head.version, head.status, head.reason, head.headers)
    try:
        body = await read_body(reader, method, head)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
        raise HttpError("truncated", "connection closed mid-body") from exc
    return Response(head.version, head.status, head.reason, head.headers, body)


class Stream(Protocol):
    """An open connection (tls.TlsSession is one)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None: ...


class KeepAlive:
    """Requests over one connection, reopened like Go's Transport does (see the module doc).

    ``sent_at`` is the perf_counter time the last successful request was written, so a caller
    times the server's answer, not a reconnect. ``reconnects`` counts new connections opened.
    """

    def __init__(self, stream: Stream, reopen: Callable[[], Awaitable[Stream]]) -> None:
        self.stream = stream
        self._reopen = reopen
        self.responses = 0  # responses read on the current connection
        self.closing = False  # the last response announced the close, or a request failed
        self.reconnects = 0
        self.sent_at = time.perf_counter()

    async def _fresh(self) -> None:
        self.stream.close()
        self.stream = await self._reopen()
        self.responses, self.closing = 0, False
        self.reconnects += 1

    async def request(
        self,
        method: str,
        path: str,
        host: str,
        headers: dict[str, str] | None = None,
        *,
        head_only: bool = False,
    ) -> Response:
        """One request; HttpError when it fails (after the one retry Go would make)."""
        if self.closing:
            await self._fresh()
        reused = self.responses > 0
        try:
            return await self._once(method, path, host, headers, head_only)
        except HttpError as exc:
            if not (reused and exc.nothing_received):
                raise
        await self._fresh()
        return await self._once(method, path, host, headers, head_only)

    async def _once(
        self,
        method: str,
        path: str,
        host: str,
        headers: dict[str, str] | None,
        head_only: bool,
    ) -> Response:
        self.sent_at = time.perf_counter()
        s = self.stream
        try:
            resp = await exchange(
                s.reader, s.writer, method, path, host, headers, head_only=head_only
            )
        except HttpError:
            self.closing = True
            raise
        self.responses += 1
        self.closing = resp.closes
        return resp

    def close(self) -> None:
        self.stream.close()
