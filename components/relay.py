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
from components.ddns import DdnsUpdater, DdnsUpdaterArgs
from components.derpmap import PolicyTextError
from components.dns import RECORD_TTL, create_dns_records
from components.settings import ConfigError, RelaySettings
from components.tailnet import TailnetDerpRegion, policy_file_with_region
from components.validation import RelayValidation, RelayValidationArgs, validation_trigger

TYPE_TOKEN = "homederp:index:HomeDerpRelay"

#: Validation asks the same public resolvers as the DNS-01 check: a LAN resolver may cache the
#: NXDOMAIN it saw before the record existed, or answer split-horizon (certificate.py).
VALIDATION_RESOLVERS = ("1.1.1.1", "1.0.0.1")


def home_derp_region(settings: RelaySettings) -> derpmap.DerpRegion:
    """The relay's derpMap region, from settings."""
    return derpmap.home_region(
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


def policy_text_for_file_mode(settings: RelaySettings, region: dict[str, Any]) -> str:
    """``tailnetPolicy: file``: the repo's policy with our region spliced in, comments intact.

    Runs before any resource is registered, so a policy we cannot splice deploys nothing.
    """
    assert settings.policy_file is not None
    try:
        with open(settings.policy_file, encoding="utf-8") as handle:
            text = handle.read()
        return policy_file_with_region(text, region, settings.omit_default_regions)
    except (OSError, UnicodeDecodeError, PolicyTextError) as exc:
        raise ConfigError([f"home-derp:policyFile = {settings.policy_file!r}: {exc}"]) from None


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

    validation: pulumi.Output[dict[str, Any]]
    """What the outside check saw: ok, server public key, latencies, certificate days left."""

    def __init__(
        self, name: str, args: HomeDerpRelayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        settings = args.settings
        region = home_derp_region(settings)
        region_dict = derpmap.region_to_dict(region)
        policy_text = (
            policy_text_for_file_mode(settings, region_dict)
            if settings.tailnet_policy == "file"
            else None
        )
        super().__init__(TYPE_TOKEN, name, None, opts)
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
                    image=settings.ddns_image,
                ),
                opts=child,
            )

        fragment = derpmap.fragment_text(
            derpmap.derp_map_fragment(region, omit_default_regions=settings.omit_default_regions)
        )

        # Validate, then publish: a relay that fails from outside never reaches the clients.
        dns_resources: list[pulumi.Resource] = [records.aaaa]
        if records.a:
            dns_resources.append(records.a)
        validation = RelayValidation(
            f"{name}-validation",
            RelayValidationArgs(
                hostname=settings.hostname,
                derp_port=settings.derp_port,
                stun_port=settings.stun_port,
                expected_addresses=list(settings.addresses),
                expect_verify_clients=settings.verify_clients,
                mode=settings.validate,
                timeout_seconds=settings.validate_timeout,
                trigger=pulumi.Output.all(relay.container.id, cert.serial).apply(
                    lambda ids: validation_trigger(
                        ids[0], ids[1], list(settings.addresses), settings.validate_nonce
                    )
                ),
                resolvers=list(VALIDATION_RESOLVERS),
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*dns_resources, cert.certificate, relay.container]
            ),
        )
        after_validation = pulumi.ResourceOptions(parent=self, depends_on=[validation])
        if settings.tailnet_policy == "patch":
            TailnetDerpRegion(
                f"{name}-tailnet-region",
                region=region_dict,
                omit_default_regions=settings.omit_default_regions,
                adopt_region=settings.adopt_region,
                opts=after_validation,
            )
        elif settings.tailnet_policy == "file":
            import pulumi_tailscale as tailscale  # only this mode pays for the SDK import

            tailscale.Acl(
                f"{name}-tailnet-policy",
                acl=policy_text,
                # The repo's file *is* the policy in this mode (README: tailnetPolicy=file).
                overwrite_existing_content=True,
                opts=after_validation,
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
        self.validation = pulumi.Output.all(
            validation.ok,
            validation.server_public_key,
            validation.stun_latency_ms,
            validation.tls_latency_ms,
            validation.certificate_days_left,
        ).apply(
            lambda v: {
                "ok": v[0],
                "serverPublicKey": v[1],
                "stunLatencyMs": v[2],
                "tlsLatencyMs": v[3],
                "certificateDaysLeft": v[4],
            }
        )

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
                "validation": self.validation,
            }
        )
