"""Parse and edit every policy file in DIR with components/hujson.py; print what held and how fast.

For each ``*.hujson`` and ``*.json`` file in DIR: parse it (a refusal is listed with its reason),
then two round trips that must give back the original bytes exactly:

* a derpMap region: ``set`` ``derpMap.Regions.<id>`` (a free id from 900, creating ``derpMap`` and
  ``Regions`` when missing), then ``remove`` the first part of that path that did not exist;
* a grant: ``append`` to ``grants`` (created when missing), then ``remove`` it again.

Each edited text is checked too: it parses, its value is the original plus exactly the inserted
part, and (for files up to --json5-limit bytes; json5 is slow) ``json5`` reads the same value.
Times are the best of --runs runs.

    venv/bin/python bench/hujson_policies.py DIR [--runs 3] [--json5-limit 262144]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import hujson
from components.hujson import IntKey, Segment

REGION: dict[str, Any] = {
    "RegionID": 900,
    "RegionCode": "homelab",
    "RegionName": "HomeLab",
    "Nodes": [
        {
            "Name": "900a",
            "RegionID": 900,
            "HostName": "derp.example.com",
            "IPv4": "none",
            "DERPPort": 12345,
            "STUNPort": 3478,
        }
    ],
}
GRANT: dict[str, Any] = {"src": ["autogroup:member"], "dst": ["tag:derp"], "ip": ["tcp:12345"]}


def read(path: Path) -> str:
    # newline="" keeps CRLF files as they are: the round trips must be byte-exact.
    with path.open(encoding="utf-8", newline="") as f:
        return f.read()


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def first_missing(doc: hujson.Document, path: tuple[Segment, ...]) -> int:
    """Length of the longest prefix of ``path`` that exists."""
    for n in range(len(path), -1, -1):
        if doc.find(path[:n]) is not None:
            return n
    raise AssertionError("the top level always exists")


def plain(segment: Segment) -> str | int:
    """A segment as a key of the plain value (file spellings come from Found.path)."""
    if isinstance(segment, hujson.Key):
        return segment.name
    if isinstance(segment, IntKey):
        return str(segment.number)
    return segment


def expected_after(
    doc: hujson.Document, path: tuple[Segment, ...], new: Any, *, append: bool
) -> Any:
    """The document's value with ``new`` put at ``path`` (appended when ``append``)."""
    value = doc.to_python()
    have = first_missing(doc, path)
    found = doc.find(path[:have])
    assert found is not None
    keys = [plain(s) for s in (*found.path, *path[have:])]
    cursor = value
    for key in keys[:-1]:
        cursor = cursor.setdefault(key, {}) if isinstance(cursor, dict) else cursor[key]
    if append:
        cursor.setdefault(keys[-1], []).append(copy.deepcopy(new))
    else:
        cursor[keys[-1]] = copy.deepcopy(new)
    return value


def free_region(doc: hujson.Document) -> int:
    region_id = 900
    while True:
        try:
            if doc.find(("derpMap", "Regions", IntKey(region_id))) is None:
                return region_id
        except hujson.PathTypeError:
            return region_id  # reported by the round trip itself
        region_id += 1


def round_trip(
    doc: hujson.Document, path: tuple[Segment, ...], value: Any, *, append: bool, json5_check: bool
) -> tuple[str, float]:
    """'exact' or what went wrong, and the time of insert + remove."""
    have = first_missing(doc, path)
    undo = path[: have + 1] if have < len(path) else (*path, -1)
    t0 = time.perf_counter()
    if append:
        edited = hujson.append(doc, path, value, create_parents=True)
    else:
        edited = hujson.set(doc, path, value, create_parents=True)
    back = hujson.remove(edited, undo)
    elapsed = time.perf_counter() - t0
    if back != doc.text:
        return "NOT EXACT: remove did not give back the original bytes", elapsed
    if hujson.loads(edited) != expected_after(doc, path, value, append=append):
        return "WRONG VALUE: the edit changed more than the inserted part", elapsed
    if json5_check:
        import json5

        if json5.loads(edited) != hujson.loads(edited):
            return "json5 DISAGREES on the edited text", elapsed
    return "exact", elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json5-limit", type=int, default=256 * 1024)
    args = ap.parse_args()

    files = sorted(p for p in args.dir.iterdir() if p.suffix in (".hujson", ".json"))
    total_chars = 0
    parse_seconds = 0.0
    edit_seconds = 0.0
    parsed = 0
    refused: list[tuple[str, str]] = []
    trips = {"region": [0, 0], "grant": [0, 0]}  # exact, tried
    problems: list[str] = []
    largest: tuple[int, str, float, list[float]] = (0, "", 0.0, [])
    for path in files:
        text = read(path)
        total_chars += len(text)
        try:
            seconds, doc = best_of(args.runs, lambda: hujson.parse(text))  # noqa: B023
        except hujson.HuJSONError as err:
            refused.append((path.name, str(err)))
            continue
        parsed += 1
        parse_seconds += seconds
        if len(text) > largest[0]:
            samples = []
            for _ in range(max(args.runs, 5)):
                t0 = time.perf_counter()
                hujson.parse(text)
                samples.append(time.perf_counter() - t0)
            largest = (len(text), path.name, seconds, samples)
        check5 = len(text.encode()) <= args.json5_limit
        region_path: tuple[Segment, ...] = ("derpMap", "Regions", IntKey(free_region(doc)))
        region = dict(REGION, RegionID=region_path[-1].number)  # type: ignore[union-attr]
        for name, target, value, is_append in (
            ("region", region_path, region, False),
            ("grant", ("grants",), GRANT, True),
        ):
            trips[name][1] += 1
            try:
                verdict, seconds = round_trip(
                    doc, target, value, append=is_append, json5_check=check5
                )
            except hujson.HuJSONError as err:
                verdict, seconds = f"edit refused: {err}", 0.0
            edit_seconds += seconds
            if verdict == "exact":
                trips[name][0] += 1
            else:
                problems.append(f"{path.name}: {name}: {verdict}")

    mb = total_chars / 1e6
    print(f"files:     {len(files)} ({mb:.2f} M characters)")
    print(f"parsed:    {parsed}")
    print(f"refused:   {len(refused)}")
    for name, reason in refused:
        print(f"  {name}: {reason}")
    for name, (exact, tried) in trips.items():
        print(f"round trips exact, {name}: {exact}/{tried}")
    for problem in problems:
        print(f"  {problem}")
    parsed_mb = sum(len(read(p)) for p in files if p.name not in {n for n, _ in refused})
    print(f"parse:     {parse_seconds / (parsed_mb / 1e6):.3f} s per M characters (best of runs)")
    per_mb = edit_seconds / (parsed_mb / 1e6)
    print(f"edit:      {per_mb:.3f} s per M characters, both round trips (remove re-parses)")
    size, name, best, samples = largest
    print(
        f"largest:   {name} ({size / 1e6:.2f} M characters): parse best {best:.3f} s, "
        f"median {statistics.median(samples):.3f} s of {len(samples)}"
    )
    return 0 if not problems and len(refused) + parsed == len(files) else 1


if __name__ == "__main__":
    sys.exit(main())
