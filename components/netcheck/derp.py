"""DERP frames and the client side of the handshake (reference/derp.md §3).

The server speaks first: 101 with ``Derp-Version`` and ``Derp-Public-Key``, then FrameServerKey.
A FrameClientInfo from a random key tells whether ``-verify-clients`` is really on: derper closes
the connection for keys its tailscaled does not know, and answers FrameServerInfo otherwise.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nacl.public import Box, PrivateKey, PublicKey

from .https import HttpError, read_head, request_bytes

FRAME_SERVER_KEY = 0x01
FRAME_CLIENT_INFO = 0x02
FRAME_SERVER_INFO = 0x03
FRAME_KEEP_ALIVE = 0x06
FRAME_PING = 0x12
FRAME_HEALTH = 0x14
MAGIC = b"DERP\xf0\x9f\x94\x91"  # "DERP🔑"
KEY_LEN = 32
FRAME_HEADER_LEN = 5
MAX_FRAME = 1 << 20
PROTOCOL_VERSION = 2


class DerpError(Exception):
    """A broken handshake; ``kind`` is a stable token for the diagnosis."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def encode_frame(ftype: int, payload: bytes) -> bytes:
    return struct.pack("!BI", ftype, len(payload)) + payload


def server_key_payload(public_key: bytes) -> bytes:
    return MAGIC + public_key


def parse_server_key(ftype: int, payload: bytes) -> bytes:
    """The 32-byte key of a FrameServerKey; DerpError unless type 1, len ≥ 40, magic ok."""
    if ftype != FRAME_SERVER_KEY:
        raise DerpError("bad-frame", f"first frame has type 0x{ftype:02x}, not FrameServerKey")
    if len(payload) < len(MAGIC) + KEY_LEN:
        raise DerpError("bad-frame", f"FrameServerKey payload is {len(payload)} bytes, need ≥40")
    if payload[: len(MAGIC)] != MAGIC:
        raise DerpError("bad-magic", f"FrameServerKey magic is {payload[:8].hex()}, not DERP🔑")
    return payload[len(MAGIC) : len(MAGIC) + KEY_LEN]


def client_info_payload(client: PrivateKey, server_key: bytes, info: Mapping[str, Any]) -> bytes:
    """32-byte client key || nonce || box(JSON) sealed to the server key."""
    sealed = Box(client, PublicKey(server_key)).encrypt(json.dumps(info).encode())
    return bytes(client.public_key) + bytes(sealed)  # EncryptedMessage is nonce||ciphertext


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(FRAME_HEADER_LEN)
    ftype, length = struct.unpack("!BI", header)
    if length > MAX_FRAME:
        raise DerpError("bad-frame", f"frame of {length} bytes is implausible")
    return ftype, await reader.readexactly(length)


@dataclass(frozen=True)
class Handshake:
    version: str | None
    header_key: str | None
    frame_key: str
    handshake_ms: float


async def handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
) -> Handshake:
    """Upgrade to DERP and read the server key; DerpError describes what came instead."""
    start = time.perf_counter()
    writer.write(request_bytes("GET", "/derp", host, {"Upgrade": "DERP", "Connection": "Upgrade"}))
    await writer.drain()
    try:
        status, reason, headers = await read_head(reader)
    except HttpError as exc:
        raise DerpError("not-http", f"no HTTP answer to the upgrade: {exc}") from None
    if status == 426:
        raise DerpError(
            "upgrade-stripped", "426 Upgrade Required: the Upgrade header did not reach derper"
        )
    if status != 101:
        raise DerpError("no-upgrade", f"GET /derp answered {status} {reason}, not 101")
    if headers.get("upgrade", "").lower() != "derp":
        raise DerpError("no-upgrade", f"101 with Upgrade: {headers.get('upgrade')!r}, not DERP")
    try:
        ftype, payload = await read_frame(reader)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        raise DerpError("no-server-key", "connection closed before FrameServerKey") from None
    key = parse_server_key(ftype, payload)
    elapsed = (time.perf_counter() - start) * 1000.0
    return Handshake(
        version=headers.get("derp-version"),
        header_key=headers.get("derp-public-key"),
        frame_key=key.hex(),
        handshake_ms=elapsed,
    )


async def probe_admission(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server_key: bytes
) -> tuple[bool, float]:
    """Send ClientInfo from a fresh random key; (admitted, ms). Closed connection = rejected.

    Raises DerpError when the server answers something unexpected; the caller bounds the time.
    """
    client = PrivateKey.generate()
    info = {"version": PROTOCOL_VERSION, "CanAckPings": True}
    start = time.perf_counter()
    writer.write(encode_frame(FRAME_CLIENT_INFO, client_info_payload(client, server_key, info)))
    await writer.drain()
    box = Box(client, PublicKey(server_key))
    while True:
        try:
            ftype, payload = await read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return False, (time.perf_counter() - start) * 1000.0
        if ftype == FRAME_SERVER_INFO:
            try:
                json.loads(box.decrypt(payload))
            except Exception as exc:  # any decrypt/JSON failure means a broken server
                raise DerpError("bad-server-info", f"FrameServerInfo unreadable: {exc}") from None
            return True, (time.perf_counter() - start) * 1000.0
        # keepalives, pings, health frames may come first; anything else keeps us waiting
