"""DDNS companion: keeps the relay's AAAA record on the current home prefix.

A second container on the relay host runs ``favonia/cloudflare-ddns`` (env interface read from
its README at tag v1.17.0, https://github.com/favonia/cloudflare-ddns). It re-checks every few
minutes, so a PPPoE reconnect that changes the prefix is fixed within minutes, not at the next
``pulumi up``. In this mode the Pulumi record ignores changes to its ``content`` (``dns.py``).

Where the address comes from (``IP6_PROVIDER``), and why not always ``local.iface:<if>``:
since v1.16.0 ``local.iface`` publishes *every* global-unicast address of the interface — privacy
(temporary) addresses and ULAs included (``internal/provider/protocol/local_iface.go``: it keeps
``IsGlobalUnicast``, which is true for fc00::/7): exactly what ``ipv6: auto`` refuses.
``local`` instead asks the kernel which source address it would use towards Cloudflare: one
address, never deprecated or tentative, no ULA (no route) — but a temporary one when the host
prefers them (``use_tempaddr=2``). When discovery found an EUI-64 address, whose host part is the
same under every prefix, the record is pinned to that host part with ``hostid6`` (v1.17.0,
experimental upstream): the updater takes the current /64 from the detected address and writes
``<prefix>:<our interface id>``, never a temporary address. ``local.iface`` stays available
(``ip6_source="interface"``) for hosts whose interface carries only the stable address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_docker as docker

from components import naming
from components.ipv6 import INTERFACE_NAME
from components.settings import keys

TYPE_TOKEN = "homederp:index:DdnsUpdater"

#: The pinned updater release (``home-derp:ddnsImage``; why this one: components/settings/keys.py).
DEFAULT_IMAGE = keys.default_text("ddnsImage")
#: The image's own recommendation (README "Docker Compose" and its Dockerfile ``USER 1000:1000``).
DEFAULT_USER = "1000:1000"
#: How often the updater re-reads the address (its own default, stated for the reader).
DEFAULT_UPDATE_CRON = "@every 5m"


def ip6_provider(interface: str | None, source: Literal["route", "interface"]) -> str:
    """``IP6_PROVIDER`` value: ``local`` (kernel source address) unless asked to read the iface."""
    if source == "interface":
        if interface is None or not INTERFACE_NAME.match(interface):
            raise ValueError("ip6_source='interface' needs an interface name")
        return f"local.iface:{interface}"
    return "local"


def domains(hostname: str, host_id: str | None) -> str:
    """``DOMAINS``: the hostname, pinned to ``host_id`` (``::a:b:c:d``) when one is given."""
    return f"{hostname}{{hostid6={host_id}}}" if host_id else hostname


def ddns_env(
    hostname: str,
    *,
    interface: str | None = None,
    host_id: str | None = None,
    ipv4_enabled: bool = False,
    ttl: int = 60,
    update_cron: str = DEFAULT_UPDATE_CRON,
    ip6_source: Literal["route", "interface"] = "route",
) -> list[str]:
    """Every variable except the token (which is added as a secret), all set explicitly."""
    return [
        f"DOMAINS={domains(hostname, host_id)}",
        f"IP6_PROVIDER={ip6_provider(interface, ip6_source)}",
        # A home IPv4 is usually behind NAT: the host's own address is private, so ask Cloudflare
        # which address the line has. No A record at all when the relay has no IPv4.
        f"IP4_PROVIDER={'cloudflare.trace' if ipv4_enabled else 'none'}",
        # DERP cannot pass Cloudflare's HTTP proxy (docs/upstream/derper.md#no-proxies). PROXIED
        # and TTL are only used when the updater creates a record; it keeps the existing one's.
        "PROXIED=false",
        f"TTL={ttl}",
        f"UPDATE_CRON={update_cron}",
        "UPDATE_ON_START=true",
        # The record belongs to Pulumi: stopping or replacing the updater must not delete it.
        "DELETE_ON_STOP=false",
        "EMOJI=false",
    ]


@dataclass(frozen=True)
class DdnsUpdaterArgs:
    """Inputs of :class:`DdnsUpdater`."""

    hostname: str
    """The relay's DNS name; the only record the updater touches."""
    api_token: pulumi.Input[str]
    """Cloudflare token with Zone/DNS/Edit on the zone (``home-derp:ddnsApiToken``); secret."""
    provider: docker.Provider
    """The relay host's Docker provider (same host as derper: it reads that host's address)."""
    interface: str | None = None
    """``home-derp:ipv6Interface`` (used with ``ip6_source="interface"``; also a label)."""
    host_id: str | None = None
    """Interface id to pin (``Choice.interface_id`` when ``host_id_survives_prefix_change``)."""
    ipv4_enabled: bool = False
    """Also keep the A record current (only when ``home-derp:ipv4`` is set)."""
    ttl: int = 60
    """TTL for a record the updater has to create; match ``dns.RECORD_TTL``."""
    image: str = DEFAULT_IMAGE
    """Pinned updater image (``home-derp:ddnsImage``)."""
    ip6_source: Literal["route", "interface"] = "route"
    """``route``: IP6_PROVIDER=local; ``interface``: local.iface (publishes all its addresses)."""
    update_cron: str = DEFAULT_UPDATE_CRON
    """How often to re-check the address."""


class DdnsUpdater(pulumi.ComponentResource):
    """favonia/cloudflare-ddns beside derper, on the host network of the relay host."""

    container_id: pulumi.Output[str]
    """Docker id of the updater container."""
    container_name: pulumi.Output[str]
    """Its name on the host (``docker logs <name>`` shows each update)."""
    image: pulumi.Output[str]
    """The pinned image it runs."""

    def __init__(
        self, name: str, args: DdnsUpdaterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        on_host = pulumi.ResourceOptions(parent=self, provider=args.provider)
        image = docker.RemoteImage(
            f"{name}-image", name=args.image, keep_locally=True, opts=on_host
        )
        env = ddns_env(
            args.hostname,
            interface=args.interface,
            host_id=args.host_id,
            ipv4_enabled=args.ipv4_enabled,
            ttl=args.ttl,
            update_cron=args.update_cron,
            ip6_source=args.ip6_source,
        )
        # The SDK marks the whole ``envs`` list secret once one entry is (the preview shows
        # ``[secret]`` for env changes). A token file would keep the env readable, but uploads
        # cannot write into a read-only root filesystem, and read-only is worth more.
        token_env: pulumi.Output[str] = pulumi.Output.concat(
            "CLOUDFLARE_API_TOKEN=", args.api_token
        ).apply(pulumi.Output.secret)
        labels = [docker.ContainerLabelArgs(label=naming.ROLE_LABEL, value=naming.ROLE_DDNS)]
        if args.interface:
            labels.append(
                docker.ContainerLabelArgs(label="home-derp.interface", value=args.interface)
            )
        container = docker.Container(
            f"{name}-ddns",
            name=naming.ddns_container_name(args.hostname),
            image=image.image_id,
            envs=[token_env, *env],
            # Host network: the updater must see the host's addresses, not a bridge's (its README).
            network_mode="host",
            restart="unless-stopped",
            user=DEFAULT_USER,
            read_only=True,
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            labels=labels,
            log_driver="json-file",
            log_opts={"max-size": "1m", "max-file": "2"},
            destroy_grace_seconds=10,
            # Fixed name: the new container cannot start beside the old one.
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, delete_before_replace=True
            ),
        )
        self.container_id = container.id
        self.container_name = container.name
        self.image = pulumi.Output.from_input(args.image)
        self.register_outputs(
            {
                "container_id": self.container_id,
                "container_name": self.container_name,
                "image": self.image,
            }
        )
