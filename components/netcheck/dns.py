"""The dns probe: AAAA and A of the relay's hostname, and the verdict on the answers.

Clients resolve ``HostName`` unless the derpMap node pins ``IPv4``/``IPv6``
(tailscale.com@v1.102.5/tailcfg/derpmap.go:173-185; netcheck's nodeAddrPort,
net/netcheck/netcheck.go:1625-1714), so the answers decide which addresses the other probes try.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from .addresses import not_public
from .report import Check, RelayTarget


def parse_resolver(spec: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 → (ip, port)."""
    spec = spec.strip()
    host, port = spec, 53
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"resolver {spec!r}: expected [IPv6]:PORT")
        if rest:
            port = _resolver_port(rest[1:], spec)
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = _resolver_port(p, spec)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise ValueError(f"resolver {spec!r}: {host!r} is not an IP address") from None


def _resolver_port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"resolver {spec!r}: bad port {text!r}")
    return int(text)


async def check_dns(target: RelayTarget, remaining: float) -> tuple[Check, list[str]]:
    """AAAA and A of the hostname, within ``remaining`` seconds; compared with
    ``expected_addresses`` when given. Returns the check and the addresses to probe."""
    try:
        resolver = dns.asyncresolver.Resolver(configure=not target.resolvers)
    except dns.resolver.NoResolverConfiguration:
        return Check(
            "dns",
            None,
            False,
            "no system DNS resolver is configured (/etc/resolv.conf)",
            "pass --resolver IP, or --address IP to skip DNS",
        ), []
    if target.resolvers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_resolver(r)) for r in target.resolvers
        ]
    # dnspython overshoots its lifetime by ~0.1 s; keep our own diagnosis ahead of the deadline
    budget = max(0.05, min(remaining * 0.75, 3.0))
    resolver.lifetime = budget
    resolver.timeout = budget
    start = time.perf_counter()

    async def lookup(rdtype: str) -> list[str] | Exception:
        try:
            answer = await resolver.resolve(target.hostname, rdtype)
            return [str(ipaddress.ip_address(r.to_text())) for r in answer]
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.DNSException as exc:
            return exc

    v6, v4 = await asyncio.gather(lookup("AAAA"), lookup("A"))
    ms = (time.perf_counter() - start) * 1000.0
    return dns_verdict(target, v6, v4, ms)


def dns_verdict(
    target: RelayTarget, v6: list[str] | Exception, v4: list[str] | Exception, ms: float
) -> tuple[Check, list[str]]:
    name = target.hostname
    for err in (v6, v4):
        if isinstance(err, dns.resolver.NXDOMAIN):
            return Check(
                "dns",
                None,
                False,
                f"{name} does not exist (NXDOMAIN)",
                "create the AAAA record (pulumi up creates it); check the zone and the spelling",
                ms,
            ), []
        if isinstance(err, dns.exception.Timeout):
            return Check(
                "dns",
                None,
                False,
                f"no DNS answer for {name} within {ms / 1000:.1f}s",
                "the resolver does not answer: check --resolver / the network",
                ms,
            ), []
    errors = [e for e in (v6, v4) if isinstance(e, Exception)]
    if errors and not any(isinstance(x, list) and x for x in (v6, v4)):
        return Check(
            "dns",
            None,
            False,
            f"lookup of {name} failed: {errors[0]}",
            "the resolvers returned errors (SERVFAIL?): check the zone's delegation",
            ms,
        ), []
    aaaa = v6 if isinstance(v6, list) else []
    a = v4 if isinstance(v4, list) else []
    found = aaaa + a
    data: dict[str, Any] = {"AAAA": aaaa, "A": a}
    shown = ", ".join([f"AAAA {x}" for x in aaaa] + [f"A {x}" for x in a])
    if not found:
        return Check(
            "dns",
            None,
            False,
            f"{name} has no AAAA or A record",
            "create the AAAA record for the relay's stable IPv6 address",
            ms,
            data=data,
        ), []
    if target.expected_addresses:
        want = {str(ipaddress.ip_address(x)) for x in target.expected_addresses}
        missing, extra = sorted(want - set(found)), sorted(set(found) - want)
        if missing or extra:
            detail = f"{shown}; expected {', '.join(sorted(want))}"
            return Check(
                "dns",
                None,
                False,
                detail,
                "the record is stale (did the IPv6 prefix change?): run pulumi up or the DDNS "
                "updater, and wait for the TTL",
                ms,
                data={**data, "missing": missing, "unexpected": extra},
            ), found
    odd = [x for x in found if not_public(x)]
    if odd:
        return Check(
            "dns",
            None,
            True,
            f"{shown} (not globally routable: {', '.join(odd)})",
            "publish the host's stable global address, not a ULA/link-local/private one",
            ms,
            warning=True,
            data=data,
        ), found
    return Check("dns", None, True, shown, None, ms, data=data), found
