"""RelayUsage: is anyone using the relay, and is it still the nearest region? Carried run to run.

A Pulumi dynamic resource that, on every `up` that probes the relay and every health run
(docs/guide/usage.md):

* reads derper's own counters (``/debug/varz``: clients connected and homed now, bytes and
  packets relayed and dropped since derper started, its uptime and version) over the relay host's
  channel — this machine's loopback for ``unix://``, ``ssh -W 127.0.0.1:<derpPort>`` for
  ``ssh://`` (``components/host.py``), since derper serves ``/debug/`` to loopback and Tailscale
  addresses only (docs/upstream/derper.md#debug-endpoints);
* measures Tailscale's own regions from the same machine that just measured ours (validation's
  STUN latency), with the checker's regions probe (``components/netcheck/regions.py``);
* appends one entry to a history of the last ``usageHistory`` runs, kept in its own outputs: the
  engine hands the previous outputs to ``update`` as ``olds``, so the history travels in the
  state and never grows past its bound (docs/upstream/pulumi.md#dynamic-provider-outputs);
* calls out a relay that is not pulling its weight (:func:`weight_warning`).

It never fails `up`: what could not be read is said in the outputs (``read_error``,
``compare_error``), because usage is a report beside the verdict, not a verdict. The gate runs
after it, so a red run is recorded too.

The provider is stored in the stack state under its stable name ``RelayUsage``
(components/dynamic_provider.py: moving the class is one line there). It holds nothing; every
read happens inside ``create``/``update``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pulumi
import pulumi.dynamic

from components.dynamic_provider import ProbeProvider
from components.settings import keys
from components.wire import plain

if TYPE_CHECKING:
    from components.netcheck.usage import UsageReading

TYPE_TOKEN: Final = "pulumi-python:dynamic/homederp:RelayUsage"
DEFAULT_HISTORY: Final = keys.default_int("usageHistory")
DEFAULT_IDLE_RUNS: Final = keys.default_int("usageIdleRuns")
#: Seconds for reading derper's counters (ssh connect included) and for Tailscale's regions
#: (netcheck's STUN phase: docs/upstream/netcheck.md#timeouts).
READ_TIMEOUT: Final = 10.0
COMPARE_TIMEOUT: Final = 3.0

INPUT_KEYS: Final = (
    "hostname",
    "derp_port",
    "docker_host",
    "region_code",
    "host_homed_here",
    "trigger",
    "healthy",
    "latency_ms",
    "certificate_days_left",
    "published",
    "drained",
    "history_size",
    "idle_runs",
    "compare_map",
)
OUTPUT_KEYS: Final = (
    "current",
    "read_error",
    "read_via",
    "read_at",
    "nearest_default",
    "compare_error",
    "history",
    "warning",
)
#: Inputs that never make a run by themselves: whether the host homes here is read at every
#: evaluation (a preview on a runner that cannot reach the host has None), and only matters when
#: a run happens for another reason.
DIFF_IGNORED: Final = frozenset({"host_homed_here"})
#: One history entry, in order: what each run records (docs/guide/usage.md, "The history").
ENTRY_KEYS: Final = (
    "at",
    "healthy",
    "latencyMs",
    "defaultMs",
    "defaultRegion",
    "connected",
    "homed",
    "hostHomed",
    "certDays",
)


# --------------------------------------------------------------------------------------------
# Pure rules


def history_entry(
    *,
    at: str,
    healthy: bool | None,
    latency_ms: float | None,
    nearest: Mapping[str, Any] | None,
    current: Mapping[str, Any] | None,
    host_homed: bool | None,
    certificate_days_left: int | None,
) -> dict[str, Any]:
    """One run: the verdict, our latency beside the best default region's, the clients."""
    return {
        "at": at,
        "healthy": healthy,
        "latencyMs": _ms(latency_ms),
        "defaultMs": _ms(nearest.get("latencyMs")) if nearest else None,
        "defaultRegion": nearest.get("code") if nearest else None,
        "connected": current.get("connected") if current else None,
        "homed": current.get("homed") if current else None,
        "hostHomed": host_homed if current else None,
        "certDays": certificate_days_left,
    }


def _ms(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 1)
    return None


def roll(history: Sequence[Any], entry: Mapping[str, Any], bound: int) -> list[dict[str, Any]]:
    """The history with ``entry`` appended, oldest dropped beyond ``bound`` (0 keeps none).

    Entries of another shape (a hand-edited state) are dropped rather than carried forever.
    """
    kept = [dict(e) for e in history if isinstance(e, Mapping) and "at" in e]
    kept.append(dict(entry))
    return kept[-bound:] if bound > 0 else []


def clients_homed(entry: Mapping[str, Any]) -> int | None:
    """Clients homed on the relay other than the relay host's own tailscaled (None: not read).

    derper counts every connection whose client sent NotePreferred (docs/upstream/
    derper.md#usage-counters); the relay host's tailscaled measures its own relay nearest of all
    and is usually one of them, which says nothing about anyone else using it.
    """
    homed = entry.get("homed")
    if not isinstance(homed, int | float) or isinstance(homed, bool):
        return None
    return max(0, int(homed) - (1 if entry.get("hostHomed") else 0))


def weight_warning(
    history: Sequence[Mapping[str, Any]],
    *,
    published: bool | None,
    drained: bool | None,
    idle_runs: int,
    region_code: str,
) -> str | None:
    """Why a published, healthy relay is not pulling its weight, with what to check; or None.

    Two signs: no client (the host aside) was homed on it in the last ``idle_runs`` runs whose
    counters were read, or a Tailscale region now answers faster than ours from the machine
    that measured both.
    """
    if not history or not published or drained:
        return None
    last = history[-1]
    if last.get("healthy") is not True:
        return None
    reasons = []
    recent = [e for e in history if clients_homed(e) is not None][-idle_runs:] if idle_runs else []
    if idle_runs and len(recent) == idle_runs and all(clients_homed(e) == 0 for e in recent):
        reasons.append(
            f"no client has been homed on region {region_code} in the last {idle_runs} runs "
            "(derper's own count, the relay host itself aside). Check on a client: `tailscale "
            f"netcheck` lists {region_code} with a latency (if not, the client has no route to "
            "the relay or the policy does not carry the region) and `tailscale status` names it "
            "as the client's DERP; a client keeps its home until another region is at least 10 "
            "ms and a third faster (docs/upstream/netcheck.md#home-hysteresis); with "
            "-verify-clients, a device the relay host cannot see is rejected (the `validation` "
            "output's coverage)"
        )
    ours, theirs = last.get("latencyMs"), last.get("defaultMs")
    if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs < ours:
        reasons.append(
            f"Tailscale's region {last.get('defaultRegion')} answered in {theirs:.1f} ms, ours "
            f"in {ours:.1f} ms, from the machine that ran this check: clients near it home "
            "there, not here. Check the relay's uplink and the path to it (a congested line, "
            "a changed route); a check from a machine far from home says little about clients "
            "at home"
        )
    if not reasons:
        return None
    return f"region {region_code} is not pulling its weight: " + "; and ".join(reasons)


def stack_output(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``usage`` stack output from the resource's outputs (docs/guide/usage.md)."""
    current = outputs.get("current") or None
    clients = relayed = dropped = derper = None
    if current:
        clients = {
            "connected": current.get("connected"),
            "homed": current.get("homed"),
            "relayHostHomedHere": outputs.get("host_homed_here"),
        }
        relayed = {
            k: current.get(k)
            for k in ("bytesSent", "bytesReceived", "packetsSent", "packetsReceived")
        }
        dropped = {
            "packets": current.get("packetsDropped"),
            "bytes": current.get("bytesDropped"),
            "byReason": current.get("droppedByReason"),
        }
        derper = {
            "version": current.get("version"),
            "uptimeSeconds": current.get("uptimeSeconds"),
            "startedAt": current.get("startedAt"),
        }
    return {
        "regionCode": outputs.get("region_code"),
        "readAt": outputs.get("read_at"),
        "readVia": outputs.get("read_via"),
        "readError": outputs.get("read_error"),
        "clients": clients,
        "relayed": relayed,
        "dropped": dropped,
        "derper": derper,
        "nearestDefault": outputs.get("nearest_default"),
        "compareError": outputs.get("compare_error"),
        "warning": outputs.get("warning"),
        "history": list(outputs.get("history") or []),
    }


# --------------------------------------------------------------------------------------------
# The edges: derper's counters, Tailscale's regions


def read_counters(props: Mapping[str, Any], *, timeout: float = READ_TIMEOUT) -> UsageReading:
    """derper's ``/debug/varz`` over the relay host's channel (module docstring)."""
    import time

    from components.host import HostChannel, HostReadError
    from components.netcheck.usage import UsageReading, connect_local, read_usage, spawn

    port = int(props["derp_port"])
    channel = HostChannel(str(props.get("docker_host") or ""), timeout=timeout)
    try:
        forward = channel.loopback_forward(port)
    except HostReadError as exc:
        return UsageReading(None, str(exc), channel.where(), time.time(), 0.0)
    if forward is None:
        return read_usage(
            lambda: connect_local(port, timeout=timeout),
            str(props["hostname"]),
            port,
            timeout=timeout,
            via="loopback on this machine",
        )
    return read_usage(
        lambda: spawn(forward),
        str(props["hostname"]),
        port,
        timeout=timeout,
        via=f"ssh -W 127.0.0.1:{port} to {channel.where()}",
    )


def nearest_default(
    props: Mapping[str, Any], *, timeout: float = COMPARE_TIMEOUT
) -> tuple[dict[str, Any] | None, str | None]:
    """(the nearest region of the compare map from here, None) or (None, why not)."""
    from components.netcheck.errors import DerpMapError
    from components.netcheck.regions import (
        load_derp_map,
        nearest,
        probe_regions,
        regions_of_host,
    )

    source = props.get("compare_map")
    if not source:
        return None, "no DERP map to compare with"
    try:
        derp_map = load_derp_map(str(source), timeout=timeout)
    except DerpMapError as exc:
        return None, f"the comparison was skipped: {exc}"
    ours = regions_of_host(derp_map, str(props.get("hostname") or ""))
    measured = [r for r in asyncio.run(probe_regions(derp_map, timeout)) if r.id not in ours]
    best = nearest(measured)
    if best is None or best.latency_ms is None:
        return None, f"none of {len(measured)} regions of {source} answered STUN from here"
    return {
        "id": best.id,
        "code": best.code,
        "name": best.name,
        "latencyMs": round(best.latency_ms, 1),
    }, None


def _guarded_read(read: Reader, props: Mapping[str, Any]) -> UsageReading:
    """``read(props)``; an unexpected failure becomes the reading's error, because the gate runs
    after this resource and a report must never keep the verdict from being judged."""
    try:
        return read(props)
    except Exception as exc:  # see the docstring
        import time

        from components.netcheck.usage import UsageReading

        return UsageReading(None, f"reading failed unexpectedly: {exc!r}", "", time.time(), 0.0)


def _note(message: str) -> None:
    # The provider process has no engine connection: stderr is what the CLI shows.
    print(f"home-derp usage: {message}", file=sys.stderr, flush=True)


Reader = Callable[[Mapping[str, Any]], "UsageReading"]
Comparer = Callable[[Mapping[str, Any]], "tuple[dict[str, Any] | None, str | None]"]


def run_usage(
    props: Mapping[str, Any],
    olds: Mapping[str, Any],
    *,
    read: Reader = read_counters,
    compare: Comparer = nearest_default,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> dict[str, Any]:
    """Read, compare, append to the history carried in ``olds``; the computed outputs."""
    reading = _guarded_read(read, props)
    try:
        near, compare_error = compare(props)
    except Exception as exc:  # a report must not stop the gate (module docstring)
        near, compare_error = None, f"the comparison failed unexpectedly: {exc!r}"
    current = reading.usage.to_json() if reading.usage else None
    at = now().isoformat(timespec="seconds")
    host_homed = props.get("host_homed_here")
    entry = history_entry(
        at=at,
        healthy=props.get("healthy"),
        latency_ms=props.get("latency_ms"),
        nearest=near,
        current=current,
        host_homed=host_homed if isinstance(host_homed, bool) else None,
        certificate_days_left=props.get("certificate_days_left"),
    )
    size = props.get("history_size")
    history = roll(olds.get("history") or [], entry, DEFAULT_HISTORY if size is None else int(size))
    idle = props.get("idle_runs")
    region_code = str(props.get("region_code") or "")
    warning = weight_warning(
        history,
        published=props.get("published"),
        drained=props.get("drained"),
        idle_runs=DEFAULT_IDLE_RUNS if idle is None else int(idle),
        region_code=region_code,
    )
    if current is not None:
        _note(
            f"derper: {current['connected']} clients connected, {current['homed']} homed here; "
            f"{current['packetsSent']} packets relayed since it started ({reading.via})"
        )
    else:
        _note(f"derper's counters could not be read: {reading.error}")
    if warning:
        _note(warning)
    return {
        "current": current,
        "read_error": reading.error,
        "read_via": reading.via,
        "read_at": at,
        "nearest_default": near,
        "compare_error": compare_error,
        "history": history,
        "warning": warning,
    }


# --------------------------------------------------------------------------------------------
# The dynamic provider and resource


class RelayUsageProvider(ProbeProvider):
    """Reads on create/update; a refresh keeps the history (the base:
    components/dynamic_provider.py)."""

    NAME = "RelayUsage"
    # The host's own home never triggers a run by itself (no spurious preview diffs).
    INPUT_KEYS = tuple(k for k in INPUT_KEYS if k not in DIFF_IGNORED)

    def run(self, props: Mapping[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
        inputs = {k: props.get(k) for k in INPUT_KEYS}
        return inputs | run_usage(plain(props), plain(olds))


@dataclass
class RelayUsageArgs:
    """Inputs of :class:`RelayUsage`."""

    hostname: pulumi.Input[str]
    """The relay's DNS name: the SNI derper's manual certificate needs."""
    derp_port: pulumi.Input[int]
    """derper's HTTPS port (its ``/debug/varz`` is served there)."""
    docker_host: pulumi.Input[str]
    """The relay's Docker host URL: says how to reach the relay host's loopback."""
    region_code: pulumi.Input[str]
    """Our region's code (named in the warning)."""
    trigger: pulumi.Input[str]
    """Re-read when this changes: validation's ``checked_at`` and the nonce."""
    healthy: pulumi.Input[bool | None]
    latency_ms: pulumi.Input[float | None]
    """Validation's best STUN round trip to the relay, from this machine."""
    certificate_days_left: pulumi.Input[int | None]
    published: pulumi.Input[bool | None]
    drained: pulumi.Input[bool | None]
    host_homed_here: pulumi.Input[bool | None] = None
    """Whether the relay host's own tailscaled has this region as its home (then derper's
    homed count includes the host)."""
    history_size: pulumi.Input[int] = DEFAULT_HISTORY
    idle_runs: pulumi.Input[int] = DEFAULT_IDLE_RUNS
    compare_map: pulumi.Input[str | None] = None
    """The DERP map (URL or file) whose regions ours is compared with; None compares nothing."""

    def to_props(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in INPUT_KEYS}


class RelayUsage(pulumi.dynamic.Resource, module="homederp", name="RelayUsage"):
    """derper's counters and the latency comparison, with their history; type ``TYPE_TOKEN``."""

    current: pulumi.Output[dict[str, Any] | None]
    """derper's counters at this run (``netcheck.usage.DerperUsage.to_json``), None if unread."""
    read_error: pulumi.Output[str | None]
    read_via: pulumi.Output[str | None]
    read_at: pulumi.Output[str | None]
    nearest_default: pulumi.Output[dict[str, Any] | None]
    """``{id, code, name, latencyMs}`` of the nearest region of the compare map from here."""
    compare_error: pulumi.Output[str | None]
    history: pulumi.Output[list[dict[str, Any]]]
    """The last ``history_size`` runs, oldest first (:data:`ENTRY_KEYS`)."""
    warning: pulumi.Output[str | None]
    """:func:`weight_warning` for this run."""
    host_homed_here: pulumi.Output[bool | None]
    region_code: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: RelayUsageArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {**args.to_props(), **dict.fromkeys(OUTPUT_KEYS)}
        super().__init__(RelayUsageProvider(), resource_name, props, opts)
