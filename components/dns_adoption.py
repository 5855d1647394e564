"""Adoption of existing Cloudflare records, and what marks a record as ours (no provider SDK).

**Adoption.** A user coming from a hand-made derper already has an AAAA (maybe an A) record for
the relay's name. Creating ours next to it fails (Cloudflare refuses an identical record, 81058)
or, when the content differs, silently adds a second record: a round-robin between the old and
the new address (docs/upstream/cloudflare.md#identical-record). So at every evaluation —
``preview`` too, read-only and bounded (components/cloudflare_api.py) — the records of the name
are looked up, and a lone record of a type we are about to create that is not ours is registered
with ``import``: the engine imports it, then updates it to our inputs in the same deployment
(pulumi/pulumi CHANGELOG 3.174.0, #19339; pkg/resource/deploy/step_generator.go:1102-1217;
docs/upstream/cloudflare.md#adoption). Its old content, TTL, proxy flag and comment are replaced
by ours; ``preview`` shows ``= import`` and the update.

A record is *ours* when this stack's state holds it (``managed``: what the program reads from the
engine, components/stack_state.py), never merely because it carries our comment, which anyone can
edit: the engine takes an ``import`` of a resource already in state whose import id differs for an
import-replacement, and its delete removes the live record
(github.com/pulumi/pulumi/pkg/v3@v3.274.1 resource/deploy/step_generator.go:1198-1296;
docs/upstream/pulumi.md#import). So a record in state is never imported, whatever its comment, and
a record not in state is adopted also when it carries this stack's comment (the state was lost:
`pulumi stack rm --force`). Without the state (``python -m components.doctor`` has no engine) the
comment decides, cautiously: ours is never imported.

Pure rules and one read-only lookup, without ``pulumi_cloudflare`` (slow to import), so that
``python -m components.doctor`` gives the same verdict as the program; ``components/dns.py``
registers the records with what :func:`lookup_adoption` decided.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from components import cloudflare_api
from components.cloudflare_api import CloudflareApiError, DnsRecord
from components.errors import HomeDerpError
from components.settings import ConfigError, RelaySettings

#: Seconds; Cloudflare's minimum for non-enterprise zones is 60. Prefixes change, keep it short.
RECORD_TTL = 60

#: The types home-derp manages (AAAA always, A with home-derp:ipv4).
RECORD_TYPES = ("AAAA", "A")


#: Cloudflare's limit on record comments for Free-plan zones (paid plans allow 500).
COMMENT_LIMIT = 100
#: How every comment of ours starts, whatever the stack and region (also when truncated).
COMMENT_PREFIX = "home-derp relay, region "
_COMMENT_STACK = re.compile(r"Pulumi stack (?P<stack>[^:…]+)(?::|…|$)")


def record_comment(stack: str, region_id: int) -> str:
    """Marks the record as ours so nobody edits it by hand (Cloudflare shows the comment)."""
    comment = f"{COMMENT_PREFIX}{region_id}, Pulumi stack {stack}: edits are overwritten"
    return comment if len(comment) <= COMMENT_LIMIT else comment[: COMMENT_LIMIT - 1] + "…"


def comment_stack(comment: str | None) -> str | None:
    """The stack named by one of our comments ('' when truncated away), None when not ours."""
    if not comment or not comment.startswith(COMMENT_PREFIX):
        return None
    match = _COMMENT_STACK.search(comment)
    return match["stack"] if match else ""


def _same_stack(comment: str | None, stack: str) -> bool:
    """True when ``comment`` is ours and names ``stack`` (or a prefix of it, when truncated)."""
    named = comment_stack(comment)
    if named is None:
        return False
    return named == stack or bool(comment and comment.endswith("…") and stack.startswith(named))


# ---------------------------------------------------------------------------------------------
# Adoption: what to import, from the records that exist (pure)


@dataclass(frozen=True)
class Adoption:
    """What the lookup decided: import ids by record type, and what the user should read."""

    imports: Mapping[str, str]
    """``{"AAAA": "<zone_id>/<record_id>", …}`` for the records to import."""
    notes: tuple[str, ...] = ()
    """Adoptions, logged as info."""
    warnings: tuple[str, ...] = ()


def import_id(zone_id: str, record_id: str) -> str:
    """The DnsRecord import id: ``<zone_id>/<dns_record_id>``.

    terraform-provider-cloudflare@v5.19.1 internal/services/dns_record/resource.go:233-243
    (docs/upstream/cloudflare.md#import-id).
    """
    return f"{zone_id}/{record_id}"


def _describe(record: DnsRecord) -> str:
    proxied = ", proxied" if record.proxied else ""
    return f"{record.id} → {record.content} (TTL {record.ttl}{proxied})"


def plan_adoption(
    *,
    zone_id: str,
    hostname: str,
    wanted: Mapping[str, str],
    records: Sequence[DnsRecord],
    stack: str,
    ddns: bool,
    managed: Mapping[str, str] | None = None,
) -> Adoption:
    """Which existing records to import, given ``wanted`` (type → the content we will set).

    ``managed`` is type → record id of the records this stack's state holds (None: the state is
    not known). Per type: in the state → never imported (other records beside it are a
    round-robin warning); otherwise none → create; one that no other stack claims → import it;
    several → :class:`ConfigError` (a round-robin: which one to keep is the user's choice, not
    ours). Without ``managed``, a record carrying our comment stands for "in state". Records of a
    type we do not manage are left alone with a warning.
    """
    imports: dict[str, str] = {}
    notes: list[str] = []
    warnings: list[str] = []
    problems: list[str] = []
    for kind in RECORD_TYPES:
        found = [r for r in records if r.type == kind]
        if not found:
            continue
        ours = [r for r in found if comment_stack(r.comment) is not None]
        foreign = [r for r in found if comment_stack(r.comment) is None]
        listed = "; ".join(_describe(r) for r in found)
        if kind not in wanted:
            warnings.append(
                f"{hostname} has {len(found)} {kind} record(s) in Cloudflare ({listed}) and "
                f"home-derp manages none (home-derp:ipv4 is not set): clients resolving {kind} "
                "reach that address, not the relay. Delete it in the Cloudflare dashboard (DNS → "
                "Records), or set home-derp:ipv4 so home-derp adopts it"
            )
            continue
        others = sorted(
            {
                s
                for r in ours
                if not _same_stack(r.comment, stack) and (s := comment_stack(r.comment))
            }
        )
        if others:
            warnings.append(
                f"the {kind} record of {hostname} carries the comment of the home-derp stack "
                f"{', '.join(others)}, not of {stack}: it is not adopted (another stack may "
                "manage it). If that stack is gone, delete the record in the Cloudflare "
                "dashboard, then run again; two stacks cannot share one name"
            )
        if managed is not None:
            held = managed.get(kind)
            claimed = [r for r in ours if not _same_stack(r.comment, stack)]
            if held is None:
                # Not in this stack's state: adopt what no other stack claims, ours included.
                foreign = [r for r in found if r not in claimed]
                ours = []
            else:
                # In the state: the engine owns it. Never import it, whatever its comment says.
                foreign = [r for r in found if held and r.id != held and r not in claimed]
                ours = [r for r in found if r not in foreign]
        if ours:
            if foreign:
                warnings.append(
                    f"{hostname} has other {kind} records next to home-derp's: "
                    + "; ".join(_describe(r) for r in foreign)
                    + ". DNS answers with all of them (a round-robin), so some clients reach a "
                    "wrong address: delete them in the Cloudflare dashboard (DNS → Records)"
                )
            continue
        if not foreign:
            continue
        if len(foreign) > 1:
            problems.append(
                f"home-derp:hostname = {hostname!r}: the zone already has {len(foreign)} {kind} "
                f"records for this name ({listed}), a round-robin; home-derp manages one record "
                "per type and will not guess which to adopt. Delete all but the one to keep in "
                "the Cloudflare dashboard (DNS → Records), then run again: the one left is "
                "adopted"
            )
            continue
        record = foreign[0]
        imports[kind] = import_id(zone_id, record.id)
        change = []
        if record.content != wanted[kind]:
            change.append(
                f"its content {record.content} is then set by the DDNS updater"
                if ddns
                else f"its content {record.content} becomes {wanted[kind]}"
            )
        if record.proxied:
            change.append("it becomes DNS-only (DERP cannot pass Cloudflare's proxy)")
        if record.ttl != RECORD_TTL:
            change.append(f"its TTL {record.ttl} becomes {RECORD_TTL}")
        then = "; ".join(change) if change else "nothing else changes"
        notes.append(
            f"adopting the existing {kind} record of {hostname} ({record.id}) instead of "
            f"creating one: `pulumi preview` shows it as an import, then an update to "
            f"home-derp's settings ({then}; the comment marks it as home-derp's)"
        )
    if problems:
        raise ConfigError(problems)
    return Adoption(imports=imports, notes=tuple(notes), warnings=tuple(warnings))


# ---------------------------------------------------------------------------------------------
# The lookup (the one edge: Cloudflare's API, read-only)


class AdoptionLookupError(HomeDerpError):
    """A deploy could not look for existing records (after the client's retries): it stops
    before any record is created, since a foreign record would become a round-robin."""


def lookup_failure(hostname: str, why: str) -> str:
    """The message that stops a deploy whose lookup failed (a preview only warns)."""
    return (
        f"home-derp: could not look for existing DNS records of {hostname} ({why}). Nothing was "
        "deployed: without the lookup, a record that already exists (e.g. from a hand-made "
        "derper) would be doubled — Cloudflare adds a second record of another address next to "
        "it, a round-robin you would have to delete by hand. Run `pulumi up` again once the "
        "Cloudflare API answers (or the token/network is fixed); `pulumi preview` shows the "
        "adoption when the lookup works"
    )


def collision_warning(hostname: str, why: str) -> str:
    return (
        f"could not look for existing DNS records of {hostname} ({why}). If one exists (e.g. "
        "from a hand-made derper), `pulumi up` collides with it: Cloudflare refuses an identical "
        "record ('An identical record already exists'), and one with another address becomes a "
        "second record next to it. Let home-derp adopt it (fix the token or network and run "
        "again) or delete it in the Cloudflare dashboard"
    )


def lookup_adoption(
    settings: RelaySettings,
    *,
    stack: str,
    client: cloudflare_api.Client | None,
    deploying: bool = False,
    managed: Mapping[str, str] | None = None,
) -> Adoption:
    """Look the hostname's records up and plan their adoption.

    No client (no token at evaluation) or an unknown zone → no import and a warning; the
    round-robin :class:`ConfigError` is raised. A lookup that fails (every HTTP fault is a
    :class:`CloudflareApiError`, after the client's retries) is a warning for a preview
    (``deploying`` False) and stops a deploy (:class:`AdoptionLookupError`): creating the record
    blind is what makes a round-robin. ``managed``: see :func:`plan_adoption`.
    """
    hostname = settings.hostname
    if client is None:
        return Adoption({}, warnings=(collision_warning(hostname, "no Cloudflare API token"),))
    try:
        zone_id = settings.zone.id
        if not zone_id:
            zone = client.find_zone(settings.zone.name or "")
            if zone is None:
                why = f"the token sees no zone {settings.zone.name!r}"
                return Adoption({}, warnings=(collision_warning(hostname, why),))
            zone_id = zone.id
        records = client.find_records(zone_id, hostname, RECORD_TYPES)
    except CloudflareApiError as exc:
        if deploying:
            raise AdoptionLookupError(lookup_failure(hostname, str(exc))) from None
        return Adoption({}, warnings=(collision_warning(hostname, str(exc)),))
    wanted = {"AAAA": settings.addresses.ipv6}
    if settings.addresses.ipv4:
        wanted["A"] = settings.addresses.ipv4
    return plan_adoption(
        zone_id=zone_id,
        hostname=hostname,
        wanted=wanted,
        records=records,
        stack=stack,
        ddns=settings.ddns.enabled,
        managed=managed,
    )
