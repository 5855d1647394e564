"""The STUN codec against Tailscale's bytes (tailscale.com@v1.102.5/net/stun/stun.go) and an
independent codec (aioice.stun)."""

from __future__ import annotations

import ipaddress
import struct
import zlib

from aioice import stun as aio
from hypothesis import given
from hypothesis import strategies as st

from components.netcheck import stun_codec as stun

TXID = bytes(range(1, 13))


# The request is byte for byte Tailscale's 40-byte layout.
def test_request_layout_is_tailscales() -> None:
    req = stun.binding_request(TXID)
    assert len(req) == 40
    assert req[:8] == bytes.fromhex("0001 0014 2112a442".replace(" ", ""))
    assert req[8:20] == TXID
    assert req[20:32] == bytes.fromhex("80220008") + b"tailnode"
    assert req[32:36] == bytes.fromhex("80280004")
    crc = (zlib.crc32(req[:32]) ^ 0x5354554E) & 0xFFFFFFFF
    assert struct.unpack("!I", req[36:])[0] == crc


# aioice parses our request as a binding request with a valid FINGERPRINT and SOFTWARE tailnode.
def test_aioice_accepts_our_request() -> None:
    msg = aio.parse_message(stun.binding_request(TXID))
    assert msg.message_method == aio.Method.BINDING
    assert msg.message_class == aio.Class.REQUEST
    assert msg.transaction_id == TXID
    assert msg.attributes["SOFTWARE"] == "tailnode"
    assert "FINGERPRINT" in msg.attributes


# aioice rejects a request whose FINGERPRINT we corrupt, so the cross-check has teeth.
def test_aioice_rejects_bad_fingerprint() -> None:
    bad = bytearray(stun.binding_request(TXID))
    bad[-1] ^= 1
    try:
        aio.parse_message(bytes(bad))
    except ValueError:
        return
    raise AssertionError("aioice accepted a corrupted fingerprint")


# Our responses decode in aioice and aioice's responses decode in ours, for any address.
@given(
    txid=st.binary(min_size=12, max_size=12),
    ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(1, 65535),
)
def test_xor_mapped_address_round_trips_with_aioice(
    txid: bytes, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # we unmap ::ffff:a.b.c.d on purpose
    ours = aio.parse_message(stun.binding_response(txid, str(ip), port))
    assert ours.attributes["XOR-MAPPED-ADDRESS"] == (str(ip), port)
    msg = aio.Message(aio.Method.BINDING, aio.Class.RESPONSE, transaction_id=txid)
    msg.attributes["XOR-MAPPED-ADDRESS"] = (str(ip), port)
    msg.attributes["SOFTWARE"] = "coturn-like"
    got_txid, mapped = stun.parse_response(bytes(msg), txid)
    assert (got_txid, mapped) == (txid, (str(ip), port))


# The strict parser takes Tailscale's request and refuses generic and malformed ones.
def test_tailscale_request_filter() -> None:
    assert stun.parse_tailscale_request(stun.binding_request(TXID)) == TXID
    generic = aio.Message(aio.Method.BINDING, aio.Class.REQUEST, transaction_id=TXID)
    generic.attributes["FINGERPRINT"] = 0  # aioice computes the real one
    for bad in (bytes(aio.Message(aio.Method.BINDING, aio.Class.REQUEST)), bytes(generic)):
        try:
            stun.parse_tailscale_request(bad)
        except stun.StunError:
            continue
        raise AssertionError("a generic request passed the tailnode filter")
    other_software = aio.Message(aio.Method.BINDING, aio.Class.REQUEST, transaction_id=TXID)
    other_software.attributes["SOFTWARE"] = "notnode"
    other_software.attributes["FINGERPRINT"] = 0
    for bad in (bytes(other_software), stun.binding_request(TXID)[:-4], b"\x00" * 40):
        try:
            stun.parse_tailscale_request(bad)
        except stun.StunError:
            continue
        raise AssertionError("malformed request accepted")


# A robust parser also accepts 0x8020 and plain MAPPED-ADDRESS and unmaps IPv4-mapped IPv6.
def test_parser_accepts_old_attribute_forms() -> None:
    resp = bytearray(stun.binding_response(TXID, "192.0.2.7", 4242))
    resp[20:22] = struct.pack("!H", 0x8020)
    assert stun.parse_response(bytes(resp), TXID)[1] == ("192.0.2.7", 4242)
    value = struct.pack("!BBH", 0, 2, 999) + ipaddress.IPv6Address("::ffff:192.0.2.9").packed
    plain = struct.pack("!HH", 0x0001, len(value)) + value
    msg = struct.pack("!HHI", 0x0101, len(plain), stun.MAGIC_COOKIE) + TXID + plain
    assert stun.parse_response(msg, TXID)[1] == ("192.0.2.9", 999)


# Responses for another transaction or without an address are rejected, not misread.
def test_parser_rejects_foreign_or_empty_responses() -> None:
    good = stun.binding_response(TXID, "192.0.2.1", 1)
    empty = struct.pack("!HHI", 0x0101, 0, stun.MAGIC_COOKIE) + TXID
    for data, txid in ((good, bytes(12)), (empty, TXID), (good[:-1], TXID)):
        try:
            stun.parse_response(data, txid)
        except stun.StunError:
            continue
        raise AssertionError("bad response accepted")
