"""Cloudflare records that point the relay's name at the home line.

DNS-only (``proxied=False``): DERP switches protocols inside TLS and cannot pass Cloudflare's HTTP
proxy (docs/upstream/derper.md#no-proxies). A short TTL because home IPv6 prefixes change
(docs/architecture.md, "Changing IPv6").
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare

from components.settings import RelaySettings

#: Seconds; Cloudflare's minimum for non-enterprise zones is 60. Prefixes change, keep it short.
RECORD_TTL = 60


@dataclass(frozen=True)
class RelayDnsRecords:
    """The records of one relay."""

    aaaa: cloudflare.DnsRecord
    a: cloudflare.DnsRecord | None


def zone_id_for(settings: RelaySettings, opts: pulumi.InvokeOptions) -> pulumi.Input[str]:
    """The configured zone id, or the id of the zone looked up by name."""
    if settings.zone.id:
        return settings.zone.id
    zone_filter: cloudflare.GetZoneFilterArgsDict = {"match": "all"}
    if settings.zone.name:
        zone_filter["name"] = settings.zone.name
    zone = cloudflare.get_zone_output(filter=zone_filter, opts=opts)
    return zone.zone_id


#: Cloudflare's limit on record comments for Free-plan zones (paid plans allow 500).
COMMENT_LIMIT = 100


def record_comment(stack: str, region_id: int) -> str:
    """Marks the record as ours so nobody edits it by hand (Cloudflare shows the comment)."""
    comment = f"home-derp relay, region {region_id}, Pulumi stack {stack}: edits are overwritten"
    return comment if len(comment) <= COMMENT_LIMIT else comment[: COMMENT_LIMIT - 1] + "…"


def create_dns_records(
    name: str,
    settings: RelaySettings,
    provider: cloudflare.Provider,
    parent: pulumi.Resource,
) -> RelayDnsRecords:
    """AAAA always, A only when the relay has a public IPv4."""
    zone_id = zone_id_for(settings, pulumi.InvokeOptions(provider=provider, parent=parent))
    # With the DDNS updater the record's content belongs to it; `up` must not fight it.
    ignore = ["content"] if settings.ddns.enabled else []

    def record(kind: str, content: str, ignore_changes: list[str]) -> cloudflare.DnsRecord:
        return cloudflare.DnsRecord(
            f"{name}-{kind.lower()}",
            zone_id=zone_id,
            name=settings.hostname,
            type=kind,
            content=content,
            ttl=RECORD_TTL,
            proxied=False,
            comment=record_comment(pulumi.get_stack(), settings.region.id),
            opts=pulumi.ResourceOptions(
                parent=parent, provider=provider, ignore_changes=ignore_changes
            ),
        )

    addresses = settings.addresses
    aaaa = record("AAAA", addresses.ipv6, ignore)
    a = record("A", addresses.ipv4, ignore) if addresses.ipv4 else None
    return RelayDnsRecords(aaaa=aaaa, a=a)
