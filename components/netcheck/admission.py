"""derper's own verdict on the probe's random client key, read from derper's log.

A closed connection after FrameClientInfo looks the same whether tailscaled said "not found" or
could not be asked at all; derper's log line for the key tells them apart
(docs/upstream/derper.md#verify-log-lines). derper's ``accept`` fails with
``client nodekey:<hex> rejected: <reason>`` (tailscale.com@v1.102.5/derp/derpserver/
derpserver.go:1028-1029), logged as ``derp: <addr>: <error>`` (derpserver.go:676), where
``<reason>`` comes from ``verifyClient`` (derpserver.go:1590-1601):

* ``peer nodekey:<hex> not authorized (not found in local tailscaled)`` → ``not_authorized``:
  derper asked tailscaled and tailscaled answered — verification works;
* ``failed to query local tailscaled status for nodekey:<hex>: <err>`` →
  ``tailscaled_unreachable``: the socket is missing, stale or tailscaled is down;
* ``tailscaled version is too old (out of sync with derper binary)`` → ``version_skew``
  (tailscale/tailscale#12617);
* no line for the key → ``unconfirmed``.

With ``-verify-client-url`` (headscale's ``/verify``) derper asks an admission controller
instead (derpserver.go:1604-1640, docs/upstream/derper.md#verify-log-lines):

* ``admission controller: nodekey:<hex>/<ip> not allowed`` → ``denied``: the controller answered
  and refused the random key — verification works;
* ``Post "<url>": <err>`` (net/http's url.Error: go1.26.8 src/net/http/client.go:544-552,
  src/net/url/url.go:40) → ``verifier_unreachable``: with ``-verify-client-url-fail-open=false``
  derper then rejects every client;
* ``admission controller: <HTTP status>`` → ``verifier_error``: something answered, not /verify.

The pure part (:func:`find_evidence`) reads any log text; :func:`docker_evidence` is the edge that
reads a container's log:

* ``unix://`` and ``tcp://``: the Docker Engine API (``GET /containers/{id}/logs``, multiplexed
  stream: docs/upstream/docker.md#container-logs) with docker-py;
* ``ssh://``: ``docker logs --tail N <container>`` on the relay host through the system OpenSSH
  client — what the Docker CLI's (and docker-py's) ssh transport amounts to, since both run the
  remote ``docker`` CLI (``docker system dial-stdio``) against the remote's own engine. Not
  docker-py's transport: it imports paramiko even with ``use_ssh_client`` (docker 7.x
  ``docker/transport/sshconn.py``; the project does not install it, so every read failed and
  admission came out ``unconfirmed``), and its ssh call has no batch mode (a missing key would
  wait for a password prompt). The ssh call is the one of the program's host reads
  (``components/netcheck/ssh.py``, which ``components/host.py`` uses too: batch mode, bounded
  connect, keepalives, ``~/.ssh/config``, extra options from ``HOME_DERP_SSH_OPTS``), over one
  multiplexed connection for the whole poll.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from .derp import Admission, AdmissionCause, AdmissionEvidence, EvidenceSource
from .errors import NetcheckError
from .ssh import command_argv

REJECTED: Final = re.compile(
    r"derp: (?P<addr>\S+): client nodekey:(?P<key>[0-9a-f]{64}) rejected: (?P<reason>.*)$", re.M
)
#: derpserver.go:1593, :1598, :1600 — the reason text → the stable cause token.
CAUSES: Final[tuple[tuple[str, AdmissionCause], ...]] = (
    ("not authorized (not found in local tailscaled)", "not_authorized"),
    ("tailscaled version is too old", "version_skew"),
    ("failed to query local tailscaled status", "tailscaled_unreachable"),
)
#: How long to wait for derper's line after the rejection (it logs as it closes).
DEFAULT_WAIT: Final = 4.0
#: Log lines read back from the container per poll; the random key is unique, so a window of
#: recent lines is enough whatever the clocks of this machine and the Docker host say.
TAIL_LINES: Final = 4000


class LogReadError(NetcheckError):
    """derper's log could not be read (Docker host unreachable, no such container …)."""


#: derpserver.go:1630 and :1637 — the admission controller answered (a status, or "not allowed").
ADMISSION_CONTROLLER: Final = "admission controller: "
#: derpserver.go:1626 — the POST itself failed; net/http names the method and URL first.
VERIFIER_UNREACHABLE: Final = 'Post "'


def cause_of(reason: str) -> AdmissionCause:
    """The cause a rejection reason stands for (``unconfirmed`` for an unknown text)."""
    found = next((cause for text, cause in CAUSES if text in reason), None)
    if found is not None:
        return found
    if reason.startswith(ADMISSION_CONTROLLER):
        return "denied" if reason.rstrip().endswith(" not allowed") else "verifier_error"
    if reason.startswith(VERIFIER_UNREACHABLE):
        return "verifier_unreachable"
    return "unconfirmed"


def find_evidence(log_text: str, client_key: str) -> AdmissionEvidence | None:
    """derper's line about ``client_key`` (64 hex) in ``log_text``, or None."""
    key = client_key.lower().removeprefix("nodekey:")
    for match in REJECTED.finditer(log_text):
        if match["key"] == key:
            line = match.group(0).strip()
            return AdmissionEvidence(cause_of(match["reason"]), line)
    return None


LogReader = Callable[[], str]


async def wait_for_evidence(
    read_log: LogReader,
    client_key: str,
    *,
    wait: float = DEFAULT_WAIT,
    interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
) -> AdmissionEvidence:
    """Poll derper's log (a blocking reader, run off the event loop) until the key's line shows.

    ``unconfirmed`` when the line does not come within ``wait`` seconds or the log cannot be read.
    """
    deadline = clock() + wait
    while True:
        try:
            text = await asyncio.to_thread(read_log)
        except LogReadError as exc:
            return AdmissionEvidence("unconfirmed", None, detail=str(exc))
        found = find_evidence(text, client_key)
        if found is not None:
            return found
        if clock() >= deadline:
            return AdmissionEvidence(
                "unconfirmed",
                None,
                detail=f"derper logged nothing about the random key within {wait:.0f}s",
            )
        await asyncio.sleep(interval)


def docker_log_reader(docker_host: str, container: str, *, timeout: float = 10.0) -> LogReader:
    """A reader of ``container``'s recent log (stdout and stderr) on ``docker_host``."""
    if docker_host.startswith("ssh://"):
        return ssh_log_reader(docker_host, container, timeout=timeout)
    import docker  # only callers that prove admission pay for it
    from docker.errors import DockerException

    client: list[Any] = []

    def read() -> str:
        try:
            if not client:
                client.append(docker.DockerClient(base_url=docker_host, timeout=int(timeout)))
            raw = (
                client[0].containers.get(container).logs(stdout=True, stderr=True, tail=TAIL_LINES)
            )
        except DockerException as exc:
            raise LogReadError(
                f"cannot read derper's log ({container} on {docker_host}): {exc}"
            ) from None
        except OSError as exc:
            raise LogReadError(f"cannot reach the Docker host {docker_host}: {exc}") from None
        text: str = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return text

    return read


def ssh_logs_argv(
    docker_host: str, container: str, *, timeout: float, control_dir: str | None = None
) -> list[str]:
    """``ssh … -- host docker logs --tail N <container>`` for ``ssh://[user@]host[:port]``."""
    remote = ["docker", "logs", "--tail", str(TAIL_LINES), container]
    return ssh_docker_argv(docker_host, remote, timeout=timeout, control_dir=control_dir)


def ssh_docker_argv(
    docker_host: str, remote: list[str], *, timeout: float, control_dir: str | None = None
) -> list[str]:
    """``ssh … -- host <remote>`` for ``ssh://[user@]host[:port]`` (see the module docstring)."""
    parts = urllib.parse.urlsplit(docker_host)
    if parts.scheme != "ssh" or not parts.hostname:
        raise LogReadError(f"{docker_host!r} is not an ssh://[user@]host[:port] Docker host")
    control = (
        [
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={control_dir}/%C",
            "-o",
            "ControlPersist=5",
        ]
        if control_dir
        else []
    )
    return command_argv(
        parts.hostname,
        shlex.join(remote),
        user=parts.username,
        port=parts.port,
        timeout=timeout,
        ssh_options=control,
    )


def _run_ssh(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """An ssh command line's exit status and text output; ssh's own ConnectTimeout (``timeout``)
    fires before ours."""
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout + 2,
        check=False,
    )


def ssh_log_reader(docker_host: str, container: str, *, timeout: float = 10.0) -> LogReader:
    """``docker logs`` on the relay host over ssh (see the module docstring)."""
    control = tempfile.TemporaryDirectory(prefix="home-derp-logs-")

    def read() -> str:
        try:
            argv = ssh_logs_argv(docker_host, container, timeout=timeout, control_dir=control.name)
        except ValueError as exc:  # a bad port in the URL
            raise LogReadError(f"bad Docker host {docker_host!r}: {exc}") from None
        try:
            done = _run_ssh(argv, timeout)
        except FileNotFoundError:
            raise LogReadError("cannot read derper's log: ssh not found (openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise LogReadError(
                f"cannot reach the Docker host {docker_host}: no answer in {timeout + 2:.0f}s"
            ) from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no message"]
            raise LogReadError(
                f"cannot read derper's log ({container} on {docker_host}): {said[0]}"
            )
        return done.stdout + done.stderr

    return read  # its closure keeps the control directory for as long as the reader lives


StateReader = Callable[[], dict[str, Any]]


def docker_state_reader(docker_host: str, container: str, *, timeout: float = 10.0) -> StateReader:
    """A reader of ``container``'s ``docker inspect`` object (``State``, ``RestartCount`` …:
    docs/upstream/docker.md#container-inspect) on ``docker_host``; :class:`LogReadError` when it
    cannot be read (no such container, the host cannot be reached)."""
    if docker_host.startswith("ssh://"):

        def read_ssh() -> dict[str, Any]:
            try:
                argv = ssh_docker_argv(
                    docker_host, ["docker", "inspect", container], timeout=timeout
                )
            except ValueError as exc:
                raise LogReadError(f"bad Docker host {docker_host!r}: {exc}") from None
            try:
                done = _run_ssh(argv, timeout)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise LogReadError(f"cannot inspect {container} on {docker_host}: {exc}") from None
            try:
                found = json.loads(done.stdout) if done.returncode == 0 else None
            except ValueError:
                found = None
            if not isinstance(found, list) or not found or not isinstance(found[0], dict):
                said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no answer"]
                raise LogReadError(f"cannot inspect {container} on {docker_host}: {said[0]}")
            return found[0]

        return read_ssh
    import docker
    from docker.errors import DockerException

    def read_api() -> dict[str, Any]:
        try:
            api = docker.APIClient(base_url=docker_host, timeout=int(timeout))
            try:
                return dict(api.inspect_container(container))
            finally:
                api.close()
        except (DockerException, OSError) as exc:
            raise LogReadError(f"cannot inspect {container} on {docker_host}: {exc}") from None

    return read_api


def docker_evidence(
    docker_host: str,
    container: str,
    *,
    derper_version: str | None = None,
    tailscaled_version: str | None = None,
    wait: float = DEFAULT_WAIT,
) -> EvidenceSource:
    """An evidence source for the probe: derper's verdict from its container's log."""
    read = docker_log_reader(docker_host, container)
    where = f"container {container} on {docker_host}"

    async def evidence(_address: str, admission: Admission) -> AdmissionEvidence | None:
        if admission.admitted:
            return None  # an admitted random key: verification is off, nothing to prove
        found = await wait_for_evidence(read, admission.client_key, wait=wait)
        return AdmissionEvidence(
            found.cause,
            found.log_line,
            detail=found.detail,
            source=where,
            derper_version=derper_version,
            tailscaled_version=tailscaled_version,
        )

    return evidence
