"""A ``docker.Container``'s arguments created on a real Docker engine, as pulumi-docker does it.

The product describes its containers as ``pulumi_docker.Container`` arguments
(``components.container.init_container_args`` / ``derper_container_args``). pulumi-docker is the
bridged terraform-provider-docker, so what reaches the Engine API is what that provider's
``resourceDockerContainerCreate`` builds (kreuzwerker/terraform-provider-docker@83c00e0b,
internal/provider/resource_docker_container_funcs.go). No Pulumi engine runs here; this module
performs the same Engine API calls with docker-py, one argument at a time:

* ``command`` → ``Config.Cmd``, ``envs`` → ``Config.Env``, ``user`` → ``Config.User``, ``labels``
  (``[{label, value}]``) → ``Config.Labels`` (funcs.go:69-137);
* ``volumes`` → ``HostConfig.Binds`` ``<volume_name or host_path>:<container_path>:ro|rw`` and
  ``Config.Volumes`` (resource_docker_container_structures.go:289-330);
* ``ports`` (``[{internal, external, ip, protocol}]``) → ``Config.ExposedPorts``
  ``<internal>/<protocol>`` and ``HostConfig.PortBindings`` ``{HostIP: ip, HostPort: external}``
  per entry (funcs.go:100-107,271; resource_docker_container_structures.go:228-258);
* ``read_only`` → ``ReadonlyRootfs``, ``capabilities`` ``{adds, drops}`` → ``CapAdd``/``CapDrop``,
  ``security_opts`` → ``SecurityOpt``, ``network_mode``, ``restart`` → ``RestartPolicy.Name``,
  ``log_driver``/``log_opts`` → ``LogConfig`` (funcs.go:250-400);
* ``uploads``: after create, before start, one tar per file whose member is named by the full
  ``file`` path with mode ``permissions`` (owner root), extracted at ``/`` with
  ``PUT /containers/{id}/archive`` (funcs.go:505-582) — so it lands in the volume mounted there;
* then start; with ``attach`` the provider waits for the container to stop (funcs.go:631-670)
  and does NOT check its exit code: :func:`create` returns it for the test to judge.

Secret or other ``pulumi.Output`` values are resolved first (:func:`plain_args`), like the engine
does before it calls the provider.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import pulumi

T = TypeVar("T")
#: Arguments this module knows how to pass; anything else fails loudly (a new argument in the
#: product must be mapped here, or the test would silently run a different container).
KNOWN = frozenset(
    {
        "name",
        "image",
        "command",
        "envs",
        "user",
        "read_only",
        "capabilities",
        "security_opts",
        "volumes",
        "network_mode",
        "ports",
        "restart",
        "labels",
        "log_driver",
        "log_opts",
        "destroy_grace_seconds",
        "uploads",
        "must_run",
        "attach",
    }
)


async def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return await _resolve(await value.future())
    if isinstance(value, Mapping):
        return {k: await _resolve(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [await _resolve(v) for v in value]
    return value


def plain_args(build: Callable[[], T]) -> T:
    """``build()`` (which may make ``pulumi.Output`` values) with every Output in its lists and
    mappings resolved, on an event loop of its own (Outputs need one; a module-scoped fixture
    has none)."""
    policy = asyncio.get_event_loop_policy()
    try:
        previous: asyncio.AbstractEventLoop | None = policy.get_event_loop()
    except RuntimeError:
        previous = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        built = build()
        resolved: T = loop.run_until_complete(_resolve(built))
        # Outputs nobody awaited (inside ``built``'s dataclasses) finish before the loop goes.
        pending = asyncio.all_tasks(loop)
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        return resolved
    finally:
        asyncio.set_event_loop(previous)
        loop.close()


def binds(volumes: list[Mapping[str, Any]]) -> list[str]:
    """structures.go:289-330: ``source:container_path:ro|rw`` (host_path wins over the name)."""
    out = []
    for v in volumes:
        source = v.get("host_path") or v.get("volume_name")
        if not source:
            raise ValueError(f"volume without a source: {v}")
        out.append(f"{source}:{v['container_path']}:{'ro' if v.get('read_only') else 'rw'}")
    return out


def upload_tar(file: str, content: str, permissions: str | None) -> bytes:
    """funcs.go:546-575: one member named ``file``, mode ``permissions`` (default 0644)."""
    data = content.encode()
    info = tarfile.TarInfo(file)
    info.mode = int(permissions, 8) if permissions else 0o644
    info.size = len(data)
    info.mtime = int(time.time())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def port_bindings(
    ports: list[Mapping[str, Any]],
) -> tuple[list[tuple[int, str]], dict[str, list[tuple[str, int]]]]:
    """structures.go:228-258: each entry exposes ``internal/protocol`` and binds ``ip:external``
    (docker-py's ``ports`` and ``port_bindings`` forms)."""
    exposed: list[tuple[int, str]] = []
    bindings: dict[str, list[tuple[str, int]]] = {}
    for port in ports:
        internal, protocol = int(port["internal"]), str(port.get("protocol") or "tcp")
        if (internal, protocol) not in exposed:
            exposed.append((internal, protocol))
        binding = (str(port.get("ip") or ""), int(port.get("external") or internal))
        bindings.setdefault(f"{internal}/{protocol}", []).append(binding)
    return exposed, bindings


@dataclass(frozen=True)
class Created:
    id: str
    name: str
    exit_code: int | None  # with ``attach``: the exit code it stopped with
    logs: str


def create(client: docker.APIClient, args: Mapping[str, Any], *, timeout: float = 60) -> Created:
    """Create, upload, start (and with ``attach`` wait) as the provider does; see the module doc."""
    unknown = set(args) - KNOWN
    if unknown:
        raise AssertionError(f"docker.Container arguments not mapped by this peer: {unknown}")
    exposed, bindings = port_bindings(args.get("ports") or [])
    capabilities = args.get("capabilities") or {}
    log_opts = args.get("log_opts") or {}
    host_config = client.create_host_config(
        binds=binds(args.get("volumes") or []),
        read_only=bool(args.get("read_only")),
        cap_add=capabilities.get("adds") or None,
        cap_drop=capabilities.get("drops") or None,
        security_opt=args.get("security_opts") or None,
        network_mode=args.get("network_mode"),
        port_bindings=bindings or None,
        restart_policy={"Name": args["restart"]} if args.get("restart") else None,
        log_config=docker.types.LogConfig(type=args["log_driver"], config=log_opts)
        if args.get("log_driver")
        else None,
    )
    labels = {item["label"]: item["value"] for item in args.get("labels") or []}
    created = client.create_container(
        image=args["image"],
        command=args.get("command"),
        environment=args.get("envs"),
        user=args.get("user") or "",
        labels=labels,
        volumes=[v["container_path"] for v in args.get("volumes") or []],
        ports=exposed or None,
        host_config=host_config,
        name=args["name"],
    )
    cid = str(created["Id"])
    for upload in args.get("uploads") or []:
        tar = upload_tar(upload["file"], upload["content"], upload.get("permissions"))
        if not client.put_archive(cid, "/", tar):
            raise AssertionError(f"upload of {upload['file']} into {args['name']} failed")
    client.start(cid)
    exit_code = None
    if args.get("attach"):
        exit_code = int(client.wait(cid, timeout=timeout)["StatusCode"])
    logs = client.logs(cid, stdout=True, stderr=True).decode(errors="replace")
    return Created(cid, str(args["name"]), exit_code, logs)
