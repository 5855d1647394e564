"""The relay host's own shell: run a read-only command where the Docker engine lives.

The program reads facts the host alone knows — its IPv6 addresses (``components.ipv6``) and its
tailscaled (``components.tailscaled``) — while it is evaluated, ``preview`` included. The Docker
host URL says where that is (docs/architecture.md, "The relay host"):

* ``unix://…`` — the engine is on this machine, so the command runs here;
* ``ssh://[user@]host[:port]`` — the system OpenSSH client runs it there, in batch mode (never
  prompts), with a bounded connect time, honouring ``~/.ssh/config`` and ssh-agent exactly like
  the Docker provider's own ssh connection; extra client options come from ``HOME_DERP_SSH_OPTS``;
* ``tcp://…`` — a bare Docker API: nothing but Docker can be asked, so host facts are unavailable.

Only :meth:`HostChannel.run` has side effects. Commands that fail on the host come back as a
:class:`CommandResult` for the caller to judge; failures of the channel itself (ssh refused, host
unreachable, command missing, too slow) raise :class:`HostReadError` with a diagnosis and a fix.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from components.errors import HomeDerpError

# The ssh command lines' one home is the leaf netcheck (components/netcheck/ssh.py); the names
# callers know from here stay importable from here.
from components.netcheck.ssh import SSH_OPTS_ENV as SSH_OPTS_ENV
from components.netcheck.ssh import client_options, command_argv, forward_argv, user_options

#: The Docker provider's own variable for its ssh options, read only while the provider's ssh_opts
#: is unset (kreuzwerker/terraform-provider-docker@v4.5.0 internal/provider/provider.go:65-76,
#: framework_provider.go:179-186; the provider inside pulumi-docker 5.x).
DOCKER_SSH_OPTS_ENV: Final = "DOCKER_SSH_OPTS"
#: Seconds a host read may take (ssh connect included); reads happen at every preview.
DEFAULT_TIMEOUT: Final = 10.0
#: Debian keeps ip and friends in /usr/sbin and /sbin, which a non-root ssh session's PATH lacks.
_SBIN_DIRS: Final = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/bin", "/usr/local/sbin")

Scheme = Literal["unix", "ssh", "tcp"]
FailureKind = Literal["unsupported", "auth", "host-key", "resolve", "unreachable", "ssh",
                      "dropped", "missing-command", "timeout"]  # fmt: skip


class HostReadError(HomeDerpError):
    """The relay host could not be asked; ``kind`` tells why (stable token for callers)."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


@dataclass(frozen=True)
class SshTarget:
    """``ssh://[user@]host[:port]`` as the Docker CLI and provider use it."""

    host: str
    user: str | None = None
    port: int | None = None

    def display(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{user}{host}{port}"

    def ssh_line(self) -> str:
        """The ssh command a person types to reach the host (ssh takes no ``host:port``)."""
        user = f"{self.user}@" if self.user else ""
        port = f"-p {self.port} " if self.port else ""
        return f"ssh {port}{user}{self.host}"

    def known_hosts_name(self) -> str:
        """How ``known_hosts`` names the host: ``[host]:port`` for any port but 22 (sshd(8),
        SSH_KNOWN_HOSTS FILE FORMAT)."""
        return f"[{self.host}]:{self.port}" if self.port and self.port != 22 else self.host


@dataclass(frozen=True)
class CommandResult:
    """What a command printed on the host, and how it exited."""

    returncode: int
    stdout: str
    stderr: str


def scheme_of(docker_host: str) -> str:
    """``unix`` / ``ssh`` / ``tcp`` (or whatever else the URL says) of a Docker host URL."""
    return urlsplit(docker_host).scheme if "://" in docker_host else ""


def can_read_host(docker_host: str) -> bool:
    """True when host facts can be read at all (``unix://`` or ``ssh://``)."""
    return scheme_of(docker_host) in ("unix", "ssh")


def parse_ssh_host(docker_host: str) -> SshTarget:
    """Split an ``ssh://`` Docker host; ``ValueError`` names what is wrong."""
    parts = urlsplit(docker_host)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ValueError(f"not an ssh://[user@]host[:port] address: {docker_host!r}")
    if parts.hostname.startswith("-"):
        raise ValueError(f"host name may not start with '-': {docker_host!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {docker_host!r}: {exc}") from exc
    return SshTarget(host=parts.hostname, user=parts.username or None, port=port)


def docker_ssh_options(environ: Mapping[str, str]) -> list[str]:
    """The Docker provider's ``sshOpts`` for an ``ssh://`` host: our options, then the user's
    (``HOME_DERP_SSH_OPTS``, as for the host reads, and ``DOCKER_SSH_OPTS``, which the provider
    stops reading once ``sshOpts`` is set).

    The provider hands each element to ``ssh`` as one argument, before ``--`` and the host
    (docker/cli@v28.5.2 cli/connhelper/connhelper.go:38-70, ssh/ssh.go:103-135), and adds
    ``-o ConnectTimeout=30`` only when no ConnectTimeout is given (connhelper.go:82-87). A change
    of ``sshOpts`` updates the provider in place: pulumi-docker marks no config key as forcing a
    replacement (docs/upstream/docker.md#pulumi-docker-ssh-opts).
    """
    return [
        *client_options(DEFAULT_TIMEOUT),
        *user_options(environ),
        *shlex.split(environ.get(DOCKER_SSH_OPTS_ENV, "")),
    ]


def ssh_command(
    target: SshTarget,
    remote: Sequence[str],
    *,
    timeout: float,
    ssh_options: Sequence[str] = (),
) -> list[str]:
    """The OpenSSH client call (components/netcheck/ssh.py: :func:`client_options` first,
    ~/.ssh/config honored), with the sbin directories on the remote PATH."""
    remote_line = f'PATH="$PATH:{":".join(_SBIN_DIRS)}" ' + shlex.join(remote)
    return command_argv(
        target.host,
        remote_line,
        user=target.user,
        port=target.port,
        timeout=timeout,
        ssh_options=ssh_options,
    )


def ssh_forward_command(
    target: SshTarget, port: int, *, timeout: float, ssh_options: Sequence[str] = ()
) -> list[str]:
    """``ssh … -W 127.0.0.1:<port>``: OpenSSH's stdio forwarding to a port on the host's own
    loopback, with :func:`client_options` first, like :func:`ssh_command`.

    What reads derper's ``/debug/varz`` over ssh (components/usage.py): derper answers its
    debug pages only to loopback (docs/upstream/derper.md#debug-endpoints), and ``-W`` needs
    nothing on the host but sshd — no curl, no shell.
    """
    return forward_argv(
        target.host,
        port,
        user=target.user,
        port=target.port,
        timeout=timeout,
        ssh_options=ssh_options,
    )


def ssh_failure(target: SshTarget, stderr: str, *, shared: bool = False) -> HostReadError:
    """A diagnosis for ssh's exit status 255 from its stderr; ``shared``: the call went through
    a shared connection (ControlMaster), which ssh ends without a word when it drops."""
    dest = target.display()
    text = stderr.strip()
    low = text.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return HostReadError(
            "auth",
            f"ssh to {dest} was refused (authentication failed in batch mode, no prompts): "
            "load the key the Docker ssh:// connection uses into ssh-agent or name it in "
            f"~/.ssh/config. ssh said: {text}",
        )
    if "remote host identification has changed" in low:
        return HostReadError(
            "host-key",
            f"ssh to {dest}: the host key CHANGED since it was recorded. If the host was "
            "reinstalled or its key rotated, forget the old key with "
            f"`ssh-keygen -R '{target.known_hosts_name()}'` and connect once with "
            f"`{target.ssh_line()}` to check and record the new one; otherwise stop, someone may "
            f"be in between. ssh said: {text}",
        )
    if "host key verification failed" in low:
        return HostReadError(
            "host-key",
            f"ssh to {dest}: the host key is not known; connect once with "
            f"`{target.ssh_line()}` to check and record it (batch mode never asks). "
            f"ssh said: {text}",
        )
    if "could not resolve hostname" in low:
        return HostReadError(
            "resolve", f"ssh to {dest}: the host name does not resolve. ssh said: {text}"
        )
    unreachable = (
        "connection refused",
        "timed out",
        "no route to host",
        "network is unreachable",
        "connection closed",
        "connection reset",
    )
    if any(s in low for s in unreachable):
        return HostReadError(
            "unreachable",
            f"ssh to {dest}: host unreachable (is sshd running and the port open?). {text}",
        )
    if not text or "mux_client" in low:
        via = "the shared ssh connection (ControlMaster)" if shared else "the ssh connection"
        return HostReadError(
            "dropped",
            f"ssh to {dest}: {via} closed while the command ran (sshd restarted, the host "
            "rebooted, or the network or a NAT/firewall timeout dropped it); run again. If it "
            "keeps happening, check the relay host's sshd and the link to it"
            + (f". ssh said: {text}" if text else " (ssh exited 255 without a message)"),
        )
    return HostReadError("ssh", f"ssh to {dest} failed: {text}")


def _local_executable(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class HostChannel:
    """How to run a command on the relay host named by a Docker host URL."""

    docker_host: str
    timeout: float = DEFAULT_TIMEOUT
    ssh_options: tuple[str, ...] = ()
    """Extra OpenSSH options, the same flags the Docker provider's ``sshOpts`` takes."""
    command_prefix: tuple[str, ...] = ()
    """Wraps whatever runs (e.g. ``ip netns exec NS``): a seam for tests, command unchanged."""

    @property
    def scheme(self) -> str:
        return scheme_of(self.docker_host)

    def where(self) -> str:
        """The host as a user would name it in a message."""
        if self.scheme == "ssh":
            try:
                return f"the Docker host {parse_ssh_host(self.docker_host).display()}"
            except ValueError:
                return f"the Docker host {self.docker_host}"
        return "this machine (the unix:// Docker host)"

    def argv(self, command: Sequence[str]) -> list[str]:
        """The exact argv that runs ``command`` on the host (local or through ssh)."""
        if self.scheme == "unix":
            local = _local_executable(command[0])
            if local is None:
                raise HostReadError(
                    "missing-command", f"`{command[0]}` is not installed on {self.where()}"
                )
            return [*self.command_prefix, local, *command[1:]]
        if self.scheme == "ssh":
            try:
                target = parse_ssh_host(self.docker_host)
            except ValueError as exc:
                raise HostReadError("unsupported", str(exc)) from exc
            ssh = ssh_command(target, command, timeout=self.timeout, ssh_options=self.ssh_options)
            return [*self.command_prefix, *ssh]
        raise HostReadError(
            "unsupported",
            f"dockerHost {self.docker_host!r} is a bare Docker API: the relay host itself cannot "
            "be asked (only unix:// and ssh:// can)",
        )

    def loopback_forward(self, port: int) -> list[str] | None:
        """How to reach ``port`` on the relay host's loopback: None for ``unix://`` (the host
        is this machine: connect to 127.0.0.1), the ``ssh -W`` command for ``ssh://``
        (:func:`ssh_forward_command`); HostReadError for a bare Docker API."""
        if self.scheme == "unix":
            return None
        if self.scheme == "ssh":
            try:
                target = parse_ssh_host(self.docker_host)
            except ValueError as exc:
                raise HostReadError("unsupported", str(exc)) from exc
            forward = ssh_forward_command(
                target, port, timeout=self.timeout, ssh_options=self.ssh_options
            )
            return [*self.command_prefix, *forward]
        raise HostReadError(
            "unsupported",
            f"dockerHost {self.docker_host!r} is a bare Docker API: the relay host's loopback "
            "cannot be reached through it (only unix:// and ssh:// can)",
        )

    def run(self, command: Sequence[str], *, what: str) -> CommandResult:
        """Run a read-only ``command``; ``what`` names it in errors ("read tailscaled's status").

        A command that runs and exits non-zero is returned, not raised: its output is the answer.
        """
        argv = self.argv(command)
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",  # a host's stray non-UTF-8 byte is a character, not a crash
                timeout=self.timeout + 2,  # ssh's own ConnectTimeout should fire first
                check=False,
            )
        except FileNotFoundError as exc:
            missing = "ssh (install openssh-client)" if self.scheme == "ssh" else command[0]
            raise HostReadError(
                "missing-command", f"cannot {what}: {missing} not found ({exc})"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise HostReadError(
                "timeout",
                f"cannot {what}: {self.where()} took longer than {self.timeout + 2:.0f}s and the "
                "command was stopped",
            ) from exc
        if self.scheme == "ssh" and done.returncode == 255:
            shared = any("ControlPath=" in option for option in self.ssh_options)
            raise ssh_failure(parse_ssh_host(self.docker_host), done.stderr, shared=shared)
        if done.returncode == 127:
            raise HostReadError(
                "missing-command",
                f"cannot {what}: `{command[0]}` is not installed on {self.where()} "
                f"({done.stderr.strip()})",
            )
        return CommandResult(done.returncode, done.stdout, done.stderr)


def this_machine(timeout: float = DEFAULT_TIMEOUT) -> HostChannel:
    """The machine running the program (``pulumi up``) itself, as a channel."""
    return HostChannel("unix://", timeout=timeout)  # the scheme alone says "run it here"
