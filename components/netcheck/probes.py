"""The generic runner: every probe against a relay, concurrently, within netcheck's budgets.

Like tailscale's prober/prober.go beside its probe files, this module only decides what runs
when, on which connection and within which deadline; each probe kind and its verdict live in
their own module (dns, tls, https, derp, stun, regions).

DNS first (it decides the addresses) unless the target pins them; then per address one task for
the TCP side (tls → https, and derp → verify_clients on a second connection) and one for STUN.
Budgets are netcheck's: the whole report 5 s (ReportTimeout,
tailscale.com@v1.102.5/net/netcheck/netcheck.go:60), the STUN phase 3 s (stunProbeTimeout,
netcheck.go:65). Every await is bounded by the report deadline, so a black-holed relay yields
timeouts, never a hang; a check that could not run because the one it builds on failed is
reported as skipped, never left out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import time
from dataclasses import replace
from typing import Any

from .derp import EvidenceSource, probe_derp
from .dns import check_dns
from .errors import TlsFailure
from .http1 import KeepAlive
from .https import check_https
from .regions import probe_regions, regions_verdict
from .report import Check, RelayTarget, Report
from .stun import check_stun
from .tls import TlsSession, tls_connect, tls_failure, tls_verdict

TCP_CHECKS = ("tls", "https", "derp", "verify_clients")
ORDER = {name: i for i, name in enumerate((*TCP_CHECKS, "stun"))}


def _remaining(deadline: float) -> float:
    return max(0.05, deadline - asyncio.get_running_loop().time())


def _budget_exceeded(name: str, address: str, timeout: float) -> Check:
    return Check(
        name,
        address,
        False,
        f"no result within the {timeout:.1f}s report budget",
        "the relay accepts connections but stalls: check derper's log and the path (MTU?)",
    )


def _after_tls(address: str, reason: str) -> list[Check]:
    return [Check.skip(name, address, "tls", reason) for name in TCP_CHECKS[1:]]


async def tcp_checks(
    target: RelayTarget,
    address: str,
    deadline: float,
    out: list[Check],
    evidence: EvidenceSource | None = None,
    pending: dict[str, str] | None = None,
) -> None:
    """tls, then https and derp+verify_clients in parallel on their own connections; checks are
    appended to ``out`` as they finish (the caller's deadline may cut the rest; ``pending``: see
    derp.probe_derp)."""
    port, host = target.derp_port, target.hostname
    host_header = host if port == 443 else f"{host}:{port}"

    async def connect() -> TlsSession:
        return await tls_connect(address, port, host, target.ca_file, _remaining(deadline))

    try:
        session = await connect()
    except TlsFailure as exc:
        out += [tls_failure(address, exc), *_after_tls(address, "TLS failed")]
        return
    out.append(tls_verdict(address, session))

    async def https_part() -> None:
        conn = KeepAlive(session, connect)
        try:
            out.append(await check_https(conn, address, host_header))
        finally:
            conn.close()

    async def derp_part() -> None:
        try:
            second = await connect()
        except TlsFailure as exc:
            out.append(
                Check(
                    "derp", address, False, f"second TLS connection failed: {exc.detail}", exc.hint
                )
            )
            out.append(Check.skip("verify_clients", address, "derp", "DERP failed"))
            return
        conn = KeepAlive(second, connect)
        try:
            await probe_derp(
                conn, address, host_header, target.expect_verify_clients, out, evidence, pending
            )
        finally:
            conn.close()

    await asyncio.gather(https_part(), derp_part())


def _cut_short(out: list[Check], address: str, timeout: float, pending: dict[str, str]) -> None:
    """The report deadline hit the TCP side: say so for every check that has no result (an
    admission cut short keeps the client key it offered, for derper's log)."""
    done = {c.name for c in out}
    if "tls" not in done:
        out.append(_budget_exceeded("tls", address, timeout))
        out += _after_tls(address, "TLS did not finish")
        return
    for name in TCP_CHECKS:
        if name not in done:
            check = _budget_exceeded(name, address, timeout)
            if name == "verify_clients" and pending:
                check = replace(check, data=dict(pending))
            out.append(check)


def _server_keys(checks: list[Check]) -> list[str]:
    return [
        str(c.data["server_public_key"])
        for c in checks
        if c.name == "derp" and c.data.get("server_public_key")
    ]


async def probe_relay(
    target: RelayTarget,
    *,
    timeout: float = 5.0,
    stun_timeout: float = 3.0,
    derp_map: dict[str, Any] | None = None,
    evidence_source: EvidenceSource | None = None,
) -> Report:
    """Every check of the report against ``target``; never takes longer than ``timeout`` (+ε).

    ``evidence_source`` is the seam for reading derper's own verdict on the probe's random
    client key (derp.py, module doc); it runs within the report deadline.
    """
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
        dns_check, found = await _dns(target, deadline)
        report.checks.append(dns_check)
        if not addresses:
            addresses = found

    per_address: dict[str, list[Check]] = {a: [] for a in addresses}
    # Checks give up a little before the report deadline so their own diagnosis wins the race.
    inner = deadline - min(0.25, timeout / 10)

    async def tcp_job(addr: str) -> None:
        out = per_address[addr]
        pending: dict[str, str] = {}
        try:
            async with asyncio.timeout_at(deadline):
                await tcp_checks(target, addr, inner, out, evidence_source, pending)
        except TimeoutError:
            _cut_short(out, addr, timeout, pending)

    async def stun_job(addr: str) -> None:
        # Shrink the STUN wait to the report budget, so a silent port gets STUN's own diagnosis
        # (UDP blocked) rather than a generic "stalled" when --timeout < --stun-timeout.
        budget = max(0.0, min(stun_timeout, inner - loop.time()))
        try:
            async with asyncio.timeout_at(deadline):
                check = await check_stun(addr, target.stun_port, budget, deadline=inner)
        except TimeoutError:
            check = _budget_exceeded("stun", addr, timeout)
        per_address[addr].append(check)

    await asyncio.gather(*(tcp_job(a) for a in addresses), *(stun_job(a) for a in addresses))
    for addr in addresses:
        report.checks.extend(sorted(per_address[addr], key=lambda c: ORDER.get(c.name, 99)))
    keys = _server_keys(report.checks)
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
        report.checks.append(regions_verdict(report, derp_map))
    report.duration_ms = (time.perf_counter() - started) * 1000.0
    return report


async def _dns(target: RelayTarget, deadline: float) -> tuple[Check, list[str]]:
    try:
        async with asyncio.timeout_at(deadline):
            return await check_dns(target, _remaining(deadline))
    except TimeoutError:
        return Check(
            "dns",
            None,
            False,
            "DNS lookup hit the report timeout",
            "the resolver does not answer: check --resolver / the network",
        ), []


def check_relay(target: RelayTarget, **kw: Any) -> Report:
    """Synchronous wrapper (the dynamic provider, the CLI). Inside a running event loop it runs
    on a helper thread, since asyncio.run cannot nest."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(probe_relay(target, **kw))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, probe_relay(target, **kw)).result()
