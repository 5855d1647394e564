"""Run every check against a relay concurrently, within netcheck's budgets (§5).

One task per address for the TCP side (tls → https, derp → verify_clients) and one for STUN;
DNS first (it decides the addresses) unless the target pins them. Every await is bounded by the
report deadline, so a black-holed relay yields timeouts, never a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import time
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from . import derp, https
from .regions import nearest, probe_regions, rank, regions_of_host
from .report import Check, RelayTarget, Report
from .stun import stun_probe
from .tls import WARN_DAYS, TlsFailure, hostport, tls_connect

TCP_CHECKS = ("tls", "https", "derp", "verify_clients")


def parse_resolver(spec: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 → (ip, port)."""
    spec = spec.strip()
    host, port = spec, 53
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"resolver {spec!r}: expected [IPv6]:PORT")
        if rest:
            port = _port(rest[1:], spec)
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = _port(p, spec)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise ValueError(f"resolver {spec!r}: {host!r} is not an IP address") from None


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"resolver {spec!r}: bad port {text!r}")
    return int(text)


def _remaining(deadline: float) -> float:
    return max(0.05, deadline - asyncio.get_running_loop().time())


# --- dns ---------------------------------------------------------------------------------------


async def check_dns(target: RelayTarget, deadline: float) -> tuple[Check, list[str]]:
    """AAAA and A of the hostname; compared with ``expected_addresses`` when given."""
    resolver = dns.asyncresolver.Resolver(configure=not target.resolvers)
    if target.resolvers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_resolver(r)) for r in target.resolvers
        ]
    # dnspython overshoots its lifetime by ~0.1 s; keep our own diagnosis ahead of the deadline
    budget = max(0.05, min(_remaining(deadline) * 0.75, 3.0))
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
    return _dns_verdict(target, v6, v4, ms)


def _dns_verdict(
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
    odd = [x for x in found if _not_public(x)]
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


def _not_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_loopback and (ip.is_private or ip.is_link_local)


# --- tls / https / derp / verify_clients ---------------------------------------------------------


def tls_verdict(address: str, session_data: dict[str, Any], ms: float, alpn: str | None) -> Check:
    days = session_data.get("days_left")
    names = ", ".join(session_data.get("names") or []) or session_data.get("subject", "?")
    detail = (
        f"{session_data.get('version')}, ALPN {alpn or 'none'}, cert {names} "
        f"from {session_data.get('issuer')}, expires {str(session_data.get('not_after'))[:10]} "
        f"({days} days)"
    )
    if alpn not in (None, "http/1.1"):
        return Check(
            "tls",
            address,
            False,
            detail + f"; server chose ALPN {alpn}",
            "derper speaks http/1.1 only: something else terminates TLS here",
            ms,
            data=session_data,
        )
    if isinstance(days, int) and days < WARN_DAYS:
        return Check(
            "tls",
            address,
            True,
            detail,
            f"the certificate expires in {days} days: renew it (pulumi up) and restart derper",
            ms,
            warning=True,
            data=session_data,
        )
    return Check("tls", address, True, detail, None, ms, data=session_data)


async def check_https(session_reader: Any, session_writer: Any, address: str, host: str) -> Check:
    """/derp/probe → 200 and /generate_204 with a challenge → 204 + the matching response."""
    # The challenge goes first: it also absorbs TLS 1.3 session tickets that arrive right after
    # the handshake and, measured first, made loopback requests look ~40 ms slow (delayed ACK).
    challenge = https.new_challenge()
    try:
        gen = await https.exchange(
            session_reader,
            session_writer,
            "GET",
            "/generate_204",
            host,
            {"X-Tailscale-Challenge": challenge},
        )
        start = time.perf_counter()
        probe = await https.exchange(session_reader, session_writer, "GET", "/derp/probe", host)
        probe_ms = (time.perf_counter() - start) * 1000.0
    except (https.HttpError, OSError) as exc:
        return Check(
            "https",
            address,
            False,
            f"HTTP over TLS failed: {exc}",
            "a non-HTTP service answers TLS on this port",
            None,
        )
    if probe.status != 200:
        return Check(
            "https",
            address,
            False,
            f"GET /derp/probe answered {probe.status} {probe.reason}",
            "this is not derper (another web server or proxy answers on the port)",
            probe_ms,
        )
    expected = f"response {challenge}"
    got = gen.header("X-Tailscale-Response")
    if gen.status != 204 or got != expected:
        return Check(
            "https",
            address,
            False,
            f"GET /generate_204 answered {gen.status}, X-Tailscale-Response {got!r}",
            "derper echoes the challenge; something in between rewrites or caches responses",
            probe_ms,
        )
    return Check(
        "https",
        address,
        True,
        "/derp/probe 200, /generate_204 echoed the challenge",
        None,
        probe_ms,
    )


def derp_verdict(address: str, hs: derp.Handshake) -> Check:
    data = {"derp_version": hs.version, "server_public_key": hs.frame_key}
    if hs.header_key is not None and hs.header_key.lower() != hs.frame_key:
        return Check(
            "derp",
            address,
            False,
            f"Derp-Public-Key {hs.header_key} differs from the FrameServerKey {hs.frame_key}",
            "something between client and derper rewrites the stream: remove proxies",
            hs.handshake_ms,
            data=data,
        )
    if hs.header_key is None or hs.version is None:
        return Check(
            "derp",
            address,
            True,
            f"server key {hs.frame_key} (101 without Derp-Version/Derp-Public-Key: old derper)",
            "update derper",
            hs.handshake_ms,
            warning=True,
            data=data,
        )
    return Check(
        "derp",
        address,
        True,
        f"DERP v{hs.version}, server key {hs.frame_key[:16]}…",
        None,
        hs.handshake_ms,
        data=data,
    )


def derp_failure(address: str, exc: derp.DerpError) -> Check:
    hints = {
        "upgrade-stripped": "derper never saw the Upgrade: a proxy (Cloudflare proxied record?) "
        "sits in front; DERP needs a direct, DNS-only record",
        "no-upgrade": "something else answers /derp (web server or proxy); DERP cannot pass an "
        "HTTP proxy",
        "not-http": "the service on this port is not derper",
        "bad-magic": "the server is not speaking DERP (or the stream is modified in transit)",
        "bad-frame": "the server is not speaking DERP (or the stream is modified in transit)",
        "no-server-key": "derper closed the connection right after the upgrade: check its log",
    }
    return Check("derp", address, False, exc.detail, hints.get(exc.kind), data={"kind": exc.kind})


def verify_verdict(address: str, admitted: bool, expect: bool | None, ms: float) -> Check:
    if admitted:
        state = "OFF: a random client key was admitted (FrameServerInfo)"
    else:
        state = "ON: a random client key was rejected (connection closed)"
    data = {"verify_clients": not admitted}
    if expect is True and admitted:
        return Check(
            "verify_clients",
            address,
            False,
            state,
            "anyone can relay through this line: run derper with -verify-clients "
            "(DERP_VERIFY_CLIENTS=true) and mount the /var/run/tailscale directory",
            ms,
            data=data,
        )
    if expect is False and not admitted:
        return Check(
            "verify_clients",
            address,
            False,
            state + ", but an open relay was expected",
            "turn verification off, or expect it (--expect-verify-clients)",
            ms,
            data=data,
        )
    hint = None
    if not admitted and expect is None:
        hint = "verification rejects unknown keys; real clients need tailscaled on the relay host"
    return Check("verify_clients", address, True, state, hint, ms, data=data)


async def tcp_checks(
    target: RelayTarget, address: str, deadline: float, out: list[Check], keys: list[str]
) -> None:
    """tls, then https and derp+verify_clients in parallel on their own connections."""
    port, host = target.derp_port, target.hostname
    host_header = host if port == 443 else f"{host}:{port}"
    try:
        session = await tls_connect(address, port, host, target.ca_file, _remaining(deadline))
    except TlsFailure as exc:
        out.append(
            Check("tls", address, False, exc.detail, exc.hint, data={"kind": exc.kind, **exc.data})
        )
        return
    out.append(
        tls_verdict(address, session.data, session.connect_ms + session.handshake_ms, session.alpn)
    )

    async def https_part() -> None:
        try:
            out.append(await check_https(session.reader, session.writer, address, host_header))
        finally:
            session.close()

    async def derp_part() -> None:
        try:
            s2 = await tls_connect(address, port, host, target.ca_file, _remaining(deadline))
        except TlsFailure as exc:
            out.append(
                Check(
                    "derp", address, False, f"second TLS connection failed: {exc.detail}", exc.hint
                )
            )
            return
        try:
            # settle the connection first (see check_https), so the upgrade time is the
            # server's, like netcheck's request-only latency (§5)
            with contextlib.suppress(https.HttpError, OSError):
                await https.exchange(s2.reader, s2.writer, "HEAD", "/derp/probe", host_header)
            try:
                hs = await derp.handshake(s2.reader, s2.writer, host_header)
            except derp.DerpError as exc:
                out.append(derp_failure(address, exc))
                return
            out.append(derp_verdict(address, hs))
            keys.append(hs.frame_key)
            try:
                admitted, ms = await derp.probe_admission(
                    s2.reader, s2.writer, bytes.fromhex(hs.frame_key)
                )
            except derp.DerpError as exc:
                out.append(
                    Check(
                        "verify_clients",
                        address,
                        False,
                        exc.detail,
                        "the server is not a faithful derper",
                    )
                )
                return
            out.append(verify_verdict(address, admitted, target.expect_verify_clients, ms))
        finally:
            s2.close()

    await asyncio.gather(https_part(), derp_part())


# --- stun ----------------------------------------------------------------------------------------


async def check_stun(target: RelayTarget, address: str, timeout: float) -> Check:
    port = target.stun_port
    res = await stun_probe(address, port, timeout=timeout)
    where = hostport(address, port)
    data: dict[str, Any] = {
        "sent": res.sent,
        "answered": len(res.rtts_ms),
        "rtts_ms": [round(x, 3) for x in res.rtts_ms],
    }
    if not res.rtts_ms:
        if res.error:
            return Check(
                "stun",
                address,
                False,
                f"UDP {where}: {res.error} (ICMP), no STUN server",
                "nothing listens on the STUN port: derper runs with -stun=false, another "
                "-stun-port, or binds another IP (-stun binds the IP of -a)",
                data=data,
            )
        return Check(
            "stun",
            address,
            False,
            f"no answer from UDP {where} to {res.sent} Tailscale-format requests in {timeout:.1f}s",
            "open UDP port {port} in firewall/port forwarding; derper's STUN bind failures are "
            "silent (look for 'STUN server listening' in its log); a generic STUN server that "
            "ignores SOFTWARE=tailnode would answer here".replace("{port}", str(port)),
            data=data,
        )
    mapped = res.mapped
    med = res.median_ms
    assert mapped is not None and med is not None
    mapped_s = hostport(*mapped)
    data["mapped"] = mapped_s
    detail = f"median {med:.1f}ms ({len(res.rtts_ms)}/{res.sent} answered), mapped {mapped_s}"
    probe_ip = ipaddress.ip_address(address)
    mapped_ip = ipaddress.ip_address(mapped[0])
    if probe_ip.version == 6 and mapped_ip.version == 4:
        private = " private" if mapped_ip.is_private else ""
        return Check(
            "stun",
            address,
            False,
            detail + f": an IPv6 probe came back with the{private} IPv4 {mapped[0]}",
            "derper sits behind docker-proxy (bridge networking): STUN sees the Docker gateway "
            "(tailscale/tailscale#17565); use network_mode host",
            med,
            data=data,
        )
    if probe_ip.version != mapped_ip.version:
        return Check(
            "stun",
            address,
            False,
            detail + ": mapped address family differs from the probe",
            "a proxy or NAT64 sits in front of the STUN port; use host networking",
            med,
            data=data,
        )
    local = res.local[0] if res.local else None
    if probe_ip.version == 6 and local and ipaddress.ip_address(local) != mapped_ip:
        return Check(
            "stun",
            address,
            True,
            detail + f" (this machine is {local}: NAT66 or an IPv6 proxy)",
            "if the relay runs in Docker with bridge networking, use network_mode host",
            med,
            warning=True,
            data=data,
        )
    if len(res.rtts_ms) < res.sent:
        return Check(
            "stun",
            address,
            True,
            detail,
            "some STUN requests were lost",
            med,
            warning=True,
            data=data,
        )
    return Check("stun", address, True, detail, None, med, data=data)


# --- the report ----------------------------------------------------------------------------------


def _budget_exceeded(name: str, address: str, timeout: float) -> Check:
    return Check(
        name,
        address,
        False,
        f"no result within the {timeout:.1f}s report budget",
        "the relay accepts connections but stalls: check derper's log and the path (MTU?)",
    )


async def probe_relay(
    target: RelayTarget,
    *,
    timeout: float = 5.0,
    stun_timeout: float = 3.0,
    derp_map: dict[str, Any] | None = None,
) -> Report:
    """Every check of issue #3 against ``target``; never takes longer than ``timeout`` (+ε)."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    deadline = loop.time() + timeout
    report = Report(hostname=target.hostname)
    regions_task = (
        asyncio.create_task(probe_regions(derp_map, min(stun_timeout, timeout)))
        if derp_map
        else None
    )

    addresses = list(dict.fromkeys(str(ipaddress.ip_address(a)) for a in target.addresses))
    if not addresses or target.resolvers or target.expected_addresses:
        try:
            async with asyncio.timeout_at(deadline):
                dns_check, found = await check_dns(target, deadline)
        except TimeoutError:
            dns_check, found = (
                Check(
                    "dns",
                    None,
                    False,
                    "DNS lookup hit the report timeout",
                    "the resolver does not answer: check --resolver / the network",
                ),
                [],
            )
        report.checks.append(dns_check)
        if not addresses:
            addresses = found

    per_address: dict[str, list[Check]] = {a: [] for a in addresses}
    keys: list[str] = []

    # Checks give up a little before the report deadline so their own diagnosis wins the race.
    inner = deadline - min(0.25, timeout / 10)

    async def tcp_job(addr: str) -> None:
        out = per_address[addr]
        try:
            async with asyncio.timeout_at(deadline):
                await tcp_checks(target, addr, inner, out, keys)
        except TimeoutError:
            done = {c.name for c in out}
            for name in TCP_CHECKS if "tls" in done else ("tls",):
                if name not in done:
                    out.append(_budget_exceeded(name, addr, timeout))

    async def stun_job(addr: str) -> None:
        # Shrink the STUN wait to the report budget, so a silent port gets STUN's own diagnosis
        # (UDP blocked) rather than a generic "stalled" when --timeout < --stun-timeout.
        budget = max(0.0, min(stun_timeout, inner - loop.time()))
        try:
            async with asyncio.timeout_at(deadline):
                check = await check_stun(target, addr, budget)
        except TimeoutError:
            check = _budget_exceeded("stun", addr, timeout)
        per_address[addr].append(check)

    await asyncio.gather(*(tcp_job(a) for a in addresses), *(stun_job(a) for a in addresses))
    order = {name: i for i, name in enumerate((*TCP_CHECKS, "stun"))}
    for addr in addresses:
        report.checks.extend(sorted(per_address[addr], key=lambda c: order.get(c.name, 99)))
    if len(set(keys)) > 1:
        report.checks.append(
            Check(
                "derp",
                None,
                False,
                f"addresses present different server keys: {sorted(set(keys))}",
                "two different derper instances answer for one hostname; pin one or fix DNS",
            )
        )
    report.server_public_key = keys[0] if keys else None

    if regions_task is not None and derp_map is not None:
        try:
            async with asyncio.timeout_at(deadline):
                report.regions = await regions_task
        except TimeoutError:
            report.regions = []
        report.checks.append(_regions_check(report, derp_map))
    report.duration_ms = (time.perf_counter() - started) * 1000.0
    return report


def _regions_check(report: Report, derp_map: dict[str, Any]) -> Check:
    stun_ms = [c.latency_ms for c in report.checks if c.name == "stun" and c.ok and c.latency_ms]
    report.relay_latency_ms = min(stun_ms) if stun_ms else None
    exclude = regions_of_host(derp_map, report.hostname)
    others = [r for r in report.regions if r.id not in exclude]
    report.nearest = nearest(others)
    report.relay_rank = rank(report.relay_latency_ms, others, exclude)
    answered = sum(r.latency_ms is not None for r in others)
    report.relay_rank_of = answered + 1 if report.relay_rank is not None else None
    data = {"answered": answered, "total": len(others), "rank": report.relay_rank}
    if not answered:
        return Check(
            "regions",
            None,
            False,
            f"none of {len(others)} regions answered STUN",
            "outbound UDP is blocked here, or the DERP map has no reachable STUN nodes",
            data=data,
        )
    near = report.nearest
    assert near is not None and near.latency_ms is not None
    detail = (
        f"{answered}/{len(others)} regions answered; nearest {near.code} {near.latency_ms:.1f}ms"
    )
    if report.relay_rank is not None and report.relay_latency_ms is not None:
        detail += f"; this relay {report.relay_latency_ms:.1f}ms ranks {report.relay_rank}"
    return Check("regions", None, True, detail, None, near.latency_ms, data=data)


def check_relay(target: RelayTarget, **kw: Any) -> Report:
    """Synchronous wrapper (the dynamic provider, the CLI). Inside a running event loop it runs
    on a helper thread, since asyncio.run cannot nest."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(probe_relay(target, **kw))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, probe_relay(target, **kw)).result()
