"""RelayUsage: derper's own counters and the latency comparison, with a bounded history.

The rules are pure (rolling the history, who counts as a client, when a relay is not pulling its
weight); the provider runs in the real ``python -m pulumi.dynamic`` process against a real derper
(tests/tools/install) on loopback, read over ``unix://`` (this machine's loopback), and a DERP map
of local STUN regions behind the delay relay (tests/peers/delay.py). The tailnet's real clients
moving the counters, and ``ssh -W`` to a relay host, are in tests/real_tailnet/test_usage_real.py.
"""

from __future__ import annotations

import base64
import json
import shlex
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from components.host import HostChannel
from components.netcheck.usage import VarzError, parse_source, parse_varz, read_from
from components.settings import parse_settings
from components.usage import (
    ENTRY_KEYS,
    INPUT_KEYS,
    TYPE_TOKEN,
    RelayUsage,
    RelayUsageArgs,
    clients_homed,
    read_counters,
    roll,
    run_usage,
    stack_output,
    weight_warning,
)
from tests.mocks import dynamic_inputs, register
from tests.peers.certs import make_pki
from tests.peers.delay import delay_relay
from tests.peers.derper import Derper, start_derper
from tests.peers.ports import free_port
from tests.peers.sshd import Sshd
from tests.peers.stun_server import stun_server
from tests.provider_host import UNKNOWN, ProviderHost, urn_for

HOSTNAME = "derp.test"
URN = urn_for(TYPE_TOKEN, "relay-900-usage")


def entry(n: int, **fields: Any) -> dict[str, Any]:
    base = dict.fromkeys(ENTRY_KEYS)
    base.update(at=f"2026-12-{1 + n // 4:02d}T{(n % 4) * 6:02d}:41:00+00:00", healthy=True)
    base.update(fields)
    return base


# --- pure rules ------------------------------------------------------------------------------


# The history keeps the newest `bound` runs, oldest first: the 61st run pushes out the first.
def test_history_rolls_over_at_its_bound() -> None:
    history: list[dict[str, Any]] = []
    for n in range(61):
        history = roll(history, entry(n, homed=n), 60)
    assert len(history) == 60
    assert [e["homed"] for e in history] == list(range(1, 61))
    assert roll(history, entry(61), 0) == []  # usageHistory 0 keeps nothing
    assert len(roll(history, entry(61), 5)) == 5  # a lowered bound trims at once


# A hand-edited state's foreign entries are dropped rather than carried forever.
def test_history_drops_entries_of_another_shape() -> None:
    assert roll(["x", {"no": "at"}, entry(0)], entry(1), 60) == [entry(0), entry(1)]


# The relay host's own tailscaled, homed on its own relay, is not a client using it.
@pytest.mark.parametrize(
    ("homed", "host", "clients"), [(3, True, 2), (1, True, 0), (2, False, 2), (None, True, None)]
)
def test_clients_homed_leaves_out_the_relay_host(
    homed: int | None, host: bool, clients: int | None
) -> None:
    assert clients_homed(entry(0, homed=homed, hostHomed=host)) == clients


def idle(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [entry(i, homed=1, hostHomed=True, **fields) for i in range(n)]


# Published and healthy, nobody but the host homed in the last N runs: called out, with what to
# check; N-1 such runs, or one run with a client among them, is not enough.
def test_idle_relay_is_called_out_after_n_runs() -> None:
    text = weight_warning(idle(8), published=True, drained=False, idle_runs=8, region_code="home")
    assert text is not None and "no client has been homed on region home in the last 8 runs" in text
    assert "tailscale netcheck" in text and "coverage" in text
    assert (
        weight_warning(idle(7), published=True, drained=False, idle_runs=8, region_code="h") is None
    )
    busy = [*idle(4), entry(4, homed=2, hostHomed=True), *idle(3)]
    assert weight_warning(busy, published=True, drained=False, idle_runs=8, region_code="h") is None
    assert (
        weight_warning(idle(20), published=True, drained=False, idle_runs=0, region_code="h")
        is None
    )


# Runs whose counters could not be read are not evidence of idleness.
def test_unread_runs_are_not_idle_runs() -> None:
    history = [*idle(7), entry(7, homed=None)]
    assert (
        weight_warning(history, published=True, drained=False, idle_runs=8, region_code="h") is None
    )


# Only a published, healthy, undrained relay is judged: a drained or failing one is the gate's.
@pytest.mark.parametrize(
    ("published", "drained", "healthy"),
    [(False, False, True), (True, True, True), (True, False, False)],
)
def test_only_a_published_healthy_relay_is_judged(
    published: bool, drained: bool, healthy: bool
) -> None:
    history = idle(8, healthy=healthy)
    assert (
        weight_warning(history, published=published, drained=drained, idle_runs=8, region_code="h")
        is None
    )


# A Tailscale region nearer than ours from the measuring machine is called out with both numbers.
def test_a_nearer_default_region_is_called_out() -> None:
    last = entry(0, homed=3, latencyMs=52.0, defaultMs=31.5, defaultRegion="fra")
    text = weight_warning([last], published=True, drained=False, idle_runs=8, region_code="home")
    assert text is not None and "region fra answered in 31.5 ms, ours in 52.0 ms" in text
    ours_first = entry(0, homed=3, latencyMs=20.0, defaultMs=31.5, defaultRegion="fra")
    assert (
        weight_warning([ours_first], published=True, drained=False, idle_runs=8, region_code="h")
        is None
    )


# --- derper's counters, parsed from the real derper's page ----------------------------------------


@pytest.fixture(scope="module")
def derper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Derper]:
    """A real derper (tests/tools/install) on loopback, manual certificate for derp.test."""
    workdir = tmp_path_factory.mktemp("usage-derper")
    pki = make_pki(workdir / "pki", HOSTNAME)
    files = pki.files("good")
    d = start_derper(
        workdir / "derper",
        hostname=HOSTNAME,
        cert_file=files.cert_file,
        key_file=files.key_file,
        derp_port=free_port(("127.0.0.1",), socket.SOCK_STREAM),
        stun_port=free_port(("127.0.0.1",), socket.SOCK_DGRAM),
        listen_ip="127.0.0.1",
    )
    try:
        yield d
    finally:
        d.stop()


# The real derper's /debug/varz, read over this machine's loopback with its hostname as SNI,
# parses into its counters: nobody connected, its release, its uptime.
def test_real_derper_counters_over_loopback(derper: Derper) -> None:
    reading = read_from(parse_source("local"), HOSTNAME, derper.derp_port, timeout=10)
    assert reading.error is None and reading.usage is not None, reading
    usage = reading.usage
    assert (usage.connected, usage.homed, usage.packets_sent, usage.packets_dropped) == (0, 0, 0, 0)
    assert usage.version == "1.102.5"
    assert usage.uptime_seconds is not None and usage.uptime_seconds >= 0
    assert set(usage.dropped_by_reason) >= {"unknown_dest", "queue_tail", "write_error"}


# A page that is Prometheus text but not derper's, and one that is not Prometheus text at all,
# are named as such (never read as zero clients).
def test_foreign_pages_are_refused() -> None:
    with pytest.raises(VarzError, match="not derper's metrics page"):
        parse_varz("# TYPE up gauge\nup 1\n")
    with pytest.raises(VarzError, match="not Prometheus text"):
        parse_varz("<html><h1>DERP</h1>\n")


# --- the provider, in the real provider process ------------------------------------------------


@pytest.fixture(scope="module")
def compare_map(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DERP map file: region 1 "near" (15 ms), 2 "far" (60 ms), and 900 (the relay itself,
    which is never compared with itself)."""
    path = tmp_path_factory.mktemp("usage-map") / "derpmap.json"
    with ExitStack() as stack:
        regions: dict[str, Any] = {}
        for rid, code, rtt in ((1, "near", 15.0), (2, "far", 60.0), (900, "home", 1.0)):
            server = stack.enter_context(stun_server())
            front = stack.enter_context(delay_relay(rtt)).add_udp(
                "127.0.0.1", ("127.0.0.1", server.port)
            )
            host = HOSTNAME if rid == 900 else f"{code}.test"
            node = {"Name": f"{rid}a", "RegionID": rid, "HostName": host, "IPv4": "127.0.0.1",
                    "IPv6": "none", "STUNPort": front}  # fmt: skip
            regions[str(rid)] = {"RegionID": rid, "RegionCode": code, "Nodes": [node]}
        path.write_text(json.dumps({"Regions": regions}))
        yield path


def program_inputs(derper: Derper, compare: Path | None, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "hostname": HOSTNAME,
        "derp_port": derper.derp_port,
        "docker_host": "unix:///var/run/docker.sock",
        "region_code": "home",
        "trigger": "checked=2026-12-06T04:41:00+00:00;nonce=",
        "healthy": True,
        "latency_ms": 21.04,
        "certificate_days_left": 80,
        "published": True,
        "drained": False,
        "host_homed_here": True,
        "history_size": 2,
        "idle_runs": 2,
        "compare_map": str(compare) if compare else None,
    }
    fields.update(overrides)
    return dynamic_inputs(lambda: RelayUsage("relay-900-usage", RelayUsageArgs(**fields)))


@pytest.fixture
def host() -> Iterator[ProviderHost]:
    with ProviderHost(timeout=60) as h:
        h.configure({})
        yield h


# The program registers the typed token and a provider pickled by reference (a state path).
def test_registration_carries_provider_by_reference(derper: Derper) -> None:
    args = RelayUsageArgs(
        hostname=HOSTNAME, derp_port=derper.derp_port, docker_host="unix:///x", region_code="home",
        trigger="t", healthy=True, latency_ms=1.0, certificate_days_left=80, published=True,
        drained=False,
    )  # fmt: skip
    [reg] = register(lambda: RelayUsage("u", args))
    assert reg.typ == TYPE_TOKEN
    pickled = base64.b64decode(reg.inputs["__provider"])
    # its stable name (components/dynamic_provider.py), not its module path
    assert b"RelayUsage" in pickled and b"components.usage" not in pickled
    assert b"co_code" not in pickled and len(pickled) < 500
    assert set(reg.inputs) - {"__provider"} <= set(INPUT_KEYS)
    assert reg.inputs["history_size"] == 60 and reg.inputs["idle_runs"] == 8


# Create reads the real derper and measures the map from here; each update appends one run to the
# history it got back as `olds`, and the history never grows past its bound (2 here).
def test_history_is_carried_and_bounded_through_the_engine(
    host: ProviderHost, derper: Derper, compare_map: Path
) -> None:
    inputs = program_inputs(derper, compare_map)
    created = host.create(URN, host.check(URN, {}, inputs).inputs)
    outs = created.outputs
    assert outs.get("read_error") is None and outs["current"]["version"] == "1.102.5"
    assert outs["read_via"] == "loopback on this machine"
    assert outs["nearest_default"]["code"] == "near"  # 900 is the relay itself: not compared
    assert 15.0 <= outs["nearest_default"]["latencyMs"] < 60.0
    assert [e["latencyMs"] for e in outs["history"]] == [21.0]
    assert created.secret_keys == frozenset()
    olds = outs
    for n in range(3):
        news = program_inputs(derper, compare_map, trigger=f"run {n}", latency_ms=30.0 + n)
        assert host.diff(created.id, olds, news).changes == "some"
        olds = host.update(created.id, olds, news).outputs
    assert [e["latencyMs"] for e in olds["history"]] == [31.0, 32.0]
    assert [e["homed"] for e in olds["history"]] == [0, 0]
    assert all(e["hostHomed"] is True and e["certDays"] == 80 for e in olds["history"])
    # Two runs with nobody homed (the host counted out): the idle relay is called out.
    assert olds["warning"] and "in the last 2 runs" in olds["warning"]
    assert "not pulling its weight" in host.stderr_text()
    usage = stack_output(olds)
    assert usage["clients"] == {"connected": 0, "homed": 0, "relayHostHomedHere": True}
    assert usage["derper"]["version"] == "1.102.5" and len(usage["history"]) == 2


# Preview is pure: unchanged inputs are no change, an unknown trigger is one, and a refresh
# keeps the history instead of reading anything.
def test_diff_and_read_are_pure(host: ProviderHost, derper: Derper) -> None:
    inputs = program_inputs(derper, None)
    outs = host.create(URN, host.check(URN, {}, inputs).inputs).outputs
    assert host.diff("id", outs, inputs).changes == "none"
    assert host.diff("id", outs, {**inputs, "trigger": UNKNOWN}).changes == "some"
    # The host's own home, read at every evaluation (None where a preview cannot reach the
    # host), never makes a run by itself: no spurious update in pull-request previews.
    assert host.diff("id", outs, {**inputs, "host_homed_here": None}).changes == "none"
    read = host.read("id", outs)

    def known(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if v is not None} for e in history]

    assert known(read.outputs["history"]) == known(outs["history"])  # the wire drops nulls
    assert outs["compare_error"] == "no DERP map to compare with"


# What cannot be read is said, never raised: a derper that is not there, a bare Docker API, a
# DERP map that cannot be fetched; the run is still recorded in the history.
def test_what_cannot_be_read_is_reported(host: ProviderHost, derper: Derper) -> None:
    closed = free_port(("127.0.0.1",), socket.SOCK_STREAM)
    unreachable = f"http://127.0.0.1:{free_port(('127.0.0.1',), socket.SOCK_STREAM)}/derpmap"
    inputs = program_inputs(derper, None, derp_port=closed, compare_map=unreachable)
    outs = host.create(URN, host.check(URN, {}, inputs).inputs).outputs
    assert f"nothing answers on port {closed}" in outs["read_error"]
    assert outs["compare_error"].startswith("the comparison was skipped: cannot load DERP map")
    assert outs.get("current") is None and outs["history"][0].get("connected") is None
    assert outs["history"][0]["healthy"] is True
    tcp = program_inputs(derper, None, docker_host="tcp://127.0.0.1:2375")
    outs = host.create(URN, host.check(URN, {}, tcp).inputs).outputs
    assert "bare Docker API" in outs["read_error"]


# Over ssh:// the counters come through OpenSSH's `ssh -W 127.0.0.1:<derpPort>` (a real sshd):
# batch mode, our options first, derper's own numbers; a host that refuses the key is named in
# ssh's own words instead of an empty reading.
def test_counters_over_ssh_stdio_forwarding(
    derper: Derper, sshd_factory: Callable[..., Sshd], monkeypatch: pytest.MonkeyPatch
) -> None:
    sshd = sshd_factory()
    argv = HostChannel(sshd.docker_host).loopback_forward(derper.derp_port)
    assert argv is not None and argv[:3] == ["ssh", "-o", "BatchMode=yes"]
    assert argv[-4:] == ["-W", f"127.0.0.1:{derper.derp_port}", "--", "127.0.0.1"]
    props = {"docker_host": sshd.docker_host, "derp_port": derper.derp_port, "hostname": HOSTNAME}
    monkeypatch.setenv("HOME_DERP_SSH_OPTS", shlex.join(sshd.client_options))
    reading = read_counters(props)
    assert reading.error is None and reading.usage is not None, reading
    assert reading.usage.version == "1.102.5"
    assert reading.via.startswith(f"ssh -W 127.0.0.1:{derper.derp_port} to the Docker host")
    keyless = [o for o in sshd.client_options if o not in ("-i", str(sshd.key))]
    monkeypatch.setenv("HOME_DERP_SSH_OPTS", shlex.join(keyless))
    refused = read_counters(props)
    assert refused.usage is None and "Permission denied" in (refused.error or ""), refused


# A bug in reading or comparing becomes the run's error text, recorded like any other: the gate
# after this resource must still judge the relay.
def test_unexpected_failures_are_recorded_not_raised() -> None:
    def broken(_props: Any) -> Any:
        raise RuntimeError("boom")

    outs = run_usage({"history_size": 5, "idle_runs": 0}, {}, read=broken, compare=broken)
    assert outs["read_error"] == "reading failed unexpectedly: RuntimeError('boom')"
    assert outs["compare_error"] == "the comparison failed unexpectedly: RuntimeError('boom')"
    assert len(outs["history"]) == 1 and outs["current"] is None


# The usage keys: a bound and an idle count in range, the idle count within the bound, and a
# compare map that is tailscale (Tailscale's own map), off, a URL or an existing file; every
# mistake is named by its key with what would be valid, before any resource.
@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"usageHistory": "501"}, "usageHistory = '501': must be 0-500 runs"),
        ({"usageIdleRuns": "-1"}, "usageIdleRuns = '-1': must be 0-500 runs"),
        ({"usageHistory": "5", "usageIdleRuns": "6"}, "must be at most usageHistory (5)"),
        ({"usageCompareMap": "tailscal"}, "must be tailscale, off, an http(s):// URL or a JSON"),
    ],
)
def test_usage_keys_are_checked(config: dict[str, str], problem: str) -> None:
    base = {"hostname": "derp.example.com", "ipv6": "2001:db8::1", "zone": "example.com"}
    verdict = parse_settings({**base, **config})
    texts = [str(p) for p in verdict.problems if "usage" in str(p)]
    assert len(texts) == 1 and problem in texts[0], texts


# What each compare-map value means for the program.
def test_usage_compare_map_values(tmp_path: Path) -> None:
    from components.netcheck.regions import DEFAULT_DERP_MAP_URL

    base = {"hostname": "derp.example.com", "ipv6": "2001:db8::1", "zone": "example.com"}
    mapfile = tmp_path / "map.json"
    mapfile.write_text("{}")
    for value, meant in (
        (None, DEFAULT_DERP_MAP_URL),
        ("tailscale", DEFAULT_DERP_MAP_URL),
        ("off", None),
        ("https://derp.example.org/map", "https://derp.example.org/map"),
        (str(mapfile), str(mapfile)),
    ):
        raw = {**base, **({"usageCompareMap": value} if value else {})}
        assert parse_settings(raw).settings.usage.compare_map == meant, value
