"""STUN binding requests the way Tailscale sends them, and an asyncio prober.

derper answers only Tailscale-formatted requests (SOFTWARE ``tailnode`` + FINGERPRINT); generic
STUN clients get silence (reference/derp.md §4, tailscale ``net/stun``). The codec is pure so the
test peers and the prober share one implementation of the byte layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import statistics
import struct
import time
import zlib
from dataclasses import dataclass

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


class StunError(ValueError):
    """A datagram that is not a usable STUN binding response/request."""


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
    """Return the txid of a request derper would answer; StunError otherwise (§4)."""
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
    """derper's reply: binding success with one XOR-MAPPED-ADDRESS (no other attributes)."""
    addr = ipaddress.ip_address(ip)
    mask = COOKIE_BYTES + txid
    packed = addr.packed
    family = 1 if addr.version == 4 else 2
    xaddr = bytes(a ^ b for a, b in zip(packed, mask[: len(packed)], strict=True))
    value = struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xaddr
    attr = struct.pack("!HH", ATTR_XOR_MAPPED_ADDRESS, len(value)) + value
    return struct.pack("!HHI", BINDING_SUCCESS, len(attr), MAGIC_COOKIE) + txid + attr


@dataclass(frozen=True)
class StunResult:
    """What the prober saw: RTTs of answered tries, the mapped address, our own socket."""

    sent: int
    rtts_ms: tuple[float, ...]
    mapped: tuple[str, int] | None
    local: tuple[str, int] | None
    error: str | None = None  # e.g. ICMP port unreachable reported by the kernel

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.rtts_ms) if self.rtts_ms else None


# Kernel receive timestamps: the RTT must not include the time the event loop was busy with
# other probes (TLS handshakes run at the same moment). 35 = SO_TIMESTAMPNS on Linux.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(16)


def _kernel_time_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return int(sec) * 1_000_000_000 + int(nsec)
    return None


class _Prober:
    """One connected UDP socket; replies matched by transaction id, stamped by the kernel."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent_at: dict[bytes, int] = {}
        self.rtts: dict[bytes, float] = {}
        self.mapped: tuple[str, int] | None = None
        self.answered = asyncio.Event()
        self.error: OSError | None = None

    def send(self, txid: bytes) -> None:
        packet = binding_request(txid)
        self.sent_at[txid] = time.time_ns()  # same clock as SO_TIMESTAMPNS (CLOCK_REALTIME)
        try:
            self.sock.send(packet)
        except OSError as exc:  # e.g. ECONNREFUSED left over from a previous try's ICMP
            self.error = exc

    def readable(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, _ANCILLARY)
            except BlockingIOError:
                return
            except OSError as exc:
                self.error = exc  # ICMP port unreachable; keep waiting for other tries
                continue
            now = _kernel_time_ns(ancillary) or time.time_ns()
            try:
                txid, mapped = parse_response(data)
            except StunError:
                continue
            sent = self.sent_at.get(txid)
            if sent is None or txid in self.rtts:
                continue
            self.rtts[txid] = (now - sent) / 1e6
            self.mapped = mapped
            self.answered.set()


def _open_socket(address: str, port: int) -> socket.socket:
    v6 = ipaddress.ip_address(address.split("%")[0]).version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.connect((address, port))
    except OSError:
        sock.close()
        raise
    return sock


async def stun_probe(
    address: str,
    port: int,
    *,
    tries: int = 3,
    spacing: float = 0.1,
    timeout: float = 3.0,
    first_only: bool = False,
) -> StunResult:
    """Send ``tries`` requests at 0, spacing, 2*spacing s (netcheck's plan, §5).

    Returns when every try was answered (or, with ``first_only``, on the first answer, like
    netcheck skipping probes that would not help) or when ``timeout`` expires.
    """
    loop = asyncio.get_running_loop()
    try:
        sock = _open_socket(address, port)
    except OSError as exc:
        return StunResult(0, (), None, None, error=exc.strerror or str(exc))
    proto = _Prober(sock)
    local = sock.getsockname()
    loop.add_reader(sock.fileno(), proto.readable)
    try:
        async with asyncio.timeout(timeout):
            for i in range(tries):
                if i and first_only:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proto.answered.wait(), spacing)
                    if proto.rtts:
                        break
                elif i:
                    await asyncio.sleep(spacing)
                proto.send(new_txid())
            while len(proto.rtts) < (1 if first_only else len(proto.sent_at)):
                proto.answered.clear()
                await proto.answered.wait()
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return StunResult(
        sent=len(proto.sent_at),
        rtts_ms=tuple(proto.rtts.values()),
        mapped=proto.mapped,
        local=(str(local[0]), int(local[1])),
        error=(proto.error.strerror or str(proto.error)) if proto.error else None,
    )
