"""The OpenSSH client calls home-derp makes to a host: one home for their command lines.

Every ssh connection home-derp makes runs the system OpenSSH client in batch mode (never
prompts), with a bounded connect time and keepalives, honouring ``~/.ssh/config`` and ssh-agent
like the Docker provider's own ssh connection; then the caller's options, then the user's extra
options from ``HOME_DERP_SSH_OPTS``. ssh keeps the first value it sees for an option, so ours
come first. Two shapes: a command on the host (``-T … -- host '<command>'``), and stdio forwarded
to a port on the host's own loopback (``-W 127.0.0.1:<port> -- host``).

It lives in netcheck because netcheck is a leaf that imports nothing else of the project: its
log and ``/debug/varz`` readers use it here, and the program's host reads
(``components/host.py``) import it from here.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Final

#: Env var with extra OpenSSH client options (shell words), appended after our own options.
SSH_OPTS_ENV: Final = "HOME_DERP_SSH_OPTS"
#: Keepalives inside the ssh connection (ssh_config(5) ServerAliveInterval/ServerAliveCountMax):
#: a peer that stops answering is given up after about 6 s (the third unanswered probe), well
#: inside a read's 12 s, so a read through a hung shared connection (ControlMaster) reconnects
#: instead of stalling until its timeout — every read of the evaluation, before (measured with a
#: SIGSTOPped sshd session: tests/test_host.py).
SERVER_ALIVE_INTERVAL: Final = 2
SERVER_ALIVE_COUNT_MAX: Final = 2


def client_options(timeout: float) -> list[str]:
    """home-derp's own OpenSSH options, for every ssh connection it makes or configures: batch
    mode (never prompts), a bounded connect, keepalives (see :data:`SERVER_ALIVE_INTERVAL`)."""
    return [
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, math.ceil(timeout))}",
        "-o",
        f"ServerAliveInterval={SERVER_ALIVE_INTERVAL}",
        "-o",
        f"ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}",
    ]


def user_options(environ: Mapping[str, str] | None = None) -> list[str]:
    """The user's extra options (``HOME_DERP_SSH_OPTS``, shell words)."""
    return shlex.split((os.environ if environ is None else environ).get(SSH_OPTS_ENV, ""))


def _login(user: str | None, port: int | None) -> list[str]:
    return [*(("-p", str(port)) if port else ()), *(("-l", user) if user else ())]


def command_argv(
    host: str,
    remote_line: str,
    *,
    user: str | None,
    port: int | None,
    timeout: float,
    ssh_options: Sequence[str] = (),
) -> list[str]:
    """``ssh … -T -- host '<remote_line>'``: one command on the host, no terminal."""
    return [
        "ssh",
        *client_options(timeout),
        "-T",
        *_login(user, port),
        *ssh_options,
        *user_options(),
        "--",
        host,
        remote_line,
    ]


def forward_argv(
    host: str,
    to_port: int,
    *,
    user: str | None,
    port: int | None,
    timeout: float,
    ssh_options: Sequence[str] = (),
) -> list[str]:
    """``ssh … -W 127.0.0.1:<to_port> -- host``: stdio forwarded to a port on the host's own
    loopback (nothing on the host but sshd)."""
    return [
        "ssh",
        *client_options(timeout),
        *_login(user, port),
        *ssh_options,
        *user_options(),
        "-W",
        f"127.0.0.1:{to_port}",
        "--",
        host,
    ]
