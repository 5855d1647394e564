"""A real Docker daemon (Debian ``docker.io``: /usr/sbin/dockerd 20.10) private to the tests.

Started with its own ``--data-root``, ``--exec-root``, ``-H unix://<tmp>/docker.sock``,
``--pidfile`` and an empty ``--config-file`` (the host's /etc/docker/daemon.json is not read),
``--bridge=none --iptables=false --ip6tables=false --ip-forward=false`` (no docker0, no netfilter
or sysctl changes; ``bridge_cidr`` gives it a docker0 with that address instead, for bridge-mode
containers, whose published ports then go through docker-proxy: inside a namespace the test
created only) and storage driver overlay2, falling back to vfs when overlay2 cannot start.
dockerd starts its own containerd under the exec root. ``netns`` runs the daemon in a network
namespace (``nsenter --net``, nothing else changes): its ``--network host`` containers then share
that namespace — the relay host's network, like derper on a home server.

No registry is reachable, so images come from ``docker import`` only: :meth:`Dockerd.import_rootfs`
(a directory or a tar), :meth:`Dockerd.busybox_image` (Debian's static busybox),
:meth:`Dockerd.derper_image` (the real derper of tests/tools, static, plus the CA bundle) and
:meth:`Dockerd.go_build_image` (busybox + this machine's Go toolchain + the CA bundle: what the
product's Dockerfile needs of its ``BUILD_IMAGE``, like ``golang:1.26-alpine``).

Clean-up always runs: containers removed, daemon stopped (SIGTERM, then SIGKILL), every process
still running from our directories killed by pid, every mount under them unmounted, the
directories removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.peers.daemons import Daemon, DaemonError, run, start, wait_until
from tests.peers.tools import tool, version_of

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # the docker.io CLI (another docker on PATH may be newer)
BUSYBOX = "/bin/busybox"  # busybox-static
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
INSTALL_HINT = "apt-get install docker.io busybox-static"
NONROOT = "65532:65532"  # the distroless "nonroot" user

#: The env interface of the popular derper images (DERP_DOMAIN, DERP_CERT_MODE, …), mapped to
#: derper's flags (cmd/derper/derper.go:59-86). Like those images (docs/upstream/derper.md#images)
#: it passes no ``-c``: derper then uses /var/lib/derper/derper.key only as root and a non-root
#: derper exits with "derper: -c <config path> not specified" (derper.go:118-124).
DERPER_ENTRYPOINT = """#!/bin/sh
exec /usr/local/bin/derper \\
  -hostname "${DERP_DOMAIN:-derp.example.com}" \\
  -certmode "${DERP_CERT_MODE:-letsencrypt}" \\
  -certdir "${DERP_CERT_DIR:-/app/certs}" \\
  -a "${DERP_ADDR:-:443}" \\
  -stun="${DERP_STUN:-true}" \\
  -stun-port "${DERP_STUN_PORT:-3478}" \\
  -http-port "${DERP_HTTP_PORT:-80}" \\
  -verify-clients="${DERP_VERIFY_CLIENTS:-false}" \\
  -verify-client-url "${DERP_VERIFY_CLIENT_URL:-}" \\
  "$@"
"""


@dataclass
class Dockerd:
    root: Path
    daemon: Daemon
    storage_driver: str

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.root / "cli"),
        }

    def docker(
        self,
        *args: str,
        timeout: float = 60.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this daemon (DOCKER_HOST, plus ``env``); failures show
        dockerd's log."""
        return run(
            [DOCKER, *args],
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=check,
            daemons=[self.daemon],
        )

    def import_rootfs(self, source: Path, tag: str, changes: Sequence[str] = ()) -> str:
        """``docker import`` a root filesystem (directory or tar) as ``tag``; the image id.

        ``changes`` are Dockerfile instructions applied on import (ENTRYPOINT, USER, ENV, …).
        """
        with tempfile.TemporaryDirectory(prefix="hdd-tar-") as tmp:
            tar = source
            if source.is_dir():
                tar = Path(tmp) / "rootfs.tar"
                with tarfile.open(tar, "w") as out:
                    for entry in sorted(source.iterdir()):
                        out.add(entry, arcname=entry.name)
            flags = [arg for change in changes for arg in ("--change", change)]
            self.docker("import", *flags, str(tar), tag, timeout=120)
        return self.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()

    def busybox_image(self, tag: str = "home-derp-test/busybox:latest") -> str:
        """A tiny image: Debian's static busybox with its applets, /tmp, nothing else."""
        with tempfile.TemporaryDirectory(prefix="hdd-rootfs-") as tmp:
            rootfs = Path(tmp)
            _busybox_rootfs(rootfs)
            return self.import_rootfs(rootfs, tag, ['CMD ["/bin/sh"]'])

    def derper_image(self, tag: str | None = None, *, state_owner: int = 65532) -> str:
        """The real derper (static Go binary) + CA bundle + busybox sh for the entrypoint,
        with the DERP_* env interface of the popular images (see DERPER_ENTRYPOINT).

        ``state_owner`` owns /var/lib/derper (a fresh volume copies it): 0 for the old, root-run
        image shape whose state volumes the product's init container hands over."""
        tag = tag or f"home-derp-test/derper:v{version_of('derper')}"
        with tempfile.TemporaryDirectory(prefix="hdd-rootfs-") as tmp:
            rootfs = Path(tmp)
            _busybox_rootfs(rootfs)
            bindir = rootfs / "usr" / "local" / "bin"
            bindir.mkdir(parents=True)
            shutil.copy2(tool("derper"), bindir / "derper")
            entry = bindir / "derper-entrypoint"
            entry.write_text(DERPER_ENTRYPOINT)
            entry.chmod(0o755)
            certs = rootfs / "etc" / "ssl" / "certs"
            certs.mkdir(parents=True)
            shutil.copy2(CA_BUNDLE, certs / "ca-certificates.crt")
            for d in ("app/certs", "var/lib/derper"):
                (rootfs / d).mkdir(parents=True)
            os.chown(rootfs / "var" / "lib" / "derper", state_owner, state_owner)
            return self.import_rootfs(
                rootfs, tag, ['ENTRYPOINT ["/usr/local/bin/derper-entrypoint"]', "WORKDIR /"]
            )

    def go_build_image(self, tag: str, goroot: Path, gocache: Path | None = None) -> str:
        """busybox + the Go toolchain at ``goroot`` (as /usr/local/go, on PATH) + CA bundle.

        The shape of the official golang images: ``go`` on PATH, GOPATH /go, a shell with
        ``chown`` (the init container runs in the build image too). The tar is written
        straight from ``goroot``; its tests and docs are left out (not needed to build).
        ``gocache`` becomes the image's Go build cache (GOCACHE), so a build inside it reuses
        what was compiled with the same toolchain and flags.
        """
        if not (goroot / "bin" / "go").is_file():
            raise DaemonError(f"no Go toolchain at {goroot}: install Go >= 1.26.6")
        skip = {goroot / "test", goroot / "doc"}
        with tempfile.TemporaryDirectory(prefix="hdd-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _busybox_rootfs(rootfs)
            certs = rootfs / "etc" / "ssl" / "certs"
            certs.mkdir(parents=True)
            shutil.copy2(CA_BUNDLE, certs / "ca-certificates.crt")
            (rootfs / "go").mkdir()
            (rootfs / "root").mkdir()
            tar = Path(tmp) / "rootfs.tar"
            with tarfile.open(tar, "w") as out:
                for entry in sorted(rootfs.iterdir()):
                    out.add(entry, arcname=entry.name)
                out.add(
                    goroot,
                    arcname="usr/local/go",
                    filter=lambda info: None if _under(goroot, info.name, skip) else info,
                )
                if gocache is not None:
                    out.add(gocache, arcname="root/.cache/go-build")
            return self.import_rootfs(
                tar,
                tag,
                [
                    "ENV PATH=/usr/local/go/bin:/go/bin:/bin",
                    "ENV GOPATH=/go",
                    "ENV GOCACHE=/root/.cache/go-build",
                    "WORKDIR /go",
                    'CMD ["/bin/sh"]',
                ],
            )

    def remove_all_containers(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False, timeout=60)


def _busybox_rootfs(rootfs: Path) -> None:
    if not os.access(BUSYBOX, os.X_OK):
        raise DaemonError(f"{BUSYBOX} is missing: {INSTALL_HINT}")
    bindir = rootfs / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            (bindir / applet).symlink_to("busybox")
    for d in ("tmp", "etc", "proc", "sys", "dev"):
        (rootfs / d).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)


def _under(goroot: Path, arcname: str, skip: set[Path]) -> bool:
    """Whether the tar member ``arcname`` (``usr/local/go/...``) lies in a skipped directory."""
    rel = arcname.removeprefix("usr/local/go").lstrip("/")
    path = goroot / rel
    return any(path == s or s in path.parents for s in skip)


def _mounts_under(root: Path) -> list[str]:
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    prefix = str(root) + "/"
    # findmnt escapes spaces as \x20; our paths have none
    return sorted((m for m in out.stdout.split("\n") if m.startswith(prefix)), reverse=True)


def _pids_under(root: Path) -> list[int]:
    """Processes whose command line names our directories (containerd, shims we started)."""
    pids = []
    marker = str(root).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _cleanup(root: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _pids_under(root)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline and _pids_under(root):
            time.sleep(0.1)
    for mount in _mounts_under(root):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _start_dockerd(root: Path, driver: str, netns: str | None, bridge_cidr: str | None) -> Daemon:
    config = root / "daemon.json"
    config.write_text("{}\n")
    wrapper = ["nsenter", f"--net=/var/run/netns/{netns}"] if netns else []
    argv = [
        *wrapper,
        DOCKERD,
        "--config-file",
        str(config),
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(root / "exec"),
        "-H",
        f"unix://{root / 'docker.sock'}",
        "--pidfile",
        str(root / "docker.pid"),
        f"--bip={bridge_cidr}" if bridge_cidr else "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--storage-driver",
        driver,
    ]
    return start(
        f"dockerd ({driver})",
        argv,
        root / f"dockerd-{driver}.log",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


@contextlib.contextmanager
def dockerd(
    *,
    netns: str | None = None,
    drivers: Sequence[str] = ("overlay2", "vfs"),
    timeout: float = 30.0,
    bridge_cidr: str | None = None,
) -> Iterator[Dockerd]:
    """A running private dockerd (see the module docstring); everything removed afterwards."""
    if not os.access(DOCKERD, os.X_OK) or not os.access(DOCKER, os.X_OK):
        raise DaemonError(f"{DOCKERD} / {DOCKER} missing: {INSTALL_HINT}")
    # Short path: containerd's sockets under the exec root must fit sun_path (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="hdd-", dir="/tmp"))
    try:
        failures = []
        for driver in drivers:
            if bridge_cidr is not None and netns is None:
                raise DaemonError("a dockerd with a bridge runs only in a test's own namespace")
            daemon = _start_dockerd(root, driver, netns, bridge_cidr)
            d = Dockerd(root, daemon, driver)

            def answers(d: Dockerd = d) -> bool:
                probe = d.docker("version", "--format", "{{.Server.Version}}", check=False)
                return probe.returncode == 0

            try:
                wait_until(f"dockerd ({driver}) to answer", answers, timeout, [daemon], 0.2)
                info = d.docker("info", "--format", "{{.Driver}}").stdout.strip()
                if info != driver:
                    raise DaemonError(f"dockerd runs storage driver {info!r}, not {driver!r}")
            except DaemonError as exc:
                failures.append(str(exc))
                daemon.stop(15)
                _cleanup_daemon_dirs(root)
                continue
            try:
                yield d
            finally:
                d.remove_all_containers()
                daemon.stop(20)
            return
        raise DaemonError("dockerd did not start with any storage driver:\n" + "\n".join(failures))
    finally:
        _cleanup(root)


def _cleanup_daemon_dirs(root: Path) -> None:
    """Between attempts: processes and mounts of the failed daemon, its data and exec roots."""
    for pid in _pids_under(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for mount in _mounts_under(root):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    for sub in ("data", "exec"):
        shutil.rmtree(root / sub, ignore_errors=True)
