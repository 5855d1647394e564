"""The tls check against local TLS servers with real chains (trustme), one per failure class."""

from __future__ import annotations

import datetime as dt

import pytest

from components.netcheck import check_relay
from tests.peers.aio import BackgroundLoop
from tests.peers.certs import Pki
from tests.peers.ports import free_port
from tests.peers.relay import CertVariant, local_relay
from tests.peers.silent_tcp import silent_tcp


def _tls(bg: BackgroundLoop, pki: Pki, cert: CertVariant, **kw: object):  # type: ignore[no-untyped-def]
    with local_relay(bg=bg, pki=pki, cert=cert, **kw) as r:  # type: ignore[arg-type]
        report = check_relay(
            r.target(addresses=("127.0.0.1",)), timeout=3, evidence_source=r.evidence()
        )
    return report.check("tls", "127.0.0.1"), report


# A good chain verifies, negotiates http/1.1, and records expiry facts in data.
def test_good_certificate(bg: BackgroundLoop, pki: Pki) -> None:
    check, report = _tls(bg, pki, "good")
    assert check.ok and not check.warning
    assert check.data["alpn"] == "http/1.1"
    assert check.data["days_left"] > 14
    dt.datetime.fromisoformat(check.data["not_after"])
    assert report.ok


# A certificate with 10 days left passes with a warning and says so.
def test_expiring_soon_warns(bg: BackgroundLoop, pki: Pki) -> None:
    check, report = _tls(bg, pki, "soon")
    assert check.ok and check.warning
    assert check.data["days_left"] == 10
    assert check.hint is not None and "renew" in check.hint
    assert report.ok


# Each broken certificate gets its own diagnosis, with the facts in data.
@pytest.mark.parametrize(
    ("cert", "kind", "detail", "hint"),
    [
        ("expired", "expired", "expired", "restart derper"),
        ("self_signed", "untrusted", "self-signed", "public CA"),
    ],
)
def test_bad_certificates(
    bg: BackgroundLoop, pki: Pki, cert: CertVariant, kind: str, detail: str, hint: str
) -> None:
    check, report = _tls(bg, pki, cert)
    assert not check.ok and not report.ok
    assert check.data["kind"] == kind
    assert detail in check.detail and check.hint and hint in check.hint
    assert "not_after" in check.data
    if kind == "expired":
        assert check.data["days_left"] < 0


# A certificate for another name (image that patched out derper's SNI check) → name mismatch.
def test_name_mismatch(bg: BackgroundLoop, pki: Pki) -> None:
    check, _ = _tls(bg, pki, "wrong_name", sni_check=False)
    assert check.data["kind"] == "name-mismatch"
    assert "other.test" in check.detail and "derp.test" in check.detail


# Real derper aborts the handshake for an SNI other than -hostname: a TLS alert, told apart.
def test_sni_refused_by_derper(bg: BackgroundLoop, pki: Pki) -> None:
    with local_relay(bg=bg, pki=pki, hostname="derp.test") as r:
        report = check_relay(r.target(hostname="relay.other", addresses=("::1",)), timeout=3)
    check = report.check("tls", "::1")
    assert check.data["kind"] == "alert" and "-hostname" in (check.hint or "")


# Without --ca-file the system store does not know the test root: untrusted.
def test_system_store_does_not_trust_private_root(bg: BackgroundLoop, pki: Pki) -> None:
    with local_relay(bg=bg, pki=pki) as r:
        report = check_relay(r.target(ca_file=None, addresses=("127.0.0.1",)), timeout=3)
    check = report.check("tls", "127.0.0.1")
    assert check.data["kind"] == "untrusted" and "system CAs" in check.detail


# derper on a custom port without -certmode manual serves plain HTTP; the hint says so, and the
# checks that need TLS show as skipped instead of vanishing.
def test_plain_http_on_the_port(bg: BackgroundLoop, pki: Pki) -> None:
    check, report = _tls(bg, pki, "none")
    assert check.data["kind"] == "plain-http"
    assert check.hint and "-certmode manual" in check.hint
    rows = [c for c in report.checks if c.address == "127.0.0.1"]
    assert [c.name for c in rows] == ["tls", "https", "derp", "verify_clients", "stun"]
    for skipped in rows[1:4]:
        assert skipped.skipped and not skipped.ok and skipped.detail == "skipped (TLS failed)"
    assert report.failed() == [check] and report.check("stun").ok


# Nobody listening: refused, immediately.
def test_connection_refused(pki: Pki) -> None:
    from components.netcheck import RelayTarget

    port = free_port(kind=__import__("socket").SOCK_STREAM)
    target = RelayTarget("derp.test", port, free_port(), ("127.0.0.1",), ca_file=pki.ca_file)
    report = check_relay(target, timeout=2, stun_timeout=0.3)
    assert report.check("tls").data["kind"] == "refused"


# A port that accepts TCP but never speaks: the handshake times out within the budget.
def test_handshake_timeout(pki: Pki) -> None:
    from components.netcheck import RelayTarget

    with silent_tcp() as port:
        target = RelayTarget("derp.test", port, free_port(), ("::1",), ca_file=pki.ca_file)
        report = check_relay(target, timeout=1.0, stun_timeout=0.3)
    assert report.check("tls").data["kind"] == "handshake-timeout"
    assert report.duration_ms is not None and report.duration_ms < 1500
