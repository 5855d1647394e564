"""DERP frames and constants, apart from the probe that owns the connection (derp.py).

The split of tailscale.com@v1.102.5/derp/derp.go (frames) and derp/derp_client.go (client).
A frame is one type byte + a big-endian uint32 length + the payload (derp.go:36, readFrame at
derp.go:225-246). The server speaks first: FrameServerKey = magic "DERP🔑" + 32-byte key
(derp.go:30-32, 72); the client answers FrameClientInfo = its 32-byte key + 24-byte nonce +
NaCl box of JSON (derp.go:73); an admitted client gets FrameServerInfo = nonce + box (derp.go:74).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Mapping
from typing import Any

from nacl.public import Box, PrivateKey, PublicKey

from .errors import DerpError

FRAME_SERVER_KEY = 0x01
FRAME_CLIENT_INFO = 0x02
FRAME_SERVER_INFO = 0x03
FRAME_KEEP_ALIVE = 0x06
FRAME_PING = 0x12
FRAME_PONG = 0x13
FRAME_HEALTH = 0x14
MAGIC = b"DERP\xf0\x9f\x94\x91"  # "DERP🔑", derp.go:32
KEY_LEN = 32
FRAME_HEADER_LEN = 5
MAX_FRAME = 1 << 20  # MaxInfoLen, derp.go:38
PROTOCOL_VERSION = 2  # derp.go:49


def encode_frame(ftype: int, payload: bytes) -> bytes:
    return struct.pack("!BI", ftype, len(payload)) + payload


def server_key_payload(public_key: bytes) -> bytes:
    return MAGIC + public_key


def parse_server_key(ftype: int, payload: bytes) -> bytes:
    """The 32-byte key of a FrameServerKey; DerpError unless type 1, len >= 40, magic ok."""
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
