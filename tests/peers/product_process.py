"""The product's derper container, run as a plain process in a host's network namespace.

For a tailnet with several derpers on several hosts (tests/peers/reach.py), where a Docker engine
per host namespace would cost more than the test (tests/real_tailnet/README.md). What runs is what
``pulumi up`` creates, read from the product's own container arguments (components/container.py):

* the init container (``init_container_args`` with ``init_uploads``): its uploads — certificate,
  key and, for a meshed node, the region's mesh key — written with their permissions into the
  volumes, then its command (hand the volumes to derper's user, keys 0600) run as root;
* derper (``derper_container_args``): its command, as its user (``setpriv``), with
  ``no-new-privileges`` and the capability bounding set the arguments ask for, in the host's
  network namespace (the product's ``networkMode: host``).

What differs from Docker, and why (nothing else is changed):

* **Paths.** A container sees its volumes at their mount points (``/certs``,
  ``/var/lib/derper``, ``/var/run/tailscale``); a process sees the host directories behind them.
  Every path under a mount point, in derper's flags and in the init command, is replaced by the
  host directory mounted there — what a bind mount does. A path under no mount point is an error.
* **Named volumes** are directories under the node's work directory (Docker keeps them under its
  data root).
* **Host paths of bind mounts** may be given per node: ``tailscaleSocket`` is one setting for both
  nodes (each host has its tailscaled socket at that path), but here the hosts share one
  filesystem, so the companion's socket directory is its own tailscaled's.
* **Environment**: ``SSL_CERT_FILE`` is the test CAs' bundle (the image carries the public roots,
  the test certificates come from a private CA), and ``DERP_DEBUG_LOGS`` makes derper log the
  lines the tests read. The root filesystem is the host's, not the image's read-only one.

Names resolve the way they do in production: derper's mesh client dials ``https://<host>/derp``
with the system resolver (tailscale.com@v1.102.5/cmd/derper/mesh.go:52, derp/derphttp/
derphttp_client.go:606-631; docs/upstream/derper.md#mesh). ``hosts_file`` writes the records the
product publishes into ``/etc/netns/<namespace>/hosts``, which ``ip netns exec`` bind-mounts over
``/etc/hosts`` for the processes it starts (ip-netns(8)).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import container, naming
from components.mesh import MeshKeyProvider
from components.settings import RelaySettings
from tests.peers import docker_container
from tests.peers.certs import Pki
from tests.peers.derper import Derper, run_derper
from tests.peers.product_derper import certificate
from tests.peers.tools import tool

SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def new_mesh_key() -> str:
    """The region's mesh key as the product makes it: ``MeshKey``'s provider ``create``."""
    outs = MeshKeyProvider().create({}).outs
    assert outs is not None
    return str(outs["key"])


@dataclass(frozen=True)
class Mounts:
    """Container path → host directory, as Docker mounts them for one container."""

    points: Mapping[str, Path]

    def _pattern(self) -> re.Pattern[str]:
        # A mount point that starts a path: after the start, a blank or "=", before "/" or an end.
        longest = sorted(self.points, key=len, reverse=True)
        alternatives = "|".join(re.escape(p) for p in longest)
        return re.compile(rf"(?:^|(?<=[\s=]))({alternatives})(?=/|\s|$)")

    def rewrite(self, text: str, *, quote: bool = False) -> str:
        """``text`` with every mount point replaced by its host directory (shell-quoted when
        ``text`` is a shell script, so a glob after it still expands)."""

        def host(m: re.Match[str]) -> str:
            path = str(self.points[m.group(1)])
            return shlex.quote(path) if quote else path

        return self._pattern().sub(host, text)

    def host_path(self, path: str) -> Path:
        rewritten = self.rewrite(path)
        if rewritten == path:
            raise ValueError(f"{path} is under no mount point of {sorted(self.points)}")
        return Path(rewritten)


def mounts_of(
    volumes: Sequence[Mapping[str, Any]], volume_root: Path, host_paths: Mapping[str, Path]
) -> Mounts:
    """The host directory behind each of a container's ``volumes``: a named volume's directory
    under ``volume_root``; a bind mount's ``host_path``, or ``host_paths[container_path]``."""
    points = {}
    for v in volumes:
        target = v["container_path"]
        if v.get("host_path"):
            points[target] = Path(host_paths.get(target, v["host_path"]))
        else:
            points[target] = volume_root / v["volume_name"]
    return Mounts(points)


def flags_on_host(command: Sequence[str], mounts: Mounts) -> list[str]:
    """derper's flags with container paths made host paths; a path left unmapped is an error."""
    out = [mounts.rewrite(arg) for arg in command]
    for before, after in zip(command, out, strict=True):
        value = before.partition("=")[2]
        if value.startswith("/") and after == before:
            raise ValueError(f"{before}: the path is under no mount point of {mounts.points}")
    return out


def setpriv_argv(derper_args: Mapping[str, Any]) -> list[str]:
    """Run as the container's user, with its no-new-privileges and capability bounding set."""
    uid, _, gid = str(derper_args["user"]).partition(":")
    caps = derper_args["capabilities"]
    assert caps["drops"] == ["ALL"], caps  # the product drops everything, adds back by name
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in caps.get("adds") or [])])
    argv = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups"]
    argv += ["--inh-caps=-all", f"--bounding-set={bounding}"]
    if container.NO_NEW_PRIVILEGES in (derper_args.get("security_opts") or []):
        argv.append("--no-new-privs")
    return argv


def run_init(init_args: Mapping[str, Any], mounts: Mounts) -> None:
    """The init container: its uploads written (mode as given, root-owned like Docker's upload
    archive), then its command on the host paths."""
    for upload in init_args["uploads"]:
        path = mounts.host_path(upload["file"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(upload["content"])
        path.chmod(int(upload.get("permissions") or "0644", 8))
    shell, flag, script = init_args["command"]
    assert (shell, flag) == ("sh", "-c"), init_args["command"]
    subprocess.run(
        ["sh", "-c", mounts.rewrite(script, quote=True)],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": SYS_PATH},
    )


@dataclass(frozen=True)
class NodeDeployment:
    """One node's derper as deployed here, and what it was made from."""

    derper: Derper
    settings: RelaySettings
    argv: list[str]  # derper's flags on the host (container paths replaced)
    product_command: list[str]  # ``derper_command(settings)`` as the product computes it
    mounts: Mounts

    def host_path(self, container_path: str) -> Path:
        return self.mounts.host_path(container_path)


def deploy(
    workdir: Path,
    settings: RelaySettings,
    pki: Pki,
    *,
    prefix: Sequence[str],
    ca_bundle: Path,
    mesh_key: str | None = None,
    host_paths: Mapping[str, Path] | None = None,
    drop_flags: Sequence[str] = (),
    addresses: tuple[str, ...] = (),
) -> NodeDeployment:
    """One node of the product (``settings``: the home node's, or ``node_settings`` of the
    companion) run as the module docstring says; returns once derper serves TLS and STUN.

    ``drop_flags``: flag names (e.g. ``-mesh-with``) left off, for a deliberately broken
    variant the product never makes."""
    workdir.mkdir(parents=True, exist_ok=True)
    for walked in (workdir.parent, workdir):  # derper's user walks in to its volumes
        walked.chmod(walked.stat().st_mode | 0o055)
    volume_root = workdir / "volumes"
    region = settings.region
    state = naming.state_volume_name(region.id, region.code)
    certs = container.certs_volume_name(settings)
    for name in (state, certs):
        (volume_root / name).mkdir(parents=True, exist_ok=True)
        (volume_root / name).chmod(0o755)
    chain, key, _serial = certificate(pki)
    init_args = docker_container.plain_args(
        lambda: container.init_container_args(
            settings,
            image="init",
            certs_volume=certs,
            state_volume=state,
            uploads=container.init_uploads(settings, chain, key, mesh_key),
        )
    )
    run_init(init_args, mounts_of(init_args["volumes"], volume_root, {}))
    derper_args = docker_container.plain_args(
        lambda: container.derper_container_args(
            settings, image="derper", state_volume=state, certs_volume=certs
        )
    )
    assert derper_args["network_mode"] == "host", derper_args["network_mode"]
    mounts = mounts_of(derper_args["volumes"], volume_root, host_paths or {})
    product_command = list(derper_args["command"])
    kept = [a for a in product_command if a.partition("=")[0] not in drop_flags]
    flags = flags_on_host(kept, mounts)
    env = {"PATH": SYS_PATH, "SSL_CERT_FILE": str(ca_bundle), "DERP_DEBUG_LOGS": "true"}
    argv = [*prefix, *setpriv_argv(derper_args), str(tool("derper")), *flags]
    socket = None
    if settings.derper.uses_socket:
        socket = mounts.host_path(container.socket_in_container(settings.derper))
    derper = run_derper(
        argv,
        workdir=workdir,
        hostname=settings.hostname,
        derp_port=settings.ports.derp,
        stun_port=settings.ports.stun,
        config_file=mounts.host_path(container.KEY_FILE),
        env=env,
        verify_socket=socket,
        addresses=addresses,
    )
    return NodeDeployment(derper, settings, flags, product_command, mounts)


def hosts_lines(records: Mapping[str, Mapping[str, str]], where: Mapping[str, str]) -> str:
    """``/etc/hosts`` lines for ``records`` (hostname → {record type → published address}),
    each published address replaced by ``where[address]`` (where that host is in the test
    world)."""
    lines = ["127.0.0.1 localhost", "::1 localhost"]
    for hostname, published in records.items():
        lines += [f"{where[address]} {hostname}" for address in published.values()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def hosts_file(namespaces: Sequence[str], text: str) -> Iterator[None]:
    """``text`` as ``/etc/hosts`` of the processes ``ip netns exec`` starts in ``namespaces``
    (ip-netns(8): it bind-mounts ``/etc/netns/<name>/<file>`` over ``/etc/<file>``); removed
    afterwards."""
    made: list[Path] = []
    try:
        for ns in namespaces:
            directory = Path("/etc/netns") / ns
            directory.mkdir(parents=True, exist_ok=False)
            made.append(directory)
            (directory / "hosts").write_text(text)
        yield
    finally:
        for directory in made:
            (directory / "hosts").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                directory.rmdir()
