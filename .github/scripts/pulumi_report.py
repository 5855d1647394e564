"""Markdown report of one Pulumi run: the PR comment of a preview and the job summary of every run.

pulumi/actions comments only after its command succeeded (pulumi/actions@v7.0.0 src/main.ts: the
comment is posted after ``await actions[command]()``, which throws on failure), so a preview that
fails on a mandatory policy violation would show a red check and no word on the PR. The workflow
therefore runs the CLI itself with ``--event-log`` and ``--color never`` and renders both outcomes
here, from the engine's own events (one JSON ``apitype.EngineEvent`` per line, pulumi/pulumi
sdk/go/common/apitype/events.go; written by pkg/backend/display/display.go ``logJSONEvent``):

* ``policyEvent``: a policy violation (``enforcementLevel`` ``mandatory`` or ``advisory``);
* ``diagnosticEvent`` with ``severity: error``: what failed, with the resource's URN;
* ``summaryEvent``: counts of changes by operation.

The CLI's text output (``--diff``) goes in a collapsed block, cut from the front to fit GitHub's
65,536-character comment limit.

    python .github/scripts/pulumi_report.py --stack S --command preview --outcome failure \\
        --events events.jsonl --output output.txt [--validation validation.json] \\
        [--usage usage.json] [--run-url U]

``--usage`` takes ``pulumi stack output usage --json``: the relay's clients and latency over time,
drawn as Mermaid charts with a table (``components/usage_summary.py``, docs/guide/usage.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the project's renderer of the usage output: one home

from components.usage_summary import summary_lines  # noqa: E402

#: GitHub rejects longer issue comments; the rest of the report needs far less than the margin.
COMMENT_LIMIT = 65_536
OUTPUT_BUDGET = 50_000
#: Colour directives (``<{%fg 1%}>``) and ANSI escapes, should any survive ``--color never``.
_DIRECTIVE = re.compile(r"<\{%[^%]*%\}>|\x1b\[[0-9;]*[A-Za-z]")


def marker(stack: str, command: str) -> str:
    """First line of the comment: the workflow edits the comment that starts with it."""
    return f"<!-- home-derp:pulumi-report stack={stack} command={command} -->"


@dataclass(frozen=True)
class Violation:
    level: str
    policy: str
    pack: str
    resource: str
    message: str


@dataclass(frozen=True)
class Events:
    violations: list[Violation]
    errors: list[str]
    changes: dict[str, int]


def clean(text: str) -> str:
    return _DIRECTIVE.sub("", text).strip()


def resource_of(urn: str) -> str:
    """``urn:pulumi:s::p::a$b::name`` → ``name (b)``; empty for a stack-level message."""
    parts = urn.split("::")
    if len(parts) < 4:
        return urn
    return f"{parts[-1]} ({parts[-2].split('$')[-1]})"


def read_events(lines: list[str]) -> Events:
    """The violations, errors and change counts in an event log (unknown lines are skipped: a
    run killed mid-write leaves a torn last line)."""
    violations: list[Violation] = []
    errors: list[str] = []
    changes: dict[str, int] = {}
    for line in lines:
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if policy := event.get("policyEvent"):
            found = Violation(
                level=str(policy.get("enforcementLevel", "")),
                policy=str(policy.get("policyName", "")),
                pack=str(policy.get("policyPackName", "")),
                resource=resource_of(str(policy.get("resourceUrn", ""))),
                message=clean(str(policy.get("message", ""))),
            )
            if found not in violations:  # `up` reports a preview's violations again
                violations.append(found)
        elif (diag := event.get("diagnosticEvent")) and diag.get("severity") == "error":
            where = resource_of(str(diag.get("urn", "")))
            text = clean(str(diag.get("prefix", "")) + str(diag.get("message", "")))
            entry = f"{where}: {text}" if where else text
            if text and entry not in errors:
                errors.append(entry)
        elif (failed := event.get("errorEvent")) and failed.get("error"):
            if (text := clean(str(failed["error"]))) not in errors:
                errors.append(text)
        elif summary := event.get("summaryEvent"):
            changes = {k: int(v) for k, v in (summary.get("resourceChanges") or {}).items() if v}
    return Events(violations, errors, changes)


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _block(text: str, lang: str = "text") -> list[str]:
    fence = _fence(text)
    return [f"{fence}{lang}", text, fence]


def _tail(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    cut = text[-budget:]
    return "… (earlier output cut; the run log has all of it)\n" + cut[cut.find("\n") + 1 :]


def _validation_lines(validation: dict[str, Any]) -> list[str]:
    """The relay's verdict from the stack output ``validation`` (healthy, drained, …)."""
    healthy = validation.get("healthy")
    drained = validation.get("drained")
    state = (
        "drained from the tailnet (clients do not home on it)"
        if drained
        else ("healthy" if healthy else "not healthy")
    )
    lines = [f"**Relay:** {state}"]
    for key, label in (
        ("certificateDaysLeft", "certificate days left"),
        ("lastHealthyAt", "last healthy check"),
    ):
        if validation.get(key) not in (None, ""):
            lines.append(f"**{label}:** {validation[key]}")
    return lines


def render(
    *,
    stack: str,
    command: str,
    outcome: str,
    events: Events,
    output: str,
    validation: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    run_url: str = "",
) -> str:
    ok = outcome == "success"
    title = f"`pulumi {command}` {'succeeded' if ok else 'FAILED'} for stack `{stack}`"
    out = [marker(stack, command), f"### {'✅' if ok else '❌'} {title}", ""]
    if events.changes:
        counts = ", ".join(f"{n} {op}" for op, n in sorted(events.changes.items()))
        out += [f"**Resources:** {counts}", ""]
    if validation:
        out += [*_validation_lines(validation), ""]
    if usage:
        out += summary_lines(usage)
    mandatory = [v for v in events.violations if v.level == "mandatory"]
    if events.violations:
        out.append(
            f"**Policy violations:** {len(mandatory)} mandatory (these stop the run), "
            f"{len(events.violations) - len(mandatory)} advisory"
        )
        out.append("")
        for v in sorted(events.violations, key=lambda v: v.level != "mandatory"):
            where = f" on `{v.resource}`" if v.resource else ""
            out.append(f"- **{v.level}** `{v.pack}/{v.policy}`{where}:")
            out += ["", *(f"  {line}" for line in _block(v.message)), ""]
    if events.errors:
        out += ["**Errors:**", "", *_block("\n\n".join(events.errors)), ""]
    if not ok and not events.errors and not events.violations:
        out += ["The run stopped before the engine reported anything; see the output below.", ""]
    head = "\n".join(out)
    budget = max(1_000, min(OUTPUT_BUDGET, COMMENT_LIMIT - len(head) - 1_000))
    text = _tail(clean(output), budget)
    out += ["<details><summary>CLI output</summary>", "", *_block(text), "", "</details>"]
    if run_url:
        out += ["", f"[Run log]({run_url})"]
    return "\n".join(out) + "\n"


def _read(path: str | None) -> str:
    if not path:
        return ""
    p = Path(path)
    return p.read_text(errors="replace") if p.is_file() else ""


def _read_json(path: str | None) -> dict[str, Any] | None:
    """A stack output's JSON, or None (no file, empty, not JSON, or not an object: an older
    stack without that output, or a run that stopped before it)."""
    text = _read(path).strip()
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--command", required=True, choices=["preview", "up"])
    parser.add_argument("--outcome", required=True)
    parser.add_argument("--events")
    parser.add_argument("--output")
    parser.add_argument("--validation", help="JSON of `pulumi stack output validation --json`")
    parser.add_argument("--usage", help="JSON of `pulumi stack output usage --json`")
    parser.add_argument("--run-url", default="")
    args = parser.parse_args(argv)
    validation = _read_json(args.validation)
    usage = _read_json(args.usage)
    sys.stdout.write(
        render(
            stack=args.stack,
            command=args.command,
            outcome=args.outcome,
            events=read_events(_read(args.events).splitlines()),
            output=_read(args.output),
            validation=validation,
            usage=usage,
            run_url=args.run_url,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
