"""derper in a real Docker daemon on the relay host, the way the product deploys it.

dockerd (tests/peers/dockerd.py) runs in the relay host's namespace, so ``--network host``
containers share the relay host's network, as on a home server. The derper image holds the real
derper binary (tests/tools) with the DERP_* env interface of the popular images; the container
runs hardened (``--read-only --cap-drop ALL --user 65532:65532``), keeps its key in a named
volume at /var/lib/derper, reads the certificate from /app/certs and reaches the host's
tailscaled through the mounted directory /var/run/tailscale — derper's default socket
/var/run/tailscale/tailscaled.sock (tailscale.com@v1.102.5/paths/paths.go:46-48), no ``-socket``;
the socket is 0666 (safesocket/unixsocket.go:69,85-91), so uid 65532 may connect.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.netcheck import RelayTarget, check_relay
from tests.peers.daemons import wait_until
from tests.peers.derper import NOT_AUTHORIZED, Rejection, public_key_of_config, rejection_for
from tests.peers.dockerd import NONROOT, Dockerd, dockerd
from tests.peers.tailnet import HOME, Tailnet
from tests.peers.tools import version_of

DERP_PORT = 9443  # beside the tailnet's own derper (8443/3479) in the relay namespace
STUN_PORT = 3480
HARDENED = ["--network", "host", "--read-only", "--cap-drop", "ALL", "--user", NONROOT]
BUSYBOX_IMAGE = "home-derp-test/busybox:latest"
DERPER_IMAGE = f"home-derp-test/derper:v{version_of('derper')}"


@pytest.fixture(scope="module")
def docker(net: Tailnet) -> Iterator[Dockerd]:
    """dockerd in the relay host's namespace, with the busybox and derper images imported."""
    with dockerd(netns=net.relay.host.name) as d:
        d.busybox_image(BUSYBOX_IMAGE)
        d.derper_image(DERPER_IMAGE)
        yield d


# A hardened busybox container runs as 65532 with no capabilities and a read-only root, on the
# relay host's network (it sees the relay's LAN address).
def test_hardened_container_on_relay_network(net: Tailnet, docker: Dockerd) -> None:
    script = (
        "id -u; touch /probe 2>/dev/null && echo writable || echo read-only; "
        "grep CapEff /proc/self/status; ip -o -4 addr show eth0"
    )
    out = docker.docker("run", "--rm", *HARDENED, BUSYBOX_IMAGE, "sh", "-c", script).stdout
    lines = out.splitlines()
    assert lines[0] == "65532", out
    assert lines[1] == "read-only", out
    assert lines[2].split() == ["CapEff:", "0000000000000000"], out
    assert f"inet {net.relay.host.v4}/24" in lines[3], out


# The product's container shape, for real: derper from the image, hardened, on the host network,
# verifying clients against the host's tailscaled through the mounted /var/run/tailscale. netcheck
# from the root namespace passes every check on IPv4 and IPv6, the server key is the one in the
# state volume, and derper (uid 65532) really asked tailscaled: its log says "not authorized" for
# netcheck's random key, not "failed to query".
def test_derper_container_serves_and_verifies(
    net: Tailnet, docker: Dockerd, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    files = net.pki.files("good")
    shutil.copyfile(files.cert_file, certs / f"{HOME.hostname}.crt")
    shutil.copyfile(files.key_file, certs / f"{HOME.hostname}.key")
    for f in certs.iterdir():
        f.chmod(0o644)  # the container user is not root
    name = "derper-900-home"
    docker.docker("volume", "create", f"{name}-state")
    env = {
        "DERP_DOMAIN": HOME.hostname,
        "DERP_CERT_MODE": "manual",
        "DERP_CERT_DIR": "/app/certs",
        "DERP_ADDR": f":{DERP_PORT}",
        "DERP_STUN": "true",
        "DERP_STUN_PORT": str(STUN_PORT),
        "DERP_HTTP_PORT": "-1",
        "DERP_VERIFY_CLIENTS": "true",
    }
    docker.docker(
        "run",
        "-d",
        "--name",
        name,
        *HARDENED,
        *[arg for k, v in env.items() for arg in ("-e", f"{k}={v}")],
        "-v",
        f"{name}-state:/var/lib/derper",
        "-v",
        f"{certs}:/app/certs:ro",
        "-v",
        f"{net.relay.socket.parent}:/var/run/tailscale",
        DERPER_IMAGE,
    )

    def logs() -> str:
        done = docker.docker("logs", name, check=False)
        return done.stdout + done.stderr

    wait_until(
        "the derper container to serve TLS and STUN",
        lambda: "with TLS" in logs() and "STUN server listening" in logs(),
        20.0,
        [docker.daemon],
    )
    target = RelayTarget(
        HOME.hostname,
        DERP_PORT,
        STUN_PORT,
        net.relay.host.addresses,
        ca_file=net.pki.ca_file,
        expect_verify_clients=True,
    )
    report = check_relay(target, timeout=5)
    assert report.ok, report.format_text() + "\n" + logs()

    key_file = tmp_path / "derper.key"
    key_file.write_text(
        docker.docker(
            "run",
            "--rm",
            "-v",
            f"{name}-state:/state:ro",
            BUSYBOX_IMAGE,
            "cat",
            "/state/derper.key",
        ).stdout
    )
    assert json.loads(key_file.read_text())["PrivateKey"].startswith("privkey:")
    assert report.server_public_key == public_key_of_config(key_file)
    for address in net.relay.host.addresses:
        key = str(report.check("verify_clients", address).data["client_key"])

        def line(key: str = key) -> Rejection | None:
            return rejection_for(logs(), key)

        found = wait_until(f"derper's line for nodekey:{key}", line, 5.0, [docker.daemon])
        assert found.reason == f"peer nodekey:{key} {NOT_AUTHORIZED}", logs()


# Non-root derper needs an explicit -c: without it it refuses to start
# (tailscale.com@v1.102.5/cmd/derper/derper.go:118-124) — images that rely on the root default
# /var/lib/derper/derper.key cannot run as --user 65532.
def test_nonroot_derper_without_config_path_exits(docker: Dockerd) -> None:
    done = docker.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        NONROOT,
        "--entrypoint",
        "/usr/local/bin/derper",
        DERPER_IMAGE,
        "-certmode",
        "manual",
        "-hostname",
        HOME.hostname,
        check=False,
    )
    assert done.returncode == 1, done
    assert "derper: -c <config path> not specified" in done.stdout + done.stderr, done
