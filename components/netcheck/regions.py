"""The regions probe: the relay beside every region of a DERP map, measured like netcheck.

``tailscale netcheck`` only shows the map tailscaled already has, so a 9xx region is invisible
until the policy is applied; loading a map here answers "would clients pick my relay?" before
that. The map is read with tailcfg's rules (tailscale.com@v1.102.5/tailcfg/derpmap.go) and
measured the way netcheck measures it (net/netcheck/netcheck.go), each rule cited below.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .addresses import family
from .errors import DerpMapError
from .report import Check, RegionLatency, Report
from .stun import stun_probe

DEFAULT_DERP_MAP_URL = "https://controlplane.tailscale.com/derpmap/default"
DEFAULT_STUN_PORT = 3478  # STUNPort 0 means 3478 (derpmap.go:187-190; netcheck.go:1630-1632)


@dataclass(frozen=True)
class StunNode:
    """Where one node takes STUN: pinned addresses, and the families to resolve HostName for."""

    host_name: str
    stun_port: int
    addresses: tuple[str, ...]  # pinned by IPv4/IPv6 (or STUNTestIP)
    resolve: tuple[int, ...] = ()  # address families (4, 6) whose field was empty: use DNS


@dataclass(frozen=True)
class Region:
    id: int
    code: str
    name: str
    nodes: tuple[StunNode, ...]
    no_measure: bool = False  # NoMeasureNoHome


# --- loading and parsing -------------------------------------------------------------------------


def load_derp_map(source: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """Read a DERP map from an http(s) URL or a JSON file; DerpMapError with a ``kind``."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=timeout) as resp:
                text = resp.read().decode("utf-8", "replace")
        # URLError and HTTPError are OSErrors; a body cut short is http.client's IncompleteRead.
        except (OSError, TimeoutError, http.client.HTTPException) as exc:
            why = exc if str(exc) else type(exc).__name__
            raise DerpMapError(f"cannot load DERP map {source}: {why}", "unreachable") from None
    else:
        try:
            text = Path(source).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise DerpMapError(f"cannot load DERP map {source}: {exc}", "unreadable") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DerpMapError(f"cannot load DERP map {source}: {exc}") from None
    parse_regions(data)  # fail early on a wrong shape
    return data if isinstance(data, dict) else {}


def family_rule(value: Any, version: int) -> tuple[str | None, bool]:
    """One node field ``IPv4`` (version 4) or ``IPv6`` (6) → (pinned IP, resolve by DNS).

    tailcfg/derpmap.go:173-185: empty means "use DNS for HostName"; an address of that family
    is used as is; any other string ("none" by convention, but also a typo or an address of
    the other family) means the family is not used (nodeMight4/6, netcheck.go:560-581;
    nodeAddrPort, netcheck.go:1647-1666).
    """
    if value in (None, ""):
        return None, True
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        return None, False
    return (str(ip), False) if ip.version == version else (None, False)


def parse_node(node: Any) -> StunNode | None:
    """A tailcfg.DERPNode → where to send STUN, or None when it takes no STUN at all."""
    if not isinstance(node, dict):
        raise DerpMapError(f"node {node!r} is not an object")
    raw_port = node.get("STUNPort") or DEFAULT_STUN_PORT
    if not isinstance(raw_port, int) or isinstance(raw_port, bool):
        raise DerpMapError(f"node {node.get('Name')}: STUNPort {raw_port!r} is not a number")
    # -1 disables STUN (derpmap.go:187-190); anything outside a port is unusable (netcheck.go:1627)
    if not 0 < raw_port < 1 << 16:
        return None
    host = str(node.get("HostName") or "")
    test_ip = node.get("STUNTestIP")
    if test_ip:  # tests' override, for its own family only (netcheck.go:1633-1645)
        pinned, _ = family_rule(test_ip, 6 if ":" in str(test_ip) else 4)
        return StunNode(host, raw_port, (pinned,)) if pinned else None
    pins: list[str] = []
    resolve: list[int] = []
    for key, version in (("IPv6", 6), ("IPv4", 4)):
        ip, by_dns = family_rule(node.get(key), version)
        if ip:
            pins.append(ip)
        elif by_dns and host:
            resolve.append(version)
    if not pins and not resolve:
        return None
    return StunNode(host, raw_port, tuple(pins), tuple(resolve))


def parse_regions(derp_map: Any) -> list[Region]:
    """tailcfg.DERPMap JSON (or a policy fragment ``{"derpMap": ...}``) → regions by id."""
    if isinstance(derp_map, dict) and "derpMap" in derp_map:
        derp_map = derp_map["derpMap"]
    if not isinstance(derp_map, dict) or not isinstance(derp_map.get("Regions"), dict):
        raise DerpMapError('a DERP map needs an object "Regions"')
    regions = []
    for key, raw in derp_map["Regions"].items():
        if not isinstance(raw, dict):
            raise DerpMapError(f"region {key} is not an object")
        nodes = [parse_node(n) for n in raw.get("Nodes") or []]
        regions.append(
            Region(
                id=int(raw.get("RegionID", key)),
                code=str(raw.get("RegionCode", key)),
                name=str(raw.get("RegionName", "")),
                nodes=tuple(n for n in nodes if n is not None),
                no_measure=bool(raw.get("NoMeasureNoHome")),
            )
        )
    return sorted(regions, key=lambda r: r.id)


# --- I/O -----------------------------------------------------------------------------------------


async def _resolve(host: str, port: int, versions: tuple[int, ...], timeout: float) -> list[str]:
    """The first address of each wanted family, as nodeAddrPort takes it (netcheck.go:1703-1710)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, TimeoutError):
        return []
    found: dict[int, str] = {}
    for info in infos:
        ip = str(info[4][0])
        found.setdefault(family(ip), ip)
    return [found[v] for v in versions if v in found]


async def probe_region(region: Region, timeout: float) -> RegionLatency:
    """Lowest first-answer STUN RTT over all nodes and addresses of one region."""

    async def probe(address: str, port: int) -> list[tuple[float, str]]:
        res = await stun_probe(address, port, timeout=timeout, first_only=True)
        return [(min(res.rtts_ms), address)] if res.rtts_ms else []

    async def resolved(node: StunNode) -> list[tuple[float, str]]:
        found = await _resolve(node.host_name, node.stun_port, node.resolve, timeout / 2)
        answers = await asyncio.gather(*(probe(a, node.stun_port) for a in found))
        return [x for xs in answers for x in xs]

    # pinned addresses do not wait for the DNS of the node's other family
    jobs = [probe(a, n.stun_port) for n in region.nodes for a in n.addresses]
    jobs += [resolved(n) for n in region.nodes if n.resolve]
    answers = [x for xs in await asyncio.gather(*jobs) for x in xs]
    best = min(answers) if answers else None
    return RegionLatency(
        id=region.id,
        code=region.code,
        name=region.name,
        latency_ms=best[0] if best else None,
        address=best[1] if best else None,
    )


def _not_measured(region: Region) -> RegionLatency:
    return RegionLatency(region.id, region.code, None, region.name, measured=False)


async def probe_regions(derp_map: dict[str, Any], timeout: float = 3.0) -> list[RegionLatency]:
    """All regions concurrently, each bounded by ``timeout`` (stunProbeTimeout, netcheck.go:65).

    ``NoMeasureNoHome`` regions are listed but not probed: netcheck leaves them out of every
    probe plan and of the home choice (netcheck.go:385, 534, 970, 1050).
    """
    regions = parse_regions(derp_map)

    async def measure(region: Region) -> RegionLatency:
        return _not_measured(region) if region.no_measure else await probe_region(region, timeout)

    return list(await asyncio.gather(*(measure(r) for r in regions)))


# --- the verdict ---------------------------------------------------------------------------------


def regions_of_host(derp_map: dict[str, Any], hostname: str) -> set[int]:
    """Region ids that already contain ``hostname`` (the relay itself, excluded from ranking)."""
    return {r.id for r in parse_regions(derp_map) if any(n.host_name == hostname for n in r.nodes)}


def rank(relay_ms: float | None, regions: list[RegionLatency], exclude: set[int]) -> int | None:
    """1 + number of other measured regions strictly faster than the relay."""
    if relay_ms is None:
        return None
    return 1 + sum(
        1
        for r in regions
        if r.id not in exclude
        and r.measured
        and r.latency_ms is not None
        and r.latency_ms < relay_ms
    )


def nearest(regions: list[RegionLatency]) -> RegionLatency | None:
    answered = [r for r in regions if r.measured and r.latency_ms is not None]
    return min(answered, key=lambda r: (r.latency_ms or 0.0, r.id)) if answered else None


def regions_verdict(report: Report, derp_map: dict[str, Any]) -> Check:
    """Rank the relay (its best STUN latency) among the other measured regions; sets the
    report's nearest/rank fields and returns the regions check."""
    stun_ms = [c.latency_ms for c in report.checks if c.name == "stun" and c.ok and c.latency_ms]
    report.relay_latency_ms = min(stun_ms) if stun_ms else None
    exclude = regions_of_host(derp_map, report.hostname)
    others = [r for r in report.regions if r.id not in exclude and r.measured]
    skipped = sorted(r.id for r in report.regions if not r.measured)
    report.nearest = nearest(others)
    report.relay_rank = rank(report.relay_latency_ms, others, exclude)
    answered = sum(r.latency_ms is not None for r in others)
    report.relay_rank_of = answered + 1 if report.relay_rank is not None else None
    data = {
        "answered": answered,
        "total": len(others),
        "rank": report.relay_rank,
        "not_measured": skipped,
        "this_relay": sorted(exclude),
    }
    unmeasured = f" ({len(skipped)} NoMeasureNoHome not measured)" if skipped else ""
    if not answered:
        return Check(
            "regions",
            None,
            False,
            f"none of {len(others)} regions answered STUN{unmeasured}",
            "outbound UDP is blocked here, or the DERP map has no reachable STUN nodes",
            data=data,
        )
    near = report.nearest
    assert near is not None and near.latency_ms is not None  # answered > 0
    detail = (
        f"{answered}/{len(others)} regions answered{unmeasured}; "
        f"nearest {near.code} {near.latency_ms:.1f}ms"
    )
    if report.relay_rank is not None and report.relay_latency_ms is not None:
        detail += f"; this relay {report.relay_latency_ms:.1f}ms ranks {report.relay_rank}"
    return Check("regions", None, True, detail, None, near.latency_ms, data=data)
