"""The two command-line tools start from any directory, and a Python without the project's
packages is told which command creates the virtualenv (never a raw ModuleNotFoundError)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.mocks import ROOT

TOOLS = ("doctor", "netcheck")


def run(python: Path | str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with nothing installed: what `python3` is on a fresh machine."""
    where = tmp_path_factory.mktemp("bare-venv")
    venv.create(where, with_pip=False)
    return where / "bin" / "python"


# Outside the checkout, `python <checkout>/components/<tool>` runs the tool.
@pytest.mark.parametrize("tool", TOOLS)
def test_runs_from_another_directory(tool: str, tmp_path: Path) -> None:
    done = run(sys.executable, str(ROOT / "components" / tool), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m components.{tool}")


# The doctor outside any project names the -C that works, and -C finds the stacks.
def test_doctor_names_the_checkout_and_takes_c(tmp_path: Path) -> None:
    doctor = str(ROOT / "components" / "doctor")
    lost = run(sys.executable, doctor, "-s", "home", cwd=tmp_path)
    assert lost.returncode == 3
    assert f"no Pulumi.yaml in {tmp_path.resolve()} or above" in lost.stderr
    assert f"(-C {ROOT})" in lost.stderr
    found = run(sys.executable, doctor, "-C", str(ROOT), "-s", "no-such-stack", cwd=tmp_path)
    assert found.returncode == 2 and "stacks here: home, office" in found.stderr, found.stderr


# A Python without the packages says how to make the venv, exit 3, no traceback.
@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("how", ["-m", "path"])
def test_without_the_venv_the_fix_is_named(
    tool: str, how: str, bare_python: Path, tmp_path: Path
) -> None:
    args = ["-m", f"components.{tool}"] if how == "-m" else [str(ROOT / "components" / tool)]
    done = run(bare_python, *args, "--help", cwd=ROOT if how == "-m" else tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "python3 -m venv venv && venv/bin/pip install -r requirements.txt" in done.stderr
    assert f"venv/bin/python -m components.{tool}" in done.stderr
