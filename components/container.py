"""derper in Docker on the relay host.

The env interface (``DERP_*``) is shared by ``fredliang/derper`` and
``ghcr.io/yangchuansheng/derper``; every variable is set explicitly because their defaults differ
(reference/derp.md §1, "Popular images").
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.settings import RelaySettings

#: derper's default certificate directory in both images.
CERT_DIR = "/app/certs"
#: derper keeps its server key here (``-c`` default); persisted so the key survives re-creates.
STATE_DIR = "/var/lib/derper"
#: tailscaled's LocalAPI socket directory. The directory, not the socket file: the file is
#: recreated when tailscaled restarts and a file bind-mount goes stale (reference/derp.md §1).
TAILSCALE_SOCKET_DIR = "/var/run/tailscale"
#: Lets the policy pack and humans find our containers.
ROLE_LABEL = "home-derp.role"


@dataclass(frozen=True)
class RelayContainer:
    """The derper container and what it runs."""

    container: docker.Container
    image: docker.RemoteImage
    state_volume: docker.Volume


def container_name(settings: RelaySettings) -> str:
    """Named after the region, so two stacks on one host never collide."""
    return f"derper-{settings.region_id}-{settings.region_code}"


def cert_file_base(hostname: str) -> str:
    """derper looks for ``<certdir>/<name>.crt`` with every char outside [a-zA-Z0-9-.] removed."""
    return "".join(ch for ch in hostname if ch.isascii() and (ch.isalnum() or ch in "-."))


def derper_env(settings: RelaySettings) -> list[str]:
    """The DERP_* variables, all set explicitly (image defaults differ)."""
    return [
        f"DERP_DOMAIN={settings.hostname}",
        "DERP_CERT_MODE=manual",
        f"DERP_CERT_DIR={CERT_DIR}",
        f"DERP_ADDR=:{settings.derp_port}",
        "DERP_STUN=true",
        f"DERP_STUN_PORT={settings.stun_port}",
        # Port 80 is blocked on home lines and derper only needs it for Let's Encrypt HTTP-01.
        "DERP_HTTP_PORT=-1",
        f"DERP_VERIFY_CLIENTS={'true' if settings.verify_clients else 'false'}",
    ]


def published_ports(settings: RelaySettings) -> list[docker.ContainerPortArgsDict]:
    """Bridge mode: both families explicitly — the provider's default ``ip`` is IPv4 only."""
    return [
        {"internal": port, "external": port, "ip": ip, "protocol": protocol}
        for port, protocol in ((settings.derp_port, "tcp"), (settings.stun_port, "udp"))
        for ip in ("0.0.0.0", "::")
    ]


def create_container(
    name: str,
    settings: RelaySettings,
    *,
    provider: docker.Provider,
    full_chain_pem: pulumi.Input[str],
    private_key_pem: pulumi.Input[str],
    parent: pulumi.Resource,
) -> RelayContainer:
    """Image, state volume and the derper container; a new certificate replaces the container."""
    on_host = pulumi.ResourceOptions(parent=parent, provider=provider)
    image = docker.RemoteImage(
        f"{name}-image", name=settings.image, keep_locally=True, opts=on_host
    )
    state_volume = docker.Volume(
        f"{name}-state",
        name=f"{container_name(settings)}-state",
        labels=[{"label": ROLE_LABEL, "value": "derper-state"}],
        # The server key lives here; losing it changes the relay's identity for every client.
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, protect=False),
    )
    # TypedDicts, not *Args classes: same checking, and pulumi skips evaluating the classes'
    # type hints, the largest cost of evaluating this program (bench/program_eval.py).
    volumes: list[docker.ContainerVolumeArgsDict] = [
        {"container_path": STATE_DIR, "volume_name": state_volume.name}
    ]
    if settings.verify_clients:
        volumes.append({"container_path": TAILSCALE_SOCKET_DIR, "host_path": TAILSCALE_SOCKET_DIR})
    base = cert_file_base(settings.hostname)
    uploads: list[docker.ContainerUploadArgsDict] = [
        {"file": f"{CERT_DIR}/{base}.crt", "content": full_chain_pem, "permissions": "0644"},
        {
            "file": f"{CERT_DIR}/{base}.key",
            "content": pulumi.Output.secret(private_key_pem),
            "permissions": "0600",
        },
    ]
    if settings.network_mode == "bridge":
        pulumi.log.warn(
            "networkMode=bridge: IPv6 STUN replies pass docker-proxy and report the Docker "
            "gateway's address instead of the client's (tailscale/tailscale#17565); "
            "use networkMode=host for an IPv6 relay.",
            resource=parent,
        )
    container = docker.Container(
        f"{name}-derper",
        name=container_name(settings),
        image=image.image_id,
        envs=derper_env(settings),
        uploads=uploads,
        volumes=volumes,
        network_mode=settings.network_mode,
        ports=published_ports(settings) if settings.network_mode == "bridge" else None,
        restart="unless-stopped",
        labels=[
            {"label": ROLE_LABEL, "value": "derper"},
            {"label": "home-derp.region", "value": str(settings.region_id)},
        ],
        log_driver="json-file",
        # A home server's disk is small; derper logs every connection.
        log_opts={"max-size": "10m", "max-file": "3"},
        destroy_grace_seconds=10,
        # Fixed name and host ports: the new container cannot start beside the old one.
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, delete_before_replace=True),
    )
    return RelayContainer(container=container, image=image, state_volume=state_volume)
