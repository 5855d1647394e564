"""coturn (``turnserver``) as a real, independent STUN server on 127.0.0.1 and ::1.

A missing binary is a failure, never a skip: ``tests/run`` installs coturn (docs/testing.md).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from components.netcheck.stun import StunError, binding_request, new_txid, parse_response
from tests.peers.ports import LOOPBACKS, family_of, free_port


@dataclass(frozen=True)
class Coturn:
    port: int
    addresses: tuple[str, ...]
    pid: int


def _answers(host: str, port: int) -> bool:
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        txid = new_txid()
        s.sendto(binding_request(txid), (host, port))
        try:
            parse_response(s.recvfrom(2048)[0], txid)
        except (OSError, StunError):
            return False
        return True


@contextmanager
def coturn(
    directory: str | Path | None = None, *, startup_timeout: float = 10.0
) -> Iterator[Coturn]:
    """Start ``turnserver --stun-only`` on a free port on both loopbacks; stop it afterwards."""
    binary = shutil.which("turnserver")
    if binary is None:
        raise RuntimeError(
            "coturn is not installed (turnserver not on PATH): apt-get install coturn"
        )
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        port = free_port(LOOPBACKS, socket.SOCK_DGRAM)
        cmd = [binary, "-n", "--stun-only", "--no-rfc5780", "--no-cli", "--no-tls", "--no-dtls"]
        cmd += ["--no-tcp", "-L", "127.0.0.1", "-L", "::1", "--listening-port", str(port)]
        cmd += ["--pidfile", f"{tmp}/turn.pid", "--db", f"{tmp}/turn.db", "--log-file", "stdout"]
        log = open(f"{tmp}/turn.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_timeout
            while not all(_answers(h, port) for h in LOOPBACKS):
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = Path(f"{tmp}/turn.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"turnserver did not answer STUN on port {port}:\n{text}")
            yield Coturn(port=port, addresses=LOOPBACKS, pid=proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
