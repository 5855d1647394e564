"""The relay host as the program and the doctor ask it: each answer read once per evaluation.

Over ``ssh://`` the reads share one OpenSSH connection (ControlMaster in a private directory), so
four questions cost one handshake (bench/program_eval.py measures it). The channel itself, and
what its failures mean, is ``components/host.py``; what each answer means is
``components/ipv6.py`` and ``components/tailscaled.py``.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import weakref
from collections.abc import Sequence

from components import tailscaled
from components.host import HostChannel, scheme_of
from components.ipv6 import Candidate, parse_ip_json, read_host_addresses
from components.tailscaled import TailscaledFacts


class LiveHost:
    """The relay host named by a Docker host URL (``unix://`` or ``ssh://``), read-only."""

    def __init__(self, docker_host: str) -> None:
        options: tuple[str, ...] = ()
        if scheme_of(docker_host) == "ssh":
            self._control = tempfile.TemporaryDirectory(prefix="home-derp-ssh-")
            options = (
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={self._control.name}/%C",
                "-o",
                "ControlPersist=20",
            )
        self.channel = HostChannel(docker_host, ssh_options=options)
        # Close the shared connection with the evaluation instead of 20 s later (its socket
        # directory goes away with this object, so nothing could reuse it anyway).
        self._finalizer = weakref.finalize(self, close_ssh_master, self.channel)
        self._addresses: dict[str | None, Sequence[Candidate]] = {}
        self._tailscaled: dict[str, TailscaledFacts] = {}

    def close(self) -> None:
        """End the shared OpenSSH connection now (idempotent; a no-op for ``unix://``)."""
        self._finalizer()

    def addresses(self, interface: str | None) -> Sequence[Candidate]:
        if interface not in self._addresses:
            text = read_host_addresses(
                self.channel.docker_host, interface, ssh_options=self.channel.ssh_options
            )
            self._addresses[interface] = parse_ip_json(text)
        return self._addresses[interface]

    def tailscaled(self, socket: str) -> TailscaledFacts:
        if socket not in self._tailscaled:
            self._tailscaled[socket] = tailscaled.read_tailscaled(self.channel, socket)
        return self._tailscaled[socket]

    def socket_exists(self, socket: str) -> bool:
        return tailscaled.socket_exists(self.channel, socket)

    def runtime_directory_problem(self, socket: str) -> str | None:
        return tailscaled.read_runtime_directory_problem(self.channel, socket)


def close_ssh_master(channel: HostChannel) -> None:
    """``ssh -O exit`` on the ControlMaster of an ``ssh://`` channel; best effort, bounded."""
    if channel.scheme != "ssh" or not channel.ssh_options:
        return
    argv = channel.argv(["true"])
    try:
        cut = argv.index("--")
    except ValueError:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [*argv[:cut], "-O", "exit", *argv[cut:-1]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=5,
            check=False,
        )
