"""Compare the relay with the regions of a DERP map, measured like ``tailscale netcheck``.

``tailscale netcheck`` only shows the map tailscaled already has, so a 9xx region is invisible
until the policy is applied (reference/derp.md §5); loading a map here answers "would clients
pick my relay?" before that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import RegionLatency
from .stun import stun_probe

DEFAULT_DERP_MAP_URL = "https://controlplane.tailscale.com/derpmap/default"
DEFAULT_STUN_PORT = 3478


class DerpMapError(ValueError):
    """A DERP map that cannot be read or does not have the tailcfg.DERPMap shape."""


@dataclass(frozen=True)
class StunNode:
    host_name: str
    addresses: tuple[str, ...]  # empty: resolve host_name
    stun_port: int


@dataclass(frozen=True)
class Region:
    id: int
    code: str
    name: str
    nodes: tuple[StunNode, ...]


def load_derp_map(source: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """Read a DERP map from an http(s) URL or a JSON file."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=timeout) as resp:
                text = resp.read().decode()
        else:
            text = Path(source).read_text()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise DerpMapError(f"cannot load DERP map {source}: {exc}") from None
    parse_regions(data)  # fail early on a wrong shape
    return data if isinstance(data, dict) else {}


def _node_addresses(node: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for key in ("IPv6", "IPv4"):
        value = node.get(key)
        if value and value != "none":
            try:
                out.append(str(ipaddress.ip_address(value)))
            except ValueError:
                raise DerpMapError(f"node {node.get('Name')}: {key} {value!r} is no IP") from None
    return tuple(out)


def parse_regions(derp_map: Any) -> list[Region]:
    """tailcfg.DERPMap JSON (or a policy fragment ``{"derpMap": ...}``) → regions to probe.

    STUNPort 0 means 3478 and -1 disables STUN (tailcfg/derpmap.go); nodes without any usable
    STUN endpoint are dropped.
    """
    if isinstance(derp_map, dict) and "derpMap" in derp_map:
        derp_map = derp_map["derpMap"]
    if not isinstance(derp_map, dict) or not isinstance(derp_map.get("Regions"), dict):
        raise DerpMapError('a DERP map needs an object "Regions"')
    regions = []
    for key, raw in derp_map["Regions"].items():
        if not isinstance(raw, dict):
            raise DerpMapError(f"region {key} is not an object")
        nodes = []
        for node in raw.get("Nodes") or []:
            port = int(node.get("STUNPort") or DEFAULT_STUN_PORT)
            if port < 0:
                continue
            addrs = _node_addresses(node)
            if not addrs and node.get("IPv4") == "none" and not node.get("HostName"):
                continue
            nodes.append(StunNode(str(node.get("HostName", "")), addrs, port))
        regions.append(
            Region(
                id=int(raw.get("RegionID", key)),
                code=str(raw.get("RegionCode", key)),
                name=str(raw.get("RegionName", "")),
                nodes=tuple(nodes),
            )
        )
    return sorted(regions, key=lambda r: r.id)


async def _resolve(host: str, port: int, timeout: float) -> tuple[str, ...]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, TimeoutError):
        return ()
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


async def probe_region(region: Region, timeout: float) -> RegionLatency:
    """Lowest first-answer STUN RTT over all nodes and addresses of one region."""

    async def one(node: StunNode) -> list[tuple[float, str]]:
        addrs = node.addresses or await _resolve(node.host_name, node.stun_port, timeout / 2)
        results = await asyncio.gather(
            *(stun_probe(a, node.stun_port, timeout=timeout, first_only=True) for a in addrs)
        )
        return [(min(r.rtts_ms), a) for r, a in zip(results, addrs, strict=True) if r.rtts_ms]

    answers = [x for xs in await asyncio.gather(*(one(n) for n in region.nodes)) for x in xs]
    best = min(answers) if answers else None
    return RegionLatency(
        id=region.id,
        code=region.code,
        name=region.name,
        latency_ms=best[0] if best else None,
        address=best[1] if best else None,
    )


async def probe_regions(derp_map: dict[str, Any], timeout: float = 3.0) -> list[RegionLatency]:
    """All regions concurrently, each bounded by ``timeout`` (netcheck's STUN phase, §5)."""
    regions = parse_regions(derp_map)
    return list(await asyncio.gather(*(probe_region(r, timeout) for r in regions)))


def regions_of_host(derp_map: dict[str, Any], hostname: str) -> set[int]:
    """Region ids that already contain ``hostname`` (the relay itself, excluded from ranking)."""
    return {r.id for r in parse_regions(derp_map) if any(n.host_name == hostname for n in r.nodes)}


def rank(relay_ms: float | None, regions: list[RegionLatency], exclude: set[int]) -> int | None:
    """1 + number of other regions strictly faster than the relay."""
    if relay_ms is None:
        return None
    return 1 + sum(
        1
        for r in regions
        if r.id not in exclude and r.latency_ms is not None and r.latency_ms < relay_ms
    )


def nearest(regions: list[RegionLatency]) -> RegionLatency | None:
    answered = [r for r in regions if r.latency_ms is not None]
    return min(answered, key=lambda r: (r.latency_ms or 0.0, r.id)) if answered else None
