"""A minimal HTTP/1.1 exchange over an open (TLS) stream: enough for derper's endpoints (§2).

No HTTP library: the DERP upgrade must read the 101 head and then raw frames from the same
stream, and the checks need exact status codes and headers, nothing more.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from dataclasses import dataclass

MAX_HEAD = 16 * 1024
MAX_BODY = 256 * 1024
CHALLENGE_ALPHABET = string.ascii_letters + string.digits + "._:-"


class HttpError(Exception):
    """The peer did not speak HTTP/1.x (or closed mid-response)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request_bytes(
    method: str, path: str, host: str, headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: home-derp-netcheck"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    """Status line + headers, stopping exactly at the blank line (frames may follow)."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise HttpError(f"connection closed after {len(exc.partial)} bytes of response") from None
    except asyncio.LimitOverrunError:
        raise HttpError("response head too long") from None
    if len(raw) > MAX_HEAD:
        raise HttpError("response head too long")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP response: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def read_body(
    reader: asyncio.StreamReader, method: str, status: int, headers: dict[str, str]
) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return body
            body += await reader.readexactly(size)
            await reader.readline()
            if len(body) > MAX_BODY:
                raise HttpError("response body too long")
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise HttpError("response body too long")
        return await reader.readexactly(length)
    return await reader.read(MAX_BODY)


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    host: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """One request/response on a keep-alive connection."""
    writer.write(request_bytes(method, path, host, headers))
    await writer.drain()
    status, reason, head = await read_head(reader)
    try:
        body = await read_body(reader, method, status, head)
    except asyncio.IncompleteReadError as exc:
        raise HttpError("connection closed mid-body") from exc
    return Response(status, reason, head, body)


def new_challenge() -> str:
    """A token derper echoes from /generate_204 (≤64 chars of [a-zA-Z0-9._:-], §2)."""
    return "netcheck-" + "".join(secrets.choice(CHALLENGE_ALPHABET) for _ in range(24))
