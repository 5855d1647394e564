"""The workflows' Pulumi commands, replayed against the real engine.

``.github/workflows/_pulumi.yml``'s ``pulumi`` step is run as the runner runs it (bash, its
``env:`` filled in; tests/test_workflows.py's machinery) with the recording stand-in for the CLI,
with ``.github/scripts/stack_facts.py`` computing the facts from the stack's own files. Each
recorded Pulumi command is then run by the real CLI with exactly those arguments, two changed:

* ``--policy-pack policy`` is dropped: CrossGuard runs a Python pack through the Python language
  host, which cannot be had here (the pack has its own tests: tests/test_policy.py);
* ``--event-log`` and the CLI output go to this test's files.

The program is served as an inline program (tests/engine/driver.py), so ``--client`` and
``--exec-kind`` are added by the driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.engine.stacks import Stack
from tests.peers.tools import REPO

SCRIPTS = REPO / ".github" / "scripts"


@dataclass(frozen=True)
class Call:
    """One Pulumi command the workflow ran: its arguments and whether it was a health run."""

    args: list[str]
    health_run: bool
    env: dict[str, str]


def recorded_calls(
    stack: Stack, command: str, *, health: bool = False, run_id: str = "777"
) -> list[Call]:
    """The Pulumi commands ``_pulumi.yml`` runs for ``stack`` (see the module docstring)."""
    from tests import test_workflows as wf

    facts = wf.facts_mod.facts(stack.work_dir, stack.name)
    values = {
        "inputs.command": command,
        "inputs.stack": stack.name,
        "inputs.health": "true" if health else "false",
        "inputs.refresh": "false",
        "inputs.revalidate": "false",
        "steps.facts.outputs.pulumi-version": facts["pulumi-version"],
        "steps.facts.outputs.health-targets": facts["health-targets"],
        "secrets.PULUMI_ACCESS_TOKEN": "pul-not-real",
    }
    with tempfile.TemporaryDirectory(prefix="engine-runner-") as tmp:
        base = Path(tmp)
        for name in ("temp", "home", "bin"):
            (base / name).mkdir()
        runner = {
            "PATH": f"{base / 'bin'}:{os.environ['PATH']}",
            "HOME": str(base / "home"),
            "RUNNER_TEMP": str(base / "temp"),
            "RUNNER_ENVIRONMENT": "self-hosted",
            "GITHUB_OUTPUT": str(base / "output"),
            "GITHUB_ENV": str(base / "env"),
            "GITHUB_STEP_SUMMARY": str(base / "summary.md"),
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_EVENT_NAME": "schedule",
            "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
            "GITHUB_REPOSITORY": "owner/home-derp",
            "GITHUB_SERVER_URL": "https://github.com",
        }
        wf.install_fake(runner, "pulumi", wf.FAKE_PULUMI)
        log = base / f"pulumi-{uuid.uuid4().hex}.log"
        done = wf.run_step(
            wf.step(wf.pulumi_steps(), "pulumi"),
            values,
            runner,
            extra={
                "FAKE_PULUMI_LOG": str(log),
                "FAKE_PULUMI_VERSION": f"v{facts['pulumi-version']}",
            },
        )
        assert done.returncode == 0, done.stdout + done.stderr
        calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [
        Call(
            list(c["args"]),
            c.get("health") == "1",
            {"PULUMI_DEBUG_COMMANDS": c["debug_commands"]} if c.get("debug_commands") else {},
        )
        for c in calls
    ]


def operation(calls: list[Call]) -> Call:
    ops = [c for c in calls if c.args[:1] in (["up"], ["preview"])]
    assert len(ops) == 1, calls
    return ops[0]


def for_this_engine(call: Call, events: Path) -> list[str]:
    """The recorded arguments with the two changes of the module docstring."""
    args = list(call.args)
    if "--policy-pack" in args:
        i = args.index("--policy-pack")
        del args[i : i + 2]
    if "--event-log" in args:
        args[args.index("--event-log") + 1] = str(events)
    return args


def replay(stack: Stack, call: Call, events: Path) -> dict[str, Any]:
    """Run ``call`` with the real CLI; the reply has the CLI's stdout/stderr and exit code."""
    env = {"HOME_DERP_HEALTH_RUN": "1"} if call.health_run else {}
    # The CLI's environment is the driver's, which has no PULUMI_DEBUG_COMMANDS: only what the
    # workflow itself sets reaches the real CLI.
    return stack.cli(*for_this_engine(call, events), env={**env, **call.env})


def report(
    stack: Stack, command: str, reply: dict[str, Any], events: Path, validation: str = ""
) -> str:
    """``.github/scripts/pulumi_report.py`` on what the real CLI wrote, as the workflow runs it."""
    out = events.with_suffix(".out")
    out.write_text((reply.get("stdout") or "") + (reply.get("stderr") or ""))
    argv = [
        str(REPO / "venv" / "bin" / "python"),
        str(SCRIPTS / "pulumi_report.py"),
        "--stack", stack.name,
        "--command", command,
        "--outcome", "success" if reply.get("ok") else "failure",
        "--events", str(events),
        "--output", str(out),
    ]  # fmt: skip
    if validation:
        path = events.with_suffix(".validation.json")
        path.write_text(validation)
        argv += ["--validation", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout
