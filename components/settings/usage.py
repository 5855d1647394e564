"""Rules of the ``usage`` output: how much history it keeps, and when an idle relay is called
out (components/usage.py, docs/guide/usage.md)."""

from __future__ import annotations

import os

from components.netcheck.regions import DEFAULT_DERP_MAP_URL
from components.settings.collector import Collector
from components.settings.keys import MAX_USAGE_HISTORY, default_text
from components.settings.model import Usage


def usage(c: Collector) -> Usage:
    history = c.integer(
        "usageHistory",
        0,
        MAX_USAGE_HISTORY,
        f"must be 0-{MAX_USAGE_HISTORY} runs (the history is kept in the stack's state)",
    )
    idle_runs = c.integer(
        "usageIdleRuns",
        0,
        MAX_USAGE_HISTORY,
        f"must be 0-{MAX_USAGE_HISTORY} runs (0 never warns)",
    )
    if idle_runs > history and not c.failed("usageHistory") and not c.failed("usageIdleRuns"):
        c.fail(
            "usageIdleRuns",
            idle_runs,
            f"must be at most usageHistory ({history}): the warning reads the kept runs",
            f"pulumi config set home-derp:usageIdleRuns {history} (or raise usageHistory)",
        )
        idle_runs = min(history, idle_runs)
    return Usage(history=history, idle_runs=idle_runs, compare_map=compare_map(c))


def compare_map(c: Collector) -> str | None:
    """``usageCompareMap`` → the map's URL or file, or None for ``off``."""
    value = c.text("usageCompareMap").strip()
    if value == "off":
        return None
    if value == default_text("usageCompareMap"):
        return DEFAULT_DERP_MAP_URL
    if value.startswith(("http://", "https://")) or os.path.isfile(value):
        return value
    c.fail(
        "usageCompareMap",
        value,
        "must be tailscale, off, an http(s):// URL or a JSON file that exists (relative to the "
        "project)",
    )
    return DEFAULT_DERP_MAP_URL
