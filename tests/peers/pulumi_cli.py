"""A throwaway project for the real Pulumi CLI (``tests.peers.tools.pulumi_cli``, built from the
Go module proxy by tests/tools/install), for what only it can say.

:func:`Project.config_error` runs ``pulumi preview`` on a throwaway project with a local backend and
passphrase: the CLI validates the stack's config before it needs a language host (none is built
here), so the first line it stops on is the validation error, or, when the config is valid, that
the Python language plugin is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.peers.tools import pulumi_cli

__all__ = ["Project", "environment", "pulumi_cli"]

#: cmd/pulumi/operations/up.go:218 (preview.go the same): what precedes the CLI's own message.
PREFIX = "validating stack config: "
#: What the CLI says next when the config is valid and no Python language host exists.
NO_LANGUAGE_HOST = "no language plugin 'pulumi-language-python' found"


def environment(workdir: Path) -> dict[str, str]:
    """A private PULUMI_HOME, a local file backend and a passphrase: nothing leaves ``workdir``."""
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PULUMI_HOME": str(workdir / "pulumi-home"),
        "PULUMI_BACKEND_URL": f"file://{workdir / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "home-derp-test",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }


class Project:
    """A throwaway copy of ``project_file`` with one stack, ``stack``, on a local backend."""

    def __init__(self, workdir: Path, project_file: Path, stack: str = "t") -> None:
        self.dir = workdir / "project"
        self.dir.mkdir(parents=True)
        shutil.copy(project_file, self.dir / "Pulumi.yaml")
        self.stack = stack
        self.env = environment(workdir)
        self.cli = str(pulumi_cli())
        self.run("stack", "init", stack, "--non-interactive", check=True)

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.cli, *args],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def config_error(self, stack_file: str) -> str | None:
        """The CLI's validation message for ``Pulumi.<stack>.yaml`` = ``stack_file``, or None
        when it accepts the config (and goes on to look for the language host)."""
        (self.dir / f"Pulumi.{self.stack}.yaml").write_text(stack_file)
        done = self.run("preview", "-s", self.stack, "--non-interactive")
        said = done.stdout + done.stderr
        for line in said.splitlines():
            if PREFIX in line:
                return line.split(PREFIX, 1)[1].strip()
        if NO_LANGUAGE_HOST in said:
            return None
        raise AssertionError(f"`pulumi preview` said neither: {said}")
