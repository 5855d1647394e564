"""The product's derper deployed the way `pulumi up` creates it, and looked at from outside.

``deploy`` creates the product's named volumes (``docker.Volume`` with the role label), the init
container from ``container.init_container_args`` with the certificate uploaded, then derper from
``container.derper_container_args`` — all through tests/peers/docker_container.py, which does what
pulumi-docker's provider does with those arguments — and waits until derper serves TLS and STUN.
The rest reads what happened: derper's log, what is on disk in a volume, the kernel's view of the
container's process, and the product's netcheck against the relay host's addresses.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from cryptography import x509

from components import container, naming
from components.netcheck import RelayTarget, Report, check_relay
from components.settings import RelaySettings
from tests.peers import docker_container
from tests.peers.certs import Pki
from tests.peers.daemons import wait_until
from tests.peers.dockerd import Dockerd
from tests.peers.tailnet import Tailnet

#: busybox with a pinned tag (a usable ``home-derp:buildImage``, i.e. init image, too).
BUSYBOX_IMAGE = "home-derp-test/busybox:static"


@dataclass(frozen=True)
class Deployed:
    settings: RelaySettings
    name: str  # derper's container
    init: docker_container.Created
    derper: docker_container.Created
    serial: str

    @property
    def state_volume(self) -> str:
        return naming.state_volume_name(self.settings.region.id, self.settings.region.code)


def certificate(pki: Pki) -> tuple[str, str, str]:
    """(full chain PEM, key PEM, serial hex) of the relay's certificate (tests/peers/certs.py)."""
    files = pki.files("good")
    chain = Path(files.cert_file).read_text()
    cert = x509.load_pem_x509_certificate(chain.encode())
    return chain, Path(files.key_file).read_text(), format(cert.serial_number, "x")


def ensure_volumes(api: docker.APIClient, settings: RelaySettings) -> tuple[str, str]:
    """The product's two named volumes (``docker.Volume`` with its role label), if missing."""
    region = settings.region
    state = naming.state_volume_name(region.id, region.code)
    certs = container.certs_volume_name(settings)
    for name, role in ((state, naming.ROLE_STATE), (certs, "derper-certs")):
        api.create_volume(name, labels={naming.ROLE_LABEL: role})
    return state, certs


def logs_of(api: docker.APIClient, name: str) -> str:
    return bytes(api.logs(name, stdout=True, stderr=True)).decode(errors="replace")


def deploy(
    engine: Dockerd, api: docker.APIClient, settings: RelaySettings, image: str, pki: Pki
) -> Deployed:
    """What `pulumi up` creates for derper: volumes, the init container (certificate uploaded,
    run to completion), then derper; returns once derper serves TLS and STUN."""
    state, certs = ensure_volumes(api, settings)
    chain, key, serial = certificate(pki)
    init_args = docker_container.plain_args(
        lambda: container.init_container_args(
            settings,
            image=settings.derper.init_image,
            certs_volume=certs,
            state_volume=state,
            uploads=container.cert_uploads(settings.hostname, chain, key),
        )
    )
    init = docker_container.create(api, init_args)
    assert init.exit_code == 0, f"init container failed ({init.exit_code}): {init.logs}"
    derper_args = docker_container.plain_args(
        lambda: container.derper_container_args(
            settings,
            image=image,
            state_volume=state,
            certs_volume=certs,
        )
    )
    derper = docker_container.create(api, derper_args)

    def serving() -> bool:
        log = logs_of(api, derper.name)
        return "with TLS" in log and "STUN server listening" in log

    try:
        wait_until(f"{derper.name} to serve TLS and STUN", serving, 20.0, [engine.daemon])
    except AssertionError as exc:
        state = api.inspect_container(derper.name)["State"]
        raise AssertionError(
            f"{exc}\n--- {derper.name} {state}:\n{logs_of(api, derper.name)}"
        ) from None
    return Deployed(settings, derper.name, init, derper, serial)


def remove(api: docker.APIClient, *names: str) -> None:
    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(name, force=True)


def probe(net: Tailnet, settings: RelaySettings, **kw: Any) -> Report:
    """The product's netcheck against the relay host's two LAN addresses."""
    target = RelayTarget(
        settings.hostname,
        settings.ports.derp,
        settings.ports.stun,
        net.relay.host.addresses,
        ca_file=net.pki.ca_file,
        expect_verify_clients=settings.derper.verify_clients,
    )
    return check_relay(target, timeout=5, **kw)


def in_volume(engine: Dockerd, volume: str, script: str) -> str:
    """Run ``script`` in busybox with ``volume`` at /v (read-only): what is on disk."""
    return engine.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{volume}:/v:ro",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        script,
    ).stdout


def as_container_process(
    api: docker.APIClient, name: str, program: Path, *args: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run the static host ``program`` as the container's own process stands: in its mount,
    network and pid namespaces (its view of the mounted socket directory, its network), with its
    uid and gid as the kernel reports them, no supplementary groups and no capabilities.

    The product's image is scratch (no shell, no ``docker exec`` target), so the program is
    opened here and executed inside through ``/proc/self/fd/N`` after ``nsenter`` has entered the
    namespaces and dropped to the uid (util-linux nsenter: setns, setgroups(0), setgid, setuid,
    then a fork into the pid namespace and exec). tailscaled judges a connection by the peer's
    SO_PEERCRED uid alone (docs/upstream/localapi.md#peer-uid), which is exactly derper's here.
    """
    pid = api.inspect_container(name)["State"]["Pid"]
    status = proc_status(api, name)
    uid, gid = status["Uid"].split()[0], status["Gid"].split()[0]
    fd = os.open(program, os.O_RDONLY)
    try:
        argv = ["nsenter", f"--target={pid}", "--mount", "--net", "--pid",
                f"--setuid={uid}", f"--setgid={gid}", f"/proc/self/fd/{fd}", *args]  # fmt: skip
        return subprocess.run(
            argv,
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"},
            check=False,
        )
    finally:
        os.close(fd)


def proc_status(api: docker.APIClient, name: str) -> dict[str, str]:
    """/proc/<pid>/status of the container's process, as the kernel sees it."""
    pid = api.inspect_container(name)["State"]["Pid"]
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)
