"""derper's state volume when it is full, read-only or holds a damaged key — on the doctor's relay
host (tests/doctor/world.py: a real dockerd in a namespace, a real sshd, the real derper).

Two consumers: the doctor's ``docker.space`` / ``derper.state`` rows measure the filesystems
(``df`` and ``/proc/self/mounts`` through the program's host channel), and ``RelayValidation``'s
diagnosis names a derper that exits in a restart loop, with its last log line. The faults are
real: a tiny tmpfs volume filled with ``dd``, a read-only mount, an empty ``derper.key``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from components.doctor.model import Check, Report
from components.validation import run_validation
from tests.doctor.world import DERPER_IMAGE, OURS, World
from tests.peers.daemons import wait_until

STATE = f"{OURS}-state"  # naming.state_volume_name(900, "homelab")


def rows(report: Report) -> dict[str, Check]:
    return {c.id: c for c in report.checks}


@pytest.fixture
def volumes(host: World) -> Iterator[list[str]]:
    """Volumes a test makes; removed (with their containers) afterwards, so the next test's
    relay host is healthy again."""
    made: list[str] = []
    yield made
    host.docker.remove_all_containers()
    for name in made:
        host.docker.docker("volume", "rm", "-f", name, check=False)


def tmpfs_volume(host: World, volumes: list[str], options: str) -> None:
    host.docker.docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs",
                       "--opt", "device=tmpfs", "--opt", f"o={options}", STATE)  # fmt: skip
    volumes.append(STATE)


def holder(host: World, script: str, mode: str = "rw") -> None:
    """A container that keeps the state volume mounted at /state (a path the image does not have,
    so Docker copies nothing into it) after running ``script``."""
    host.docker.docker(
        "run", "-d", "--name", "state-holder", "--entrypoint", "/bin/sh",
        "-v", f"{STATE}:/state:{mode}", DERPER_IMAGE, "-c", f"{script}; exec sleep 600",
    )  # fmt: skip
    wait_until(
        "the holder to mount the volume",
        lambda: host.docker.docker("inspect", "-f", "{{.State.Running}}", "state-holder")
        .stdout.strip() == "true",
        20.0,
        [host.docker.daemon],
    )  # fmt: skip


# A state volume whose filesystem is full (a tmpfs filled with dd): derper.state fails with the
# fix, over unix:// and ssh:// alike; Docker's data root itself is fine.
@pytest.mark.parametrize("channel", ["local", "ssh"])
def test_a_full_state_volume_fails_its_row(host: World, volumes: list[str], channel: str) -> None:
    tmpfs_volume(host, volumes, "size=256k")
    holder(host, "dd if=/dev/zero of=/state/fill bs=4k 2>/dev/null || true")
    found = rows(host.doctor(host.stack("full", getattr(host, channel))))
    row = found["derper.state"]
    assert row.status == "fail", row
    assert f"derper's state volume {STATE} is nearly full: 0.0 MiB of 0.2 MiB free" in row.summary
    assert row.fix is not None and "no space left on device" in row.fix
    assert found["docker.space"].status == "pass", found["docker.space"]


# A read-only state volume fails its row, naming the mount.
def test_a_read_only_state_volume_fails_its_row(host: World, volumes: list[str]) -> None:
    tmpfs_volume(host, volumes, "ro,size=256k")
    holder(host, "true", mode="ro")
    row = rows(host.doctor(host.stack("ro", host.local)))["derper.state"]
    assert row.status == "fail", row
    assert "READ-ONLY filesystem" in row.summary and "read-only file system" in (row.fix or "")


# A plain local volume shares Docker's data root: its row measures that filesystem.
def test_a_plain_state_volume_is_measured_on_the_data_root(host: World, volumes: list[str]) -> None:
    host.docker.docker("volume", "create", STATE)
    volumes.append(STATE)
    found = rows(host.doctor(host.stack("plain", host.ssh)))
    root = json.loads(host.docker.docker("info", "--format", "{{json .DockerRootDir}}").stdout)
    assert found["docker.space"].status == "pass"
    assert found["docker.space"].summary.startswith(f"Docker's data root {root}: ")
    assert found["derper.state"].status == "pass"
    assert found["derper.state"].summary.startswith(f"derper's state volume {STATE}: ")


# --- validation names derper's restart loop ------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def looping_derper(host: World, volume_arg: str) -> None:
    """The real derper as the product runs it (non-root, ``-c`` in the state volume,
    ``restart: unless-stopped``), until Docker restarts it."""
    host.docker.docker(
        "run", "-d", "--name", OURS, "--restart", "unless-stopped", "--user", "65532:65532",
        "-v", volume_arg, "--entrypoint", "/usr/local/bin/derper", DERPER_IMAGE,
        "-c", "/var/lib/derper/derper.key", "-certmode", "manual", "-certdir", "/certs",
        "-a", f":{closed_port()}", "-http-port=-1", "-stun=false",
    )  # fmt: skip

    def looping() -> bool:
        raw = host.docker.docker("inspect", OURS).stdout
        return int(json.loads(raw)[0]["RestartCount"]) >= 1

    wait_until("derper to be restarted by Docker", looping, 30.0, [host.docker.daemon])


def validate(host: World, docker_host: str) -> dict[str, Any]:
    """RelayValidation's run against the dead relay, from inside the relay host's namespace."""
    props = {
        "hostname": "derp.example.com",
        "derp_port": closed_port(),
        "stun_port": closed_port(),
        "expected_addresses": [],
        "addresses_override": ["127.0.0.1"],
        "resolvers": ["127.0.0.1:1"],
        "expect_verify_clients": False,
        "mode": "enforce",
        "timeout_seconds": 0,
        "docker_host": docker_host,
        "container": OURS,
    }
    return host.run(lambda: run_validation(props))


@pytest.mark.parametrize(
    ("fault", "said", "hint"),
    [
        ("full", "no space left on device", "is full: free space on the relay host"),
        ("read-only", "read-only file system", "state volume is read-only"),
        ("damaged key", "derper: config: unexpected end of JSON input", "derper.key in the"),
    ],
)
@pytest.mark.parametrize("channel", ["local", "ssh"])
def test_validation_names_a_restart_loop_with_the_last_log_line(
    host: World, volumes: list[str], fault: str, said: str, hint: str, channel: str
) -> None:
    if fault == "full":  # one inode: the directory itself; the key's temporary file gets none
        tmpfs_volume(host, volumes, "size=64k,nr_inodes=1")
        looping_derper(host, f"{STATE}:/var/lib/derper")
    elif fault == "read-only":
        host.docker.docker("volume", "create", STATE)
        volumes.append(STATE)
        looping_derper(host, f"{STATE}:/var/lib/derper:ro")
    else:
        host.docker.docker("volume", "create", STATE)
        volumes.append(STATE)
        empty_key = ": > /v/derper.key; chown 65532 /v/derper.key"
        host.docker.docker("run", "--rm", "--entrypoint", "/bin/sh", "-v", f"{STATE}:/v",
                           DERPER_IMAGE, "-c", empty_key)  # fmt: skip
        looping_derper(host, f"{STATE}:/var/lib/derper")
    outputs = validate(host, getattr(host, channel))
    assert outputs["healthy"] is False
    first = outputs["diagnosis"].splitlines()[0]
    assert first.startswith(f"derper's container {OURS} is in a RESTART LOOP: Docker has restarted")
    assert said in first and hint in outputs["diagnosis"]
