"""A real tailscaled on this machine: the program built by tests/tools/install, with userspace
networking, its own socket and state, logged out (NeedsLogin).

Used by tests/test_tailscaled.py (reading the host's daemon) and tests/test_peer_relay.py (the
peer relay set on it), through the ``real_tailscaled`` fixture of tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.peers.tools import tool


class RealTailscaled:
    """A real tailscaled on this machine: userspace networking, its own socket and state."""

    def __init__(self, workdir: Path) -> None:
        self.socket = str(workdir / "run" / "tailscaled.sock")
        (workdir / "run").mkdir(parents=True, mode=0o755)
        self.log = workdir / "tailscaled.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(tool("tailscaled")),
                    "--tun=userspace-networking",
                    f"--statedir={workdir / 'state'}",
                    f"--socket={self.socket}",
                    "--port=0",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"tailscaled did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@contextmanager
def real_tailscaled() -> Iterator[RealTailscaled]:
    """A running daemon, stopped and its files removed on exit."""
    # Not under pytest's 0700 tmp dirs: the socket's directory must be reachable by other users,
    # as /var/run/tailscale is (the access-denied test connects as nobody).
    workdir = Path(tempfile.mkdtemp(prefix="hd-tsd-"))
    workdir.chmod(0o755)
    daemon = RealTailscaled(workdir)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
