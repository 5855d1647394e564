"""DERP handshake and client verification against the faithful DERP server (tests.peers)."""

from __future__ import annotations

import asyncio
import json

import pytest
from nacl.public import Box, PrivateKey, PublicKey

from components.netcheck import check_relay, derp, derp_codec, http1
from components.netcheck.http1 import KeepAlive
from components.netcheck.report import Check, Report
from components.netcheck.tls import tls_connect
from tests.peers.aio import BackgroundLoop
from tests.peers.certs import Pki
from tests.peers.relay import LocalRelay, local_relay

from .conftest import SERVER_KEY


# PyNaCl's Box.encrypt yields exactly nonce(24) || ciphertext, the layout ClientInfo needs
# (FrameClientInfo, tailscale.com@v1.102.5/derp/derp.go:73).
def test_box_encrypt_is_nonce_then_ciphertext() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    sealed = Box(a, b.public_key).encrypt(b'{"version":2}')
    assert bytes(sealed) == sealed.nonce + sealed.ciphertext
    assert len(sealed.nonce) == 24 and len(sealed.ciphertext) == len(b'{"version":2}') + 16
    assert Box(b, a.public_key).decrypt(bytes(sealed)) == b'{"version":2}'


# The handshake reports the key from the header and the frame, equal, plus a handshake time.
def test_handshake_reports_server_key(relay: LocalRelay) -> None:
    report = check_relay(relay.target(), timeout=3, evidence_source=relay.evidence())
    assert report.ok, report.format_text()
    assert report.server_public_key == relay.server_public_key == bytes(SERVER_KEY.public_key).hex()
    for addr in relay.addresses:
        check = report.check("derp", addr)
        assert check.data["derp_version"] == "2" and check.latency_ms is not None


# With verification on, the random key is rejected; the server really decrypted our ClientInfo,
# and its log line for that key (derper's words) is what proves admission.
def test_verification_on_closes_random_key(relay: LocalRelay) -> None:
    report = check_relay(
        relay.target(expect_verify_clients=True), timeout=3, evidence_source=relay.evidence()
    )
    for addr in relay.addresses:
        check = report.check("verify_clients", addr)
        assert check.ok and check.data["verify_clients"] is True, report.format_text()
        assert check.data["cause"] == "not_authorized"
    assert relay.derp.state.client_infos == [{"version": 2, "CanAckPings": True}] * 2
    assert len(relay.derp.state.rejected) == 2 and not relay.derp.state.admitted


# Without verification the server answers FrameServerInfo, which we decrypt.
def test_verification_off_admits(bg: BackgroundLoop, pki: Pki) -> None:
    with local_relay(bg=bg, pki=pki, verify_clients=False) as r:
        report = check_relay(r.target(expect_verify_clients=False), timeout=3)
        assert len(r.derp.state.admitted) == 2
    assert report.ok
    assert report.check("verify_clients").data["verify_clients"] is False


# An allowed (tailnet) key is admitted by a verifying server: the rejection is about the key.
def test_known_key_is_admitted(bg: BackgroundLoop, pki: Pki) -> None:
    client = PrivateKey.generate()
    with local_relay(bg=bg, pki=pki, allowed_keys=(bytes(client.public_key),)) as r:

        async def run() -> bytes:
            s = await tls_connect("127.0.0.1", r.derp_port, r.hostname, r.ca_file, 3)
            conn = KeepAlive(
                s, lambda: tls_connect("127.0.0.1", r.derp_port, r.hostname, r.ca_file, 3)
            )
            hs = await derp.handshake(conn, r.hostname)
            key = bytes.fromhex(hs.frame_key)
            info = derp_codec.client_info_payload(client, key, {"version": 2})
            s.writer.write(derp_codec.encode_frame(derp_codec.FRAME_CLIENT_INFO, info))
            ftype, payload = await asyncio.wait_for(derp_codec.read_frame(s.reader), 3)
            s.close()
            assert ftype == derp_codec.FRAME_SERVER_INFO
            return Box(client, PublicKey(key)).decrypt(payload)

        assert json.loads(asyncio.run(run())) == {"version": 2}


# Expectation mismatches fail in both directions with a hint; no expectation only reports — and a
# rejection nobody explained is unconfirmed, with the hint that reads derper's verdict.
@pytest.mark.parametrize(
    ("verify", "expect", "ok", "unconfirmed", "hint"),
    [
        (False, True, False, False, "-verify-clients"),
        (True, False, False, False, "--expect-verify-clients"),
        (True, None, False, True, "--docker-host"),
        (False, None, True, False, None),
    ],
)
def test_verification_expectations(
    bg: BackgroundLoop,
    pki: Pki,
    verify: bool,
    expect: bool | None,
    ok: bool,
    unconfirmed: bool,
    hint: str | None,
) -> None:
    with local_relay(bg=bg, pki=pki, verify_clients=verify) as r:
        report = check_relay(r.target(addresses=("::1",), expect_verify_clients=expect), timeout=3)
    check = report.check("verify_clients", "::1")
    assert check.ok is ok and check.unconfirmed is unconfirmed
    assert (check.hint is None) if hint is None else (hint in (check.hint or ""))


# The faithful server's HTTP endpoints answer as derper's do (426, 405, challenge echo, home page).
def test_endpoints_of_the_faithful_server(relay: LocalRelay) -> None:
    async def run() -> list[http1.Response]:
        s = await tls_connect("::1", relay.derp_port, relay.hostname, relay.ca_file, 3)
        host = relay.hostname
        out = [
            await http1.exchange(s.reader, s.writer, "GET", "/derp", host),
            await http1.exchange(s.reader, s.writer, "POST", "/derp/probe", host),
            await http1.exchange(s.reader, s.writer, "HEAD", "/derp/latency-check", host),
            await http1.exchange(
                s.reader, s.writer, "GET", "/generate_204", host, {"X-Tailscale-Challenge": "a:b"}
            ),
            await http1.exchange(
                s.reader, s.writer, "GET", "/generate_204", host, {"X-Tailscale-Challenge": "b d"}
            ),
            await http1.exchange(s.reader, s.writer, "GET", "/", host),
        ]
        s.close()
        return out

    upgrade, post, head, gen, bad, home = asyncio.run(run())
    assert (upgrade.status, upgrade.body) == (426, b"DERP requires connection upgrade")
    assert post.status == 405
    assert head.status == 200 and head.header("Access-Control-Allow-Origin") == "*"
    assert gen.status == 204 and gen.header("X-Tailscale-Response") == "response a:b"
    assert bad.status == 204 and bad.header("X-Tailscale-Response") is None
    assert b"<h1>DERP</h1>" in home.body


# The server key frame codec refuses wrong type, short payload and bad magic.
def test_server_key_frame_validation() -> None:
    key = bytes(range(32))
    assert derp_codec.parse_server_key(1, derp_codec.server_key_payload(key) + b"extra") == key
    for ftype, payload in ((2, derp_codec.server_key_payload(key)), (1, b"DERP"), (1, b"X" * 40)):
        with pytest.raises(derp_codec.DerpError):
            derp_codec.parse_server_key(ftype, payload)


# check_relay also works when called from inside a running event loop (no nested asyncio.run).
def test_check_relay_inside_event_loop(relay: LocalRelay) -> None:
    async def caller() -> str:
        return check_relay(relay.target(addresses=("::1",)), timeout=3).verdict

    assert asyncio.run(caller()) == "unconfirmed"  # verification on, derper's log not read


# The probe's random client key is in the verify_clients data: the very key derper saw (and
# would log as nodekey:<hex>), one fresh key per address.
def test_client_key_is_the_one_the_server_saw(relay: LocalRelay) -> None:
    report = check_relay(relay.target(), timeout=3)
    keys = [report.check("verify_clients", a).data["client_key"] for a in relay.addresses]
    assert sorted(keys) == sorted(k.hex() for k in relay.derp.state.rejected)
    assert len(set(keys)) == 2 and all(len(k) == 64 for k in keys)


# The admission-evidence seam: the source gets (address, Admission) after the admission and
# what it returns reaches the verdict as data["cause"] (and the log line).
def test_evidence_source_reaches_the_verdict(relay: LocalRelay) -> None:
    seen: list[tuple[str, derp.Admission]] = []

    async def evidence(address: str, admission: derp.Admission) -> derp.AdmissionEvidence:
        seen.append((address, admission))
        return derp.AdmissionEvidence("not_authorized", f"client nodekey:{admission.client_key}")

    report = check_relay(relay.target(addresses=("::1",)), timeout=3, evidence_source=evidence)
    check = report.check("verify_clients", "::1")
    ((address, admission),) = seen
    assert address == "::1" and admission.admitted is False
    assert admission.client_key == relay.derp.state.rejected[0].hex() == check.data["client_key"]
    assert check.data["cause"] == "not_authorized"
    assert check.data["log_line"] == f"client nodekey:{admission.client_key}"
    assert check.ok and report.verdict == "ok"  # derper asked tailscaled: admission is proven


# A rejection whose cause derper's log does not give — no log read at all, or no line for the key
# — is "unconfirmed", never passed: marked unconfirmed (not a failure) when nobody asked for proof,
# a failure with --expect-verify-clients; data["cause"] says "unconfirmed" either way. (It used to
# pass with only a warning: "OK (5/5 checks passed)" for a derper that rejected everyone.)
@pytest.mark.parametrize(
    "evidence",
    [None, derp.AdmissionEvidence("unconfirmed", None, detail="no line within 4s")],
    ids=["log-not-read", "no-line-in-log"],
)
@pytest.mark.parametrize("expect", [None, True])
def test_unconfirmed_admission_is_never_passed(
    evidence: derp.AdmissionEvidence | None, expect: bool | None
) -> None:
    admission = derp.Admission(admitted=False, ms=1.0, client_key="ab" * 32)
    check = derp.verify_verdict("::1", admission, expect, evidence)
    assert not check.ok and check.data["cause"] == "unconfirmed"
    assert check.unconfirmed is (expect is None), check
    report = Report("derp.test", [Check("tls", "::1", True, "fine"), check])
    assert report.verdict == ("unconfirmed" if expect is None else "failed")
    assert report.failed() == ([] if expect is None else [check])
    assert report.format_text().splitlines()[0] == (
        "Report for derp.test: OK except 1 unconfirmed (1/2 checks passed, 1 unconfirmed)"
        if expect is None
        else "Report for derp.test: FAILED (1/2 checks passed)"
    )
    if evidence is None:
        assert "--docker-host" in (check.hint or "") and "--container" in (check.hint or "")
