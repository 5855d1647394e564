"""Long-running real programs for the tests: started with their log in a file, stopped for sure.

Every wait is bounded and its failure message carries the logs of the daemons involved, so a
broken start-up says why (the program's own words) instead of "timed out".
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
LOG_TAIL = 60  # lines of each daemon log shown in a failure


class DaemonError(AssertionError):
    """A real peer did not start or did not reach the expected state (the test fails)."""


@dataclass
class Daemon:
    """One real process; stdout and stderr both go to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    extra_logs: list[Path] = field(default_factory=list)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def describe(self, lines: int = LOG_TAIL) -> str:
        state = "running" if self.alive() else f"exited with {self.process.returncode}"
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- {self.name} ({state}): {' '.join(self.argv)}\n{tail}"

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``; the whole process group (ip netns exec …)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def start(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Daemon:
    """Start ``argv`` in its own process group (so stop() reaches ``ip netns exec`` children)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    return Daemon(name, list(argv), log_path, process)


def describe_all(daemons: Sequence[Daemon]) -> str:
    return "\n".join(d.describe() for d in daemons)


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    daemons: Sequence[Daemon] = (),
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until it returns a truthy value; DaemonError with the logs otherwise.

    A daemon that exits while we wait ends the wait at once (it will not come back).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
        except Exception as exc:  # the probe's own failure is the most useful diagnosis
            value, last_error = None, exc
        if value:
            return value
        dead = [d for d in daemons if not d.alive()]
        if dead or time.monotonic() > deadline:
            why = f"{dead[0].name} exited" if dead else f"not within {timeout:.0f}s"
            detail = f" (last probe error: {last_error!r})" if last_error else ""
            raise DaemonError(f"{what}: {why}{detail}\n{describe_all(daemons)}")
        time.sleep(interval)


def run(
    argv: Sequence[str],
    *,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    daemons: Sequence[Daemon] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a short command; with ``check`` a failure raises DaemonError with the daemons' logs."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else dict(env),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise DaemonError(
            f"{' '.join(argv)} took longer than {timeout}s\n{describe_all(daemons)}"
        ) from exc
    if check and done.returncode != 0:
        raise DaemonError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
            f"{describe_all(daemons)}"
        )
    return done
