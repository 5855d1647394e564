"""Fault catalog: every way a relay breaks in the field gets its own diagnosis and hint.

Each case starts a broken variant of the local relay (tests.peers.relay) and names the check
that must catch it, a phrase of its diagnosis and a phrase of its hint. The last test proves the
diagnoses and hints are pairwise distinct, so a user can tell the faults apart.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from components.netcheck import RelayTarget, check_relay
from tests.peers.aio import BackgroundLoop
from tests.peers.certs import Pki
from tests.peers.ports import free_port
from tests.peers.relay import LocalRelay, local_relay


@dataclass(frozen=True)
class Fault:
    id: str
    check: str
    detail: str  # phrase of the diagnosis
    hint: str  # phrase of the hint
    relay: dict[str, Any] = field(default_factory=dict)
    target: Callable[[LocalRelay], RelayTarget] = lambda r: r.target(addresses=("::1",))
    warning_only: bool = False


def _nxdomain(r: LocalRelay) -> RelayTarget:
    r.dns.records.clear()
    r.dns.set_addresses("elsewhere.test", ["::1"])
    return r.target(addresses=(), resolvers=(r.resolver,))


CATALOG = [
    Fault("dns-nxdomain", "dns", "NXDOMAIN", "create the AAAA record", target=_nxdomain),
    Fault(
        "dns-stale",
        "dns",
        "expected 2001:db8::1",
        "prefix change",
        target=lambda r: r.target(resolvers=(r.resolver,), expected_addresses=("2001:db8::1",)),
    ),
    Fault(
        "tls-refused",
        "tls",
        "connection refused",
        "not listening",
        target=lambda r: r.target(addresses=("::1",), derp_port=free_port(kind=socket.SOCK_STREAM)),
    ),
    Fault("tls-plain-http", "tls", "plain HTTP", "-certmode manual", relay={"cert": "none"}),
    Fault("tls-self-signed", "tls", "self-signed", "public CA", relay={"cert": "self_signed"}),
    Fault(
        "tls-name-mismatch",
        "tls",
        "is for other.test",
        "issue the certificate",
        relay={"cert": "wrong_name", "sni_check": False},
    ),
    Fault(
        "tls-sni-refused",
        "tls",
        "aborted the TLS handshake",
        "refuses an SNI",
        target=lambda r: r.target(hostname="relay.other", addresses=("::1",)),
    ),
    Fault("tls-expired", "tls", "expired", "restart derper", relay={"cert": "expired"}),
    Fault(
        "tls-expiring",
        "tls",
        "(10 days)",
        "expires in 10 days",
        relay={"cert": "soon"},
        warning_only=True,
    ),
    Fault(
        "https-not-derper",
        "https",
        "/derp/probe answered 404",
        "not derper",
        relay={"fault": "web_server"},
    ),
    Fault(
        "https-challenge",
        "https",
        "X-Tailscale-Response None",
        "rewrites or caches",
        relay={"fault": "no_challenge_echo"},
    ),
    Fault(
        "https-not-http",
        "https",
        "not an HTTP response",
        "non-HTTP service",
        relay={"fault": "not_http"},
    ),
    Fault("derp-upgrade-stripped", "derp", "426", "DNS-only", relay={"fault": "strip_upgrade"}),
    Fault("derp-bad-magic", "derp", "magic", "not speaking DERP", relay={"fault": "bad_magic"}),
    Fault(
        "derp-key-mismatch",
        "derp",
        "differs from the FrameServerKey",
        "rewrites the stream",
        relay={"fault": "key_mismatch"},
    ),
    Fault(
        "derp-closed",
        "derp",
        "closed before FrameServerKey",
        "check its log",
        relay={"fault": "no_server_key"},
    ),
    Fault(
        "verify-off",
        "verify_clients",
        "OFF",
        "anyone can relay",
        relay={"verify_clients": False},
        target=lambda r: r.target(addresses=("::1",), expect_verify_clients=True),
    ),
    Fault(
        "verify-on-unexpected",
        "verify_clients",
        "open relay was expected",
        "turn verification off",
        target=lambda r: r.target(addresses=("::1",), expect_verify_clients=False),
    ),
    Fault("stun-silent", "stun", "no answer from UDP", "open UDP port", relay={"stun": "silent"}),
    Fault(
        "stun-closed",
        "stun",
        "(ICMP)",
        "nothing listens on the STUN port",
        relay={"stun": "closed"},
    ),
    Fault(
        "stun-docker-proxy",
        "stun",
        "private IPv4 172.17.0.1",
        "network_mode host",
        relay={"stun_mapped": ("172.17.0.1", 41641)},
    ),
]


# Each fault is caught by its check with its own diagnosis and hint, and fails the report.
@pytest.mark.parametrize("fault", CATALOG, ids=[f.id for f in CATALOG])
def test_fault_is_diagnosed(bg: BackgroundLoop, pki: Pki, fault: Fault) -> None:
    with local_relay(bg=bg, pki=pki, **fault.relay) as r:
        target = fault.target(r)
        report = check_relay(target, timeout=2.5, stun_timeout=0.5, evidence_source=r.evidence())
    matching = [c for c in report.checks if c.name == fault.check]
    assert matching, report.format_text()
    check = next((c for c in matching if not c.ok or c.warning), matching[0])
    assert fault.detail in check.detail, report.format_text()
    assert check.hint and fault.hint in check.hint, report.format_text()
    if fault.warning_only:
        assert check.ok and check.warning and report.ok
    else:
        assert not check.ok and not report.ok
        assert f"hint: {check.hint}" in report.format_text()


# At least 10 distinct failure modes, no two sharing a diagnosis phrase or a hint phrase.
def test_catalog_is_distinct() -> None:
    failures = [f for f in CATALOG if not f.warning_only]
    assert len(failures) >= 10
    assert len({f.detail for f in CATALOG}) == len(CATALOG)
    assert len({f.hint for f in CATALOG}) == len(CATALOG)


# A silent STUN port keeps its own diagnosis when the report budget is shorter than the STUN
# wait (--timeout 1 < --stun-timeout 3): "no answer … open UDP port", not a generic stall.
def test_silent_stun_keeps_its_diagnosis_under_a_short_budget() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        target = RelayTarget(
            "derp.test",
            derp_port=free_port(("127.0.0.1",), socket.SOCK_STREAM),
            stun_port=silent.getsockname()[1],
            addresses=("127.0.0.1",),
        )
        report = check_relay(target, timeout=1.0, stun_timeout=3.0)
    stun = report.check("stun", "127.0.0.1")
    assert not stun.ok
    assert stun.detail.startswith("no answer from UDP 127.0.0.1:")
    assert stun.hint is not None and "open UDP port" in stun.hint
