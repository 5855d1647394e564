"""A real OpenSSH ``sshd`` on loopback (optionally inside a network namespace), for ``ssh://``.

The program reads host facts over the system OpenSSH client exactly as the Docker provider's ssh
connection does (``components.host``); these tests give it a real server with throwaway keys. The
client options that trust it go into ``HOME_DERP_SSH_OPTS`` or a channel's ``ssh_options``.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _sh(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")


def _wait_for(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Sshd:
    """A throwaway sshd: its port, the user, and the client options that trust it."""

    port: int
    user: str
    key: Path
    client_options: list[str]
    process: subprocess.Popen[bytes]

    @property
    def docker_host(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hide_ip_prefix(scratch: Path, commands: Sequence[str] = ("ip",)) -> list[str]:
    """A private mount namespace in which ``commands`` are gone (overlay whiteouts over the bin
    dirs)."""
    script = []
    gone = " ".join(shlex.quote(c) for c in commands)
    for n, directory in enumerate(("/usr/bin", "/usr/sbin")):
        upper, work = scratch / f"upper{n}", scratch / f"work{n}"
        upper.mkdir()
        work.mkdir()
        script.append(
            f"mount -t overlay overlay -o lowerdir={directory},upperdir={upper},workdir={work} "
            f"{directory} && (cd {directory} && rm -f {gone})"
        )
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        " && ".join(script) + ' && exec "$@"',
        "sh",
    ]


@contextmanager
def sshd_factory() -> Iterator[Callable[..., Sshd]]:
    """Starts real sshd processes on 127.0.0.1 (optionally in a netns); stops them afterwards."""
    assert os.path.exists(SSHD), "openssh-server is required (apt-get install openssh-server)"
    assert shutil.which("ssh"), "the OpenSSH client is required"
    started: list[subprocess.Popen[bytes]] = []
    scratch_dirs: list[tempfile.TemporaryDirectory[str]] = []

    def start(
        *,
        prefix: Sequence[str] = (),
        hide_ip: bool = False,
        hide: Sequence[str] = (),
        path_dirs: Sequence[str] = (),
    ) -> Sshd:
        """``prefix`` wraps sshd (``ip netns exec NS``); ``hide_ip`` hides ``ip`` from its
        sessions, ``hide`` any other commands; ``path_dirs`` go first on the sessions' PATH
        (command stand-ins)."""
        scratch = tempfile.TemporaryDirectory(prefix="hd6-sshd-")
        scratch_dirs.append(scratch)
        d = Path(scratch.name)
        for key in ("host_key", "user_key"):
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key))
        (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
        port, user = _free_port(), getpass.getuser()
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n"
            + (
                f"SetEnv PATH={':'.join([*path_dirs, os.environ.get('PATH', '')])}\n"
                if path_dirs
                else ""
            )
        )
        host_pub = (d / "host_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privsep dir
        log = d / "sshd.log"
        hidden = [*(["ip"] if hide_ip else []), *hide]
        wrapper = hide_ip_prefix(d, hidden) if hidden else []
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*prefix, *wrapper, SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        _wait_for("sshd to listen", lambda: "Server listening on 127.0.0.1" in log.read_text())
        options = [
            "-F",
            "none",
            "-i",
            str(d / "user_key"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            f"UserKnownHostsFile={d / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
        return Sshd(
            port=port, user=user, key=d / "user_key", client_options=options, process=process
        )

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=10)
        for scratch in scratch_dirs:
            scratch.cleanup()
