"""The job summary's usage section: valid Markdown and Mermaid, and charts that say the numbers.

Every chart is parsed by the real Mermaid parser (npm ``mermaid``, pinned in tests/tools/mermaid,
installed by tests/tools/install-mermaid; a missing install fails with that command), and the
Markdown by markdown-it-py (CommonMark with GFM tables, the dialect GitHub renders). The numbers
are read back out of the chart and table text and compared with the history they came from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from components.usage import ENTRY_KEYS, clients_homed
from components.usage_summary import LABELLED_RUNS, axis_labels, label, summary_lines
from tests.mocks import ROOT

MERMAID_DIR = Path(os.environ.get("HOME_DERP_MERMAID_DIR", ROOT / ".ci" / "work" / "mermaid"))
CHECKER = MERMAID_DIR / "check.mjs"


def mermaid_check(markdown: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Every ```mermaid block of ``markdown`` through the real parser: one result per block."""
    assert shutil.which("node"), "node is required: apt-get install nodejs"
    assert (MERMAID_DIR / "node_modules" / "mermaid").is_dir(), (
        f"the Mermaid parser is not in {MERMAID_DIR}: run `bash tests/tools/install-mermaid`"
    )
    path = tmp_path / "summary.md"
    path.write_text(markdown)
    done = subprocess.run(
        ["node", str(CHECKER), str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def history(n: int, **overrides: Any) -> list[dict[str, Any]]:
    runs = []
    for i in range(n):
        e = dict.fromkeys(ENTRY_KEYS)
        e.update(
            at=f"2026-12-{1 + i // 4:02d}T{(i % 4) * 6:02d}:41:07+00:00",
            healthy=i % 7 != 3,
            latencyMs=round(40 + (i * 7919 % 23) + 0.3, 1),
            defaultMs=round(70 + (i * 104729 % 17) + 0.6, 1),
            defaultRegion="tok",
            connected=2 + i % 3,
            homed=1 + i % 4,
            hostHomed=True,
            certDays=80 - i // 4,
        )
        e.update(overrides)
        runs.append(e)
    return runs


def usage_output(runs: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "regionCode": "home",
        "readAt": "2026-12-06T04:41:07+00:00",
        "readError": None,
        "clients": {"connected": 4, "homed": 3, "relayHostHomedHere": True},
        "relayed": {
            "bytesSent": 12_345_678,
            "bytesReceived": 1,
            "packetsSent": 9876,
            "packetsReceived": 1,
        },
        "dropped": {"packets": 2, "bytes": 300, "byReason": {"unknown_dest": 2}},
        "derper": {"version": "1.102.5", "uptimeSeconds": 3 * 86400 + 4 * 3600},
        "nearestDefault": {"id": 7, "code": "tok", "name": "Tokyo", "latencyMs": 71.6},
        "compareError": None,
        "warning": None,
        "history": runs,
    }
    out.update(overrides)
    return out


def blocks(markdown: str) -> list[str]:
    return re.findall(r"^```mermaid\n(.*?)^```$", markdown, re.S | re.M)


def numbers(chart: str, kind: str) -> list[list[float]]:
    return [
        [float(x) for x in m.split(",")] for m in re.findall(rf"^  {kind} \[(.*)\]$", chart, re.M)
    ]


def categories(chart: str) -> list[str]:
    """The x axis: its run times, or (a run count) the first and last time of its title."""
    (axis,) = re.findall(r"^  x-axis (.*)$", chart, re.M)
    if axis.startswith("["):
        return list(json.loads(axis))
    m = re.fullmatch(r'"runs, (.+) to (.+) UTC" 1 --> (\d+)', axis)
    assert m, axis
    return [m[1], *[""] * (int(m[3]) - 2), m[2]]


def expected_axis(runs: list[dict[str, Any]]) -> list[str]:
    labels = axis_labels([e["at"] for e in runs])
    return (
        labels
        if len(labels) <= LABELLED_RUNS
        else [labels[0], *[""] * (len(labels) - 2), labels[-1]]
    )


# A full history (60 runs, the default bound) and a short one (run times under the axis): both
# charts parse with the real Mermaid parser as xychart, and each chart's points are exactly the
# history's numbers, in order.
@pytest.mark.parametrize("count", [60, 5])
def test_charts_parse_and_match_the_numbers(tmp_path: Path, count: int) -> None:
    runs = history(count)
    text = "\n".join(summary_lines(usage_output(runs)))
    results = mermaid_check(text, tmp_path)
    assert [r["type"] for r in results] == ["xychart", "xychart"], results
    assert all(r["ok"] for r in results), results
    latency, clients = blocks(text)
    assert categories(latency) == expected_axis(runs)
    assert numbers(latency, "line") == [
        [e["latencyMs"] for e in runs],
        [e["defaultMs"] for e in runs],
    ]
    assert categories(clients) == expected_axis(runs)
    assert numbers(clients, "bar") == [[float(clients_homed(e) or 0) for e in runs]]
    top = float(re.findall(r'y-axis "ms" 0 --> (\d+)', latency)[0])
    assert top >= max(e["defaultMs"] for e in runs)


# The table under the charts is a real GFM table: one row per run, newest first, each cell the
# run's number (clients without the relay host), and the warning a GitHub alert.
def test_table_is_markdown_and_says_the_same(tmp_path: Path) -> None:
    runs = history(9)
    warning = "region home is not pulling its weight: no client has been homed"
    text = "\n".join(summary_lines(usage_output(runs, warning=warning)))
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    rows, row = [], []
    for i, t in enumerate(tokens):
        if t.type in ("td_open", "th_open"):
            row.append(tokens[i + 1].content)
        elif t.type == "tr_close":
            rows.append(row)
            row = []
    header, *body = rows
    assert header[0] == "run (UTC)" and len(body) == len(runs)
    for cells, e in zip(body, reversed(runs), strict=True):
        assert cells[0] == label(e["at"])
        assert cells[1] == ("✅" if e["healthy"] else "❌")
        assert cells[2] == f"{e['latencyMs']:.1f}"
        assert cells[3] == f"tok {e['defaultMs']:.1f}"
        assert cells[4] == str(clients_homed(e)) and cells[5] == str(e["connected"])
    assert f"> [!WARNING]\n> {warning}" in text
    assert "12.3 MB relayed in 9876 packets" in text and "up 3d 4h" in text
    assert "Tokyo" in text and "71.6 ms" in text


# Runs without a measurement stay out of the charts (xychart needs a number at every point) and
# in the table; with nothing measured there is no chart, and the reason instead of a broken one.
def test_missing_measurements(tmp_path: Path) -> None:
    runs = history(4)
    runs[1]["defaultMs"] = None
    runs[2]["homed"] = None
    text = "\n".join(summary_lines(usage_output(runs)))
    latency, clients = blocks(text)
    assert len(numbers(latency, "line")[0]) == 3 and len(numbers(clients, "bar")[0]) == 3
    assert all(r["ok"] for r in mermaid_check(text, tmp_path))
    unread = usage_output(
        history(2, latencyMs=None, homed=None), clients=None, readError="nothing answers on 8443"
    )
    text = "\n".join(summary_lines(unread))
    assert blocks(text) == [] and "No run measured both latencies yet" in text
    assert "**derper's counters:** not read (nothing answers on 8443)" in text
    assert summary_lines({}) == []


# The checker itself rejects a broken chart, so the tests above could fail.
def test_the_checker_rejects_a_broken_chart(tmp_path: Path) -> None:
    [result] = mermaid_check("```mermaid\nxychart-beta\n  line [1, two]\n```\n", tmp_path)
    assert result["ok"] is False and "Parse error" in result["error"]


# Runs in the same minute (a deploy right after a health run) get distinct labels: xychart's
# categories are a band scale, and equal labels would pile their points onto one band (seen in
# Chromium: six runs drawn as two). Seconds first, then a counter.
def test_runs_in_the_same_minute_keep_their_own_points(tmp_path: Path) -> None:
    ats = ["2026-12-06T07:47:01+00:00", "2026-12-06T07:47:30+00:00",
           "2026-12-06T07:47:30+00:00", "2026-12-06T07:48:05+00:00"]  # fmt: skip
    assert axis_labels(ats) == [
        "12-06 07:47:01", "12-06 07:47:30", "12-06 07:47:30 #2", "12-06 07:48"
    ]  # fmt: skip
    runs = [{**r, "at": at} for r, at in zip(history(4), ats, strict=True)]
    text = "\n".join(summary_lines(usage_output(runs)))
    latency, clients = blocks(text)
    assert len(set(categories(latency))) == 4 and categories(clients) == axis_labels(ats)
    assert all(r["ok"] for r in mermaid_check(text, tmp_path))
