"""derper on the relay host's Docker engine: built from source, run hardened.

Three containers' worth of decisions live here (docs/architecture.md, "derper"):

* **The image** is built on the Docker host from ``components/derper/Dockerfile`` at exactly the
  host tailscaled's release (``docker.Image``, classic builder, never pushed). Its tag carries the
  version and the build context is that folder alone, so it is rebuilt only when the version, a
  build argument or the Dockerfile changes (pulumi-docker hashes the context for its diff:
  docs/upstream/docker.md#pulumi-docker-image). A pinned ``home-derp:image`` replaces the build.
* **An init container** runs once per certificate: it receives the certificate and key (Docker's
  archive upload, which a read-only container cannot take: docs/upstream/docker.md#uploads) into a
  volume of their own and hands that volume and the state volume to derper's user. That is also
  how an existing stack upgrades in place: a state volume written by an older, root-run image keeps
  its server key, now owned by derper's user, so the relay keeps its identity.
* **derper** runs as uid 65532 with a read-only root filesystem, every capability dropped but
  ``NET_BIND_SERVICE`` kept in the bounding set, and ``no-new-privileges``; the flags are on its
  command line. Its binary carries the file capability ``cap_net_bind_service=+ep``
  (``components/derper/filecap.go``), which the kernel honours only when the bounding set holds
  it (else it refuses to execute the file) and only without no-new-privileges
  (docs/upstream/capabilities.md). So below port 1024 in host networking — the only case where
  a capability is needed at all — derper runs without no-new-privileges and binds through that
  file capability; scratch holds no other program that could gain anything from it. Elsewhere
  no-new-privileges stays on and derper holds no capability at all; in bridge mode its own
  network namespace lets any uid bind any port. Never root: tailscaled's LocalAPI answers
  ``whois`` to any local uid (docs/upstream/localapi.md#whois-permission) and gives uid 0 write
  access (docs/upstream/localapi.md#write-permission). The rule: ``settings.derper_privileges``.
* **A pinned image** (``home-derp:image``) is configured through the ``DERP_*`` variables of the
  common images, whose entrypoints give derper no ``-c``; derper then refuses to start unless it
  is root (docs/upstream/derper.md#key-file). So a pinned image runs as root — with every
  capability dropped, a read-only root filesystem and ``no-new-privileges`` — and settings refuse
  it together with ``verifyClients``: it never gets tailscaled's socket.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_docker as docker

from components import naming
from components.derper_restart import DerperRestart, DerperRestartArgs
from components.settings import (
    Derper,
    Ports,
    Privileges,
    RelaySettings,
    derper_privileges,
)

#: The build context: the Dockerfile's folder and nothing else (a change elsewhere in the repo
#: must not rebuild derper).
BUILD_CONTEXT: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "derper")
#: derper's state (``-c`` key file) inside the container; a named volume keeps it.
STATE_DIR: Final = "/var/lib/derper"
KEY_FILE: Final = f"{STATE_DIR}/derper.key"
#: derper's ``-certdir`` inside the container: a volume the init container fills.
CERT_DIR: Final = "/certs"
#: Where the host's tailscaled socket directory appears inside the container. The directory is
#: mounted, not the socket file: tailscaled re-creates the file when it restarts and a file
#: bind-mount would keep pointing at the old one (docs/upstream/localapi.md#socket-mode).
SOCKET_DIR: Final = "/var/run/tailscale"
#: derper's ``-mesh-psk-file`` inside the container: beside the certificate key, in the volume the
#: init container fills, 0600 and owned by derper's user like it (docs/upstream/derper.md#mesh).
MESH_KEY_FILE: Final = f"{CERT_DIR}/mesh.key"
NO_NEW_PRIVILEGES: Final = "no-new-privileges:true"
#: Seconds derper gets to stop (on delete and on a restart for a renewed certificate).
DESTROY_GRACE_SECONDS: Final = 10
#: The init container's mount points.
INIT_CERT_DIR: Final = "/certs"
INIT_STATE_DIR: Final = "/state"


@dataclass(frozen=True)
class RelayContainer:
    """derper's container and what it is made of."""

    container: docker.Container
    image_ref: pulumi.Output[str]
    """What the container runs: the built image's id, or the pinned image's id."""
    image_name: str
    """The image reference a user recognises (``home-derp/derper:v1.102.5`` or the pinned one)."""
    state_volume: docker.Volume
    restart: DerperRestart
    """Restarts derper for a renewed certificate; validation comes after it."""


# ---------------------------------------------------------------------------------------------
# Pure: what the containers look like


def cert_file_base(hostname: str) -> str:
    """derper looks for ``<certdir>/<name>.crt`` with every char outside [a-zA-Z0-9-.] removed
    (docs/upstream/derper.md#manual-certs)."""
    return "".join(ch for ch in hostname if ch.isascii() and (ch.isalnum() or ch in "-."))


def privileges(settings: RelaySettings) -> Privileges:
    """Who derper runs as and what it may gain (the rule: ``settings.derper_privileges``)."""
    return derper_privileges(settings.derper, settings.ports, settings.docker.network_mode)


def derper_user(settings: RelaySettings) -> str:
    """uid:gid derper runs as: 65532, or root for a pinned image (which never gets the socket)."""
    return privileges(settings).user


def security_options(granted: Privileges) -> list[str]:
    """no-new-privileges unless derper binds through its file capability (module docstring)."""
    return [NO_NEW_PRIVILEGES] if granted.no_new_privileges else []


def socket_in_container(derper: Derper) -> str:
    """derper's ``-socket``: the host socket's file name inside the mounted directory."""
    return f"{SOCKET_DIR}/{os.path.basename(derper.tailscale_socket)}"


def derper_command(settings: RelaySettings) -> list[str]:
    """derper's flags (docs/upstream/derper.md#flags), all explicit."""
    command = [
        f"-hostname={settings.hostname}",
        # A custom port serves TLS only in manual mode; the certificate comes from ACME DNS-01.
        "-certmode=manual",
        f"-certdir={CERT_DIR}",
        f"-a=:{settings.ports.derp}",
        "-stun=true",
        f"-stun-port={settings.ports.stun}",
        # Port 80 is blocked on home lines and derper only needs it for Let's Encrypt HTTP-01.
        "-http-port=-1",
        f"-c={KEY_FILE}",
    ]
    derper = settings.derper
    if derper.verify_url is not None:
        # headscale admits clients (docs/upstream/headscale.md#verify); fail closed: the flag's
        # default admits everyone while the URL is unreachable (docs/upstream/derper.md#flags).
        command += [f"-verify-client-url={derper.verify_url}", "-verify-client-url-fail-open=false"]
    elif derper.verify_clients:
        command += ["-verify-clients", f"-socket={socket_in_container(derper)}"]
    if settings.mesh_with:
        # Each node dials the others: a node forwards only to the peers it watches itself
        # (docs/upstream/derper.md#mesh), so both directions are needed.
        command += [f"-mesh-psk-file={MESH_KEY_FILE}", "-mesh-with=" + ",".join(settings.mesh_with)]
    return command


def derper_env(settings: RelaySettings) -> list[str]:
    """A pinned image's ``DERP_*`` interface (fredliang/derper, yangchuansheng/derper), all set
    explicitly because the images' defaults differ (docs/upstream/derper.md#images)."""
    return [
        f"DERP_DOMAIN={settings.hostname}",
        "DERP_CERT_MODE=manual",
        f"DERP_CERT_DIR={CERT_DIR}",
        f"DERP_ADDR=:{settings.ports.derp}",
        "DERP_STUN=true",
        f"DERP_STUN_PORT={settings.ports.stun}",
        "DERP_HTTP_PORT=-1",
        f"DERP_VERIFY_CLIENTS={'true' if settings.derper.verify_clients else 'false'}",
    ]


#: Keeps derper's state volume non-empty: Docker copies an image's mount-point contents *and
#: ownership* into an empty volume whenever a container is created on it, which would undo the
#: init container's chown (docs/upstream/docker.md#volume-copy-up). derper ignores the file.
STATE_MARKER: Final = ".home-derp"


def init_command(user: str) -> list[str]:
    """Hand the certificate and state volumes to derper's user; the key stays 0600."""
    return [
        "sh",
        "-c",
        f"touch {INIT_STATE_DIR}/{STATE_MARKER} && chown -R {user} {INIT_CERT_DIR} "
        f"{INIT_STATE_DIR} && chmod 0600 {INIT_CERT_DIR}/*.key",
    ]


def build_args(settings: RelaySettings) -> dict[str, str]:
    """The Dockerfile's build arguments (empty when a pinned image replaces the build)."""
    build = settings.derper.build
    if build is None:
        return {}
    return {
        "TAILSCALE_VERSION": build.tailscale_version,
        "GOPROXY": build.go_proxy,
        "BUILD_IMAGE": build.build_image,
        "RUNTIME_IMAGE": build.runtime_image,
    }


def published_ports(ports: Ports) -> list[docker.ContainerPortArgsDict]:
    """Bridge mode: both families explicitly — the provider's default ``ip`` is IPv4 only."""
    return [
        {"internal": port, "external": port, "ip": ip, "protocol": protocol}
        for port, protocol in ((ports.derp, "tcp"), (ports.stun, "udp"))
        for ip in ("0.0.0.0", "::")
    ]


def certs_volume_name(settings: RelaySettings) -> str:
    """The volume the init container fills with the certificate (derper's ``-certdir``)."""
    return f"{naming.container_name(settings.region.id, settings.region.code)}-certs"


def cert_uploads(
    hostname: str, full_chain_pem: pulumi.Input[str], private_key_pem: pulumi.Input[str]
) -> list[docker.ContainerUploadArgsDict]:
    """Certificate (0644) and key (0600, secret) as derper's manual mode names them."""
    base = cert_file_base(hostname)
    return [
        {"file": f"{INIT_CERT_DIR}/{base}.crt", "content": full_chain_pem, "permissions": "0644"},
        {
            "file": f"{INIT_CERT_DIR}/{base}.key",
            "content": pulumi.Output.secret(private_key_pem),
            "permissions": "0600",
        },
    ]


def mesh_key_upload(mesh_key: pulumi.Input[str]) -> docker.ContainerUploadArgsDict:
    """The region's mesh key (0600, secret) as derper's ``-mesh-psk-file``."""
    return {
        "file": f"{INIT_CERT_DIR}/{os.path.basename(MESH_KEY_FILE)}",
        "content": pulumi.Output.secret(mesh_key),
        "permissions": "0600",
    }


def init_uploads(
    settings: RelaySettings,
    full_chain_pem: pulumi.Input[str],
    private_key_pem: pulumi.Input[str],
    mesh_key: pulumi.Input[str] | None = None,
) -> list[docker.ContainerUploadArgsDict]:
    """What the init container receives: the certificate and key, and the region's mesh key
    when this node meshes (``settings.mesh_with``)."""
    uploads = cert_uploads(settings.hostname, full_chain_pem, private_key_pem)
    if settings.mesh_with and mesh_key is not None:
        uploads.append(mesh_key_upload(mesh_key))
    return uploads


def init_container_args(
    settings: RelaySettings,
    *,
    image: pulumi.Input[str],
    certs_volume: pulumi.Input[str],
    state_volume: pulumi.Input[str],
    uploads: Sequence[docker.ContainerUploadArgsDict],
) -> dict[str, Any]:
    """``docker.Container`` arguments of the one-shot init container (see the module docstring).

    Only CHOWN and FOWNER, no network: it hands the volumes to derper's user and exits.
    """
    region = settings.region
    return {
        "name": naming.state_owner_name(region.id, region.code),
        "image": image,
        "command": init_command(derper_user(settings)),
        "uploads": list(uploads),
        "volumes": [
            {"container_path": INIT_CERT_DIR, "volume_name": certs_volume},
            {"container_path": INIT_STATE_DIR, "volume_name": state_volume},
        ],
        "network_mode": "none",
        "capabilities": {"drops": ["ALL"], "adds": ["CHOWN", "FOWNER"]},
        "security_opts": [NO_NEW_PRIVILEGES],
        # Runs to completion once per certificate; `up` waits for it.
        "must_run": False,
        "attach": True,
        "restart": "no",
        "labels": [{"label": naming.ROLE_LABEL, "value": naming.ROLE_STATE_OWNER}],
    }


def derper_volumes(
    settings: RelaySettings, *, state_volume: pulumi.Input[str], certs_volume: pulumi.Input[str]
) -> list[docker.ContainerVolumeArgsDict]:
    """State (read-write), certificate (read-only) and, when verifying through tailscaled, the
    socket directory (never with headscale's /verify: nothing else gets the socket)."""
    volumes: list[docker.ContainerVolumeArgsDict] = [
        {"container_path": STATE_DIR, "volume_name": state_volume},
        {"container_path": CERT_DIR, "volume_name": certs_volume, "read_only": True},
    ]
    if settings.derper.uses_socket:
        volumes.append(
            {
                "container_path": SOCKET_DIR,
                "host_path": os.path.dirname(settings.derper.tailscale_socket),
                "read_only": True,
            }
        )
    return volumes


def derper_labels(settings: RelaySettings) -> list[docker.ContainerLabelArgsDict]:
    # No certificate serial here: a changed label would re-create derper at every renewal;
    # components/derper_restart.py restarts it instead.
    return [
        {"label": naming.ROLE_LABEL, "value": naming.ROLE_DERPER},
        {"label": naming.REGION_LABEL, "value": str(settings.region.id)},
        # The policy pack allows root only for a pinned image, never with the socket (see above).
        {"label": naming.IMAGE_LABEL, "value": naming.image_source(settings.derper.build is None)},
    ]


def derper_container_args(
    settings: RelaySettings,
    *,
    image: pulumi.Input[str],
    state_volume: pulumi.Input[str],
    certs_volume: pulumi.Input[str],
) -> dict[str, Any]:
    """``docker.Container`` arguments of derper itself, hardened (see the module docstring)."""
    region = settings.region
    bridge = settings.docker.network_mode == "bridge"
    built = settings.derper.build is not None
    granted = privileges(settings)
    return {
        "name": naming.container_name(region.id, region.code),
        "image": image,
        "command": derper_command(settings) if built else None,
        "envs": None if built else derper_env(settings),
        "user": granted.user,
        "read_only": True,
        "capabilities": {"drops": ["ALL"], "adds": list(granted.capabilities)},
        "security_opts": security_options(granted),
        "volumes": derper_volumes(settings, state_volume=state_volume, certs_volume=certs_volume),
        "network_mode": settings.docker.network_mode,
        "ports": published_ports(settings.ports) if bridge else None,
        "restart": "unless-stopped",
        "labels": derper_labels(settings),
        "log_driver": "json-file",
        # A home server's disk is small; derper logs every connection.
        "log_opts": {"max-size": "10m", "max-file": "3"},
        "destroy_grace_seconds": DESTROY_GRACE_SECONDS,
    }


# ---------------------------------------------------------------------------------------------
# Resources


def _image(
    name: str, settings: RelaySettings, on_host: pulumi.ResourceOptions
) -> tuple[pulumi.Output[str], str]:
    """(image id the container runs, image name shown to users)."""
    derper = settings.derper
    if derper.build is None:
        pinned = docker.RemoteImage(
            f"{name}-image", name=derper.image, keep_locally=True, opts=on_host
        )
        return pinned.image_id, derper.image
    image_name = naming.derper_image_name(derper.build.tailscale_version)
    built = docker.Image(
        f"{name}-derper-image",
        image_name=image_name,
        build={
            "context": BUILD_CONTEXT,
            "dockerfile": os.path.join(BUILD_CONTEXT, "Dockerfile"),
            "args": build_args(settings),
            # The classic builder works on every engine; the Dockerfile needs nothing newer.
            "builder_version": docker.BuilderVersion.BUILDER_V1,
        },
        skip_push=True,
        build_on_preview=False,
        opts=on_host,
    )
    # For a local build repoDigest is the image id, so a rebuild replaces the container
    # (docs/upstream/docker.md#pulumi-docker-image).
    return built.repo_digest, image_name


def _volume(
    name: str, suffix: str, volume_name: str, role: str, on_host: pulumi.ResourceOptions
) -> docker.Volume:
    return docker.Volume(
        f"{name}-{suffix}",
        name=volume_name,
        labels=[{"label": naming.ROLE_LABEL, "value": role}],
        opts=on_host,
    )


def create_container(
    name: str,
    settings: RelaySettings,
    *,
    provider: docker.Provider,
    full_chain_pem: pulumi.Input[str],
    private_key_pem: pulumi.Input[str],
    certificate_serial: pulumi.Input[str],
    parent: pulumi.Resource,
    mesh_key: pulumi.Input[str] | None = None,
) -> RelayContainer:
    """Image, volumes, the init container, derper, and derper's restart when a new certificate is
    in its volume (the init container is replaced; derper keeps running until the restart).
    ``mesh_key`` (with ``settings.mesh_with``) goes beside the certificate key."""
    region = settings.region
    on_host = pulumi.ResourceOptions(parent=parent, provider=provider)
    image_ref, image_name = _image(name, settings, on_host)
    # The server key lives here; losing it changes the relay's identity for every client.
    state = _volume(
        name, "state", naming.state_volume_name(region.id, region.code), naming.ROLE_STATE, on_host
    )
    certs = _volume(name, "certs", certs_volume_name(settings), "derper-certs", on_host)
    # The build image has a shell and chown, and the build already pulled it (scratch has none).
    init_image = docker.RemoteImage(
        f"{name}-init-image", name=settings.derper.init_image, keep_locally=True, opts=on_host
    )
    uploads = init_uploads(settings, full_chain_pem, private_key_pem, mesh_key)
    init = docker.Container(
        f"{name}-init",
        **init_container_args(
            settings,
            image=init_image.image_id,
            certs_volume=certs.name,
            state_volume=state.name,
            uploads=uploads,
        ),
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, delete_before_replace=True),
    )
    container = docker.Container(
        f"{name}-derper",
        **derper_container_args(
            settings,
            image=image_ref,
            state_volume=state.name,
            certs_volume=certs.name,
        ),
        # Fixed name and host ports: the new container cannot start beside the old one.
        opts=pulumi.ResourceOptions(
            parent=parent, provider=provider, delete_before_replace=True, depends_on=[init]
        ),
    )
    # derper reads its certificate once: after the init container filled the volume with a new
    # one, restart it (components/derper_restart.py).
    restart = DerperRestart(
        f"{name}-derper-restart",
        DerperRestartArgs(
            docker_host=settings.docker.host,
            container=naming.container_name(region.id, region.code),
            container_id=container.id,
            certificate_serial=certificate_serial,
            grace=DESTROY_GRACE_SECONDS,
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[init, container]),
    )
    return RelayContainer(
        container=container,
        image_ref=image_ref,
        image_name=image_name,
        state_volume=state,
        restart=restart,
    )
