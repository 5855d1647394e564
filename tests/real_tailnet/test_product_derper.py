"""The product's derper for real: built from components/derper/Dockerfile, run the product's way.

One real dockerd (Debian docker.io) runs in the relay host's namespace of the tailnet, so
``--network host`` is the relay host's network, as on a home server. Everything the product
decides comes from the product's own functions, nothing is re-typed here:

* the image: ``docker build`` (classic builder, like ``docker.Image`` with ``BUILDER_V1``) of
  ``container.BUILD_CONTEXT`` with ``container.build_args(settings)`` and the tag
  ``naming.derper_image_name``; BUILD_IMAGE is this machine's Go toolchain in a busybox image
  (the golang image's shape), RUNTIME_IMAGE scratch, GOPROXY a loopback proxy serving this
  machine's module cache and checksum database (tests/peers/goproxy.py; the build runs
  ``--network host`` to reach it — the product's build has the default network and the real
  proxy). GOSUMDB keeps its default: modules are verified against sum.golang.org's signed
  records, proxied from the cache;
* the containers: ``container.init_container_args`` / ``derper_container_args`` created on the
  engine as pulumi-docker's provider does (tests/peers/docker_container.py), with the certificate
  uploaded into the init container;
* the verdict: the product's netcheck with ``docker_evidence`` (derper's log through the Engine
  API), and ``RelayValidation`` through the real ``python -m pulumi.dynamic`` provider process —
  also over ``ssh://`` to a real sshd;
* the peer relay: ``PeerRelayServer`` through the provider process, over ssh:// to an sshd in
  the relay host's namespace, checked by a real client's ``tailscale ping``.

Settings come from ``components.settings.parse_settings`` (the host facts are the one injected
edge: tests/mocks.py ``HostFacts``; the real reads are tested in tests/test_tailscaled.py).
The build runs once per session. Its build image carries the Go build cache of
tests/tools/install's derper build (same release, flags and toolchain), so ``go install`` inside
it really resolves, verifies and links derper but recompiles little; HOME_DERP_COLD_BUILD=1 gives
it an empty cache instead (a cold compile: 136-230 s measured on 2 busy cores). The tests after
it take ~30 s.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import shlex
import shutil
import socket
import ssl
import struct
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pulumi
import pytest

from components import container, naming
from components.netcheck.admission import docker_evidence
from components.netcheck.cli import EXIT_FAILED
from components.netcheck.cli import main as netcheck_main
from components.peer_relay import TYPE_TOKEN as PEER_RELAY_TYPE
from components.peer_relay import PeerRelayServer, PeerRelayServerArgs
from components.relay import TYPE_TOKEN as RELAY_TYPE
from components.settings import DERPER_USER, Environment, RelaySettings, parse_settings
from components.validation import (
    TYPE_TOKEN,
    RelayValidation,
    RelayValidationArgs,
    validation_trigger,
)
from tests.mocks import HostFacts, HostProbeAdapter, dynamic_inputs
from tests.peers import docker_container
from tests.peers.daemons import wait_until
from tests.peers.derper import NOT_AUTHORIZED, public_key_of_config
from tests.peers.dns_server import DnsServer, dns_server
from tests.peers.dockerd import CA_BUNDLE, DOCKER, Dockerd, dockerd
from tests.peers.forward import forward_into_netns
from tests.peers.goproxy import GoProxy, go_env, go_proxy
from tests.peers.localapi_old import OldLocalApi, old_localapi
from tests.peers.product_derper import (
    BUSYBOX_IMAGE,
    Deployed,
    as_container_process,
    deploy,
    ensure_volumes,
    in_volume,
    logs_of,
    probe,
    proc_status,
    remove,
)
from tests.peers.sshd import Sshd
from tests.peers.tailnet import HOME, RELAY_SERVER_PORT, Tailnet
from tests.peers.tools import derper_build_cache, tool, version_of
from tests.provider_host import ProviderHost, urn_for

TAILSCALE_VERSION = version_of("derper")  # the release the tailnet runs: 1.102.5
GO_IMAGE = "home-derp-test/golang:local"
OLD_IMAGE = "home-derp-test/derper-root:old"  # the root-run DERP_* image shape of old stacks
URN = urn_for(TYPE_TOKEN, "relay-900-validation", parent_type=RELAY_TYPE)
#: Ports beside the tailnet's derper (8443/3479) and test_docker_derper.py's (9443/3480).
PORTS = {
    "home": (9543, 3581),
    "blind": (9544, 3582),
    "skew": (9545, 3583),
    "upgrade": (9546, 3584),
    "low": (443, 3478),
    "bridge": (444, 999),
}
REGIONS = {"home": 900, "blind": 902, "skew": 903, "upgrade": 904, "low": 905, "bridge": 906}
#: docker0 of the second, bridge-mode dockerd (inside the relay host's namespace only).
BRIDGE_CIDR = "172.31.250.1/24"
BUILD_TIMEOUT_S = 1200
#: cap_net_bind_service=+ep as the kernel stores it (components/derper/filecap.go).
FILE_CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def engine(net: Tailnet) -> Iterator[Dockerd]:
    """dockerd in the relay host's namespace (no registry: images are built or imported)."""
    with dockerd(netns=net.relay.host.name) as d:
        d.busybox_image(BUSYBOX_IMAGE)
        yield d


@pytest.fixture(scope="module")
def api(engine: Dockerd) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=engine.host, timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def proxy(net: Tailnet) -> Iterator[GoProxy]:
    """The module proxy on the relay namespace's loopback (where the build's RUN steps are)."""
    with go_proxy(in_netns=net.relay.host.run) as p:
        yield p


@pytest.fixture(scope="module")
def go_image(engine: Dockerd) -> str:
    """busybox + this machine's Go (>= tailscale's go.mod 1.26.6: GOTOOLCHAIN=auto fetches
    nothing) + the CA bundle, as the product's BUILD_IMAGE (and init image)."""
    version = go_env("GOVERSION")  # go1.26.8
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    assert numbers >= (1, 26, 6), (
        f"{version} is older than tailscale.com@v{TAILSCALE_VERSION}'s go.mod (go 1.26.6): the "
        "build would fetch a toolchain; install Go >= 1.26.6 (https://go.dev/dl/)"
    )
    # The Go build cache of tests/tools/install's own derper build (same release, ldflags,
    # -trimpath, CGO off and toolchain), unless HOME_DERP_COLD_BUILD=1 asks for a cold compile.
    cache = None if os.environ.get("HOME_DERP_COLD_BUILD") == "1" else derper_build_cache()
    engine.go_build_image(GO_IMAGE, Path(go_env("GOROOT")), gocache=cache)
    return GO_IMAGE


@dataclass(frozen=True)
class Env:
    net: Tailnet
    engine: Dockerd
    proxy: GoProxy
    go_image: str
    tmp: Path

    def settings(self, code: str, *, socket: Path | None = None, **raw: str) -> RelaySettings:
        """Real settings for region ``code`` (its ports and id), parsed by the product."""
        derp, stun = PORTS[code]
        values = {
            "hostname": HOME.hostname,
            "zone": "home.test",
            "ipv6": "2409:8a00::10",  # what DNS would publish; the probes pin the LAN addresses
            "ipv4": "none",
            "derpPort": str(derp),
            "stunPort": str(stun),
            "regionId": str(REGIONS[code]),
            "regionCode": code,
            "verifyClients": "true",
            "tailscaleSocket": str(socket or self.net.relay.socket),
            "dockerHost": self.engine.host,
            "goProxy": self.proxy.url,
            "buildImage": self.go_image,
            "runtimeImage": "scratch",
            **raw,
        }
        facts = HostFacts(addresses=["2409:8a00::10"], version=TAILSCALE_VERSION)
        return docker_container.plain_args(
            lambda: parse_settings(
                values,
                env=Environment(cloudflare_api_token=pulumi.Output.secret("cf-test")),
                host=HostProbeAdapter(facts),
            ).require()
        )


@pytest.fixture(scope="module")
def env(
    net: Tailnet,
    engine: Dockerd,
    proxy: GoProxy,
    go_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Env:
    return Env(net, engine, proxy, go_image, tmp_path_factory.mktemp("product-derper"))


@dataclass(frozen=True)
class Built:
    tag: str
    image_id: str
    seconds: float
    output: str
    build_args: dict[str, str]


@pytest.fixture(scope="module")
def built(env: Env) -> Built:
    """The product's Dockerfile built once, with the product's build arguments and tag."""
    settings = env.settings("home")
    assert settings.derper.build is not None
    args = container.build_args(settings)
    tag = naming.derper_image_name(settings.derper.build.tailscale_version)
    argv = ["build", "--network", "host", "-t", tag]
    argv += ["-f", str(Path(container.BUILD_CONTEXT) / "Dockerfile")]
    argv += [arg for k, v in args.items() for arg in ("--build-arg", f"{k}={v}")]
    argv.append(container.BUILD_CONTEXT)
    started = time.monotonic()
    # DOCKER_BUILDKIT=0: the classic builder, as pulumi-docker's BUILDER_V1.
    done = env.engine.docker(
        *argv, timeout=BUILD_TIMEOUT_S, check=False, env={"DOCKER_BUILDKIT": "0"}
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"build failed after {seconds:.0f}s:\n{done.stdout}\n{done.stderr}"
    image_id = env.engine.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    return Built(tag, image_id, seconds, done.stdout + done.stderr, args)


# ------------------------------------------------------------------------ the product's way


@pytest.fixture(scope="module")
def relay(env: Env, api: docker.APIClient, built: Built) -> Iterator[Deployed]:
    """The product's derper for region 900, verifying against the relay host's tailscaled."""
    deployed = deploy(env.engine, api, env.settings("home"), built.image_id, env.net.pki)
    yield deployed
    remove(api, deployed.name, deployed.init.name)


# ------------------------------------------------------------------------------ 1. the image


# The product's Dockerfile really builds with the product's build arguments: derper reports
# 1.102.5 (`-version` prints version.Long(), cmd/derper/derper.go:164-166), runs as 65532 with
# entrypoint derper, and the image holds the CA bundle and derper — nothing else. The modules
# came through GOPROXY and were checked against the checksum database (the proxied lookup).
@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
def test_build_of_the_product_dockerfile(env: Env, built: Built) -> None:
    cold = os.environ.get("HOME_DERP_COLD_BUILD") == "1"
    print(f"\n{'cold' if cold else 'cache-seeded'} build of {built.tag}: {built.seconds:.1f}s")
    assert built.build_args == {
        "TAILSCALE_VERSION": TAILSCALE_VERSION,
        "GOPROXY": env.proxy.url,
        "BUILD_IMAGE": GO_IMAGE,
        "RUNTIME_IMAGE": "scratch",
    }
    assert built.tag == f"home-derp/derper:v{TAILSCALE_VERSION}"
    config = json.loads(env.engine.docker("image", "inspect", built.tag).stdout)[0]["Config"]
    assert config["User"] == DERPER_USER
    assert config["Entrypoint"] == ["/usr/local/bin/derper"]
    version = env.engine.docker("run", "--rm", "--network", "none", built.tag, "-version")
    assert version.stdout.strip() == TAILSCALE_VERSION, version

    members = image_members(env.engine, built.tag)
    files = {name for name, info in members.items() if not info.isdir()}
    assert files == {"etc/ssl/certs/ca-certificates.crt", "usr/local/bin/derper"}, members
    # No mount point whose ownership Docker would copy over the init container's chown.
    assert set(members) - files == {"etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local",
                                    "usr/local/bin"}, members  # fmt: skip
    bundle = members["etc/ssl/certs/ca-certificates.crt"]
    assert bundle.size == Path(CA_BUNDLE).stat().st_size  # the build image's bundle
    # derper's file capability survived the multi-stage COPY into scratch with the classic
    # builder (a directory COPY: docs/upstream/capabilities.md#image-build): a version-2
    # vfs_cap_data, effective, permitted = CAP_NET_BIND_SERVICE (bit 10).
    derper = members["usr/local/bin/derper"]
    xattr = derper.pax_headers.get("SCHILY.xattr.security.capability", "").encode("latin-1")
    assert xattr == FILE_CAPABILITY, (xattr, derper.pax_headers)
    assert "filecap: /out/derper = cap_net_bind_service=ep" in built.output

    assert env.proxy.fetched(f"/tailscale.com/@v/v{TAILSCALE_VERSION}.zip")
    assert env.proxy.fetched(f"/sumdb/sum.golang.org/lookup/tailscale.com@v{TAILSCALE_VERSION}")


def image_members(engine: Dockerd, tag: str) -> dict[str, tarfile.TarInfo]:
    """Every path of the image's layers (``docker save``), later layers winning."""
    saved = engine.root / "saved.tar"
    engine.docker("save", "-o", str(saved), tag, timeout=120)
    try:
        members: dict[str, tarfile.TarInfo] = {}
        with tarfile.open(saved) as outer:
            manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
            for layer in manifest[0]["Layers"]:
                data = outer.extractfile(layer)
                assert data is not None
                with tarfile.open(fileobj=io.BytesIO(data.read())) as inner:
                    for info in inner.getmembers():
                        members[info.name.rstrip("/")] = info
        return members
    finally:
        saved.unlink()


# ------------------------------------------------------------------ 2. hardened, verifying


# derper runs as the product creates it: uid 65532, no capabilities at all, no-new-privileges,
# read-only root, flags on the command line, the relay host's socket directory mounted read-only
# at /var/run/tailscale with -socket pointing at the file inside. The kernel's view of the
# process proves the hardening; the product's netcheck passes on IPv4 and IPv6 and derper's own
# log line for netcheck's random key, read through the Engine API, is "not authorized": derper
# asked tailscaled and tailscaled answered.
def test_hardened_derper_verifies_through_the_mounted_socket(
    env: Env, api: docker.APIClient, relay: Deployed
) -> None:
    settings = relay.settings
    inspect = api.inspect_container(relay.name)
    host_config = inspect["HostConfig"]
    assert inspect["Config"]["User"] == "65532:65532"
    assert inspect["Config"]["Cmd"] == container.derper_command(settings)
    assert f"-socket={container.SOCKET_DIR}/tailscaled.sock" in inspect["Config"]["Cmd"]
    assert host_config["ReadonlyRootfs"] is True and host_config["NetworkMode"] == "host"
    assert host_config["CapDrop"] == ["ALL"] and host_config["CapAdd"] == ["NET_BIND_SERVICE"]
    assert host_config["SecurityOpt"] == [container.NO_NEW_PRIVILEGES]
    mounts = {m["Destination"]: m for m in inspect["Mounts"]}
    socket_mount = mounts[container.SOCKET_DIR]
    assert socket_mount["Source"] == str(env.net.relay.socket.parent)
    assert socket_mount["RW"] is False and mounts[container.CERT_DIR]["RW"] is False
    assert mounts[container.STATE_DIR]["Name"] == relay.state_volume

    status = proc_status(api, relay.name)
    assert status["Uid"].split() == ["65532"] * 4 and status["Gid"].split() == ["65532"] * 4
    # NET_BIND_SERVICE only in the bounding set (the file capability's execve check needs it);
    # no-new-privileges keeps it out of the permitted and effective sets.
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
    assert status["CapBnd"] == "0000000000000400"
    assert status["NoNewPrivs"] == "1"
    on_disk = in_volume(
        env.engine, container.certs_volume_name(settings), "stat -c '%n %u:%g %a' /v/*"
    )
    assert on_disk.split("\n")[:2] == [
        "/v/derp.home.test.crt 65532:65532 644",
        "/v/derp.home.test.key 65532:65532 600",
    ], on_disk

    evidence = docker_evidence(
        env.engine.host,
        relay.name,
        derper_version=TAILSCALE_VERSION,
        tailscaled_version=TAILSCALE_VERSION,
    )
    report = probe(env.net, settings, evidence_source=evidence)
    assert report.ok, report.format_text() + "\n" + logs_of(api, relay.name)
    key_file = env.tmp / "derper-900.key"
    key_file.write_text(in_volume(env.engine, relay.state_volume, "cat /v/derper.key"))
    assert report.server_public_key == public_key_of_config(key_file)
    for address in env.net.relay.host.addresses:
        check = report.check("verify_clients", address)
        key = check.data["client_key"]
        assert check.data["cause"] == "not_authorized", check
        assert check.data["log_line"].endswith(
            f"client nodekey:{key} rejected: peer nodekey:{key} {NOT_AUTHORIZED}"
        ), check


# The first hour's step 6 (README), typed on the relay host: `--expect-verify-clients
# --docker-host unix://… --container derper-<id>-<code>` makes the checker read derper's own
# verdict through the engine, so its OK is proven ("not authorized"), not guessed; the same
# command without the two flags cannot prove it and fails (it used to pass with a warning).
def test_first_hour_checker_command_confirms_admission(
    env: Env, relay: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = relay.settings
    assert relay.name == naming.container_name(settings.region.id, settings.region.code)
    addresses = [a for address in env.net.relay.host.addresses for a in ("--address", address)]
    args = [settings.hostname, "--derp-port", str(settings.ports.derp), "--stun-port",
            str(settings.ports.stun), "--ca-file", env.net.pki.ca_file, "--expect-verify-clients",
            *addresses]  # fmt: skip
    assert netcheck_main([*args, "--docker-host", env.engine.host, "--container", relay.name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Report for {settings.hostname}: OK (10/10 checks passed)"), out
    assert out.count("ON: derper asked tailscaled, which does not know the random key") == 2, out
    assert netcheck_main(args) == EXIT_FAILED
    assert capsys.readouterr().out.startswith(f"Report for {settings.hostname}: FAILED (8/10 ")


# Below 1024 in host networking (derpPort 443, stunPort 3478) derper still runs as 65532: it
# binds through its binary's file capability, which the kernel honours because NET_BIND_SERVICE
# is in the bounding set and no-new-privileges is off — its only such case. The kernel shows uid
# 65532 with exactly that capability (bit 10) in effect. It serves and verifies: derper's own
# "not authorized" for the random key (read access works). And a process with derper's uid,
# inside the running container's namespaces, is refused an EditPrefs through the mounted socket
# by the real tailscaled ("prefs write access denied") while reading status works.
def test_privileged_port_runs_65532_through_the_file_capability(
    env: Env, api: docker.APIClient, built: Built
) -> None:
    settings = env.settings("low")
    assert container.derper_user(settings) == DERPER_USER
    deployed = deploy(env.engine, api, settings, built.image_id, env.net.pki)
    try:
        host_config = api.inspect_container(deployed.name)["HostConfig"]
        assert host_config["CapAdd"] == ["NET_BIND_SERVICE"] and not host_config["SecurityOpt"]
        status = proc_status(api, deployed.name)
        assert status["Uid"].split() == ["65532"] * 4 and status["Gid"].split() == ["65532"] * 4
        assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000400"
        assert status["NoNewPrivs"] == "0"
        evidence = docker_evidence(
            env.engine.host,
            deployed.name,
            derper_version=TAILSCALE_VERSION,
            tailscaled_version=TAILSCALE_VERSION,
        )
        report = probe(env.net, settings, evidence_source=evidence)
        assert report.ok, report.format_text() + "\n" + logs_of(api, deployed.name)
        for address in env.net.relay.host.addresses:
            assert report.check("verify_clients", address).data["cause"] == "not_authorized"
        on_disk = in_volume(env.engine, deployed.state_volume, "stat -c '%u:%g %a' /v/derper.key")
        assert on_disk.strip() == "65532:65532 600"  # the init container handed the volume over

        cli = [f"--socket={container.socket_in_container(settings.derper)}", "debug", "localapi"]
        hostname = env.net.relay.json("debug", "prefs")["Hostname"]
        # The same hostname: harmless even if tailscaled wrongly accepted it.
        edit = json.dumps({"HostnameSet": True, "Hostname": hostname})
        write = as_container_process(
            api, deployed.name, tool("tailscale"), *cli, "PATCH", "prefs", edit
        )
        assert write.returncode == 1, write
        assert "# Response status 403 Forbidden" in write.stderr, write
        assert write.stdout.strip() == "prefs write access denied", write
        read = as_container_process(api, deployed.name, tool("tailscale"), *cli, "GET", "status")
        assert read.returncode == 0, read
        assert json.loads(read.stdout)["BackendState"] == "Running"
    finally:
        remove(api, deployed.name, deployed.init.name)


@pytest.fixture(scope="module")
def bridge_engine(net: Tailnet, engine: Dockerd, built: Built) -> Iterator[Dockerd]:
    """A second dockerd in the relay host's namespace, with a docker0 bridge there (bridge-mode
    containers, published ports through docker-proxy), holding the built image and busybox."""
    saved = engine.root / "derper-image.tar"
    engine.docker("save", "-o", str(saved), built.tag, timeout=120)
    with dockerd(netns=net.relay.host.name, bridge_cidr=BRIDGE_CIDR) as d:
        d.busybox_image(BUSYBOX_IMAGE)
        d.docker("load", "-i", str(saved), timeout=120)
        saved.unlink()
        yield d


# networkMode bridge: derper has a network namespace of its own, where Docker sets
# net.ipv4.ip_unprivileged_port_start=0 (docs/upstream/capabilities.md#bridge-mode), so below
# 1024 it runs as 65532 with no capability in effect and no-new-privileges on. It serves TLS,
# HTTPS and DERP on the ports Docker publishes on the relay host, and verifies through the socket
# directory mounted from the relay host (a unix socket is reached by path, not by network).
def test_bridge_mode_binds_low_ports_without_capabilities(
    env: Env, bridge_engine: Dockerd, built: Built
) -> None:
    settings = env.settings("bridge", networkMode="bridge", buildImage=BUSYBOX_IMAGE)
    api = docker.APIClient(base_url=bridge_engine.host, timeout=60)
    deployed = deploy(bridge_engine, api, settings, built.image_id, env.net.pki)
    try:
        inspect = api.inspect_container(deployed.name)
        assert inspect["HostConfig"]["NetworkMode"] == "bridge"
        assert inspect["HostConfig"]["SecurityOpt"] == [container.NO_NEW_PRIVILEGES]
        status = proc_status(api, deployed.name)
        assert status["Uid"].split() == ["65532"] * 4
        assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1"
        pid = str(inspect["State"]["Pid"])
        sysctl = env.net.relay.host.sh(
            "nsenter",
            f"--target={pid}",
            "--net",
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
        )
        assert sysctl.stdout.strip() == "0", sysctl
        evidence = docker_evidence(
            bridge_engine.host,
            deployed.name,
            derper_version=TAILSCALE_VERSION,
            tailscaled_version=TAILSCALE_VERSION,
        )
        report = probe(env.net, settings, evidence_source=evidence)
        for address in env.net.relay.host.addresses:
            for name in ("tls", "https", "derp", "verify_clients"):
                check = report.check(name, address)
                assert check.ok, report.format_text() + "\n" + logs_of(api, deployed.name)
            assert report.check("verify_clients", address).data["cause"] == "not_authorized"
    finally:
        remove(api, deployed.name, deployed.init.name)
        api.close()


def https_get(
    hostname: str,
    path: str,
    ca_file: str,
    *,
    through: list[str] | None = None,
    address: str | None = None,
    port: int = 0,
    timeout: float = 20.0,
) -> tuple[int, str]:
    """GET https://hostname/path over TLS (SNI ``hostname``), either to ``address:port`` or
    through the stdin/stdout of the program ``through`` (``tailscale nc``): (status, body)."""
    context = ssl.create_default_context(cafile=ca_file)
    request = (f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n").encode()
    if through is None:
        assert address is not None
        raw = socket.create_connection((address, port), timeout=timeout)
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(request)
            data = b"".join(iter(lambda: tls.recv(65536), b""))
    else:
        data = _https_through_pipe(through, context, hostname, request, timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def _https_through_pipe(
    argv: list[str], context: ssl.SSLContext, hostname: str, request: bytes, timeout: float
) -> bytes:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=hostname)
    deadline = time.monotonic() + timeout

    def flush() -> None:
        if pending := outgoing.read():
            proc.stdin.write(pending)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

    def fill() -> None:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        assert ready, f"no answer through {argv} within {timeout}s"
        chunk = os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
        if chunk:
            incoming.write(chunk)
        else:
            incoming.write_eof()

    def step(operation: Callable[[], Any]) -> Any:
        while True:
            try:
                return operation()
            except ssl.SSLWantReadError:
                flush()
                fill()

    try:
        step(tls.do_handshake)
        tls.write(request)
        flush()
        chunks = []
        while True:
            try:
                chunk = step(lambda: tls.read(65536))
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        proc.kill()
        proc.wait()


# derper's /debug handlers trust loopback and Tailscale addresses (tsweb), and the product runs
# derper with host networking on every address of the relay host: a tailnet device that may reach
# the relay host on derpPort (`tailscale nc` to its Tailscale IP; the userspace tailscaled hands
# the connection to 127.0.0.1) gets the debug page, while the same derper refuses a LAN address
# with 403 (docs/upstream/derper.md#debug-reachability: documented, with how to close it).
def test_debug_handlers_reach_the_tailnet_not_the_internet(env: Env, relay: Deployed) -> None:
    settings, net = relay.settings, env.net
    relay_ip = next(ip for ip in net.relay.status()["Self"]["TailscaleIPs"] if "." in ip)
    client = net.clients["a"]
    status, body = https_get(
        settings.hostname, "/debug/", net.pki.ca_file,
        through=client.cli_argv("nc", relay_ip, str(settings.ports.derp)),
    )  # fmt: skip
    assert status == 200 and "derper debug" in body, (status, body[:300])
    for address in net.relay.host.addresses:
        status, body = https_get(settings.hostname, "/debug/", net.pki.ca_file,
                                 address=address, port=settings.ports.derp)  # fmt: skip
        assert (status, body.strip()) == (403, "debug access denied"), (address, status, body)


# ---------------------------------------------------------------------- 3. upgrade in place


# A stack deployed with the old root-run image (DERP_* env, derper's root default key path) has a
# root-owned 0600 key in its state volume. Deploying the product's image on the same volume —
# init container, then derper as 65532 — keeps the server key: the relay keeps its identity.
def test_upgrade_keeps_the_server_key(env: Env, api: docker.APIClient, built: Built) -> None:
    settings = env.settings("upgrade")
    env.engine.derper_image(OLD_IMAGE, state_owner=0)
    state, _ = ensure_volumes(api, settings)
    name = naming.container_name(settings.region.id, settings.region.code)
    certs = env.tmp / "old-certs"
    certs.mkdir(exist_ok=True)
    files = env.net.pki.files("good")
    base = container.cert_file_base(settings.hostname)
    shutil.copyfile(files.cert_file, certs / f"{base}.crt")
    shutil.copyfile(files.key_file, certs / f"{base}.key")
    socket_dir = str(env.net.relay.socket.parent)
    try:
        env.engine.docker(
            "run", "-d", "--name", name, "--network", "host",
            *[arg for e in container.derper_env(settings) for arg in ("-e", e)],
            "-v", f"{state}:{container.STATE_DIR}",
            "-v", f"{certs}:{container.CERT_DIR}:ro",
            "-v", f"{socket_dir}:{container.SOCKET_DIR}:ro",
            OLD_IMAGE,
        )  # fmt: skip
        wait_until(
            "the old derper to serve",
            lambda: "with TLS" in logs_of(api, name),
            20.0,
            [env.engine.daemon],
        )
        old = probe(env.net, settings, evidence_source=docker_evidence(env.engine.host, name))
        assert old.ok, old.format_text() + "\n" + logs_of(api, name)
        stat = "stat -c '%u:%g %a' /v /v/derper.key"
        assert in_volume(env.engine, state, stat).split() == ["0:0", "755", "0:0", "600"]
        key_json = in_volume(env.engine, state, "cat /v/derper.key")
        remove(api, name)

        deployed = deploy(env.engine, api, settings, built.image_id, env.net.pki)
        evidence = docker_evidence(env.engine.host, deployed.name)
        new = probe(env.net, settings, evidence_source=evidence)
        assert new.ok, new.format_text() + "\n" + logs_of(api, deployed.name)
        assert in_volume(env.engine, state, stat).split() == [
            "65532:65532",
            "755",
            "65532:65532",
            "600",
        ]
        assert in_volume(env.engine, state, "cat /v/derper.key") == key_json  # the very same key
        key_file = env.tmp / "derper-upgrade.key"
        key_file.write_text(key_json)
        assert old.server_public_key == new.server_public_key == public_key_of_config(key_file)
    finally:
        remove(api, name, naming.state_owner_name(settings.region.id, settings.region.code))


# --------------------------------------------------------- 4. RelayValidation, the real process


@pytest.fixture(scope="module")
def resolver(net: Tailnet) -> Iterator[DnsServer]:
    """The relay's name → the relay host's LAN addresses (what public DNS would answer)."""
    with dns_server() as dns:
        dns.set_addresses(HOME.hostname, list(net.relay.host.addresses))
        yield dns


@pytest.fixture(scope="module")
def blind(env: Env, api: docker.APIClient, built: Built) -> Iterator[Deployed]:
    """The product's derper whose socket directory holds no socket (tailscaled not running)."""
    empty = env.tmp / "no-tailscaled"
    empty.mkdir(mode=0o755)
    settings = env.settings("blind", socket=empty / "tailscaled.sock")
    deployed = deploy(env.engine, api, settings, built.image_id, env.net.pki)
    yield deployed
    remove(api, deployed.name, deployed.init.name)


@pytest.fixture(scope="module")
def stale(env: Env) -> Iterator[OldLocalApi]:
    with old_localapi(env.tmp / "old-tailscaled") as api:
        yield api


@pytest.fixture(scope="module")
def skewed(env: Env, api: docker.APIClient, built: Built, stale: OldLocalApi) -> Iterator[Deployed]:
    """The product's derper 1.102.5 whose host tailscaled is 1.68.0 (tests/peers/localapi_old)."""
    settings = env.settings("skew", socket=stale.socket)
    deployed = deploy(env.engine, api, settings, built.image_id, env.net.pki)
    yield deployed
    remove(api, deployed.name, deployed.init.name)


def validation_inputs(
    env: Env,
    deployed: Deployed,
    resolver: DnsServer,
    *,
    docker_host: str | None = None,
    container_name: str | None = None,
    host_version: str = TAILSCALE_VERSION,
    timeout: int = 0,
) -> dict[str, Any]:
    """RelayValidation's inputs as components/relay.py registers them for this relay (the
    resolver and CA are the test's: public resolvers and a public CA in production)."""
    s = deployed.settings
    assert s.derper.build is not None
    addresses = list(env.net.relay.host.addresses)
    args = RelayValidationArgs(
        hostname=s.hostname,
        derp_port=s.ports.derp,
        stun_port=s.ports.stun,
        expected_addresses=addresses,
        expect_verify_clients=s.derper.verify_clients,
        mode=s.validation.mode,
        timeout_seconds=timeout,
        trigger=validation_trigger(deployed.derper.id, deployed.serial, addresses, ""),
        resolvers=[resolver.spec],
        ca_file=env.net.pki.ca_file,
        docker_host=docker_host or s.docker.host,
        container=container_name or naming.container_name(s.region.id, s.region.code),
        tailscale_version=s.derper.build.tailscale_version,
        host_tailscale_version=host_version,
    )
    return dynamic_inputs(lambda: RelayValidation("relay-900-validation", args))


def validate(inputs: dict[str, Any], env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """Check then Create in a real provider process, as `pulumi up` does."""
    with ProviderHost(timeout=90, env={**os.environ, **(env_vars or {})}) as host:
        host.configure({"home-derp:validate": "enforce"})
        checked = host.check(URN, {}, inputs)
        assert checked.failures == []
        return host.create(URN, checked.inputs).outputs


def verify_checks(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in outputs["checks"] if c["name"] == "verify_clients"]


# (a) The relay as deployed: healthy, and the admission cause is derper's "not authorized".
def test_validation_healthy_relay(env: Env, relay: Deployed, resolver: DnsServer) -> None:
    outputs = validate(validation_inputs(env, relay, resolver, timeout=20))
    assert outputs["healthy"] is True, outputs.get("diagnosis")
    assert outputs["admission"]["cause"] == "not_authorized", outputs["admission"]
    assert len(verify_checks(outputs)) == 2 and all(c["ok"] for c in verify_checks(outputs))
    key_file = env.tmp / "derper-900-validation.key"
    key_file.write_text(in_volume(env.engine, relay.state_volume, "cat /v/derper.key"))
    assert outputs["server_public_key"] == public_key_of_config(key_file)


# (b) tailscaled unreachable (its socket directory is empty): derper rejects every client, the
# verdict is unhealthy and the hint names the mounted directory and home-derp:tailscaleSocket.
def test_validation_tailscaled_unreachable(env: Env, blind: Deployed, resolver: DnsServer) -> None:
    outputs = validate(validation_inputs(env, blind, resolver))
    assert outputs["healthy"] is False
    assert outputs["admission"]["cause"] == "tailscaled_unreachable", outputs["admission"]
    for check in verify_checks(outputs):
        assert not check["ok"]
        assert "derper cannot reach tailscaled, so it rejects EVERY client" in check["detail"]
        assert "failed to query local tailscaled status for nodekey:" in check["detail"]
        assert "the socket in the mounted directory" in check["hint"]
        assert "home-derp:tailscaleSocket" in check["hint"]
    assert "home-derp:tailscaleSocket" in outputs["diagnosis"]


# (c) Version skew: derper 1.102.5 asks a 1.68.0 tailscaled, which cannot look up node keys; the
# verdict names both versions.
def test_validation_version_skew(
    env: Env, api: docker.APIClient, skewed: Deployed, stale: OldLocalApi, resolver: DnsServer
) -> None:
    outputs = validate(validation_inputs(env, skewed, resolver, host_version=stale.version))
    assert outputs["healthy"] is False
    assert outputs["admission"]["cause"] == "version_skew", outputs["admission"]
    detail = outputs["admission"]["detail"]
    assert f"(derper {TAILSCALE_VERSION}, tailscaled {stale.version})" in detail, detail
    assert any(r.startswith("/localapi/v0/whois?addr=nodekey%3A") for r in stale.requests)
    log = logs_of(api, skewed.name)
    assert "rejected: tailscaled version is too old (out of sync with derper binary)" in log


# (d) The log the validation reads is not derper's (the init container's): the rejection cannot
# be explained, so admission is "unconfirmed" and the relay is not judged healthy.
def test_validation_unconfirmed(env: Env, relay: Deployed, resolver: DnsServer) -> None:
    outputs = validate(validation_inputs(env, relay, resolver, container_name=relay.init.name))
    assert outputs["healthy"] is False
    assert outputs["admission"]["cause"] == "unconfirmed", outputs["admission"]
    assert "derper logged nothing about the random key" in outputs["admission"]["detail"]
    assert relay.init.name in outputs["admission"]["detail"]


# Over ssh:// (a real sshd; the relay host's `docker` is the test engine): the provider reads
# derper's log on the relay host with the system OpenSSH client (key and known_hosts from
# HOME_DERP_SSH_OPTS) and the healthy relay is judged healthy with "not authorized".
def test_validation_over_ssh(
    env: Env, relay: Deployed, resolver: DnsServer, sshd_factory: Callable[..., Sshd]
) -> None:
    bindir = env.tmp / "remote-bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "docker"
    wrapper.write_text(f"#!/bin/sh\nexport DOCKER_HOST={shlex.quote(env.engine.host)}\n"
                       f'exec {DOCKER} "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    sshd = sshd_factory(path_dirs=[str(bindir)])
    inputs = validation_inputs(env, relay, resolver, docker_host=sshd.docker_host, timeout=20)
    outputs = validate(inputs, {"HOME_DERP_SSH_OPTS": shlex.join(sshd.client_options)})
    assert outputs["healthy"] is True, outputs.get("diagnosis")
    assert outputs["admission"]["cause"] == "not_authorized", outputs["admission"]


# ------------------------------------------------------------- 5. the peer relay, for real


VIA_PEER_RELAY = re.compile(r"via peer-relay\((?P<addr>\S+):(?P<port>\d+):vni:\d+\)")


# The product's PeerRelayServer through the real provider process, over ssh:// to a real sshd in
# the relay host's namespace (its session has the real tailscale CLI and ss): Create moves the
# relay host's peer relay to another UDP port and returns once ss shows it bound, c→d pongs then
# come via the peer relay on that port, and Delete clears the pref — nothing listens there any
# more. The tailnet's own port is restored afterwards.
def test_peer_relay_server_through_the_provider(
    env: Env, sshd_factory: Callable[..., Sshd]
) -> None:
    net = env.net
    port = RELAY_SERVER_PORT + 1
    sshd = sshd_factory(prefix=net.relay.host.prefix, path_dirs=[str(tool("tailscale").parent)])
    with forward_into_netns(net.relay.host.name, sshd.port) as local_port:
        # The forwarded port is what the client dials, so known_hosts names that one.
        known = env.tmp / "relay_known_hosts"
        kind, key = (sshd.key.parent / "host_key.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{local_port} {kind} {key}\n")
        options = ["-F", "none", "-i", str(sshd.key), "-o", "IdentitiesOnly=yes",
                   "-o", "IdentityAgent=none", "-o", f"UserKnownHostsFile={known}",
                   "-o", "StrictHostKeyChecking=yes"]  # fmt: skip
        settings = env.settings(
            "home", dockerHost=f"ssh://{sshd.user}@127.0.0.1:{local_port}", peerRelayPort=str(port)
        )
        args = PeerRelayServerArgs(
            docker_host=settings.docker.host,
            socket=settings.derper.tailscale_socket,
            port=settings.peer_relay.port,
            static_endpoints=list(settings.peer_relay.static_endpoints),
        )
        inputs = dynamic_inputs(lambda: PeerRelayServer("relay-900-peer-relay", args, None))
        urn = urn_for(PEER_RELAY_TYPE, "relay-900-peer-relay", parent_type=RELAY_TYPE)
        provider_env = {**os.environ, "HOME_DERP_SSH_OPTS": shlex.join(options)}
        try:
            with ProviderHost(timeout=90, env=provider_env) as host:
                host.configure({})
                checked = host.check(urn, {}, inputs)
                created = host.create(urn, checked.inputs)
                assert created.outputs["bound"] is True, created.outputs
                sessions = net.relay.cli("debug", "peer-relay-sessions").stdout
                assert f"Server port: {port}\n" in sessions, sessions

                c, d = net.clients["c"], net.clients["d"]
                d_ip = d.ipv4

                def relayed_on_port() -> re.Match[str] | None:
                    out = c.cli("ping", "--until-direct=false", "-c", "3", "--timeout", "3s",
                                d_ip, check=False).stdout  # fmt: skip
                    found = VIA_PEER_RELAY.search(out)
                    return found if found and int(found["port"]) == port else None

                pong = wait_until(
                    f"a pong from d via peer-relay on {port}", relayed_on_port, 60, net.daemons, 1
                )
                assert pong["addr"].strip("[]") in net.relay.host.addresses, pong.group(0)

                host.delete(created.id, created.outputs, urn=urn)
            listening = net.relay.host.sh("ss", "-H", "-l", "-u", "-n", f"sport = :{port}")
            assert listening.stdout.strip() == "", listening.stdout
        finally:
            net.relay.cli("set", f"--relay-server-port={RELAY_SERVER_PORT}")
