"""The relay host's Docker engine, read-only: its version and its containers (docker-py).

Only ``GET`` endpoints are called: ``/version``, ``/info`` (``DockerRootDir``),
``/containers/json?all=1``, ``/containers/{id}/json`` and ``/volumes/{name}``
(https://docs.docker.com/reference/api/engine/). ``unix://`` and ``tcp://``
go straight to the engine. For ``ssh://`` the doctor connects the way the Docker provider does —
the Docker CLI's connection helper runs ``docker system dial-stdio`` on the host over the system
OpenSSH client and speaks the API through it (github.com/docker/cli cli/connhelper/connhelper.go,
``ssh ... -- host docker system dial-stdio``) — with the relay host channel's own ssh command
(``components.host``: batch mode, ``HOME_DERP_SSH_OPTS``, the shared connection). docker-py's own
``ssh://`` transport is not used: it needs paramiko even when told to shell out to ``ssh``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final

import docker
import docker.errors
import requests

from components.errors import HomeDerpError
from components.host import HostChannel, HostReadError

DIAL_STDIO: Final = ("docker", "system", "dial-stdio")


class EngineError(HomeDerpError):
    """The engine could not be asked; the message says where and why."""


@dataclass(frozen=True)
class Container:
    """One container as ``/containers/json`` lists it (plus its restart policy when inspected)."""

    id: str
    name: str
    image: str
    state: str
    """``running``, ``exited``, ``created`` …"""
    labels: Mapping[str, str]
    network_mode: str
    published: tuple[tuple[int, str], ...]
    """Host ports it publishes, as (port, ``tcp``/``udp``)."""
    restart_policy: str | None = None

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")


@dataclass(frozen=True)
class Volume:
    """A named volume as ``/volumes/{name}`` describes it."""

    name: str
    driver: str
    mountpoint: str
    options: Mapping[str, str]
    """Driver options (``type``/``device``/``o`` for a tmpfs or bind volume); empty for a plain
    local volume, which lives on the data root's filesystem."""


@dataclass(frozen=True)
class Engine:
    version: str
    api_version: str
    os: str
    arch: str
    containers: tuple[Container, ...] = field(default=())
    root_dir: str | None = None
    """``DockerRootDir`` from ``/info``: where images, containers and local volumes live."""
    volumes: Mapping[str, Volume] = field(default_factory=dict)
    """The volumes asked for that exist, by name."""


def _published(ports: Any) -> tuple[tuple[int, str], ...]:
    found = {
        (int(p["PublicPort"]), str(p.get("Type", "tcp")))
        for p in ports or ()
        if isinstance(p, dict) and p.get("PublicPort")
    }
    return tuple(sorted(found))


def container_from_summary(item: Mapping[str, Any]) -> Container:
    """A ``/containers/json`` entry → :class:`Container` (pure)."""
    names = item.get("Names") or ["/" + str(item.get("Id", ""))[:12]]
    host_config = item.get("HostConfig") or {}
    return Container(
        id=str(item.get("Id", "")),
        name=str(names[0]).lstrip("/"),
        image=str(item.get("Image", "")),
        state=str(item.get("State", "")),
        labels=dict(item.get("Labels") or {}),
        network_mode=str(host_config.get("NetworkMode", "")),
        published=_published(item.get("Ports")),
    )


def looks_like_derper(container: Container) -> bool:
    """Image or name says derper (fredliang/derper, ghcr.io/yangchuansheng/derper, …)."""
    return "derper" in container.image.lower() or "derper" in container.name.lower()


# ---------------------------------------------------------------------------------------------
# ssh:// — a private unix socket whose every connection is `docker system dial-stdio` on the host


def _socket_to_pipe(conn: socket.socket, pipe: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while data := conn.recv(65536):
            pipe.write(data)
            pipe.flush()
    with contextlib.suppress(OSError, ValueError):
        pipe.close()


def _pipe_to_socket(pipe: IO[bytes], conn: socket.socket) -> None:
    with contextlib.suppress(OSError, ValueError):
        while data := os.read(pipe.fileno(), 65536):
            conn.sendall(data)
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)


class DialStdioBridge:
    """Serves ``unix://<tmp>/docker.sock``; each connection runs dial-stdio through ``channel``."""

    def __init__(self, channel: HostChannel) -> None:
        self._argv = channel.argv(DIAL_STDIO)
        self._dir = tempfile.TemporaryDirectory(prefix="home-derp-doctor-")
        self.path = os.path.join(self._dir.name, "docker.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(4)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def errors(self) -> str:
        """What the ssh/dial-stdio processes said on stderr (for a failure message)."""
        texts = []
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)  # its stdout closed first: let it finish saying why
            if proc.poll() is not None and proc.stderr is not None:
                with contextlib.suppress(OSError, ValueError):
                    texts.append(proc.stderr.read().decode("utf-8", "replace").strip())
        return "; ".join(t for t in texts if t)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._server.accept()
                self._connect(conn)

    def _connect(self, conn: socket.socket) -> None:
        proc = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._procs.append(proc)
        self._conns.append(conn)
        assert proc.stdin is not None and proc.stdout is not None
        threading.Thread(target=_socket_to_pipe, args=(conn, proc.stdin), daemon=True).start()
        threading.Thread(target=_pipe_to_socket, args=(proc.stdout, conn), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes the accept() of the serving thread
            self._server.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._server.close()
        for conn in self._conns:
            conn.close()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self._dir.cleanup()


@contextlib.contextmanager
def _api(docker_host: str, channel: HostChannel, timeout: float) -> Iterator[Any]:
    """A docker-py API client for ``docker_host`` (see the module docstring for ssh://)."""
    bridge = DialStdioBridge(channel) if docker_host.startswith("ssh://") else None
    url = bridge.url if bridge is not None else docker_host
    try:
        client = docker.DockerClient(base_url=url, timeout=timeout)
    except docker.errors.DockerException as exc:
        said = bridge.errors() if bridge is not None else ""
        if bridge is not None:
            bridge.close()
        raise EngineError(f"{exc}{f' (the host said: {said})' if said else ''}") from None
    try:
        yield client.api
    finally:
        client.close()
        if bridge is not None:
            bridge.close()


def read_engine(
    docker_host: str,
    channel: HostChannel,
    timeout: float = 10.0,
    *,
    volumes: tuple[str, ...] = (),
) -> Engine:
    """Version, data root, containers and the named ``volumes`` (those that exist) of the engine;
    :class:`EngineError` when it cannot be read."""
    try:
        with _api(docker_host, channel, timeout) as api:
            version = api.version()
            root_dir = api.info().get("DockerRootDir")
            containers = [container_from_summary(c) for c in api.containers(all=True)]
            containers = [_with_restart_policy(api, c) for c in containers]
            found = {name: v for name in volumes if (v := _volume(api, name)) is not None}
    except HostReadError as exc:
        raise EngineError(str(exc)) from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(str(exc)) from None
    return Engine(
        version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        os=str(version.get("Os", "?")),
        arch=str(version.get("Arch", "?")),
        containers=tuple(containers),
        root_dir=str(root_dir) if root_dir else None,
        volumes=found,
    )


def _volume(api: Any, name: str) -> Volume | None:
    try:
        data = api.inspect_volume(name)
    except docker.errors.NotFound:
        return None
    return Volume(
        name=str(data.get("Name", name)),
        driver=str(data.get("Driver", "")),
        mountpoint=str(data.get("Mountpoint", "")),
        options={str(k): str(v) for k, v in (data.get("Options") or {}).items()},
    )


def _with_restart_policy(api: Any, container: Container) -> Container:
    """Inspect derper-looking containers only: whether a stopped one comes back matters."""
    if not looks_like_derper(container):
        return container
    details = api.inspect_container(container.id)
    policy = ((details.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    return Container(**{**container.__dict__, "restart_policy": str(policy)})
