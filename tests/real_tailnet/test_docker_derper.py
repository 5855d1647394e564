"""A pinned ``home-derp:image`` in a real Docker daemon on the relay host, the product's way.

The built image is tested in test_product_derper.py; this is the other path of
``components.container``: a pinned image with the DERP_* env interface of the popular images
(``derper_env``), no command line. dockerd (tests/peers/dockerd.py) runs in the relay host's
namespace, so ``--network host`` is the relay host's network. The image holds the real derper
binary (tests/tools) behind the DERP_* entrypoint; the containers come from the product's
``init_container_args`` / ``derper_container_args`` (tests/peers/product_derper.py). Like the
popular images its entrypoint gives derper no ``-c``, so the product runs it as root — with every
capability dropped, read-only and no-new-privileges — and therefore never with tailscaled's
socket: settings refuse a pinned image with ``verifyClients`` (root may write to the LocalAPI,
docs/upstream/localapi.md#write-permission), so it runs with verification off.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pulumi
import pytest

from components import container
from components.settings import ROOT_USER, Environment, parse_settings
from tests.mocks import HostFacts, HostProbeAdapter
from tests.peers.docker_container import plain_args
from tests.peers.dockerd import NONROOT, Dockerd, dockerd
from tests.peers.product_derper import BUSYBOX_IMAGE, deploy, logs_of, probe, proc_status, remove
from tests.peers.tailnet import HOME, Tailnet
from tests.peers.tools import version_of

DERP_PORT = 9443  # beside the tailnet's own derper (8443/3479) in the relay namespace
STUN_PORT = 3480
DERPER_IMAGE = f"home-derp-test/derper:v{version_of('derper')}"


@pytest.fixture(scope="module")
def engine(net: Tailnet) -> Iterator[Dockerd]:
    """dockerd in the relay host's namespace, with the busybox and derper images imported."""
    with dockerd(netns=net.relay.host.name) as d:
        d.busybox_image(BUSYBOX_IMAGE)
        yield d


@pytest.fixture(scope="module")
def derper_image_id(engine: Dockerd) -> str:
    return engine.derper_image(DERPER_IMAGE)


# The pinned image deployed the product's way: DERP_* env from derper_env(settings) and no
# command, root without any capability, read-only, no-new-privileges, and no host directory
# mounted (no socket: verification off). The product's netcheck passes on IPv4 and IPv6.
def test_pinned_image_serves_without_the_socket(
    net: Tailnet, engine: Dockerd, derper_image_id: str
) -> None:
    # The settings demand a digest-pinned reference; the container runs the image's id, as the
    # product runs ``RemoteImage.image_id`` (no registry here, so the digest is the local id).
    pinned = f"{DERPER_IMAGE}@{derper_image_id}"
    settings = plain_args(
        lambda: parse_settings(
            {
                "hostname": HOME.hostname,
                "zone": "home.test",
                "ipv6": "2409:8a00::10",
                "ipv4": "none",
                "derpPort": str(DERP_PORT),
                "stunPort": str(STUN_PORT),
                "regionCode": "pinned",
                "tailscaleSocket": str(net.relay.socket),
                "dockerHost": engine.host,
                "image": pinned,
                "verifyClients": "false",
                "buildImage": BUSYBOX_IMAGE,  # the init image
            },
            env=Environment(cloudflare_api_token=pulumi.Output.secret("cf-test")),
            host=HostProbeAdapter(HostFacts(addresses=["2409:8a00::10"])),
        ).require()
    )
    assert settings.derper.build is None
    api = docker.APIClient(base_url=engine.host, timeout=60)
    deployed = deploy(engine, api, settings, derper_image_id, net.pki)
    try:
        inspect = api.inspect_container(deployed.name)
        config = inspect["Config"]
        assert config["User"] == ROOT_USER
        status = proc_status(api, deployed.name)
        assert status["CapEff"] == "0000000000000000" and status["NoNewPrivs"] == "1"
        assert set(container.derper_env(settings)) <= set(config["Env"])
        assert "DERP_VERIFY_CLIENTS=false" in config["Env"] and config["Cmd"] is None
        assert [m for m in inspect["Mounts"] if m["Type"] == "bind"] == []  # no socket

        report = probe(net, settings)
        assert report.ok, report.format_text() + "\n" + logs_of(api, deployed.name)
    finally:
        remove(api, deployed.name, deployed.init.name)
        api.close()


# Non-root derper needs an explicit -c: without it it refuses to start
# (tailscale.com@v1.102.5/cmd/derper/derper.go:120-125) — a pinned image whose entrypoint relies
# on the root default /var/lib/derper/derper.key cannot run as the product's uid 65532.
def test_nonroot_derper_without_config_path_exits(engine: Dockerd, derper_image_id: str) -> None:
    done = engine.docker(
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
