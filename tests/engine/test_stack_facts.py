""".github/scripts/stack_facts.py resolves config exactly as the real Pulumi CLI does.

The oracle is the real CLI's ``pulumi config --json`` (the config it merges for a stack from
Pulumi.yaml and the stack file: pulumi/pulumi pkg/workspace/config.go ``mergeConfig``), run on a
``file://`` backend in a temporary directory; no program, no world.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.peers.tools import REPO, pulumi_cli
from tests.test_workflows import facts_mod

#: A project file with every shape of config the CLI merges: typed keys with a default or a
#: value, a bare literal, a key of another namespace.
PROJECT = """\
name: proj
runtime: python
config:
  port:
    type: integer
    default: 443
  mode:
    type: string
    value: from-value
  short: literal
  other:region: us-east
  list:
    type: array
    items:
      type: string
    default: [a, b]
"""
STACK = """\
config:
  proj:port: 8443
  flag: true
  proj:obj:
    a: 1
"""


def cli_config(project_dir: Path, stack: str) -> tuple[int, dict[str, str], str]:
    """(exit code, key → value without secrets, stderr) of ``pulumi config --json``."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(project_dir / "home"),
        "PULUMI_HOME": str(project_dir / "pulumi-home"),
        "PULUMI_BACKEND_URL": f"file://{project_dir / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "stack-facts-test",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    (project_dir / "state").mkdir(exist_ok=True)
    cli = str(pulumi_cli())
    run: dict[str, Any] = {"cwd": project_dir, "env": env, "capture_output": True, "text": True}
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    kept = stack_file.read_text()
    subprocess.run([cli, "stack", "init", stack], **run, timeout=60, check=False)
    stack_file.write_text(kept)  # `stack init` may rewrite it
    done = subprocess.run([cli, "config", "--json", "-s", stack], **run, timeout=60, check=False)
    if done.returncode != 0:
        return done.returncode, {}, done.stderr
    shown = json.loads(done.stdout)
    return 0, {k: v["value"] for k, v in shown.items() if not v.get("secret")}, done.stderr


def ours(project_dir: Path, stack: str) -> dict[str, str]:
    return dict(
        facts_mod.resolved_config(
            yaml.safe_load((project_dir / "Pulumi.yaml").read_text()),
            yaml.safe_load((project_dir / f"Pulumi.{stack}.yaml").read_text()),
            stack,
        )
    )


# Every committed stack: the workflow's facts come from the config the CLI would hand the program.
@pytest.mark.parametrize("stack", ["home", "office"])
def test_committed_stacks_agree_with_the_cli(stack: str, tmp_path: Path) -> None:
    for name in ("Pulumi.yaml", f"Pulumi.{stack}.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    code, cli, err = cli_config(tmp_path, stack)
    assert code == 0, err
    assert ours(tmp_path, stack) == cli


# Defaults, values, bare literals, other namespaces, bare stack keys, structured values.
def test_every_shape_agrees_with_the_cli(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(PROJECT)
    (tmp_path / "Pulumi.dev.yaml").write_text(STACK)
    code, cli, err = cli_config(tmp_path, "dev")
    assert code == 0, err
    assert ours(tmp_path, "dev") == cli
    assert cli["proj:flag"] == "true" and cli["proj:mode"] == "from-value"


# A stack that imports ESC environments: the values are not in the repository, so the facts are
# refused with the file and the fix (the CLI, on a self-managed backend, cannot read them either).
def test_esc_environments_are_refused(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(PROJECT)
    (tmp_path / "Pulumi.dev.yaml").write_text("environment:\n  - myorg/relay\n" + STACK)
    code, _, err = cli_config(tmp_path, "dev")
    assert code != 0 and "environments" in err
    with pytest.raises(facts_mod.FactsError, match=r"Pulumi\.dev\.yaml imports Pulumi ESC"):
        ours(tmp_path, "dev")
