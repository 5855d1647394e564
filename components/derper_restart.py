"""DerperRestart: derper restarted, not re-created, when a renewed certificate is in its volume.

derper reads a manual certificate once, at start (docs/upstream/derper.md#manual-certs), so a
renewal must restart it. Re-creating the container (what a changed container input does) takes
derper down for the whole delete-before-replace chain: stop derper, remove it and the init
container, run the new init container, create and start derper. Instead the init container is
replaced while the old derper keeps serving the old certificate from memory, and only then is
derper's own container restarted: same container, volumes, network and server key; DERP and STUN
are down for the restart alone (bench/renewal_downtime.py measures both paths:
docs/architecture.md, "derper").

The resource's inputs are the container's name and id on the Docker host and the certificate's
serial. ``create`` does nothing (the container was just started with this certificate); an update
that changes the serial restarts the container — unless the container itself is new (its id
changed): a container created after the init container already read the new certificate.
``docker restart`` stops with the container's grace time and starts it again; on ``unix://`` and
``tcp://`` through the Engine API (``POST /containers/{id}/restart``:
docs/upstream/docker.md#container-restart), on ``ssh://`` as ``docker restart`` through the host's
channel (components/host.py), like every other command on the relay host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi.dynamic

from components.dynamic_provider import HomeDerpProvider
from components.errors import HomeDerpError
from components.wire import plain

TYPE_TOKEN: Final = "pulumi-python:dynamic/homederp:DerperRestart"
INPUT_KEYS: Final = ("docker_host", "container", "container_id", "certificate_serial", "grace")


class DerperRestartError(HomeDerpError):
    """derper's container could not be restarted; the message says why and what to do."""


def needs_restart(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """A new certificate for a container that was not itself re-created."""
    return plain(olds.get("certificate_serial")) != plain(news.get("certificate_serial")) and plain(
        olds.get("container_id")
    ) == plain(news.get("container_id"))


def restart(docker_host: str, container: str, grace: int) -> None:
    """``docker restart -t <grace> <container>`` on the relay's Docker host."""
    from components.host import HostChannel, HostReadError, scheme_of

    if scheme_of(docker_host) == "ssh":
        channel = HostChannel(docker_host)
        try:
            done = channel.run(
                ["docker", "restart", "-t", str(grace), container], what="restart derper"
            )
        except HostReadError as exc:
            raise DerperRestartError(
                f"cannot restart {container} on {channel.where()} for the renewed certificate: "
                f"{exc}. derper still serves the old one; run `docker restart {container}` there"
            ) from None
        if done.returncode != 0:
            raise DerperRestartError(
                f"`docker restart {container}` failed on {channel.where()}: "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return
    import docker

    client = docker.APIClient(base_url=docker_host, timeout=max(60, grace + 30))
    try:
        client.restart(container, timeout=grace)
    except docker.errors.DockerException as exc:
        raise DerperRestartError(
            f"cannot restart {container} on {docker_host} for the renewed certificate: {exc}. "
            f"derper still serves the old one; run `docker restart {container}` on the host"
        ) from None
    finally:
        client.close()


class DerperRestartProvider(HomeDerpProvider):
    """Restarts derper's container for a renewed certificate (the module docstring)."""

    NAME = "DerperRestart"
    INPUT_KEYS = INPUT_KEYS

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        inputs = {k: plain(props.get(k)) for k in INPUT_KEYS}
        return pulumi.dynamic.CreateResult(f"{inputs['container']}#restart", inputs)

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        inputs = {k: plain(news.get(k)) for k in INPUT_KEYS}
        if needs_restart(olds, news):
            restart(str(inputs["docker_host"]), str(inputs["container"]), int(inputs["grace"]))
        return pulumi.dynamic.UpdateResult(inputs)


@dataclass
class DerperRestartArgs:
    """Inputs of :class:`DerperRestart`."""

    docker_host: pulumi.Input[str]
    """The relay's Docker engine (``home-derp:dockerHost``)."""
    container: pulumi.Input[str]
    """derper's container name."""
    container_id: pulumi.Input[str]
    """derper's container id: a new one already read the new certificate."""
    certificate_serial: pulumi.Input[str]
    """The certificate in derper's volume; a new serial restarts derper."""
    grace: pulumi.Input[int]
    """Seconds derper has to stop (the container's destroy grace time)."""


class DerperRestart(pulumi.dynamic.Resource, module="homederp", name="DerperRestart"):
    """derper restarted for each renewed certificate; type ``TYPE_TOKEN``."""

    def __init__(
        self, resource_name: str, args: DerperRestartArgs, opts: pulumi.ResourceOptions | None
    ) -> None:
        props: dict[str, Any] = {k: getattr(args, k) for k in INPUT_KEYS}
        super().__init__(DerperRestartProvider(), resource_name, props, opts)
