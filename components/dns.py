"""Cloudflare records that point the relay's name at the home line.

DNS-only (``proxied=False``): DERP switches protocols inside TLS and cannot pass Cloudflare's HTTP
proxy (docs/upstream/derper.md#no-proxies). A short TTL because home IPv6 prefixes change
(docs/architecture.md, "Changing IPv6").

Which existing record is adopted (imported) instead of colliding, and what marks a record as
ours, is decided in ``components/dns_adoption.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare

from components import cloudflare_api, stack_state
from components.dns_adoption import (
    COMMENT_LIMIT,
    COMMENT_PREFIX,
    RECORD_TTL,
    RECORD_TYPES,
    Adoption,
    comment_stack,
    import_id,
    lookup_adoption,
    plan_adoption,
    record_comment,
)
from components.settings import Addresses, RelaySettings

__all__ = [
    "COMMENT_LIMIT",
    "COMMENT_PREFIX",
    "RECORD_TTL",
    "RECORD_TYPES",
    "RECORD_TYPE_TOKEN",
    "Adoption",
    "RelayDnsRecords",
    "comment_stack",
    "create_dns_records",
    "held_records",
    "import_id",
    "lookup_adoption",
    "plan_adoption",
    "published_addresses",
    "record_comment",
    "record_resource_name",
    "zone_id_for",
]


@dataclass(frozen=True)
class RelayDnsRecords:
    """The records of one relay."""

    aaaa: cloudflare.DnsRecord
    a: cloudflare.DnsRecord | None


#: The type of the record resources (what the stack's state calls them).
RECORD_TYPE_TOKEN = "cloudflare:index/dnsRecord:DnsRecord"


def published_addresses(addresses: Addresses) -> dict[str, str]:
    """What the relay's name resolves to, by record type: AAAA always, A only when the relay has
    a public IPv4 (with ``ipv4: none`` clients dial it over IPv6 alone)."""
    records = {"AAAA": addresses.ipv6}
    if addresses.ipv4:
        records["A"] = addresses.ipv4
    return records


def record_resource_name(component: str, kind: str) -> str:
    """``relay-900-aaaa``: the resource name of one record type."""
    return f"{component}-{kind.lower()}"


def held_records(component: str, hostname: str) -> dict[str, stack_state.Held] | None:
    """Record type → the record of ``hostname`` this stack's state holds, under this
    component's name or a former one (``stack_state.held``); None when the engine cannot say
    (then adoption falls back to the comment: dns_adoption.py)."""
    state = stack_state.resources()
    if state is None:
        return None
    names = {kind: record_resource_name(component, kind) for kind in RECORD_TYPES}
    carried = {kind: {"name": hostname, "type": kind} for kind in RECORD_TYPES}
    return stack_state.held(state, RECORD_TYPE_TOKEN, names, carried)


def zone_id_for(settings: RelaySettings, opts: pulumi.InvokeOptions) -> pulumi.Input[str]:
    """The configured zone id, or the id of the zone looked up by name."""
    if settings.zone.id:
        return settings.zone.id
    zone_filter: cloudflare.GetZoneFilterArgsDict = {"match": "all"}
    if settings.zone.name:
        zone_filter["name"] = settings.zone.name
    zone = cloudflare.get_zone_output(filter=zone_filter, opts=opts)
    return zone.zone_id


def create_dns_records(
    name: str,
    settings: RelaySettings,
    provider: cloudflare.Provider,
    parent: pulumi.Resource,
) -> RelayDnsRecords:
    """AAAA always, A only when the relay has a public IPv4; existing ones adopted (above)."""
    zone_id = zone_id_for(settings, pulumi.InvokeOptions(provider=provider, parent=parent))
    # With the DDNS updater the record's content belongs to it; `up` must not fight it.
    ignore = ["content"] if settings.ddns.enabled else []
    stack = pulumi.get_stack()
    held = None if settings.health_run else held_records(name, settings.hostname)
    adoption = (
        Adoption({})
        if settings.health_run  # health runs register no DNS (relay.py); belt and braces
        else lookup_adoption(
            settings,
            stack=stack,
            client=cloudflare_api.client_from_runtime(os.environ),
            # a preview warns about a failed lookup; `up` stops before creating a record blind
            deploying=not pulumi.runtime.is_dry_run(),
            managed=None if held is None else {kind: h.id for kind, h in held.items()},
        )
    )
    for note in adoption.notes:
        pulumi.log.info(note, resource=parent)
    for warning in adoption.warnings:
        pulumi.log.warn(warning, resource=parent)

    def record(kind: str, content: str, ignore_changes: list[str]) -> cloudflare.DnsRecord:
        return cloudflare.DnsRecord(
            record_resource_name(name, kind),
            zone_id=zone_id,
            name=settings.hostname,
            type=kind,
            content=content,
            ttl=RECORD_TTL,
            proxied=False,
            comment=record_comment(stack, settings.region.id),
            opts=pulumi.ResourceOptions(
                parent=parent,
                provider=provider,
                ignore_changes=ignore_changes,
                import_=adoption.imports.get(kind),
            ),
        )

    published = published_addresses(settings.addresses)
    aaaa = record("AAAA", published["AAAA"], ignore)
    a = record("A", published["A"], ignore) if "A" in published else None
    return RelayDnsRecords(aaaa=aaaa, a=a)
