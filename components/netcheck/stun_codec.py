"""The STUN codec: binding requests the way Tailscale sends them, responses the way derper does.

Pure (no sockets), like tailscale.com@v1.102.5/net/stun/stun.go, so the prober (stun.py) and
the test peers share one implementation of the byte layout. derper answers only Tailscale's own
requests: SOFTWARE ``tailnode`` (net/stun/stun.go:29) and a FINGERPRINT last
(ParseBindingRequest, net/stun/stun.go:87, and its errors ErrWrongSoftware / ErrNoFingerprint,
net/stun/stun.go:129-130); generic STUN clients get silence.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import zlib

from .errors import StunError

MAGIC_COOKIE = 0x2112A442
COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_XOR_MAPPED_ADDRESS_ALT = 0x8020
ATTR_SOFTWARE = 0x8022
ATTR_FINGERPRINT = 0x8028
SOFTWARE = b"tailnode"
FINGERPRINT_XOR = 0x5354554E
HEADER_LEN = 20
REQUEST_LEN = 40


def new_txid() -> bytes:
    return os.urandom(12)


def fingerprint(data: bytes) -> int:
    """RFC 5389 §15.5: CRC-32 of the message before the attribute, XOR 0x5354554e."""
    return (zlib.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def binding_request(txid: bytes) -> bytes:
    """Tailscale's 40-byte request: header, SOFTWARE "tailnode", FINGERPRINT."""
    if len(txid) != 12:
        raise ValueError("STUN transaction id must be 12 bytes")
    # The header length already counts the FINGERPRINT attribute when the CRC is computed.
    head = struct.pack("!HHI", BINDING_REQUEST, 20, MAGIC_COOKIE) + txid
    head += struct.pack("!HH", ATTR_SOFTWARE, len(SOFTWARE)) + SOFTWARE
    return head + struct.pack("!HHI", ATTR_FINGERPRINT, 4, fingerprint(head))


def _attributes(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, type, value) of every attribute; raises StunError on a malformed body."""
    attrs: list[tuple[int, int, bytes]] = []
    pos = HEADER_LEN
    while pos < len(data):
        if pos + 4 > len(data):
            raise StunError("truncated attribute header")
        atype, alen = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + alen
        if end > len(data):
            raise StunError("truncated attribute value")
        attrs.append((pos, atype, data[pos + 4 : end]))
        pos = end + (-alen % 4)
    return attrs


def _header(data: bytes) -> tuple[int, bytes]:
    if len(data) < HEADER_LEN:
        raise StunError("shorter than a STUN header")
    mtype, mlen, cookie = struct.unpack_from("!HHI", data, 0)
    if cookie != MAGIC_COOKIE:
        raise StunError("no STUN magic cookie")
    if mlen != len(data) - HEADER_LEN or mlen % 4:
        raise StunError("length field does not match the datagram")
    return mtype, data[8:20]


def parse_tailscale_request(data: bytes) -> bytes:
    """Return the txid of a request derper would answer; StunError otherwise."""
    mtype, txid = _header(data)
    if mtype != BINDING_REQUEST:
        raise StunError("not a binding request")
    attrs = _attributes(data)
    if not attrs or attrs[-1][1] != ATTR_FINGERPRINT:
        raise StunError("no FINGERPRINT as last attribute")
    offset, _, value = attrs[-1]
    if len(value) != 4 or struct.unpack("!I", value)[0] != fingerprint(data[:offset]):
        raise StunError("bad FINGERPRINT")
    if not any(t == ATTR_SOFTWARE and v == SOFTWARE for _, t, v in attrs):
        raise StunError("not from a Tailscale client (SOFTWARE != tailnode)")
    return txid


def _xor_address(value: bytes, txid: bytes) -> tuple[str, int]:
    family, xport = struct.unpack_from("!xBH", value, 0)
    port = xport ^ (MAGIC_COOKIE >> 16)
    mask = COOKIE_BYTES + txid
    if family == 1 and len(value) >= 8:
        raw = bytes(a ^ b for a, b in zip(value[4:8], mask[:4], strict=True))
    elif family == 2 and len(value) >= 20:
        raw = bytes(a ^ b for a, b in zip(value[4:20], mask, strict=True))
    else:
        raise StunError(f"bad XOR-MAPPED-ADDRESS family {family}")
    return _unmap(raw), port


def _plain_address(value: bytes) -> tuple[str, int]:
    family, port = struct.unpack_from("!xBH", value, 0)
    if family == 1 and len(value) >= 8:
        return _unmap(value[4:8]), port
    if family == 2 and len(value) >= 20:
        return _unmap(value[4:20]), port
    raise StunError(f"bad MAPPED-ADDRESS family {family}")


def _unmap(raw: bytes) -> str:
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_response(data: bytes, txid: bytes | None = None) -> tuple[bytes, tuple[str, int]]:
    """(txid, (ip, port)) of a binding success; accepts 0x0020, 0x8020 and MAPPED-ADDRESS."""
    mtype, got = _header(data)
    if mtype != BINDING_SUCCESS:
        raise StunError(f"not a binding success (type 0x{mtype:04x})")
    if txid is not None and got != txid:
        raise StunError("transaction id mismatch")
    plain: tuple[str, int] | None = None
    for _, atype, value in _attributes(data):
        if len(value) < 4:
            continue
        if atype in (ATTR_XOR_MAPPED_ADDRESS, ATTR_XOR_MAPPED_ADDRESS_ALT):
            return got, _xor_address(value, got)
        if atype == ATTR_MAPPED_ADDRESS and plain is None:
            plain = _plain_address(value)
    if plain is None:
        raise StunError("binding success without a mapped address")
    return got, plain


def binding_response(txid: bytes, ip: str, port: int) -> bytes:
    """derper's reply: binding success with one XOR-MAPPED-ADDRESS, no other attribute
    (stun.Response, tailscale.com@v1.102.5/net/stun/stun.go:155-190)."""
    addr = ipaddress.ip_address(ip)
    mask = COOKIE_BYTES + txid
    packed = addr.packed
    family = 1 if addr.version == 4 else 2
    xaddr = bytes(a ^ b for a, b in zip(packed, mask[: len(packed)], strict=True))
    value = struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xaddr
    attr = struct.pack("!HH", ATTR_XOR_MAPPED_ADDRESS, len(value)) + value
    return struct.pack("!HHI", BINDING_SUCCESS, len(attr), MAGIC_COOKIE) + txid + attr
