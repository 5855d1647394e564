"""``pulumi-resource-docker``: a faithful test double of pulumi-docker 5.x, backed by the tests'
real dockerd (tests/peers/dockerd.py) through the Engine API (docker-py), as the real provider
drives its Docker host.

pulumi-docker is a hybrid: ``docker.Image`` is native, the rest is the bridged
terraform-provider-docker (docs/upstream/bridged-providers.md#docker):

* ``docker.Image``: ``Check`` adds ``build.contextDigest`` (a hash of the build context and the
  Dockerfile) and ``build.platform``; ``Diff`` compares old and new inputs, never replaces; create
  and update build the image with the classic builder when ``builderVersion`` is ``BuilderV1``;
  ``repoDigest`` of a local build is the image id; delete keeps the image
  (docs/upstream/docker.md#pulumi-docker-image). The build runs with ``network_mode: host``: the
  tests' dockerd has no bridge network, and the module proxy the build fetches from listens on the
  relay host's loopback (the real provider builds on the default network, where the real proxy is).
* ``docker.RemoteImage`` (``docker_image``): a local image of that name is used, else it is pulled;
  ``name`` replaces; ``keepLocally`` keeps it on delete.
* ``docker.Volume``: every input replaces; delete removes the volume.
* ``docker.Container``: every input replaces except ``restart``, ``destroyGraceSeconds``,
  ``mustRun``, ``attach`` and the resource limits; create, uploads and start are
  tests/peers/docker_container.py (the provider's Engine API calls); ``mustRun`` waits until it
  runs; ``attach`` waits until it exits; delete stops it with ``destroyGraceSeconds``, then removes
  it (forced); read reports a container that is gone as gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker

from tests.engine.plugins import Diff, Provider, ProviderError, ResourceType, note
from tests.peers import docker_container

#: Inputs of docker.Container that update in place (terraform-provider-docker: no ForceNew).
CONTAINER_IN_PLACE = frozenset(
    {
        "restart",
        "destroyGraceSeconds",
        "mustRun",
        "attach",
        "logs",
        "start",
        "rm",
        "wait",
        "waitTimeout",
        "maxRetryCount",
        "memory",
        "memorySwap",
        "cpuShares",
        "cpuSet",
        "containerReadRefreshTimeoutMilliseconds",
        "removeVolumes",
        "healthcheck",
    }
)
#: Engine (camelCase) names of the arguments tests/peers/docker_container.py takes.
_SNAKE = {
    "readOnly": "read_only",
    "securityOpts": "security_opts",
    "networkMode": "network_mode",
    "logDriver": "log_driver",
    "logOpts": "log_opts",
    "destroyGraceSeconds": "destroy_grace_seconds",
    "mustRun": "must_run",
    "containerPath": "container_path",
    "volumeName": "volume_name",
    "hostPath": "host_path",
}


def snake_args(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """docker.Container's engine inputs as the Python argument names the peer maps."""
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in ("logOpts", "labels", "capabilities", "uploads"):
            out[_SNAKE.get(key, key)] = value
        elif key == "volumes":
            out["volumes"] = [{_SNAKE.get(k, k): v for k, v in vol.items()} for vol in value or []]
        elif key in docker_container.KNOWN or _SNAKE.get(key) in docker_container.KNOWN:
            out[_SNAKE.get(key, key)] = value
    return {k: v for k, v in out.items() if v is not None and k in docker_container.KNOWN}


def context_digest(context: str, dockerfile: str) -> str:
    """A digest of the build context: relative path, mode and content hash of every file, and
    the Dockerfile (docs/upstream/docker.md#pulumi-docker-image)."""
    digest = hashlib.sha256()
    root = Path(context)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in [Path(dockerfile), *files]:
        rel = "Dockerfile" if path == Path(dockerfile) else str(path.relative_to(root))
        digest.update(rel.encode())
        digest.update(oct(path.stat().st_mode).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class _DockerType(ResourceType):
    @property
    def client(self) -> docker.APIClient:
        provider = self.provider
        assert isinstance(provider, Docker)
        return provider.client()


class Image(_DockerType):
    token = "docker:index/image:Image"

    def check(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
        inputs = dict(news)
        build = dict(inputs.get("build") or {})
        if build.get("context"):
            dockerfile = build.get("dockerfile") or os.path.join(build["context"], "Dockerfile")
            build["contextDigest"] = context_digest(build["context"], dockerfile)
        build.setdefault("platform", "linux/amd64")
        inputs["build"] = build
        return inputs

    def diff(
        self, old_inputs: Mapping[str, Any], olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> Diff:
        keys = ("imageName", "build", "skipPush", "registry", "buildOnPreview")
        return super().diff(
            {k: old_inputs.get(k) for k in keys if k in old_inputs},
            olds,
            {k: news.get(k) for k in keys if k in news},
        )

    def _build(self, urn: str, inputs: dict[str, Any]) -> dict[str, Any]:
        build = inputs.get("build") or {}
        if build.get("builderVersion") not in ("BuilderV1", None):
            raise ProviderError("the tests' docker plugin builds with the classic builder only")
        started = time.monotonic()
        name = str(inputs["imageName"])
        lines = []
        for chunk in self.client.build(
            path=build["context"],
            dockerfile=build.get("dockerfile"),
            tag=name,
            buildargs=build.get("args") or {},
            network_mode="host",
            rm=True,
            decode=True,
        ):
            if "error" in chunk:
                raise ProviderError(
                    f"docker build of {name} failed: {chunk['error']}\n" + "".join(lines[-30:])
                )
            lines.append(str(chunk.get("stream") or ""))
        image_id = str(self.client.inspect_image(name)["Id"])
        note("docker", f"built {name} ({image_id[:19]}) in {time.monotonic() - started:.1f}s")
        return {
            **inputs,
            "imageName": name,
            "repoDigest": image_id,
            "baseImageName": name,
            "registryServer": "",
            "context": build.get("context"),
            "dockerfile": build.get("dockerfile"),
            "platform": build.get("platform"),
        }

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        outputs = self._build(urn, inputs)
        return str(outputs["imageName"]), outputs

    def update(
        self, urn: str, id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        return self._build(urn, news)


class RemoteImage(_DockerType):
    token = "docker:index/remoteImage:RemoteImage"
    force_new = frozenset({"name", "pullTriggers", "triggers", "platform", "build"})

    def _find(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.inspect_image(name))
        except docker.errors.ImageNotFound:
            return None

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = str(inputs["name"])
        found = self._find(name)
        if found is None:
            try:
                self.client.pull(name)
            except docker.errors.APIError as exc:
                raise ProviderError(
                    f"Unable to read Docker image into resource: unable to pull image {name}: {exc}"
                ) from None
            found = self._find(name)
        if found is None:
            raise ProviderError(f"unable to find or pull image {name}")
        image_id = str(found["Id"])
        digests = found.get("RepoDigests") or []
        return image_id + name, {
            **inputs,
            "imageId": image_id,
            "repoDigest": digests[0] if digests else "",
        }

    def read(self, urn: str, id: str, olds: dict[str, Any], inputs: dict[str, Any]) -> Any:
        found = self._find(str(olds.get("name") or inputs.get("name")))
        return (
            None
            if found is None
            else (id, olds, inputs or {k: olds.get(k) for k in ("name", "keepLocally")})
        )

    def delete(self, urn: str, id: str, olds: dict[str, Any]) -> None:
        if olds.get("keepLocally"):
            return
        with contextlib.suppress(docker.errors.NotFound):
            self.client.remove_image(str(olds["name"]))


class Volume(_DockerType):
    token = "docker:index/volume:Volume"
    force_new = frozenset({"name", "labels", "driver", "driverOpts"})

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        labels = {item["label"]: item["value"] for item in inputs.get("labels") or []}
        made = self.client.create_volume(
            name=inputs.get("name"), driver=inputs.get("driver") or "local",
            driver_opts=inputs.get("driverOpts"), labels=labels,
        )  # fmt: skip
        return str(made["Name"]), {
            **inputs,
            "name": made["Name"],
            "driver": made["Driver"],
            "mountpoint": made["Mountpoint"],
        }

    def read(self, urn: str, id: str, olds: dict[str, Any], inputs: dict[str, Any]) -> Any:
        try:
            self.client.inspect_volume(id)
        except docker.errors.NotFound:
            return None
        return id, olds, inputs

    def delete(self, urn: str, id: str, olds: dict[str, Any]) -> None:
        for _ in range(10):  # terraform-provider-docker retries a volume still in use
            try:
                self.client.remove_volume(id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if "in use" not in str(exc):
                    raise
                time.sleep(0.5)
        raise ProviderError(f"volume {id} is still in use")


class Container(_DockerType):
    token = "docker:index/container:Container"

    def diff(
        self, old_inputs: Mapping[str, Any], olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> Diff:
        found = super().diff(old_inputs, olds, news)
        found.replaces = [k for k in found.changed if k not in CONTAINER_IN_PLACE]
        return found

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        args = snake_args(inputs)
        args.setdefault("must_run", True)
        try:
            created = docker_container.create(self.client, args, timeout=300)
        except docker.errors.APIError as exc:
            raise ProviderError(f"Unable to create container: {exc}") from None
        outputs: dict[str, Any] = {**inputs}
        if args.get("attach"):
            outputs["exitCode"] = created.exit_code
        elif args.get("must_run"):
            deadline = time.monotonic() + 15
            while not self.client.inspect_container(created.id)["State"]["Running"]:
                if time.monotonic() > deadline:
                    logs = self.client.logs(created.id).decode(errors="replace")
                    raise ProviderError(
                        f"container {args['name']} exited (must_run): {logs[-2000:]}"
                    )
                time.sleep(0.1)
        return created.id, outputs

    def update(
        self, urn: str, id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        if news.get("restart") != olds.get("restart"):
            self.client.update_container(id, restart_policy={"Name": news.get("restart") or "no"})
        if news.get("mustRun") and not olds.get("mustRun"):
            self.client.start(id)
        return {**olds, **news}

    def read(self, urn: str, id: str, olds: dict[str, Any], inputs: dict[str, Any]) -> Any:
        try:
            state = self.client.inspect_container(id)["State"]
        except docker.errors.NotFound:
            return None
        outputs = dict(olds)
        if not state.get("Running") and olds.get("mustRun") and not olds.get("attach"):
            outputs["mustRun"] = False  # a stopped must_run container shows as drift
        return id, outputs, inputs

    def delete(self, urn: str, id: str, olds: dict[str, Any]) -> None:
        try:
            if not olds.get("attach"):
                self.client.stop(id, timeout=int(olds.get("destroyGraceSeconds") or 0))
            self.client.remove_container(id, force=True, v=bool(olds.get("removeVolumes", True)))
        except docker.errors.NotFound:
            pass


class Docker(Provider):
    name = "docker"
    version = "5.2.0"
    types = (Image, RemoteImage, Volume, Container)

    def client(self) -> docker.APIClient:
        host = self.config.get("host") or os.environ.get("DOCKER_HOST")
        if not host:
            raise ProviderError("docker: no host")
        return docker.APIClient(base_url=str(host), timeout=300)


PROVIDER = Docker
