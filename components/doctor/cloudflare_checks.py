"""Rows about Cloudflare: the token works, the zone is there, the relay's records can be managed.

Read-only (``components.cloudflare_api``: ``GET`` only). Existing records are judged by the
program's own rule, ``components.dns_adoption.plan_adoption``: a lone record of a type home-derp
manages is adopted by ``up`` (✓), a round-robin of several is refused (✗). A CNAME at the name is ✗
too: Cloudflare refuses an AAAA where a CNAME is (81054, docs/upstream/cloudflare.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from components import cloudflare_api, dns_adoption
from components.cloudflare_api import CloudflareApiError, Zone
from components.doctor.credentials import Secrets
from components.doctor.model import Check, blocked, failed, lines, not_checked, passed
from components.doctor.plan import Plan
from components.settings import ConfigError


def _api_failure(check_id: str, summary: str, exc: CloudflareApiError) -> Check:
    """What Cloudflare said as the detail, its fix once (never the fix twice)."""
    if exc.status is None:  # never reached the API: the network, not the configuration
        return not_checked(check_id, str(exc))
    if exc.fix is None:
        return failed(check_id, summary, cloudflare_api.TOKEN_HINT, exc.what)
    return failed(check_id, summary, exc.fix, exc.what)


def client_for(
    plain: Mapping[str, str], secrets: Secrets, environ: Mapping[str, str], timeout: float
) -> cloudflare_api.Client | None:
    if secrets.cloudflare_token is None:
        return None
    base_url = cloudflare_api.resolve_base_url(plain, environ)
    return cloudflare_api.Client(secrets.cloudflare_token, base_url=base_url, timeout=timeout)


def token_check(client: cloudflare_api.Client | None, secrets: Secrets) -> Check:
    """``cloudflare.token``: the API token is valid and active."""
    if client is None:
        if secrets.cloudflare_unreadable:
            return not_checked(
                "cloudflare.token", "cloudflare:apiToken is encrypted (stack.secrets)"
            )
        return failed("cloudflare.token", "no Cloudflare API token", cloudflare_api.TOKEN_HINT)
    try:
        status = client.verify_token()
    except CloudflareApiError as exc:
        return _api_failure("cloudflare.token", "Cloudflare refuses the API token", exc)
    if not status.active:
        return failed(
            "cloudflare.token", f"the API token is {status.status}", cloudflare_api.TOKEN_HINT
        )
    return passed("cloudflare.token", f"the API token is active (id {status.id})")


def zone_check(
    plan: Plan, client: cloudflare_api.Client | None, gate: Check
) -> tuple[Check, Zone | None]:
    """``cloudflare.zone``: the token sees the zone, and the zone is active."""
    if gate.status != "pass" or client is None:
        return blocked("cloudflare.zone", gate), None
    if plan.zone_id is None and plan.zone_name is None:
        return not_checked("cloudflare.zone", "neither home-derp:zone nor zoneId is set"), None
    try:
        zone = (
            client.get_zone(plan.zone_id)
            if plan.zone_id
            else client.find_zone(plan.zone_name or "")
        )
    except CloudflareApiError as exc:
        return _api_failure("cloudflare.zone", "the zone cannot be read with this token", exc), None
    if zone is None:
        return failed(
            "cloudflare.zone",
            f"the token sees no zone {plan.zone_name!r}",
            "check home-derp:zone (the domain as Cloudflare lists it) and give the token "
            "Zone:Read and DNS:Edit on that zone",
        ), None
    if zone.status != "active":
        return failed(
            "cloudflare.zone",
            f"the zone {zone.name} is {zone.status}, not active",
            "finish adding the domain to Cloudflare: set the nameservers Cloudflare shows at your "
            "registrar, then wait until the dashboard says Active",
        ), zone
    return passed("cloudflare.zone", f"zone {zone.name} ({zone.id}) is active"), zone


def records_check(
    plan: Plan,
    client: cloudflare_api.Client | None,
    zone: Zone | None,
    gate: Check,
    *,
    stack: str,
    ddns: bool,
    ipv6: str | None,
) -> tuple[Check, tuple[str, ...]]:
    """``cloudflare.records``: the relay's records are absent (created) or adoptable."""
    if client is None or zone is None or gate.status != "pass":
        return blocked("cloudflare.records", gate), ()
    if plan.hostname is None:
        return not_checked("cloudflare.records", "home-derp:hostname is invalid (settings)"), ()
    try:
        records = client.find_records(zone.id, plan.hostname, ("AAAA", "A", "CNAME"))
    except CloudflareApiError as exc:
        return _api_failure("cloudflare.records", "the zone's records cannot be listed", exc), ()
    cnames = [r for r in records if r.type == "CNAME"]
    if cnames:
        return failed(
            "cloudflare.records",
            f"{plan.hostname} is a CNAME (→ {cnames[0].content})",
            "a name with a CNAME can have no AAAA record: delete the CNAME in the Cloudflare "
            "dashboard (DNS → Records) or pick another home-derp:hostname",
        ), ()
    if not records:
        return passed(
            "cloudflare.records", f"no record for {plan.hostname} yet: `up` creates it"
        ), ()
    wanted = {"AAAA": ipv6 or "the address of home-derp:ipv6"}
    if plan.ipv4:
        wanted["A"] = plan.ipv4
    try:
        adoption = dns_adoption.plan_adoption(
            zone_id=zone.id,
            hostname=plan.hostname,
            wanted=wanted,
            records=records,
            stack=stack,
            ddns=ddns,
        )
    except ConfigError as exc:
        return failed(
            "cloudflare.records",
            f"{plan.hostname} has several records of one type (a round-robin)",
            "delete all but the one to keep in the Cloudflare dashboard (DNS → Records); `up` "
            "adopts the one left",
            lines(exc.problems),
        ), ()
    if adoption.imports:
        kinds = " and ".join(sorted(adoption.imports))
        summary = f"the existing {kinds} record of {plan.hostname} will be adopted by `up`"
    elif all(dns_adoption.comment_stack(r.comment) is not None for r in records):
        summary = f"the records of {plan.hostname} are home-derp's already"
    else:
        summary = f"no record home-derp manages exists for {plan.hostname} yet: `up` creates it"
    return passed("cloudflare.records", summary, lines(adoption.notes)), adoption.warnings
