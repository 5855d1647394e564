"""The command line: ``python -m components.doctor [-s STACK] [--json] [-C DIR]``."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

from components.doctor.model import Check, Report, Status
from components.netcheck.cli import DidYouMeanParser, seconds

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2  # argparse's own code
EXIT_NOT_RUN: Final = 3

MARKS: Final = {"pass": "✓", "fail": "✗", "not_checked": "–"}
#: The checkout this doctor belongs to (named in the error when no project is found).
CHECKOUT: Final = Path(__file__).resolve().parents[2]
DEFAULT_STACK: Final = "home"

EPILOG = f"""\
exit codes:
  {EXIT_OK}  nothing failed (rows marked – could not be checked; they say why)
  {EXIT_FAILED}  at least one row failed (✗): `pulumi up` would not give a working relay
  {EXIT_USAGE}  usage error (bad option, unknown stack)
  {EXIT_NOT_RUN}  could not run (no Pulumi.yaml, unreadable stack file)
"""


def build_parser() -> argparse.ArgumentParser:
    p = DidYouMeanParser(
        prog="python -m components.doctor",
        description="Check one stack before `pulumi up`: config, relay host, Cloudflare, tailnet. "
        "Read-only: nothing is changed anywhere.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "-s", "--stack", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK})"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "-C",
        "--cwd",
        type=Path,
        default=None,
        metavar="DIR",
        help="project directory (default: the nearest with Pulumi.yaml)",
    )
    p.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="S", help="seconds per API request (10)"
    )
    return p


def _row(check: Check, width: int) -> list[str]:
    head = f"  {MARKS[check.status]} {check.id:<{width}}  {check.summary}"
    indent = " " * (width + 6)
    out = [head]
    for text in (check.detail, f"fix: {check.fix}" if check.fix else None):
        for line in (text or "").splitlines():
            out += textwrap.wrap(line, 100, initial_indent=indent, subsequent_indent=indent + "  ")
    return out


def render(report: Report) -> str:
    """The checklist as text."""
    width = max(len(c.id) for c in report.checks)
    out = [
        f"home-derp doctor: stack {report.stack} ({Path(report.stack_file).name}), "
        f"Docker host {report.docker_host or '(invalid)'}",
        "",
    ]
    for check in report.checks:
        out += _row(check, width)
    if report.warnings:
        out += ["", "warnings (the program logs these; legal, but check them):"]
        for warning in report.warnings:
            out += textwrap.wrap(warning, 100, initial_indent="  - ", subsequent_indent="    ")
    verdict = (
        "nothing failed: `pulumi up` can go ahead"
        if report.ok
        else "fix the ✗ rows, then run the doctor again"
    )
    names: tuple[tuple[Status, str], ...] = (
        ("fail", "failed"),
        ("pass", "passed"),
        ("not_checked", "not checked"),
    )
    counts = ", ".join(f"{report.count(status)} {name}" for status, name in names)
    return "\n".join([*out, "", f"{counts}: {verdict}"])


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    for stream in (out, err):  # ✓/✗ on a terminal that is not UTF-8: replaced, never a crash
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    # Imported after the arguments are good: settings brings Pulumi's SDK (most of a second).
    from components.doctor.run import run
    from components.stack_config import StackFileError, find_project

    try:
        project = find_project((args.cwd or Path.cwd()).resolve(), checkout=CHECKOUT)
        report = run(project, args.stack, os.environ, timeout=args.timeout)
    except StackFileError as exc:
        print(f"python -m components.doctor: error: {exc}", file=err)
        return EXIT_USAGE if exc.usage else EXIT_NOT_RUN
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False), file=out)
    else:
        print(render(report), file=out)
    return EXIT_OK if report.ok else EXIT_FAILED
