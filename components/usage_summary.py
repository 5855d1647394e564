"""The ``usage`` stack output as Markdown for a job summary: Mermaid charts GitHub renders, a table.

The deploy and health workflows append this to their job summary (``.github/scripts/
pulumi_report.py --usage``), so the answer to "is anyone using my relay, and is it still the
nearest region?" is where the user already looks (docs/guide/usage.md). Two ``xychart-beta``
charts — our latency against the nearest Tailscale region from the same machine, and the clients
homed on the relay — then the history as a table, newest first. Pure: text in, text out.

Only what Mermaid's xychart grammar accepts is written: quoted category labels, numbers for every
point (a run without a measurement is left out of the chart and shown in the table), and a
front-matter ``config`` for the two line colours, since xychart has no legend of its own
(tests/test_usage_summary.py parses every chart with the real Mermaid parser).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from components.netcheck.usage import human_bytes, human_duration
from components.usage import clients_homed

#: Line colours of the latency chart (xychart's plotColorPalette, in plot order), and the bars'.
OURS_COLOUR: Final = "#2563eb"
THEIRS_COLOUR: Final = "#f97316"
BAR_COLOUR: Final = "#16a34a"
#: Up to this many runs each gets its time under the axis; more would print over each other
#: (looked at in Chromium: 60 labels in 700 px are one black smear, and six with seconds
#: already touch), so the axis counts runs and its title names the first and last (the table
#: has every time).
LABELLED_RUNS: Final = 6


def label(at: str) -> str:
    """``2026-12-06T04:41:00+00:00`` → ``12-06 04:41`` (UTC, as recorded)."""
    date, _, time = at.partition("T")
    return f"{date[5:]} {time[:5]}".strip()


def axis_labels(ats: Sequence[str]) -> list[str]:
    """One distinct label per run: ``12-06 04:41``, with seconds for runs in the same minute and
    a ``#n`` beyond that. xychart's categories are a band scale: equal labels collapse into one
    band and the points pile up on it (seen rendering two runs a minute apart)."""
    minutes = [label(at) for at in ats]
    labels = [
        f"{m}:{at.partition('T')[2][6:8]}" if minutes.count(m) > 1 else m
        for m, at in zip(minutes, ats, strict=True)
    ]
    seen: dict[str, int] = {}
    unique = []
    for text in labels:
        seen[text] = seen.get(text, 0) + 1
        unique.append(text if seen[text] == 1 else f"{text} #{seen[text]}")
    return unique


def _labels(history: Sequence[Mapping[str, Any]]) -> list[str]:
    return axis_labels([str(e.get("at", "")) for e in history])


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _number(value: float) -> str:
    return f"{value:.1f}" if value != int(value) else str(int(value))


def _top(values: Sequence[float], floor: float) -> int:
    """A round upper bound for the y axis, a little above the highest point."""
    high = max([floor, *values]) * 1.15
    step = 10 ** max(0, math.floor(math.log10(high)) - 1) if high >= 10 else 1
    return int(math.ceil(high / step) * step)


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def latency_points(history: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, float]]:
    """(label, ours, nearest Tailscale region) for every run that measured both."""
    points = []
    for entry, text in zip(history, _labels(history), strict=True):
        ours, theirs = (
            _number_or_none(entry.get("latencyMs")),
            _number_or_none(entry.get("defaultMs")),
        )
        if ours is not None and theirs is not None:
            points.append((text, ours, theirs))
    return points


def clients_points(history: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """(label, clients homed other than the relay host) for every run that read derper."""
    return [
        (text, homed)
        for e, text in zip(history, _labels(history), strict=True)
        if (homed := clients_homed(e)) is not None
    ]


def x_axis(labels: Sequence[str]) -> str:
    """The runs as categories (their times) when few, else a run count from the first time to
    the last (see :data:`LABELLED_RUNS`)."""
    if len(labels) <= LABELLED_RUNS:
        return f"  x-axis [{', '.join(_quote(t) for t in labels)}]"
    title = f"runs, {labels[0]} to {labels[-1]} UTC"
    return f"  x-axis {_quote(title)} 1 --> {len(labels)}"


def _palette(*colours: str) -> list[str]:
    joined = ", ".join(colours)
    return ["---", "config:", "  themeVariables:", "    xyChart:",
            f'      plotColorPalette: "{joined}"', "---"]  # fmt: skip


def latency_chart(points: Sequence[tuple[str, float, float]], region_code: str) -> list[str]:
    top = _top([v for _, a, b in points for v in (a, b)], 10)
    title = f"STUN latency from the checking machine (ms): {region_code} vs Tailscale"
    return [
        "```mermaid",
        *_palette(OURS_COLOUR, THEIRS_COLOUR),
        "xychart-beta",
        f"  title {_quote(title)}",
        x_axis([p[0] for p in points]),
        f'  y-axis "ms" 0 --> {top}',
        f"  line [{', '.join(_number(p[1]) for p in points)}]",
        f"  line [{', '.join(_number(p[2]) for p in points)}]",
        "```",
    ]


def clients_chart(points: Sequence[tuple[str, int]], region_code: str) -> list[str]:
    top = _top([p[1] for p in points], 4)
    return [
        "```mermaid",
        *_palette(BAR_COLOUR),
        "xychart-beta",
        f"  title {_quote(f'Clients homed on {region_code} (the relay host aside)')}",
        x_axis([p[0] for p in points]),
        f'  y-axis "clients" 0 --> {top}',
        f"  bar [{', '.join(str(p[1]) for p in points)}]",
        "```",
    ]


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "✅" if value else "❌"
    if isinstance(value, float):
        return f"{value:.1f}{unit}"
    return f"{value}{unit}"


def history_table(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every kept run, newest first."""
    rows = [
        "| run (UTC) | healthy | ours (ms) | nearest Tailscale region (ms) | clients homed | "
        "connected | certificate days |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for e in reversed(history):
        region = e.get("defaultRegion")
        theirs = _cell(e.get("defaultMs"))
        if region and e.get("defaultMs") is not None:
            theirs = f"{region} {theirs}"
        homed = clients_homed(e)
        rows.append(
            f"| {label(str(e.get('at', '')))} | {_cell(e.get('healthy'))} | "
            f"{_cell(e.get('latencyMs'))} | {theirs} | {_cell(homed)} | "
            f"{_cell(e.get('connected'))} | {_cell(e.get('certDays'))} |"
        )
    return rows


def now_line(usage: Mapping[str, Any]) -> str:
    clients, relayed, dropped = usage.get("clients"), usage.get("relayed"), usage.get("dropped")
    derper = usage.get("derper") or {}
    if not clients or not relayed:
        return f"**derper's counters:** not read ({usage.get('readError') or 'no reading'})"
    host = " (one of them the relay host)" if clients.get("relayHostHomedHere") else ""
    dropped_packets = (dropped or {}).get("packets") or 0
    return (
        f"**Now:** {clients.get('connected')} clients connected, {clients.get('homed')} homed "
        f"here{host} · {human_bytes(int(relayed.get('bytesSent') or 0))} relayed in "
        f"{relayed.get('packetsSent')} packets since derper started "
        f"(up {human_duration(derper.get('uptimeSeconds'))}) · {dropped_packets} dropped · "
        f"derper {derper.get('version') or '?'}"
    )


def summary_lines(usage: Mapping[str, Any], region_code: str = "") -> list[str]:
    """The whole section (empty when the output is missing)."""
    if not usage:
        return []
    code = region_code or str(usage.get("regionCode") or "our region")
    history = [e for e in usage.get("history") or [] if isinstance(e, Mapping)]
    out = [f"#### Usage of region {code}", "", now_line(usage), ""]
    if usage.get("warning"):
        out += ["> [!WARNING]", f"> {usage['warning']}", ""]
    near = usage.get("nearestDefault")
    if near:
        out += [
            f"**Nearest Tailscale region from here:** {near.get('code')} ({near.get('name')}), "
            f"{_cell(_number_or_none(near.get('latencyMs')), ' ms')}",
            "",
        ]
    elif usage.get("compareError"):
        out += [f"**Tailscale's regions:** {usage['compareError']}", ""]
    latency = latency_points(history)
    if latency:
        out += latency_chart(latency, code)
        out += [f"🟦 {code} (this relay) · 🟧 the nearest Tailscale region at that run", ""]
    else:
        out += ["No run measured both latencies yet (the table shows what each run had).", ""]
    clients = clients_points(history)
    if clients:
        out += [*clients_chart(clients, code), ""]
    if history:
        out += [f"<details><summary>The last {len(history)} runs</summary>", ""]
        out += [*history_table(history), "", "</details>", ""]
    return out
