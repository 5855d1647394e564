"""The relay in the tailnet policy file: its region (published, drained, restored) and the grant
that lets the tailnet use the host as a peer relay — ETag-safe patches through the Tailscale API.

Two Pulumi dynamic resources, each owning one path of the HuJSON policy and nothing else
(``components/derpmap.py`` does the edits; every other byte of the user's policy stays):

* ``TailnetDerpRegion`` — ``derpMap.Regions."<id>"``. It follows the validation's verdict
  (``healthy``): a healthy relay is published; a published relay that fails is *drained*
  (``NoMeasureNoHome: true`` on our region: clients stop measuring it and never make it their home,
  docs/upstream/derpmap.md#no-measure-no-home); a drained relay that passes again is restored to
  exactly the bytes it had; a relay that was never published and fails is not written at all.
* ``TailnetPeerRelayGrant`` — one element of ``grants``, marked by a comment as ours, that gives
  the peer-relay capability on the relay host to the configured sources.

Every write is a read-modify-write: ``GET …/acl`` (HuJSON, ETag) → edit → ``POST …/acl/validate``
→ ``POST …/acl`` with ``If-Match``; on ``412`` (someone saved in between) read again and retry, a
bounded number of times (docs/upstream/tailscale-api.md#policy-file-post). A write that got no
clear answer (a 5xx, a timeout, a cut-short answer) is never sent again blindly: the policy is read
again, and if it already holds the edit, the write landed (docs/architecture.md, "Faults").

The providers are stored in the stack state under their stable names (``TailnetDerpRegion``,
``TailnetPeerRelayGrant``: components/dynamic_provider.py); older stacks stored
``components.tailnet.TailnetDerpRegionProvider`` and ``…TailnetPeerRelayGrantProvider``, which must
stay importable. Credentials never enter inputs, outputs or the pickled provider:
``configure()`` reads them from the Tailscale provider's stack config (dynamic providers receive
the whole stack config, pulumi/pulumi#17229, #17673) or the environment variables that provider
reads (``components/tailscale_api.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi.dynamic

from components import derpmap, policy_entries
from components.dynamic_provider import TailscaleCredentials, stored_outputs
from components.errors import HomeDerpError
from components.policy_entries import GrantProvider, RegionProvider
from components.tailscale_api import (
    AmbiguousWrite,
    Client,
    PreconditionFailed,
    TailscaleApiError,
)
from components.wire import is_unknown, plain

__all__ = [
    "TailnetDerpRegion",
    "TailnetDerpRegionProvider",
    "TailnetPeerRelayGrant",
    "TailnetPeerRelayGrantProvider",
    "TailnetPolicyError",
    "drained_policy_text",
    "edit_region",
    "policy_file_with_region",
    "withdraw_region",
]

MAX_ATTEMPTS: Final = 5
"""Read-modify-write rounds before giving up on a policy that keeps changing (HTTP 412)."""
RETRY_PAUSE = 0.5
"""Seconds between rounds, times the attempt number: gives a concurrent editor time to finish."""


class TailnetPolicyError(HomeDerpError):
    """A policy-file operation failed; the message is what `pulumi up` shows the user."""


# --------------------------------------------------------------------------------------------
# Pure: what each operation does to the policy text


def policy_file_with_region(
    policy_text: str, region: dict[str, Any], omit_default_regions: bool
) -> str:
    """The repo's policy text with this relay's region spliced in (``tailnetPolicy: file``).

    The result goes verbatim to ``tailscale.Acl(acl=...)`` so comments survive. Raises
    :class:`components.derpmap.PolicyTextError` when the text is not HuJSON we can edit.
    """
    return derpmap.splice_region(
        policy_text, region, omit_default_regions=omit_default_regions
    ).text


def drained_policy_text(policy_text: str, region_id: int) -> str:
    """``file`` mode with a failing relay: the same policy with our region drained."""
    return derpmap.drain_region(policy_text, region_id)


@dataclass(frozen=True)
class RegionState:
    """What our region is in the policy after an edit."""

    published: bool
    """Our region is in the policy."""
    drained: bool
    """… with ``NoMeasureNoHome: true``."""
    created_derp_map: bool
    """This stack created ``derpMap`` (then the last one out removes it)."""
    note: str | None = None
    """Something the user should know (printed by the provider)."""


def _refuse_foreign(existing: dict[str, Any] | None, region_id: int, adopt: bool) -> None:
    if existing is not None and not adopt:
        raise TailnetPolicyError(
            f"the tailnet policy already has derpMap region {region_id} and this stack did not "
            f"create it: {json.dumps(existing)}. Pick another home-derp:regionId, remove that "
            "region from the policy file, or take it over with "
            "`pulumi config set home-derp:adoptRegion true`."
        )


def _without_flag(region: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in region.items() if not derpmap.hujson.equal_fold(k, "NoMeasureNoHome")}


def edit_region(
    text: str,
    region: dict[str, Any],
    *,
    healthy: bool | None,
    was: RegionState,
    adopt: bool,
    omit_default_regions: bool,
) -> tuple[str, RegionState]:
    """The policy text after following the verdict, and the region's new state.

    ``was`` is the state of our last write (nothing published for a new resource). ``healthy``
    None is no verdict (a run with no route to the relay): nothing is published, drained or
    restored (docs/architecture.md, "Health").
    """
    # The engine delivers object inputs in no fixed order (docs/upstream/pulumi.md#property-order):
    # the same region must always be the same bytes.
    region = derpmap.in_policy_order(region)
    region_id = int(region["RegionID"])
    live = derpmap.find_region(text, region_id)
    if not was.published and live is not None and _written_by_us(text, region, region_id):
        # Our own write that landed without an answer (or whose run failed after it): the
        # region is ours, so it is drained, restored or withdrawn like any region we published.
        was = RegionState(True, derpmap.region_drained(live), _only_region(text, region_id))
    if not was.published:
        _refuse_foreign(live, region_id, adopt)
    if healthy is None:
        note = f"no verdict on the relay: region {region_id} was left as it is"
        return text, RegionState(was.published, was.drained, was.created_derp_map, note=note)
    if not healthy:
        if not was.published:
            return text, RegionState(False, False, was.created_derp_map)
        if live is None:
            return text, RegionState(
                False,
                False,
                was.created_derp_map,
                note=f"region {region_id} is no longer in the policy (removed by hand?): there "
                "is nothing to drain; it is published again once the relay is healthy",
            )
        alone = (
            f"region {region_id} is the only DERP region (OmitDefaultRegions): draining it "
            "moves nobody, clients keep it as their home (docs/guide/reach.md#one-region)"
        )
        drained = derpmap.drain_region(text, region_id)
        lonely = alone if derpmap.sole_region(text, region_id) else None
        return drained, RegionState(True, True, was.created_derp_map, note=lonely)
    if live is not None and derpmap.region_drained(live) and _without_flag(live) == region:
        # Restore exactly what was there before the drain (the flag was our last member).
        new_text = derpmap.restore_region(text, region_id)
        created = was.created_derp_map
    else:
        result = derpmap.splice_region(text, region, omit_default_regions=omit_default_regions)
        new_text, created = result.text, was.created_derp_map or result.created_derp_map
        if was.created_derp_map and not result.created_derp_map:
            # We own OmitDefaultRegions only in a derpMap block we created.
            new_text = derpmap.set_omit_default_regions(new_text, omit_default_regions)
    return new_text, RegionState(True, False, created)


def _written_by_us(text: str, region: dict[str, Any], region_id: int) -> bool:
    """The live region is exactly what this stack writes (drained or not): splicing ours over it
    changes nothing (``derpmap.splice_region`` keeps a region equal member for member and type
    for type)."""
    undrained = derpmap.restore_region(text, region_id)
    spliced = derpmap.splice_region(undrained, region, omit_default_regions=False).text
    return spliced == undrained


def _only_region(text: str, region_id: int) -> bool:
    """``derpMap`` holds our region and nothing but ``OmitDefaultRegions``: the block a create of
    ours makes, so the last one out may remove it (``withdraw_region``)."""
    derp_map = _field(derpmap.parse_hujson(text), "derpMap")
    regions = _field(derp_map, "Regions")
    others = [k for k in derp_map or {} if not derpmap.hujson.equal_fold(k, "Regions")]
    return (
        isinstance(regions, dict)
        and [str(k) for k in regions] == [str(region_id)]
        and all(derpmap.hujson.equal_fold(k, "OmitDefaultRegions") for k in others)
    )


def withdraw_region(policy_text: str, region_id: int, *, created_derp_map: bool) -> str:
    """Remove our region; never leave ``OmitDefaultRegions: true`` with no region at all.

    The block belongs to the stack that created it; when that stack went first (home and office
    sharing one derpMap), the last one out would otherwise leave a tailnet without any DERP
    region. Then the now-empty block goes too, or, if someone added other keys to it,
    ``OmitDefaultRegions`` is turned off so Tailscale's own regions come back.
    """
    text = derpmap.remove_region(policy_text, region_id, remove_empty_derp_map=created_derp_map)
    derp_map = _field(derpmap.parse_hujson(text), "derpMap")
    if (
        isinstance(derp_map, dict)
        and _field(derp_map, "OmitDefaultRegions") is True
        and not _field(derp_map, "Regions")
    ):
        text = derpmap.remove_region(text, region_id, remove_empty_derp_map=True)
        if _field(derpmap.parse_hujson(text), "derpMap") is not None:
            text = derpmap.set_omit_default_regions(text, False)
    return text


def _field(value: Any, name: str) -> Any:
    """A struct field of a parsed policy, matched as Go's encoding/json does (any case)."""
    if not isinstance(value, dict):
        return None
    return next((v for k, v in value.items() if derpmap.hujson.equal_fold(k, name)), None)


# --------------------------------------------------------------------------------------------
# The read-modify-write loop

Mutation = Callable[[str], tuple[str, Any]]


def read_modify_write(
    client: Client,
    mutate: Mutation,
    *,
    attempts: int | None = None,
    pause: float | None = None,
) -> tuple[str, Any]:
    """Apply ``mutate`` to the live policy with ETag/If-Match; returns (etag, mutate's extra).

    A text that ``mutate`` leaves unchanged is not written (no validate, no POST). A write that got
    no clear answer (:class:`AmbiguousWrite`) is followed by a fresh read: the policy holding
    exactly the text we sent, or already holding the edit (``mutate`` changes nothing), means it
    landed; otherwise it is tried again like a 412.
    """
    attempts = MAX_ATTEMPTS if attempts is None else attempts
    pause = RETRY_PAUSE if pause is None else pause
    sent: tuple[str, Any] | None = None  # (text, extra) of a write whose answer we never got
    ambiguous: AmbiguousWrite | None = None
    for attempt in range(1, attempts + 1):
        try:
            text, etag = client.get_policy()
        except TailscaleApiError as err:
            if ambiguous is None:
                raise
            raise TailnetPolicyError(
                _unconfirmed(ambiguous, f"reading it again failed: {err}")
            ) from None
        if sent is not None and text == sent[0]:
            _note("the policy holds exactly what home-derp sent: the unanswered write landed")
            return etag, sent[1]
        try:
            new_text, extra = mutate(text)
        except derpmap.PolicyTextError as err:
            raise TailnetPolicyError(f"cannot edit the tailnet policy file: {err}") from None
        if new_text == text:
            if ambiguous is not None:
                _note("the policy already holds home-derp's edit: the unanswered write landed")
            return etag, extra
        for warning in client.validate_policy(new_text):
            _note(f"Tailscale warns about the policy (saved anyway): {warning}")
        try:
            new_etag = client.set_policy(new_text, etag)
        except PreconditionFailed:
            if attempt < attempts:
                time.sleep(pause * attempt)
            continue
        except AmbiguousWrite as err:
            sent, ambiguous = (new_text, extra), err
            _note(f"the policy write got no clear answer ({err}); reading the policy again")
            if attempt < attempts:
                time.sleep(pause * attempt)
            continue
        sent = ambiguous = None
        if not new_etag:  # fall back to a fresh read so the recorded ETag is the live one
            new_etag = client.get_policy()[1]
        return new_etag, extra
    if ambiguous is not None:
        raise TailnetPolicyError(_unconfirmed(ambiguous, f"{attempts} tries"))
    raise TailnetPolicyError(
        f"the tailnet policy file changed while we were writing it, {attempts} times in a row "
        "(HTTP 412 on If-Match); someone or something keeps editing it: retry `pulumi up` when "
        "the other editor is done. Nothing was written."
    )


def _unconfirmed(ambiguous: AmbiguousWrite, after: str) -> str:
    return (
        f"the tailnet policy write got no clear answer ({ambiguous}) and could not be confirmed "
        f"({after}): it MAY HAVE BEEN SAVED. Run `pulumi up` again when the Tailscale API "
        "answers: it reads the policy, recognises home-derp's own edit if it landed, and "
        "finishes it otherwise"
    )


# --------------------------------------------------------------------------------------------
# Shared provider plumbing


class _PolicyProvider(TailscaleCredentials):
    """Credentials from configure(), never pickled (components/dynamic_provider.py); one API
    client per operation."""

    def _client(self) -> Client:
        try:
            return self.api_client()
        except TailscaleApiError as exc:
            raise TailnetPolicyError(str(exc)) from None

    def _write(self, mutate: Mutation) -> tuple[Client, str, Any]:
        client = self._client()
        try:
            etag, extra = read_modify_write(client, mutate)
        except TailscaleApiError as exc:
            raise TailnetPolicyError(str(exc)) from None
        return client, etag, extra

    def _read(self, find: Callable[[str], Any]) -> tuple[Client, str, Any]:
        """(client, the live ETag, what ``find`` finds in the live policy)."""
        client = self._client()
        try:
            text, etag = client.get_policy()
            return client, etag, find(text)
        except TailscaleApiError as err:
            raise TailnetPolicyError(str(err)) from None
        except derpmap.PolicyTextError as err:
            raise TailnetPolicyError(f"cannot read the tailnet policy file: {err}") from None


def _note(message: str) -> None:
    import sys

    print(f"home-derp tailnet policy: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The region

REGION_INPUTS: Final = ("region", "healthy", "omit_default_regions", "adopt_region")


def _region_id(region: Any) -> int:
    return policy_entries.region_id(region, TailnetPolicyError)


def _check_region(region: Any) -> list[str]:
    low, high = derpmap.CUSTOM_REGION_IDS
    if not isinstance(region, Mapping):
        return [f"region must be an object like derpmap.region_to_dict() gives, got {region!r}"]
    problems: list[str] = []
    rid = plain(region.get("RegionID"))
    if isinstance(rid, bool) or not isinstance(rid, int) or not low <= rid <= high:
        problems.append(f"RegionID must be an integer {low}–{high} (custom regions), got {rid!r}")
    nodes = region.get("Nodes")
    if not isinstance(nodes, list) or not nodes:
        problems.append("Nodes must be a non-empty list")
    else:
        for node in nodes:
            if not isinstance(node, Mapping) or plain(node.get("RegionID")) != rid:
                # tailscale/tailscale#9526, #17563: a node without its RegionID is ignored.
                problems.append(f"every node needs RegionID {rid!r}, got {node!r}")
    return problems


def _was(props: Mapping[str, Any]) -> RegionState:
    # Stacks deployed before drain support have no `published`: their region is in the policy.
    published = props.get("published")
    return RegionState(
        published=True if published is None and props.get("policy_etag") else bool(published),
        drained=bool(props.get("drained")),
        created_derp_map=bool(props.get("created_derp_map")),
    )


class TailnetDerpRegionProvider(RegionProvider, _PolicyProvider):
    """CRUD for one derpMap region; see the module docstring for the protocol."""

    NAME = "TailnetDerpRegion"
    INPUT_KEYS = REGION_INPUTS

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures: list[pulumi.dynamic.CheckFailure] = []
        region = news.get("region")
        if not is_unknown(region):
            failures = [pulumi.dynamic.CheckFailure("region", p) for p in _check_region(region)]
        return pulumi.dynamic.CheckResult(news, failures)

    def _apply(self, props: Mapping[str, Any], was: RegionState) -> dict[str, Any]:
        inputs = {k: plain(props.get(k)) for k in REGION_INPUTS}
        region = inputs["region"]
        # True, False, or None for no verdict (`validate: off` arrives as True: relay.py).
        healthy = inputs["healthy"]

        def mutate(text: str) -> tuple[str, RegionState]:
            return edit_region(
                text,
                region,
                healthy=healthy,
                was=was,
                adopt=bool(inputs["adopt_region"]),
                omit_default_regions=bool(inputs["omit_default_regions"]),
            )

        client, etag, state = self._write(mutate)
        transition = policy_entries.drain_note(
            _region_id(region), was, state, flag="NoMeasureNoHome"
        )
        for note in (state.note, transition):
            if note:
                _note(note)
        return {
            **inputs,
            "tailnet": client.tailnet,
            "published": state.published,
            "drained": state.drained,
            "created_derp_map": state.created_derp_map,
            "policy_etag": etag,
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._apply(props, RegionState(False, False, False))
        return pulumi.dynamic.CreateResult(f"{outs['tailnet']}/{_region_id(outs['region'])}", outs)

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._apply(news, _was(olds)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        was = _was(props)
        if not was.published:
            return  # nothing of ours is in the policy (never published, or removed by hand)
        region_id = _region_id(plain(props.get("region")))

        def mutate(text: str) -> tuple[str, None]:
            return withdraw_region(text, region_id, created_derp_map=was.created_derp_map), None

        self._write(mutate)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        region = plain(props.get("region"))
        region_id = _region_id(region) if region else int(id_.rsplit("/", 1)[-1])
        state = stored_outputs(props)
        if not _was(props).published:
            return pulumi.dynamic.ReadResult(id_, state)
        client, etag, live = self._read(lambda text: derpmap.find_region(text, region_id))
        if live is None:
            # Gone from the policy: the engine drops it from state and the next `up` re-creates it.
            return pulumi.dynamic.ReadResult(None, {})
        return pulumi.dynamic.ReadResult(
            id_,
            {
                **state,
                "region": _without_flag(live),
                "drained": derpmap.region_drained(live),
                "tailnet": client.tailnet,
                # The ETag of our last write, not the live one: edits elsewhere in the policy (ACL
                # rules, other stacks) must not show up as drift of this resource on refresh.
                "policy_etag": props.get("policy_etag") or etag,
            },
        )


class TailnetDerpRegion(pulumi.dynamic.Resource, module="homederp", name="TailnetDerpRegion"):
    """This relay's region in the tailnet policy file (published, drained, withdrawn)."""

    region: pulumi.Output[dict[str, Any]]
    """The region as written to ``derpMap.Regions."<id>"`` (on refresh: as found live)."""
    healthy: pulumi.Output[bool | None]
    """The validation's verdict the region followed (None: validation off)."""
    omit_default_regions: pulumi.Output[bool]
    """``OmitDefaultRegions`` used when this resource had to create ``derpMap``."""
    adopt_region: pulumi.Output[bool]
    """Whether an existing region with the same ID could be taken over."""
    tailnet: pulumi.Output[str]
    """The tailnet the credentials addressed (``-`` = the credential's own)."""
    published: pulumi.Output[bool]
    """Our region is in the policy."""
    drained: pulumi.Output[bool]
    """… drained (``NoMeasureNoHome: true``) because the relay failed."""
    created_derp_map: pulumi.Output[bool]
    """True when this resource created ``derpMap`` (then destroy removes it once empty)."""
    policy_etag: pulumi.Output[str]
    """ETag of the policy file right after this resource last wrote (or found) its region."""

    def __init__(
        self,
        resource_name: str,
        *,
        region: pulumi.Input[Mapping[str, Any]],
        healthy: pulumi.Input[bool | None] = True,
        omit_default_regions: pulumi.Input[bool] = False,
        adopt_region: pulumi.Input[bool] = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "region": region,
            "healthy": healthy,
            "omit_default_regions": omit_default_regions,
            "adopt_region": adopt_region,
            "tailnet": None,
            "published": None,
            "drained": None,
            "created_derp_map": None,
            "policy_etag": None,
        }
        super().__init__(TailnetDerpRegionProvider(), resource_name, props, opts)


# --------------------------------------------------------------------------------------------
# The peer-relay grant

GRANT_INPUTS: Final = ("region_id", "grant", "relay_ips")


def _confirm_from_this_machine(relay_ips: list[str], sources: list[str]) -> dict[str, Any]:
    """Whether this machine, as a client, now sees the relay host as a peer relay server."""
    from components import peer_relay
    from components.host import CommandResult, HostReadError, this_machine

    channel = this_machine()

    def run_local(command: Any) -> CommandResult:
        try:
            return channel.run(command, what="ask this machine's tailscaled")
        except HostReadError as exc:
            return CommandResult(127, "", str(exc))

    if not relay_ips:
        return {
            "confirmed": None,
            "detail": "not confirmed: the relay host's Tailscale IPs are unknown",
        }
    return peer_relay.confirmation_from_client(run_local, relay_ips, sources)


class TailnetPeerRelayGrantProvider(GrantProvider, _PolicyProvider):
    """CRUD for our marked grant in ``grants``."""

    NAME = "TailnetPeerRelayGrant"
    INPUT_KEYS = GRANT_INPUTS

    def _apply(self, props: Mapping[str, Any]) -> dict[str, Any]:
        inputs = {k: plain(props.get(k)) for k in GRANT_INPUTS}
        region_id, grant = int(inputs["region_id"]), dict(inputs["grant"])

        def mutate(text: str) -> tuple[str, bool]:
            return derpmap.insert_grant(text, region_id, grant)

        client, etag, created = self._write(mutate)
        confirmation = _confirm_from_this_machine(
            list(inputs.get("relay_ips") or []), [str(s) for s in grant.get("src") or []]
        )
        _note(f"peer relay grant for region {region_id}: {confirmation['detail']}")
        return {
            **inputs,
            "tailnet": client.tailnet,
            "created_grants": bool(created or props.get("created_grants")),
            "policy_etag": etag,
            "client_confirmation": confirmation,
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._apply(props)
        return pulumi.dynamic.CreateResult(f"{outs['tailnet']}/grant/{outs['region_id']}", outs)

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(
            self._apply({**news, "created_grants": olds.get("created_grants")})
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        region_id = int(plain(props.get("region_id")))
        created = bool(props.get("created_grants"))

        def mutate(text: str) -> tuple[str, None]:
            return derpmap.remove_grant(text, region_id, remove_empty_grants=created), None

        self._write(mutate)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        region_id = int(plain(props.get("region_id")) or id_.rsplit("/", 1)[-1])
        _, _, live = self._read(lambda text: derpmap.find_grant(text, region_id))
        if live is None:
            return pulumi.dynamic.ReadResult(None, {})
        return pulumi.dynamic.ReadResult(id_, {**stored_outputs(props), "grant": live})


class TailnetPeerRelayGrant(
    pulumi.dynamic.Resource, module="homederp", name="TailnetPeerRelayGrant"
):
    """The grant that lets ``src`` use the relay host as a peer relay (marked as ours)."""

    region_id: pulumi.Output[int]
    grant: pulumi.Output[dict[str, Any]]
    """The grant as written (on refresh: as found live, so a hand edit shows as drift)."""
    relay_ips: pulumi.Output[list[str]]
    """The relay host's Tailscale IPs (a client confirms it sees one as a peer relay server)."""
    tailnet: pulumi.Output[str]
    client_confirmation: pulumi.Output[dict[str, Any]]
    """``{confirmed, detail}``: whether this machine, as a client, sees the relay."""
    created_grants: pulumi.Output[bool]
    """True when this resource created ``grants`` (then destroy removes it once empty)."""
    policy_etag: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        region_id: pulumi.Input[int],
        grant: pulumi.Input[Mapping[str, Any]],
        relay_ips: pulumi.Input[list[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "region_id": region_id,
            "grant": grant,
            "relay_ips": relay_ips or [],
            "client_confirmation": None,
            "tailnet": None,
            "created_grants": None,
            "policy_etag": None,
        }
        super().__init__(TailnetPeerRelayGrantProvider(), resource_name, props, opts)
