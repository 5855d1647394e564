"""The dns check against a local DNS server, and resolver syntax (IP, IP:PORT, [IPv6]:PORT)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.netcheck import RelayTarget, check_relay
from components.netcheck.dns import parse_resolver
from tests.peers.dns_server import dns_server
from tests.peers.relay import LocalRelay


# Every accepted resolver spelling parses; junk is refused with a message.
def test_parse_resolver() -> None:
    assert parse_resolver("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_resolver("192.0.2.1:5353") == ("192.0.2.1", 5353)
    assert parse_resolver("[::1]:5353") == ("::1", 5353)
    assert parse_resolver("2001:db8::1") == ("2001:db8::1", 53)
    for bad in ("example.com", "1.2.3.4:0", "[::1]x", "1.2.3.4:http"):
        with pytest.raises(ValueError, match="resolver"):
            parse_resolver(bad)


# DNS answers decide the probed addresses; both families are probed and pass.
def test_dns_drives_the_probe(relay: LocalRelay) -> None:
    target = relay.target(addresses=(), resolvers=(relay.resolver,))
    report = check_relay(target, timeout=3, evidence_source=relay.evidence())
    assert report.ok, report.format_text()
    dns = report.check("dns")
    assert dns.data == {"AAAA": ["::1"], "A": ["127.0.0.1"]}
    assert {c.address for c in report.checks if c.name == "tls"} == {"::1", "127.0.0.1"}


# A resolver on IPv6 loopback with a port works too.
def test_ipv6_resolver() -> None:
    with dns_server("::1") as dns:
        dns.set_addresses("derp.test", ["2001:db8::7"])
        report = check_relay(
            RelayTarget(
                "derp.test",
                addresses=("::1",),
                resolvers=(dns.spec,),
                expected_addresses=("2001:db8::7",),
                stun_port=9,
            ),
            timeout=1,
            stun_timeout=0.2,
        )
    assert report.check("dns").ok and dns.queries


# A stale record (the prefix changed) fails with both sides shown.
def test_stale_record(relay: LocalRelay) -> None:
    target = relay.target(resolvers=(relay.resolver,), expected_addresses=("::1", "127.0.0.2"))
    check = check_relay(target, timeout=3).check("dns")
    assert not check.ok and "expected" in check.detail and "stale" in (check.hint or "")
    assert check.data["missing"] == ["127.0.0.2"] and check.data["unexpected"] == ["127.0.0.1"]


# NXDOMAIN and a silent resolver are told apart.
def test_nxdomain_and_timeout() -> None:
    with dns_server() as dns:
        dns.set_addresses("other.test", ["::1"])
        nx = check_relay(RelayTarget("derp.test", resolvers=(dns.spec,)), timeout=2).check("dns")
        dns.silent = True
        slow = check_relay(RelayTarget("derp.test", resolvers=(dns.spec,)), timeout=1).check("dns")
    assert "NXDOMAIN" in nx.detail and not nx.ok
    assert "no DNS answer" in slow.detail and not slow.ok


# A machine without a configured resolver gets a failed dns check with the way out, not a
# traceback: the CLI runs in its own mount namespace where /etc/resolv.conf is empty.
def test_no_system_resolver_is_a_failed_check() -> None:
    unshare = shutil.which("unshare")
    assert unshare, "unshare is required (util-linux)"
    script = (
        "mount --bind /dev/null /etc/resolv.conf && "
        f"exec {sys.executable} -m components.netcheck derp.test --json --timeout 1"
    )
    proc = subprocess.run(
        [unshare, "-m", "sh", "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    (check,) = json.loads(proc.stdout)["checks"]
    assert check["name"] == "dns" and "no system DNS resolver" in check["detail"]
    assert "--resolver" in check["hint"]
