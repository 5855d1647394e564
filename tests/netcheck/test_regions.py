"""Regions: a DERP map of local STUN responders at known distances (delay relay), probed
concurrently; latency table, nearest region and the relay's rank. Never contacts Tailscale."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from components.netcheck import DEFAULT_DERP_MAP_URL, check_relay, load_derp_map
from components.netcheck.__main__ import build_parser, main
from components.netcheck.regions import DerpMapError, parse_regions
from tests.peers.aio import BackgroundLoop
from tests.peers.delay import delay_relay
from tests.peers.relay import LocalRelay
from tests.peers.stun_server import stun_server


def _node(name: str, region: int, port: int, **extra: object) -> dict[str, object]:
    return {
        "Name": name,
        "RegionID": region,
        "HostName": f"{name}.test",
        "IPv4": "127.0.0.1",
        "STUNPort": port,
        **extra,
    }


@pytest.fixture
def derp_map(bg: BackgroundLoop, relay: LocalRelay) -> Iterator[dict[str, object]]:
    """Regions 1 (10 ms), 2 (30 ms), 3 (silent) and 900 (the relay itself)."""
    with ExitStack() as stack:
        regions: dict[str, object] = {}
        for rid, rtt in ((1, 10.0), (2, 30.0)):
            server = stack.enter_context(stun_server())
            delayed = stack.enter_context(delay_relay(rtt, bg))
            port = delayed.add_udp("127.0.0.1", ("127.0.0.1", server.port))
            regions[str(rid)] = {
                "RegionID": rid,
                "RegionCode": f"r{rid}",
                "RegionName": f"R{rid}",
                "Nodes": [_node(f"{rid}a", rid, port)],
            }
        silent = stack.enter_context(stun_server(silent=True))
        regions["3"] = {"RegionID": 3, "RegionCode": "r3", "Nodes": [_node("3a", 3, silent.port)]}
        regions["900"] = {
            "RegionID": 900,
            "RegionCode": "home",
            "Nodes": [
                {
                    "Name": "900a",
                    "RegionID": 900,
                    "HostName": relay.hostname,
                    "IPv4": "127.0.0.1",
                    "STUNPort": relay.stun_port,
                }
            ],
        }
        yield {"Regions": regions}


# Every region is measured concurrently, the nearest found and the relay ranked first.
def test_regions_table_nearest_and_rank(relay: LocalRelay, derp_map: dict[str, object]) -> None:
    start = time.perf_counter()
    report = check_relay(relay.target(), timeout=3, stun_timeout=1.0, derp_map=derp_map)
    elapsed = time.perf_counter() - start
    by_id = {r.id: r for r in report.regions}
    assert 10 <= (by_id[1].latency_ms or 0) < 20
    assert 30 <= (by_id[2].latency_ms or 0) < 40
    assert by_id[3].latency_ms is None
    assert report.nearest is not None and report.nearest.id == 1
    assert report.relay_rank == 1  # loopback beats 10 ms; region 900 (itself) is not counted
    check = report.check("regions")
    assert check.ok and "2/3 regions answered" in check.detail and "ranks 1" in check.detail
    assert elapsed < 1.5  # the silent region costs one STUN timeout, not one per region
    text = report.format_text()
    assert "Nearest DERP: r1 (1)" in text and "rank 1 of 3" in text


# No region answering fails the regions check with a network hint.
def test_no_region_answers(relay: LocalRelay) -> None:
    with stun_server(silent=True) as silent:
        dmap = {
            "Regions": {
                "5": {"RegionID": 5, "RegionCode": "x", "Nodes": [_node("5a", 5, silent.port)]}
            }
        }
        report = check_relay(relay.target(), timeout=2, stun_timeout=0.4, derp_map=dmap)
    check = report.check("regions")
    assert not check.ok and "UDP" in (check.hint or "") and report.nearest is None


# The CLI loads a map file and prints regions in the promised JSON shape.
def test_cli_derp_map_file(
    relay: LocalRelay,
    derp_map: dict[str, object],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"derpMap": derp_map}))  # a policy fragment works too
    code = main([*relay.cli_args(), "--derp-map", str(path), "--json", "--stun-timeout", "1"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["id"] for r in doc["regions"]] == [1, 2, 3, 900]
    assert {"id", "code", "latency_ms"} <= set(doc["regions"][0])
    assert doc["nearest"]["id"] == 1 and isinstance(doc["nearest"]["latency_ms"], float)


# tailcfg rules: STUNPort 0 = 3478, -1 = no STUN, IPv4 "none" skipped, IPv6 kept.
def test_parse_regions_rules() -> None:
    regions = parse_regions(
        {
            "Regions": {
                "7": {
                    "RegionID": 7,
                    "RegionCode": "a",
                    "Nodes": [
                        {
                            "Name": "7a",
                            "HostName": "a.test",
                            "IPv4": "none",
                            "IPv6": "2001:db8::1",
                            "STUNPort": 0,
                        },
                        {"Name": "7b", "HostName": "b.test", "STUNPort": -1},
                    ],
                },
            }
        }
    )
    (region,) = regions
    assert [(n.addresses, n.stun_port) for n in region.nodes] == [(("2001:db8::1",), 3478)]


# Broken maps are refused with a message; --compare-default names Tailscale's URL (not fetched).
def test_bad_maps_and_default_url(tmp_path: Path) -> None:
    for text in ("[]", "{}", '{"Regions": {"1": 5}}', "not json"):
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(DerpMapError):
            load_derp_map(str(path))
    args = build_parser().parse_args(["derp.test", "--compare-default"])
    assert args.compare_default and DEFAULT_DERP_MAP_URL.startswith("https://controlplane.")
