"""HomeDerpRelay: one relay on a home server, from DNS record to a published derpMap region.

Wires the parts and nothing else; each rule lives in the module named after what it governs
(DESIGN.md). Order matters only at the end: the relay is validated from outside before its region
is published, so a broken relay never reaches the tailnet's clients (issue #4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker

from components import derpmap
from components.certificate import create_certificate
from components.container import create_container
from components.ddns import DEFAULT_IMAGE as DEFAULT_DDNS_IMAGE
from components.ddns import DdnsUpdater, DdnsUpdaterArgs
from components.dns import RECORD_TTL, create_dns_records
from components.settings import RelaySettings

TYPE_TOKEN = "homederp:index:HomeDerpRelay"


@dataclass(frozen=True)
class HomeDerpRelayArgs:
    """Inputs of :class:`HomeDerpRelay`."""

    settings: RelaySettings
    """The validated stack config (``components.settings.load_settings``)."""


class HomeDerpRelay(pulumi.ComponentResource):
    """A Tailscale DERP relay on a home server's public IPv6 address."""

    hostname: pulumi.Output[str]
    """The relay's DNS name (certificate name, TLS SNI, derpMap HostName)."""
    derp_port: pulumi.Output[int]
    """TCP port of the HTTPS/DERP listener."""
    stun_port: pulumi.Output[int]
    """UDP port of the STUN server."""
    addresses: pulumi.Output[list[str]]
    """Public addresses clients use (IPv6 first)."""
    derp_region: pulumi.Output[dict[str, Any]]
    """The region as the policy file spells it."""
    derp_map_fragment: pulumi.Output[str]
    """``{"derpMap": …}`` ready to paste into the tailnet policy file."""
    certificate_not_after: pulumi.Output[str]
    """Expiry of the served certificate (RFC 3339)."""
    certificate_serial: pulumi.Output[str]
    """Serial of the served certificate."""
    container_id: pulumi.Output[str]
    """Docker id of the derper container (changes on every replacement)."""
    image: pulumi.Output[str]
    """The pinned derper image the container runs."""

    def __init__(
        self, name: str, args: HomeDerpRelayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        settings = args.settings
        for warning in settings.warnings:
            pulumi.log.warn(warning, resource=self)

        child = pulumi.ResourceOptions(parent=self)
        cloudflare_provider = cloudflare.Provider(
            f"{name}-cloudflare", api_token=settings.cloudflare_api_token, opts=child
        )
        docker_provider = docker.Provider(f"{name}-docker", host=settings.docker_host, opts=child)

        records = create_dns_records(name, settings, cloudflare_provider, self)
        cert = create_certificate(name, settings, self)
        relay = create_container(
            name,
            settings,
            provider=docker_provider,
            full_chain_pem=cert.full_chain_pem,
            private_key_pem=cert.private_key_pem,
            parent=self,
        )

        if settings.ddns:
            # Follows prefix changes between `up`s; the records then ignore content (dns.py).
            DdnsUpdater(
                f"{name}-ddns",
                DdnsUpdaterArgs(
                    hostname=settings.hostname,
                    api_token=settings.ddns_api_token or settings.cloudflare_api_token or "",
                    provider=docker_provider,
                    interface=settings.ipv6_interface,
                    host_id=settings.ipv6_host_id,
                    ipv4_enabled=settings.ipv4 is not None,
                    ttl=RECORD_TTL,
                    image=settings.ddns_image or DEFAULT_DDNS_IMAGE,
                ),
                opts=child,
            )

        region = derpmap.home_region(
            region_id=settings.region_id,
            region_code=settings.region_code,
            region_name=settings.region_name,
            hostname=settings.hostname,
            derp_port=settings.derp_port,
            stun_port=settings.stun_port,
            ipv4=settings.ipv4,
            ipv6=settings.ipv6,
            pin_ipv6=settings.pin_ipv6,
        )
        region_dict = derpmap.region_to_dict(region)
        fragment = derpmap.fragment_text(
            derpmap.derp_map_fragment(region, omit_default_regions=settings.omit_default_regions)
        )

        self.hostname = pulumi.Output.from_input(settings.hostname)
        self.derp_port = pulumi.Output.from_input(settings.derp_port)
        self.stun_port = pulumi.Output.from_input(settings.stun_port)
        self.addresses = pulumi.Output.from_input(list(settings.addresses))
        self.derp_region = pulumi.Output.from_input(region_dict)
        self.derp_map_fragment = pulumi.Output.from_input(fragment)
        self.certificate_not_after = cert.not_after
        self.certificate_serial = cert.serial
        self.container_id = relay.container.id
        self.image = pulumi.Output.from_input(settings.image)
        self._records = records

        self.register_outputs(
            {
                "hostname": self.hostname,
                "derp_port": self.derp_port,
                "stun_port": self.stun_port,
                "addresses": self.addresses,
                "derp_region": self.derp_region,
                "derp_map_fragment": self.derp_map_fragment,
                "certificate_not_after": self.certificate_not_after,
                "certificate_serial": self.certificate_serial,
                "container_id": self.container_id,
                "image": self.image,
            }
        )
