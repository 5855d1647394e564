"""The GitHub workflows keep the promises of issues #14 and #10, so a later edit cannot quietly
undo one: schedules that re-enable themselves with nothing but ``actions: write``, health runs every
6 hours from one cron line, no dropped deploy or health run, the Pulumi CLI pinned to the SDK,
Tailscale and SSH steps that never touch a self-hosted runner, a PR comment for failed previews,
health runs that target exactly the validation, the policy resource and the gate.

Two kinds of test. Structural ones read the YAML (``.github/workflows``). Behavioural ones run the
workflows' own step scripts with bash, as the runner does (``bash -e {0}``, docs.github.com/en/
actions/reference/workflows-and-actions/workflow-syntax#defaultsrunshell), with the ``${{ }}``
references of each step's ``env:`` filled in: against a real sshd and real network namespaces, and
with stand-ins only for what these machines cannot run (the Pulumi CLI, GitHub's REST API).
The third-party actions' inputs come from their action.yml at the pinned commits
(tests/data/workflows/actions.json, with the source of each).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest
import yaml

from tests.mocks import (
    FAKE_TAILSCALE_KEY,
    FAKE_TOKEN,
    ROOT,
    RelayMocks,
    install_mocks,
    run_program,
    set_config,
    stack_config,
)
from tests.peers.sshd import Sshd

WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
DATA = Path(__file__).parent / "data" / "workflows"
UPSTREAM = json.loads((DATA / "actions.json").read_text())
CALLERS = ("preview.yml", "deploy.yml", "health.yml")
PULUMI = "./.github/workflows/_pulumi.yml"
KEEPALIVE = "./.github/workflows/_keepalive.yml"
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
#: The R2 backend of docs/guide/ci-cd.md needs third-party S3 writes, in the CLI since 3.256.
MIN_CLI = (3, 256, 0)
EXPR = re.compile(r"^\$\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}$")


# ---- reading the workflows -------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict), name
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """``on:`` (YAML 1.1, which PyYAML speaks, reads the bare key ``on`` as ``True``)."""
    value = workflow.get("on", workflow.get(True))
    return value if isinstance(value, dict) else {str(value): None}


def workflow_files() -> list[str]:
    return sorted(p.name for p in WORKFLOWS.glob("*.y*ml"))


def jobs(name: str) -> dict[str, dict[str, Any]]:
    return dict(load(name)["jobs"])


def all_steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name in workflow_files():
        for job_id, job in jobs(name).items():
            for step in job.get("steps", []):
                yield name, job_id, step


def pulumi_steps() -> list[dict[str, Any]]:
    return list(jobs("_pulumi.yml")["run"]["steps"])


def step(steps: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The step with ``id`` ``key``, or (``owner/action@``) the one using that action."""
    if "@" in key:
        found = [s for s in steps if str(s.get("uses", "")).startswith(key)]
    else:
        found = [s for s in steps if s.get("id") == key]
    assert len(found) == 1, f"expected one step {key!r}, found {len(found)}"
    return found[0]


def ssh_step() -> dict[str, Any]:
    found = [s for s in pulumi_steps() if "ssh_dir" in str(s.get("run", ""))]
    assert len(found) == 1
    return found[0]


def ipv6_step() -> dict[str, Any]:
    found = [s for s in pulumi_steps() if "ip -6 route get" in str(s.get("run", ""))]
    assert len(found) == 1
    return found[0]


def report_step() -> dict[str, Any]:
    found = [s for s in pulumi_steps() if "pulumi_report.py" in str(s.get("run", ""))]
    assert len(found) == 1
    return found[0]


def callers_of(target: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, job_id, job)
        for name in CALLERS
        for job_id, job in jobs(name).items()
        if job.get("uses") == target
    ]


def conjuncts(condition: str) -> list[str]:
    """The ``&&`` terms of an ``if:`` with no ``||`` (so each term is required)."""
    text = " ".join(condition.split()).removeprefix("${{").removesuffix("}}").strip()
    assert "||" not in text, f"{condition!r}: a guard must not be or-ed away"
    return [t.strip() for t in text.split("&&")]


def import_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


facts_mod = import_script("stack_facts")
report_mod = import_script("pulumi_report")


def stack_name(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


# ---- running a step's script as the runner does ----------------------------------------------


def step_env(step_: dict[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """A step's ``env:`` with each ``${{ ref }}`` looked up in ``values``; unset secrets and
    variables are empty strings, as on GitHub. Scripts read only plain references."""
    env = {}
    for key, raw in (step_.get("env") or {}).items():
        m = EXPR.match(str(raw))
        assert m, f"env {key} = {raw!r}: step scripts read plain references, logic lives in bash"
        ref = m[1]
        env[key] = values.get(ref, "") if ref.startswith(("secrets.", "vars.")) else values[ref]
    return env


@pytest.fixture
def runner(tmp_path: Path) -> dict[str, str]:
    """The default environment of a job on a GitHub-hosted Linux runner, in a scratch dir."""
    for name in ("temp", "home", "bin"):
        (tmp_path / name).mkdir()
    return {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "RUNNER_TEMP": str(tmp_path / "temp"),
        "RUNNER_ENVIRONMENT": "github-hosted",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_ENV": str(tmp_path / "env"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_RUN_ID": "777",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_EVENT_NAME": "schedule",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_REPOSITORY": "owner/home-derp",
        "GITHUB_SERVER_URL": "https://github.com",
    }


def run_step(
    step_: dict[str, Any],
    values: Mapping[str, str],
    base: Mapping[str, str],
    *,
    extra: Mapping[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    script = Path(base["RUNNER_TEMP"]) / f"step-{uuid.uuid4().hex}.sh"
    script.write_text(str(step_["run"]))
    env = {**base, **step_env(step_, values), **(extra or {})}
    return subprocess.run(
        [*prefix, "bash", "-e", str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def need(tool: str, package: str) -> None:
    """A tool the runner images have and the step scripts use; fail (never skip) without it."""
    assert shutil.which(tool), f"{tool} is required by this test: apt-get install {package}"


def outputs(base: Mapping[str, str]) -> dict[str, str]:
    path = Path(base["GITHUB_OUTPUT"])
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line)


FAKE_PULUMI = '''#!/usr/bin/env python3
"""Stands in for the Pulumi CLI (it cannot be installed on these machines): records how the
workflow calls it, answers `version`, and writes the event log it is given."""
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "health": os.environ.get("HOME_DERP_HEALTH_RUN"),
                          "debug_commands": os.environ.get("PULUMI_DEBUG_COMMANDS")}) + "\\n")
if args == ["version"]:
    print(os.environ["FAKE_PULUMI_VERSION"])
    sys.exit(0)
if args[:1] == ["login"]:
    sys.exit(0)
if args[:3] == ["stack", "output", "usage"]:
    if not os.environ.get("FAKE_PULUMI_USAGE"):
        sys.exit(255)  # a stack whose state has no such output yet
    print(open(os.environ["FAKE_PULUMI_USAGE"]).read())
    sys.exit(0)
if args[:2] == ["stack", "output"]:
    print(json.dumps({"healthy": False, "drained": True, "certificateDaysLeft": 19}))
    sys.exit(0)
if "--event-log" in args and os.environ.get("FAKE_PULUMI_EVENTS"):
    shutil.copy(os.environ["FAKE_PULUMI_EVENTS"], args[args.index("--event-log") + 1])
print("Previewing update (fake)")
sys.exit(int(os.environ.get("FAKE_PULUMI_EXIT", "0")))
'''


def install_fake(base: Mapping[str, str], name: str, text: str) -> None:
    path = Path(base["PATH"].split(":")[0]) / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def pulumi_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def the_operation(calls: list[dict[str, Any]]) -> dict[str, Any]:
    ops = [c for c in calls if c["args"][:1] in (["up"], ["preview"])]
    assert len(ops) == 1, calls
    return ops[0]


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def pulumi_values(stack: str = "home", **inputs: str) -> dict[str, str]:
    facts = facts_mod.facts(ROOT, stack)
    values = {
        "inputs.command": "up",
        "inputs.stack": stack,
        "inputs.health": "false",
        "inputs.refresh": "false",
        "inputs.revalidate": "false",
        "steps.facts.outputs.pulumi-version": facts["pulumi-version"],
        "steps.facts.outputs.health-targets": facts["health-targets"],
        "secrets.PULUMI_ACCESS_TOKEN": "pul-not-real",
    }
    values.update({f"inputs.{k}": v for k, v in inputs.items()})
    return values


# ---- schedules that cannot die silently ------------------------------------------------------


def cron_minutes(expr: str) -> list[int]:
    """Minutes of the week (Sunday 00:00 = 0) at which a 5-field cron fires. Day of month and
    month must be ``*`` (then POSIX cron fires on every matching weekday)."""
    minute, hour, dom, month, dow = expr.split()
    assert dom == "*" and month == "*", f"{expr}: only weekday schedules are expected"

    def field(text: str, low: int, high: int) -> set[int]:
        out: set[int] = set()
        for part in text.split(","):
            rng, _, step_ = part.partition("/")
            if rng == "*":
                start, end = low, high
            elif "-" in rng:
                start, end = (int(x) for x in rng.split("-"))
            else:
                start = end = int(rng)
            out.update(range(start, end + 1, int(step_ or 1)))
        return out

    return sorted(
        d * 1440 + h * 60 + m
        for d in field(dow, 0, 6)
        for h in field(hour, 0, 23)
        for m in field(minute, 0, 59)
    )


def gaps(minutes: list[int]) -> set[int]:
    week = 7 * 1440
    following = [*minutes[1:], minutes[0]]
    return {(b - a) % week or week for a, b in zip(minutes, following, strict=True)}


def crons(name: str) -> list[str]:
    return [entry["cron"] for entry in triggers(load(name)).get("schedule") or []]


# Health runs fire every 6 hours, from exactly one cron line in the whole repository.
def test_health_runs_every_six_hours_from_one_line() -> None:
    (health,) = crons("health.yml")
    assert gaps(cron_minutes(health)) == {360}
    every_cron = [c for name in workflow_files() for c in crons(name)]
    assert every_cron.count(health) == 1
    raw = [name for name in workflow_files() if health in (WORKFLOWS / name).read_text()]
    assert raw == ["health.yml"]


# The weekly renewal deploy stays: one `up` a week, well inside the 30-day renewal window.
def test_weekly_renewal_deploy_stays() -> None:
    (weekly,) = crons("deploy.yml")
    assert gaps(cron_minutes(weekly)) == {7 * 1440}
    deploy = jobs("deploy.yml")["deploy"]["with"]
    assert deploy["command"] == "up"
    assert "github.event_name == 'schedule'" in deploy["revalidate"]


# Every scheduled workflow re-enables itself (by its own file name) from a job that holds
# `actions: write` and nothing else, and runs only on scheduled runs.
def test_scheduled_workflows_reenable_themselves() -> None:
    scheduled = [name for name in workflow_files() if triggers(load(name)).get("schedule")]
    assert sorted(scheduled) == ["deploy.yml", "health.yml"]
    for name in scheduled:
        keepers = [job for job in jobs(name).values() if job.get("uses") == KEEPALIVE]
        assert len(keepers) == 1, name
        # Each one keeps *every* scheduled workflow enabled: renewal and its alarm do not stop
        # together (GitHub documents no reset of the 60-day clock by re-enabling).
        assert sorted(keepers[0]["with"]["workflows"].split()) == sorted(scheduled), name
        assert keepers[0]["permissions"] == {"actions": "write"}
    (enable,) = jobs("_keepalive.yml").values()
    assert enable["permissions"] == {"actions": "write"}
    assert "github.event_name == 'schedule'" in conjuncts(enable["if"])
    (only,) = enable["steps"]
    assert "uses" not in only  # nothing checked out, nothing from the repository runs here
    assert only["env"] == {
        "GH_TOKEN": "${{ github.token }}",
        "WORKFLOWS": "${{ inputs.workflows }}",
    }


FAKE_GH_WORKFLOWS = '''#!/usr/bin/env python3
"""Stands in for `gh api` against GitHub's REST API: workflow states from FAKE_GH_STATES (JSON
file name → state), every call recorded in FAKE_GH_LOG."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
states = json.loads(os.environ["FAKE_GH_STATES"])
path = next(a for a in args[1:] if a.startswith("repos/"))
workflow = path.split("/actions/workflows/")[1].split("/")[0]
if "--method" not in args:
    print(states[workflow])
'''


# The keepalive asks each scheduled workflow's state: one GitHub disabled for inactivity is
# enabled again (also from the *other* workflow's run), an active one gets the enable call too,
# and one a human disabled is left alone with a warning.
def test_keepalive_reenables_the_other_workflow(runner: dict[str, str], tmp_path: Path) -> None:
    (enable,) = jobs("_keepalive.yml").values()
    (step_,) = enable["steps"]
    install_fake(runner, "gh", FAKE_GH_WORKFLOWS)
    log = tmp_path / "gh.log"
    states = {"deploy.yml": "disabled_inactivity", "health.yml": "active"}
    done = run_step(
        step_,
        {"github.token": "ghs-not-real", "inputs.workflows": "health.yml deploy.yml"},
        runner,
        extra={"FAKE_GH_LOG": str(log), "FAKE_GH_STATES": json.dumps(states)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    puts = [c[-1] for c in calls if "--method" in c]
    base = "repos/owner/home-derp/actions/workflows"
    assert puts == [f"{base}/health.yml/enable", f"{base}/deploy.yml/enable"]
    assert "::notice title=deploy.yml re-enabled::" in done.stdout
    log.write_text("")
    states["deploy.yml"] = "disabled_manually"
    done = run_step(
        step_,
        {"github.token": "ghs-not-real", "inputs.workflows": "health.yml deploy.yml"},
        runner,
        extra={"FAKE_GH_LOG": str(log), "FAKE_GH_STATES": json.dumps(states)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c[-1] for c in calls if "--method" in c] == [f"{base}/health.yml/enable"]
    assert "::warning title=deploy.yml is disabled::" in done.stdout


# ---- least privilege -------------------------------------------------------------------------


# Caller workflows grant nothing by default; each job gets exactly what it uses; the called
# Pulumi job declares nothing (it inherits its caller's grant and may not ask for more).
def test_permissions_are_least_privilege() -> None:
    expected = {
        ("preview.yml", "test"): {"contents": "read"},
        ("preview.yml", "stacks"): {"contents": "read"},
        ("preview.yml", "preview"): {
            "contents": "read",
            "pull-requests": "write",
            "id-token": "write",
        },
        ("deploy.yml", "keepalive"): {"actions": "write"},
        ("deploy.yml", "stacks"): {"contents": "read"},
        ("deploy.yml", "deploy"): {"contents": "read", "id-token": "write"},
        ("health.yml", "keepalive"): {"actions": "write"},
        ("health.yml", "stacks"): {"contents": "read"},
        ("health.yml", "health"): {"contents": "read", "id-token": "write"},
        ("_stacks.yml", "list"): {"contents": "read"},
        ("_keepalive.yml", "enable"): {"actions": "write"},
    }
    for name in CALLERS:
        assert load(name)["permissions"] == {}, name
    for name in ("_pulumi.yml", "_stacks.yml", "_keepalive.yml"):
        assert "permissions" not in load(name), name
    assert "permissions" not in jobs("_pulumi.yml")["run"]
    found = {
        (name, job_id): job.get("permissions")
        for name in workflow_files()
        for job_id, job in jobs(name).items()
        if job_id != "run"
    }
    assert found == expected


# No workflow runs with the base repository's secrets on a fork's code, and no checkout leaves
# the token behind in .git/config.
def test_no_pull_request_target_and_no_persisted_token() -> None:
    for name in workflow_files():
        assert not {"pull_request_target", "workflow_run"} & set(triggers(load(name))), name
    checkouts = [
        (n, s) for n, _, s in all_steps() if str(s.get("uses", "")).startswith("actions/checkout@")
    ]
    assert checkouts
    for name, s in checkouts:
        assert s["with"]["persist-credentials"] is False, name


# Previews (a pull request's code) always run on a GitHub-hosted runner; only `up` may use
# vars.DEPLOY_RUNNER.
def test_previews_run_on_hosted_runners_only() -> None:
    run = jobs("_pulumi.yml")["run"]
    assert (
        run["runs-on"] == "${{ inputs.command == 'up' && vars.DEPLOY_RUNNER || 'ubuntu-latest' }}"
    )
    for _, _, job in callers_of(PULUMI):
        assert job["with"]["command"] in ("preview", "up")
    assert [j["with"]["command"] for n, _, j in callers_of(PULUMI) if n == "preview.yml"] == [
        "preview"
    ]


# ---- no dropped runs -------------------------------------------------------------------------


# Deploy and health runs of a stack share one concurrency group that queues every run
# (`queue: max`) and cancels none; previews may cancel each other.
def test_deploy_and_health_runs_queue_and_are_never_dropped() -> None:
    ups = [(n, j) for n, _, j in callers_of(PULUMI) if j["with"]["command"] == "up"]
    assert sorted(n for n, _ in ups) == ["deploy.yml", "health.yml"]
    groups = set()
    for name, job in ups:
        concurrency = job["concurrency"]
        assert concurrency["queue"] == "max", name
        assert concurrency["cancel-in-progress"] is False, name
        groups.add(concurrency["group"])
    assert groups == {"pulumi-${{ matrix.stack }}"}
    for name in workflow_files():
        for where in [load(name), *jobs(name).values()]:
            c = where.get("concurrency")
            if isinstance(c, dict) and c.get("queue") == "max":
                # GitHub: queue: max only "when cancel-in-progress is false or not set".
                assert c.get("cancel-in-progress") in (None, False), name
    assert load("preview.yml")["concurrency"]["cancel-in-progress"] is True


# ---- one place for the shared steps and the CLI version --------------------------------------


# The Pulumi steps (Python, venv, the Docker host, the CLI) are written once, in _pulumi.yml,
# and every Pulumi run of the callers goes through it.
def test_shared_steps_are_written_once() -> None:
    for needle in ("tailscale/github-action@", "pulumi/actions@"):
        where = [(n, j) for n, j, s in all_steps() if str(s.get("uses", "")).startswith(needle)]
        assert where == [("_pulumi.yml", "run")], needle
    for name in CALLERS:
        for job_id, job in jobs(name).items():
            text = yaml.safe_dump(job)
            if job_id != "test":
                assert "steps" not in job, f"{name}:{job_id} should call a shared workflow"
            assert "pulumi " not in text and "stacks.json" not in text, f"{name}:{job_id}"
    readers = [n for n in workflow_files() if "stacks.json" in str(jobs(n))]
    assert readers == ["_stacks.yml"]


# The program's venv is built from requirements.txt alone, which also carries everything the
# policy pack imports (policy/PulumiPolicy.yaml runs the pack in ../venv).
def test_venv_is_the_programs_requirements() -> None:
    installs = [s["run"] for s in pulumi_steps() if "pip install" in str(s.get("run", ""))]
    assert installs == ["python -m venv venv\nvenv/bin/pip install -q -r requirements.txt\n"]

    def names(path: Path) -> set[str]:
        lines = (ln.split("#")[0].strip() for ln in path.read_text().splitlines())
        return {re.split(r"[<>=!~\[ ]", ln)[0].lower() for ln in lines if ln and ln[0] != "-"}

    missing = names(ROOT / "policy" / "requirements.txt") - names(ROOT / "requirements.txt")
    assert not missing, f"requirements.txt lacks what the policy pack imports: {sorted(missing)}"


# The CLI version is read once (requirements.txt's pulumi pin, by stack_facts.py), handed to
# pulumi/actions, recent enough for the R2 backend of docs/guide/ci-cd.md, and checked before
# every command.
def test_pulumi_cli_is_the_sdk_pin(runner: dict[str, str], tmp_path: Path) -> None:
    pins = re.findall(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert len(pins) == 1
    assert facts_mod.pulumi_version((ROOT / "requirements.txt").read_text()) == pins[0]
    assert tuple(int(x) for x in pins[0].split(".")) >= MIN_CLI
    steps = pulumi_steps()
    install = step(steps, "pulumi/actions@")
    assert install["with"] == {"pulumi-version": "${{ steps.facts.outputs.pulumi-version }}"}
    order = [s.get("id") or s.get("uses") for s in steps]
    assert order.index("facts") < order.index(install["uses"]) < order.index("pulumi")
    assert "get.pulumi.com" not in "".join(str(s.get("run", "")) for _, _, s in all_steps())
    # A different CLI on PATH stops the run before login.
    install_fake(runner, "pulumi", FAKE_PULUMI)
    log = tmp_path / "pulumi.log"
    done = run_step(
        step(steps, "pulumi"),
        pulumi_values(),
        runner,
        extra={"FAKE_PULUMI_LOG": str(log), "FAKE_PULUMI_VERSION": "v3.148.0"},
    )
    assert done.returncode == 1
    assert f"not v{pins[0]}" in done.stdout
    assert [c["args"] for c in pulumi_calls(log)] == [["version"]]


# Every `with:` of a third-party action is an input of its action.yml at the pinned commit, the
# required ones are given, and the pin is that commit.
def test_action_inputs_exist_at_the_pinned_commits() -> None:
    seen = set()
    for name, _, s in all_steps():
        uses = str(s.get("uses", ""))
        action, _, ref = uses.partition("@")
        if action.startswith(("actions/", "./")) or not action:
            continue
        assert action in UPSTREAM, f"{name}: {action} has no recorded action.yml"
        spec = UPSTREAM[action]
        assert ref == spec["commit"], f"{name}: pin {action} to {spec['commit']} ({spec['tag']})"
        given = set(s.get("with") or {})
        assert given <= set(spec["inputs"]), (
            f"{action}: unknown {sorted(given - set(spec['inputs']))}"
        )
        required = {k for k, v in spec["inputs"].items() if v["required"] and "default" not in v}
        assert required <= given, action
        seen.add(action)
    assert seen == {"tailscale/github-action", "pulumi/actions"}
    # The version comment beside each pin names the recorded tag.
    text = (WORKFLOWS / "_pulumi.yml").read_text()
    for action, spec in UPSTREAM.items():
        if action != "_about":
            assert f"{action}@{spec['commit']} # {spec['tag']}" in text


# ---- self-hosted runners are never touched ---------------------------------------------------


# tailscale/github-action (sudo install, its own tailscaled, `tailscale up`, logout on exit) and
# the step that writes ~/.ssh only run on GitHub-hosted runners; nothing else writes ~/.ssh.
def test_tailscale_and_ssh_steps_are_hosted_only() -> None:
    guard = "runner.environment == 'github-hosted'"
    tailscale = step(pulumi_steps(), "tailscale/github-action@")
    assert guard in conjuncts(tailscale["if"])
    assert guard in conjuncts(ssh_step()["if"])
    writers = [
        (n, j, s.get("name"))
        for n, j, s in all_steps()
        if re.search(r"\.ssh\b|ssh_dir", str(s.get("run", "")))
    ]
    assert writers == [("_pulumi.yml", "run", ssh_step()["name"])]
    upstream = UPSTREAM["tailscale/github-action"]
    assert upstream["runs"]["post"] == "dist/logout/index.js"  # why the guard matters


# Hosted runners wait for the Docker host over the tailnet (the action's `ping`, up to 3
# minutes) before Pulumi starts; a health run goes on without it (the program then drains).
def test_hosted_runner_waits_for_the_docker_host() -> None:
    steps = pulumi_steps()
    tailscale = step(steps, "tailscale/github-action@")
    assert tailscale["with"]["ping"] == "${{ steps.facts.outputs.tailnet-host }}"
    assert tailscale["continue-on-error"] == "${{ inputs.health }}"
    order = [s.get("id") or s.get("uses") for s in steps]
    assert order.index(tailscale["uses"]) < order.index("pulumi")
    # Workload identity (OIDC) when configured, an OAuth client otherwise.
    assert tailscale["with"]["audience"] == "${{ vars.TS_CI_OIDC_AUDIENCE }}"
    host = facts_mod.docker_host("ssh://deploy@homeserver:2222")
    assert (host.host, host.known_hosts_name) == ("homeserver", "[homeserver]:2222")


# The preflight stops a hosted runner from touching its own Docker daemon (a unix:// dockerHost):
# `up` fails with the key named and the fix, a preview is skipped; a self-hosted runner proceeds.
@pytest.mark.parametrize(
    ("runner_kind", "command", "code", "go"),
    [
        ("github-hosted", "up", 1, None),
        ("github-hosted", "preview", 0, "false"),
        ("self-hosted", "up", 0, "true"),
    ],
)
def test_preflight_never_deploys_to_the_runner(
    runner: dict[str, str], runner_kind: str, command: str, code: int, go: str | None
) -> None:
    values = {
        "inputs.command": command,
        "inputs.health": "false",
        "inputs.stack": "home",
        "steps.facts.outputs.docker-scheme": "unix",
        "steps.facts.outputs.docker-host": "unix:///var/run/docker.sock",
        "steps.facts.outputs.tailnet-host": "",
        "steps.facts.outputs.region-ipv4": "false",
        "steps.facts.outputs.validate": "enforce",
    }
    runner["RUNNER_ENVIRONMENT"] = runner_kind
    done = run_step(step(pulumi_steps(), "preflight"), values, runner)
    assert done.returncode == code, done.stdout + done.stderr
    assert outputs(runner).get("go") == go
    if runner_kind == "github-hosted":
        assert "home-derp:dockerHost" in done.stdout and "ssh://user@" in done.stdout


# A hosted runner (no IPv6) cannot reach a Docker host on the tailnet homed on a region with no
# IPv4: `up` and health runs stop at once with the two ways out, a preview is skipped; a region
# with IPv4, or a self-hosted runner, goes on.
@pytest.mark.parametrize(
    ("runner_kind", "command", "region_ipv4", "code", "go"),
    [
        ("github-hosted", "up", "false", 1, None),
        ("github-hosted", "preview", "false", 0, "false"),
        ("github-hosted", "up", "true", 0, "true"),
        ("self-hosted", "up", "false", 0, "true"),
    ],
)
def test_preflight_names_an_unreachable_ipv6_only_host(
    runner: dict[str, str], runner_kind: str, command: str, region_ipv4: str, code: int,
    go: str | None,
) -> None:  # fmt: skip
    values = {
        "inputs.command": command,
        "inputs.health": "false",
        "inputs.stack": "home",
        "steps.facts.outputs.docker-scheme": "ssh",
        "steps.facts.outputs.docker-host": "ssh://deploy@homeserver",
        "steps.facts.outputs.tailnet-host": "homeserver",
        "steps.facts.outputs.region-ipv4": region_ipv4,
        "steps.facts.outputs.validate": "enforce",
    }
    runner["RUNNER_ENVIRONMENT"] = runner_kind
    done = run_step(step(pulumi_steps(), "preflight"), values, runner)
    assert done.returncode == code, done.stdout + done.stderr
    assert outputs(runner).get("go") == go
    if code or go == "false":
        assert "vars.DEPLOY_RUNNER" in done.stdout and "home-derp:ipv4" in done.stdout


# Without backend credentials a preview (fork PR) is skipped with a note, an `up` fails loudly;
# an s3:// backend needs both halves of the key pair and the passphrase.
@pytest.mark.parametrize(
    ("command", "secrets", "code", "ready"),
    [
        ("preview", {}, 0, "false"),
        ("up", {}, 1, "false"),
        ("up", {"PULUMI_ACCESS_TOKEN": "t"}, 0, "true"),
    ],
)
def test_credentials_check(
    runner: dict[str, str], command: str, secrets: dict[str, str], code: int, ready: str
) -> None:
    values = {"inputs.command": command, "inputs.stack": "home"}
    values.update({f"secrets.{k}": v for k, v in secrets.items()})
    done = run_step(step(pulumi_steps(), "creds"), values, runner)
    assert done.returncode == code
    assert outputs(runner)["ready"] == ready
    values = {
        "inputs.command": "up",
        "inputs.stack": "home",
        "vars.PULUMI_BACKEND_URL": "s3://state?endpoint=x.r2.cloudflarestorage.com&region=auto",
        "secrets.AWS_ACCESS_KEY_ID": "k",
    }
    Path(runner["GITHUB_OUTPUT"]).unlink()
    done = run_step(step(pulumi_steps(), "creds"), values, runner)
    assert done.returncode == 1
    assert "secrets.AWS_SECRET_ACCESS_KEY" in done.stdout
    assert "secrets.PULUMI_CONFIG_PASSPHRASE" in done.stdout


# ---- the ssh:// Docker host without a prompt -------------------------------------------------


def ssh_values(sshd: Sshd, known_hosts: str, key: str) -> dict[str, str]:
    host = facts_mod.docker_host(sshd.docker_host)
    return {
        "steps.facts.outputs.tailnet-host": host.host,
        "steps.facts.outputs.known-hosts-name": host.known_hosts_name,
        "steps.facts.outputs.docker-host": sshd.docker_host,
        "vars.DOCKER_SSH_KNOWN_HOSTS": known_hosts,
        "secrets.DOCKER_SSH_KEY": key,
    }


def batch_ssh(ssh_dir: Path, sshd: Sshd) -> subprocess.CompletedProcess[str]:
    """What the Docker provider's ssh connection does: plain OpenSSH with the user's config."""
    argv = ["ssh", "-F", str(ssh_dir / "config"), "-p", str(sshd.port), f"{sshd.user}@127.0.0.1"]
    return subprocess.run(
        [*argv, "echo", "reached"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
        check=False,
    )


def known_hosts_line(sshd: Sshd) -> str:
    option = next(o for o in sshd.client_options if o.startswith("UserKnownHostsFile="))
    return Path(option.split("=", 1)[1]).read_text()


# With known_hosts and a key from the repository settings, a real sshd is reached in batch mode.
def test_ssh_step_reaches_the_docker_host(
    runner: dict[str, str], sshd_factory: Any, tmp_path: Path
) -> None:
    sshd = sshd_factory()
    values = ssh_values(sshd, known_hosts_line(sshd), sshd.key.read_text())
    ssh_dir = tmp_path / "ssh"
    done = run_step(ssh_step(), values, runner, extra={"SSH_DIR": str(ssh_dir)})
    assert done.returncode == 0, done.stdout + done.stderr
    reached = batch_ssh(ssh_dir, sshd)
    assert reached.returncode == 0, reached.stderr
    assert reached.stdout.strip() == "reached"
    assert stat.S_IMODE((ssh_dir / "docker_host_key").stat().st_mode) == 0o600


# An empty DOCKER_SSH_KNOWN_HOSTS (with or without a key: Tailscale SSH) and one without a line
# for the host both fail with the variable named and the ssh-keyscan command to run.
def test_ssh_step_requires_known_hosts_for_the_host(
    runner: dict[str, str], sshd_factory: Any, tmp_path: Path
) -> None:
    sshd = sshd_factory()
    for known, key in (("", ""), ("", sshd.key.read_text())):
        done = run_step(
            ssh_step(), ssh_values(sshd, known, key), runner, extra={"SSH_DIR": str(tmp_path / "a")}
        )
        assert done.returncode == 1
        assert "DOCKER_SSH_KNOWN_HOSTS is empty" in done.stdout
        assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in done.stdout
    other_port = known_hosts_line(sshd).replace(f"]:{sshd.port} ", "]:1 ")
    done = run_step(
        ssh_step(), ssh_values(sshd, other_port, ""), runner, extra={"SSH_DIR": str(tmp_path / "b")}
    )
    assert done.returncode == 1
    assert f"no line for [127.0.0.1]:{sshd.port}" in done.stdout


# A known_hosts line with the wrong key is refused by OpenSSH in batch mode: never a prompt,
# never "accept new".
def test_ssh_step_refuses_a_changed_host_key(
    runner: dict[str, str], sshd_factory: Any, tmp_path: Path
) -> None:
    sshd = sshd_factory()
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    wrong = f"[127.0.0.1]:{sshd.port} {kind} {key}\n"
    ssh_dir = tmp_path / "ssh"
    done = run_step(
        ssh_step(),
        ssh_values(sshd, wrong, sshd.key.read_text()),
        runner,
        extra={"SSH_DIR": str(ssh_dir)},
    )
    assert done.returncode == 0
    refused = batch_ssh(ssh_dir, sshd)
    assert refused.returncode == 255
    assert "host key" in refused.stderr.lower()


# ---- validation needs IPv6 from the runner ---------------------------------------------------


@contextmanager
def netns(with_ipv6_route: bool) -> Iterator[str]:
    """A fresh network namespace: no routes at all, or an IPv6 default route over a veth."""
    name = f"hdwf{os.getpid()}x{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        if with_ipv6_route:
            for cmd in (
                ["link", "add", "a0", "type", "veth", "peer", "name", "b0"],
                ["link", "set", "a0", "up"],
                ["link", "set", "b0", "up"],
                ["-6", "addr", "add", "fd00:213::2/64", "dev", "a0", "nodad"],
                ["-6", "route", "add", "default", "via", "fd00:213::1", "dev", "a0"],
            ):
                subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# A runner without an IPv6 route (a GitHub-hosted one) stops before Pulumi with the fix named,
# unless the region has IPv4 (then it is judged on IPv4, with a notice); one with a route goes on.
# Real routing tables, no packet sent.
@pytest.mark.parametrize(("route", "region_ipv4"), [(False, False), (True, False), (False, True)])
def test_ipv6_route_check(runner: dict[str, str], route: bool, region_ipv4: bool) -> None:
    assert os.geteuid() == 0, "network namespaces need root: run the suite with sudo"
    need("ip", "iproute2")
    step_ = ipv6_step()
    assert "inputs.command == 'up'" in conjuncts(step_["if"])
    values = {
        "inputs.stack": "home",
        "steps.facts.outputs.ipv6-probe": facts_mod.facts(ROOT, "home")["ipv6-probe"],
        "steps.facts.outputs.validate": "enforce",
        "steps.facts.outputs.region-ipv4": "true" if region_ipv4 else "false",
    }
    with netns(route) as ns:
        done = run_step(step_, values, runner, prefix=("ip", "netns", "exec", ns))
    if route:
        assert done.returncode == 0, done.stdout + done.stderr
    elif region_ipv4:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "::notice title=IPv6 not judged from here::" in done.stdout
    else:
        assert done.returncode == 1
        assert "TS_CI_EXIT_NODE" in done.stdout and "Nothing was changed" in done.stdout
        assert "only a runner with IPv6 of its own" in done.stdout


# ---- the Pulumi command of each kind of run --------------------------------------------------


def run_pulumi(runner: dict[str, str], tmp_path: Path, values: dict[str, str]) -> dict[str, Any]:
    install_fake(runner, "pulumi", FAKE_PULUMI)
    log = tmp_path / f"pulumi-{uuid.uuid4().hex}.log"
    version = values["steps.facts.outputs.pulumi-version"]
    done = run_step(
        step(pulumi_steps(), "pulumi"),
        values,
        runner,
        extra={"FAKE_PULUMI_LOG": str(log), "FAKE_PULUMI_VERSION": f"v{version}"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return the_operation(pulumi_calls(log))


# A health run is a targeted `up` of exactly the validation, the policy resource, the usage
# history and the gate, with HOME_DERP_HEALTH_RUN=1 and a nonce no earlier run used; it previews
# first (no --skip-preview), runs the policy pack and never refreshes.
def test_health_run_targets_exactly_validation_policy_and_gate(
    runner: dict[str, str], tmp_path: Path
) -> None:
    health = jobs("health.yml")["health"]
    assert health["with"] == {"command": "up", "stack": "${{ matrix.stack }}", "health": True}
    values = pulumi_values(health="true")
    op = run_pulumi(runner, tmp_path, values)
    args = op["args"]
    assert op["health"] == "1"
    expected = facts_mod.facts(ROOT, "home")["health-targets"].splitlines()
    assert flag_values(args, "--target") == expected
    assert [urn.rsplit("::", 1)[1] for urn in expected] == [
        "relay-900-validation",
        "relay-900-tailnet-region",
        "relay-900-usage",
        "relay-900-health-gate",
    ]
    assert flag_values(args, "--config") == ["home-derp:validateNonce=health-777-2"]
    assert "--yes" in args and "--skip-preview" not in args and "--refresh" not in args
    assert flag_values(args, "--policy-pack") == ["policy"]
    assert "--skip-plugin-pre-install" in args  # no Docker/Cloudflare/ACME plugin downloads
    runner["GITHUB_RUN_ID"] = "778"
    again = run_pulumi(runner, tmp_path, values)
    assert flag_values(again["args"], "--config") == ["home-derp:validateNonce=health-778-2"]


# A deploy is an untargeted `up` (weekly: refreshed, with a fresh nonce); a preview neither
# targets, nor sets a nonce, nor answers --yes; neither is a health run.
def test_deploy_and_preview_commands(runner: dict[str, str], tmp_path: Path) -> None:
    weekly = run_pulumi(runner, tmp_path, pulumi_values(refresh="true", revalidate="true"))
    assert weekly["health"] is None
    assert not flag_values(weekly["args"], "--target")
    assert flag_values(weekly["args"], "--config") == ["home-derp:validateNonce=deploy-777-2"]
    assert {"--yes", "--refresh", "--diff"} <= set(weekly["args"])
    assert "--skip-plugin-pre-install" not in weekly["args"]
    preview = run_pulumi(runner, tmp_path, pulumi_values(command="preview"))
    assert preview["args"][:1] == ["preview"] and preview["health"] is None
    assert not {"--yes", "--target", "--config", "--refresh"} & set(preview["args"])


# The health targets are what the program registers in a health run, and they exist after a
# deploy (the engine refuses a literal target that is neither in the state nor registered).
@pytest.mark.parametrize("stack_file", STACK_FILES, ids=stack_name)
def test_health_targets_match_the_program(
    stack_file: Path, mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stack_name(stack_file)
    targets = set(facts_mod.facts(ROOT, stack)["health-targets"].splitlines())
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("HOME_DERP_HEALTH_RUN", "1")
    health = engine_urns(stack, stack_file, mocks)
    assert health == targets, "a health run registers the validation, policy, usage and gate"
    assert not {u for u in health if re.search(r"\$(docker|cloudflare|acme|tls):", u)}
    monkeypatch.delenv("HOME_DERP_HEALTH_RUN")
    assert targets <= engine_urns(stack, stack_file, mocks)


def engine_urns(stack: str, stack_file: Path, mocks: RelayMocks) -> set[str]:
    """URNs the engine gives the program's custom resources (providers aside) under mocks."""
    assert install_mocks(stack) is mocks
    set_config(
        {
            **stack_config(stack_file),
            "cloudflare:apiToken": FAKE_TOKEN,
            "tailscale:apiKey": FAKE_TAILSCALE_KEY,
        }
    )

    @pulumi.runtime.test
    async def run() -> None:
        run_program()

    run()
    components = {
        r.name: r.typ for r in mocks.resources if not r.custom and r.typ != "pulumi:pulumi:Stack"
    }
    urns = set()
    for r in mocks.resources:
        if not r.custom or r.typ.startswith("pulumi:providers:"):
            continue
        parent = mocks.options[r.name].parent
        parent_name = parent.rsplit("::", 1)[1]
        assert components.get(parent_name) == facts_mod.COMPONENT_TYPE, r.name
        grandparent = mocks.options[parent_name].parent
        assert grandparent.split("::")[2] == "pulumi:pulumi:Stack", "relay is a top resource"
        urns.add(facts_mod.urn(stack, "home-derp", facts_mod.COMPONENT_TYPE, r.typ, r.name))
    return urns


# A stack with a companion node: its health run also targets the companion's validation, exactly
# what the program registers; the facts say its region has IPv4.
def test_health_targets_with_a_companion_match_the_program(
    tmp_path: Path, mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("Pulumi.yaml", "requirements.txt"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    stack_file = tmp_path / "Pulumi.duo.yaml"
    stack_file.write_text(
        (ROOT / "Pulumi.home.yaml").read_text().replace("home-derp:ipv4: none", "")
        + "  home-derp:companionHostname: derp2.example.com\n"
        + "  home-derp:companionDockerHost: ssh://root@vps.example.com\n"
        + "  home-derp:companionIpv4: 203.0.114.9\n"
    )
    facts = facts_mod.facts(tmp_path, "duo")
    assert facts["region-ipv4"] == "true"
    targets = set(facts["health-targets"].splitlines())
    assert any(t.endswith("::relay-900-companion-validation") for t in targets)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("HOME_DERP_HEALTH_RUN", "1")
    assert engine_urns("duo", stack_file, mocks) == targets
    monkeypatch.delenv("HOME_DERP_HEALTH_RUN")
    assert targets <= engine_urns("duo", stack_file, mocks)
    assert facts_mod.facts(ROOT, "home")["region-ipv4"] == "false"  # ipv4: none


# What the workflows read from the committed files is what the CLI hands the program.
@pytest.mark.parametrize("stack_file", STACK_FILES, ids=stack_name)
def test_stack_facts_read_config_as_the_cli_does(stack_file: Path) -> None:
    _, values = facts_mod.stack_values(ROOT, stack_name(stack_file))
    ours = {f"home-derp:{k}": v for k, v in values.items()}
    cli = stack_config(stack_file)
    assert ours == {k: v for k, v in cli.items() if k.startswith("home-derp:")}
    facts = facts_mod.facts(ROOT, stack_name(stack_file))
    assert facts["docker-host"] == ours["home-derp:dockerHost"]
    assert facts["region-id"] == ours["home-derp:regionId"]
    assert facts["validate"] == ours["home-derp:validate"]
    assert facts["tailnet-policy"] == ours["home-derp:tailnetPolicy"]


# file mode targets the whole-policy Acl instead of the region; off mode only validation + gate.
def test_health_targets_follow_the_policy_mode() -> None:
    def names(mode: str) -> list[str]:
        urns = facts_mod.health_targets("org/home-derp/home", "home-derp", "905", mode)
        assert all(u.startswith("urn:pulumi:home::home-derp::") for u in urns)
        return [u.split("::", 2)[2] for u in urns]

    gate = "homederp:index:HomeDerpRelay$pulumi-python:dynamic/homederp:RelayHealthGate"
    validation = "homederp:index:HomeDerpRelay$pulumi-python:dynamic/homederp:RelayValidation"
    usage = "homederp:index:HomeDerpRelay$pulumi-python:dynamic/homederp:RelayUsage"
    assert names("file") == [
        f"{validation}::relay-905-validation",
        "homederp:index:HomeDerpRelay$tailscale:index/acl:Acl::relay-905-tailnet-policy",
        f"{usage}::relay-905-usage",
        f"{gate}::relay-905-health-gate",
    ]
    assert names("off") == [
        f"{validation}::relay-905-validation",
        f"{usage}::relay-905-usage",
        f"{gate}::relay-905-health-gate",
    ]


# ---- the report: a PR comment for failed previews too ----------------------------------------


# The report step runs after a failed command too, and only a preview of a pull request comments.
def test_report_runs_on_failure() -> None:
    report = report_step()
    text = " ".join(report["if"].split())
    assert "!cancelled()" in text and "steps.pulumi.outcome == 'failure'" in text
    assert report["env"]["OUTCOME"] == "${{ steps.pulumi.outcome }}"
    assert report["env"]["PR_NUMBER"] == "${{ github.event.pull_request.number }}"


# A preview failing on a mandatory violation yields a report with the violation (once), the
# advisory one, the error and the change counts, under the comment's marker.
def test_report_of_a_failed_preview_names_the_violations() -> None:
    lines = (DATA / "preview-policy-failure.events.jsonl").read_text().splitlines()
    events = report_mod.read_events(lines)
    body = report_mod.render(
        stack="home", command="preview", outcome="failure", events=events, output="boom\n"
    )
    assert body.splitlines()[0] == report_mod.marker("home", "preview")
    assert "FAILED" in body
    assert body.count("home-derp/relay-dns-not-proxied") == 1
    assert "1 mandatory (these stop the run), 1 advisory" in body
    assert "relay-900-aaaa (cloudflare:index/dnsRecord:DnsRecord)" in body
    assert "preview failed: 1 mandatory policy violation" in body
    assert "a warning that is not an error" not in body
    assert "**Resources:** 11 same, 1 update" in body


# However long the CLI output, the comment stays under GitHub's limit and keeps its head.
def test_report_fits_a_comment() -> None:
    events = report_mod.read_events([])
    body = report_mod.render(
        stack="s", command="preview", outcome="failure", events=events, output="x```\n" * 40_000
    )
    assert len(body) < report_mod.COMMENT_LIMIT
    assert "earlier output cut" in body and "````text" in body


FAKE_GH = '''#!/usr/bin/env python3
"""Stands in for `gh api` (no GitHub here): the issue-comments endpoints of the REST API
(docs.github.com/en/rest/issues/comments: list returns [{id, body, user: {login}}]; create
POSTs, update PATCHes, each with a `body` field), kept in a JSON file."""
import json, os, sys
state_path = os.environ["FAKE_GH_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
assert args[0] == "api", args
method = args[args.index("--method") + 1] if "--method" in args else "GET"
path = [a for a in args[1:] if a.startswith("repos/")][0]
if method == "GET":
    print(json.dumps(state["comments"]))
    sys.exit(0)
field = args[args.index("-F") + 1]
assert field.startswith("body=@")
body = open(field[len("body=@"):]).read()
state["calls"].append([method, path])
if method == "POST":
    state["comments"].append({"id": 100 + len(state["comments"]), "body": body,
                              "user": {"login": "github-actions[bot]"}})
else:
    cid = int(path.rsplit("/", 1)[1])
    for c in state["comments"]:
        if c["id"] == cid:
            c["body"] = body
json.dump(state, open(state_path, "w"))
print("{}")
'''


# A failed preview posts its report as a PR comment, and the next run edits that comment
# instead of adding another (a human's comment starting with the marker is left alone).
def test_failed_preview_comments_once_per_stack(runner: dict[str, str], tmp_path: Path) -> None:
    need("jq", "jq")
    install_fake(runner, "gh", FAKE_GH)
    state = tmp_path / "gh.json"
    mark = report_mod.marker("home", "preview")
    human = {"id": 7, "body": mark + "\nquoted by a human", "user": {"login": "octocat"}}
    state.write_text(json.dumps({"comments": [human], "calls": []}))
    temp = Path(runner["RUNNER_TEMP"])
    (temp / "pulumi-events.jsonl").write_text(
        (DATA / "preview-policy-failure.events.jsonl").read_text()
    )
    (temp / "pulumi-output.txt").write_text("error: preview failed\n")
    values = {
        "github.token": "ghs-not-real",
        "inputs.command": "preview",
        "inputs.stack": "home",
        "steps.pulumi.outcome": "failure",
        "github.event.pull_request.number": "42",
    }
    for _ in range(2):
        done = run_step(report_step(), values, runner, extra={"FAKE_GH_STATE": str(state)})
        assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(state.read_text())
    assert result["calls"] == [
        ["POST", "repos/owner/home-derp/issues/42/comments"],
        ["PATCH", "repos/owner/home-derp/issues/comments/101"],
    ]
    ours = [c for c in result["comments"] if c["user"]["login"] == "github-actions[bot]"]
    assert len(ours) == 1 and "relay-dns-not-proxied" in ours[0]["body"]
    assert result["comments"][0] == human
    assert "relay-dns-not-proxied" in Path(runner["GITHUB_STEP_SUMMARY"]).read_text()


# A health run's summary shows the verdict the stack output `validation` carries, and the usage
# output's charts and table (components/usage_summary.py); a stack without that output yet
# (FAKE_PULUMI_USAGE unset: `stack output usage` fails) gets the verdict alone.
@pytest.mark.parametrize("with_usage", [True, False])
def test_health_summary_shows_the_verdict(
    runner: dict[str, str], tmp_path: Path, with_usage: bool
) -> None:
    install_fake(runner, "pulumi", FAKE_PULUMI)
    log = tmp_path / "pulumi.log"
    usage = tmp_path / "usage.json"
    run = {"at": "2026-12-06T04:41:00+00:00", "healthy": False, "latencyMs": 47.3,
           "defaultMs": 71.6, "defaultRegion": "tok", "homed": 3, "hostHomed": True}  # fmt: skip
    usage.write_text(json.dumps({"regionCode": "home", "history": [run], "warning": None}))
    values = pulumi_values(health="true")
    done = run_step(
        step(pulumi_steps(), "pulumi"),
        values,
        runner,
        extra={
            "FAKE_PULUMI_LOG": str(log),
            "FAKE_PULUMI_VERSION": f"v{values['steps.facts.outputs.pulumi-version']}",
            "FAKE_PULUMI_EXIT": "255",
            "FAKE_PULUMI_USAGE": str(usage) if with_usage else "",
        },
    )
    assert done.returncode == 255  # the gate's failure is the run's
    calls = [c["args"][:3] for c in pulumi_calls(log)]
    assert calls[-2:] == [["stack", "output", "validation"], ["stack", "output", "usage"]]
    report_values = {
        "github.token": "t",
        "inputs.command": "up",
        "inputs.stack": "home",
        "steps.pulumi.outcome": "failure",
        "github.event.pull_request.number": "",
    }
    done = run_step(report_step(), report_values, runner)
    assert done.returncode == 0, done.stderr
    summary = Path(runner["GITHUB_STEP_SUMMARY"]).read_text()
    assert "drained from the tailnet" in summary and "certificate days left:** 19" in summary
    if with_usage:
        assert "#### Usage of region home" in summary and "```mermaid" in summary
        assert "  line [47.3]\n  line [71.6]" in summary and "| 12-06 04:41 | ❌ |" in summary
    else:
        assert "Usage of region" not in summary


# ---- the test job is the project's CI entry --------------------------------------------------


# Pull requests run `.ci/run` (as root, on Python 3.11), so package lists live in one place.
def test_test_job_runs_the_ci_entry() -> None:
    test = jobs("preview.yml")["test"]
    runs = [s["run"] for s in test["steps"] if "run" in s]
    assert runs == ['sudo env "PATH=$PATH" bash .ci/run']
    python = step(test["steps"], "actions/setup-python@")
    assert python["with"]["python-version"] == "3.11"
    for name, _, s in all_steps():
        assert "apt-get" not in str(s.get("run", "")), f"{name}: package lists live in .ci/run"
    assert jobs("preview.yml")["preview"]["needs"] == ["stacks", "test"]
