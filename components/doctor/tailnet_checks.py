"""Rows about the tailnet policy: readable with the credentials, and the region id free or ours.

Only ``GET /api/v2/tailnet/{tailnet}/acl`` is called (``tailscale_api.Client.get_policy``, after
the OAuth token exchange for an OAuth client): nothing is validated or written, so the policy's
ETag is the same after the doctor ran. Whether an existing
region is "ours" follows ``components.tailnet``: ``up`` keeps a region this stack published and
refuses any other unless ``adoptRegion`` is set. The doctor has no Pulumi state, so it takes this
stack's derper container on the relay host (created before the region is published) as the sign
that the stack published it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from components import derpmap
from components.doctor.credentials import Secrets
from components.doctor.engine import Engine
from components.doctor.host_checks import ownership
from components.doctor.model import Check, blocked, failed, not_checked, passed
from components.doctor.plan import Plan
from components.tailscale_api import (
    MISSING_HINT,
    AccessDenied,
    Client,
    TailscaleApiError,
    TailscaleApiUnreachable,
)

#: How tailscale_api reports a request that never got an answer (``_send``).


def policy_check(
    plan: Plan, secrets: Secrets, timeout: float, environ: Mapping[str, str]
) -> tuple[Check, str | None]:
    """``tailnet.policy``: the policy file can be read with the configured credentials."""
    if plan.policy_mode is None:
        return not_checked("tailnet.policy", "home-derp:tailnetPolicy is invalid (settings)"), None
    if plan.policy_mode == "off":
        return not_checked("tailnet.policy", "home-derp:tailnetPolicy is off"), None
    if secrets.tailscale is None:
        if secrets.tailscale_unreadable:
            keys = ", ".join(secrets.tailscale_unreadable)
            return not_checked("tailnet.policy", f"{keys} encrypted (see stack.secrets)"), None
        # resolve_credentials' text ends with the fix: shown once, as the fix.
        said = (secrets.tailscale_problem or "").removesuffix(MISSING_HINT).rstrip(" ;:")
        detail = None if said in ("", "no Tailscale credentials") else said
        return failed(
            "tailnet.policy", "no usable Tailscale credentials", MISSING_HINT, detail
        ), None
    creds = secrets.tailscale
    try:
        text, _etag = Client(creds, environ=environ, timeout=timeout).get_policy()
    except TailscaleApiError as exc:
        if isinstance(exc, TailscaleApiUnreachable):
            return not_checked("tailnet.policy", str(exc)), None
        if isinstance(exc, AccessDenied):  # 401: expired/revoked/wrong; 403: the scope
            return failed(
                "tailnet.policy", "the tailnet policy cannot be read", exc.fix, exc.what
            ), None
        return failed(
            "tailnet.policy",
            "the tailnet policy cannot be read",
            "check tailscale:tailnet and tailscale:baseUrl (TAILSCALE_TAILNET, TAILSCALE_BASE_URL)",
            str(exc),
        ), None
    return passed(
        "tailnet.policy",
        f"the policy of tailnet {creds.tailnet!r} is readable with the {creds.source}",
        "writing also needs the policy_file scope (OAuth) or an Owner/Admin/Network admin user "
        "(API token): the doctor does not write to test it",
    ), text


def free_region_id(policy: str) -> int | None:
    """The lowest custom region id the policy does not use (its keys read as the control plane
    reads them: ``components.derpmap.regions``)."""
    used = set(derpmap.regions(policy))
    low, high = derpmap.CUSTOM_REGION_IDS
    return next((i for i in range(low, high + 1) if i not in used), None)


def _deployed(plan: Plan, engine: Engine | None) -> bool:
    if engine is None:
        return False
    return any(ownership(c, plan.region_id, plan.region_code) == "ours" for c in engine.containers)


def region_check(plan: Plan, policy: str | None, gate: Check, engine: Engine | None) -> Check:
    """``tailnet.region``: the region id is free, ours, or adopted on purpose."""
    if plan.policy_mode == "file":
        return not_checked(
            "tailnet.region",
            "tailnetPolicy is file: the region is spliced into policyFile, which replaces the "
            "whole policy",
        )
    if policy is None:
        return blocked("tailnet.region", gate)
    if plan.region_id is None:
        return not_checked("tailnet.region", "home-derp:regionId is invalid (settings)")
    region_id = plan.region_id
    try:
        existing = derpmap.regions(policy).get(region_id)
    except derpmap.PolicyTextError as exc:
        return failed(
            "tailnet.region",
            "home-derp cannot edit this policy file",
            "fix the policy file in the admin console (the path derpMap.Regions must be objects)",
            str(exc),
        )
    if existing is None:
        return passed("tailnet.region", f"region {region_id} is free in the tailnet policy")
    if plan.adopt_region:
        return passed(
            "tailnet.region", f"region {region_id} exists; adoptRegion is true: `up` takes it over"
        )
    if _deployed(plan, engine):
        return passed(
            "tailnet.region",
            f"region {region_id} is this stack's (its derper container runs on the relay host)",
        )
    free = free_region_id(policy)
    unknown = "" if engine is not None else " (Docker could not be read to tell)"
    return failed(
        "tailnet.region",
        f"region {region_id} is already in the tailnet policy and this stack has not deployed"
        + unknown,
        "take it over with `pulumi config set home-derp:adoptRegion true` (e.g. the region of a "
        f"hand-made derper), or pick a free id: `pulumi config set home-derp:regionId {free}`",
        json.dumps(existing),
    )
