"""The relay's region in the tailnet policy file: an ETag-safe patch through the Tailscale API.

``TailnetDerpRegion`` is a Pulumi dynamic resource (issue #4). It edits exactly one region,
``derpMap.Regions."<id>"``, of the HuJSON policy file and leaves every other byte alone, so the
users' ACL rules, comments and other stacks' regions survive (``components/derpmap.py``):

* read ``GET /api/v2/tailnet/{tailnet}/acl`` with ``Accept: application/hujson`` and keep the ETag;
* splice; ``POST …/acl/validate``; ``POST …/acl`` with ``If-Match: <etag>``;
* on ``412 Precondition Failed`` (someone saved in between) read again and retry, a bounded number
  of times, then fail with a message that says so.

The provider class is pickled **by module path** into the stack state
(``components.tailnet.TailnetDerpRegionProvider``): do not move or rename it (DESIGN.md).
Credentials never enter inputs, outputs or the pickled provider: ``configure()`` reads them from
the stack config of the Tailscale provider (dynamic providers receive the whole stack config with
namespaces, pulumi/pulumi#17229 and #17673), or from the environment variables that provider uses.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components import derpmap
from components.wire import is_unknown, plain

__all__ = [
    "DEFAULT_BASE_URL",
    "TailnetDerpRegion",
    "TailnetDerpRegionProvider",
    "TailnetPolicyError",
    "policy_file_with_region",
    "withdraw_region",
]

DEFAULT_BASE_URL = "https://api.tailscale.com"
HTTP_TIMEOUT = 30.0
"""Seconds per API request; the policy API answers in well under a second when healthy."""
MAX_ATTEMPTS = 5
"""Read-modify-write rounds before giving up on a policy that keeps changing (HTTP 412)."""
RETRY_PAUSE = 0.5
"""Seconds between rounds, times the attempt number: gives a concurrent editor time to finish."""

HUJSON = "application/hujson"
SCOPE_HINT = (
    "writing the tailnet policy file needs an API access token of a user with the Owner, Admin "
    "or Network admin role (tailscale:apiKey / TAILSCALE_API_KEY), or an OAuth client with the "
    "`policy_file` scope (write) (tailscale:oauthClientId + tailscale:oauthClientSecret / "
    "TAILSCALE_OAUTH_CLIENT_ID + TAILSCALE_OAUTH_CLIENT_SECRET)"
)


class TailnetPolicyError(Exception):
    """A policy-file operation failed; the message is what `pulumi up` shows the user."""


def policy_file_with_region(
    policy_text: str, region: dict[str, Any], omit_default_regions: bool
) -> str:
    """The repo's policy text with this relay's region spliced in (``tailnetPolicy: file`` mode).

    The result goes verbatim to ``tailscale.Acl(acl=...)`` so comments survive. Raises
    :class:`components.derpmap.PolicyTextError` when the text is not HuJSON we can splice.
    """
    return derpmap.splice_region(
        policy_text, region, omit_default_regions=omit_default_regions
    ).text


# --------------------------------------------------------------------------------------------
# API client (built per call: nothing here is pickled)


@dataclass(frozen=True)
class _Auth:
    base_url: str
    tailnet: str
    api_key: str | None
    oauth_client_id: str | None
    oauth_client_secret: str | None

    @property
    def source(self) -> str:
        return "API access token" if self.api_key else "OAuth client"


def _first(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def resolve_auth(config: Mapping[str, Any], environ: Mapping[str, str]) -> _Auth:
    """Credentials from stack config first, then the Tailscale provider's environment variables."""
    api_key = _first(config.get("tailscale:apiKey"), environ.get("TAILSCALE_API_KEY"))
    client_id = _first(
        config.get("tailscale:oauthClientId"), environ.get("TAILSCALE_OAUTH_CLIENT_ID")
    )
    client_secret = _first(
        config.get("tailscale:oauthClientSecret"), environ.get("TAILSCALE_OAUTH_CLIENT_SECRET")
    )
    tailnet = _first(config.get("tailscale:tailnet"), environ.get("TAILSCALE_TAILNET")) or "-"
    base_url = (
        _first(config.get("tailscale:baseUrl"), environ.get("TAILSCALE_BASE_URL"))
        or DEFAULT_BASE_URL
    )
    if api_key is None and not (client_id and client_secret):
        raise TailnetPolicyError(
            "no Tailscale credentials: set `pulumi config set --secret tailscale:apiKey <key>` "
            "or tailscale:oauthClientId + `--secret tailscale:oauthClientSecret` "
            "(or TAILSCALE_API_KEY / TAILSCALE_OAUTH_CLIENT_ID + TAILSCALE_OAUTH_CLIENT_SECRET); "
            + SCOPE_HINT
        )
    return _Auth(base_url.rstrip("/"), tailnet, api_key, client_id, client_secret)


class _PreconditionFailed(Exception):
    pass


@dataclass
class _Response:
    status: int
    body: bytes
    headers: Mapping[str, str]


def _api_message(body: bytes) -> str:
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return body.decode("utf-8", "replace").strip()[:500]
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return json.dumps(parsed)[:500]


class _Client:
    """Just the policy-file calls, over stdlib urllib (no extra dependency in the provider)."""

    def __init__(self, auth: _Auth, timeout: float = HTTP_TIMEOUT) -> None:
        self.auth = auth
        self.timeout = timeout
        self._token: str | None = None

    def _url(self, suffix: str) -> str:
        tailnet = urllib.parse.quote(self.auth.tailnet, safe="")
        return f"{self.auth.base_url}/api/v2/tailnet/{tailnet}/acl{suffix}"

    def _send(self, request: urllib.request.Request) -> _Response:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return _Response(resp.status, resp.read(), dict(resp.headers.items()))
        except urllib.error.HTTPError as err:
            return _Response(err.code, err.read(), dict(err.headers.items()))
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TailnetPolicyError(
                f"cannot reach the Tailscale API at {self.auth.base_url}: {reason}"
            ) from None

    def _bearer(self) -> str:
        if self.auth.api_key:
            return self.auth.api_key
        if self._token is None:
            self._token = self._oauth_token()
        return self._token

    def _oauth_token(self) -> str:
        # OAuth client credentials grant: https://tailscale.com/kb/1215/oauth-clients
        form = urllib.parse.urlencode(
            {
                "client_id": self.auth.oauth_client_id or "",
                "client_secret": self.auth.oauth_client_secret or "",
                "grant_type": "client_credentials",
            }
        ).encode()
        request = urllib.request.Request(
            f"{self.auth.base_url}/api/v2/oauth/token",
            data=form,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = self._send(request)
        if resp.status != 200:
            raise TailnetPolicyError(
                f"Tailscale OAuth token exchange failed (HTTP {resp.status}: "
                f"{_api_message(resp.body)}); check tailscale:oauthClientId/oauthClientSecret. "
                + SCOPE_HINT
            )
        try:
            token = json.loads(resp.body)["access_token"]
        except (ValueError, KeyError, TypeError):
            raise TailnetPolicyError("Tailscale OAuth token response has no access_token") from None
        if not isinstance(token, str) or not token:
            raise TailnetPolicyError("Tailscale OAuth token response has no access_token")
        return token

    def _request(
        self,
        method: str,
        suffix: str,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        also_ok: tuple[int, ...] = (),
    ) -> _Response:
        all_headers = {
            "Authorization": f"Bearer {self._bearer()}",
            "Accept": HUJSON,
            **(headers or {}),
        }
        data = None
        if body is not None:
            data = body.encode("utf-8")
            all_headers["Content-Type"] = HUJSON
        request = urllib.request.Request(
            self._url(suffix), data=data, method=method, headers=all_headers
        )
        resp = self._send(request)
        if resp.status in (401, 403):
            what = "rejected" if resp.status == 401 else "not allowed"
            raise TailnetPolicyError(
                f"Tailscale API {method} {self._url(suffix)}: HTTP {resp.status} ({what}: "
                f"{_api_message(resp.body)}) with the {self.auth.source} for tailnet "
                f"{self.auth.tailnet!r}; " + SCOPE_HINT
            )
        if resp.status == 412:
            raise _PreconditionFailed(_api_message(resp.body))
        if resp.status == 404:
            raise TailnetPolicyError(
                f"Tailscale API {method} {self._url(suffix)}: HTTP 404 "
                f"({_api_message(resp.body)}); check tailscale:tailnet / TAILSCALE_TAILNET "
                f"(now {self.auth.tailnet!r}; '-' means the credential's own tailnet)"
            )
        if not 200 <= resp.status < 300 and resp.status not in also_ok:
            raise TailnetPolicyError(
                f"Tailscale API {method} {self._url(suffix)}: HTTP {resp.status}: "
                f"{_api_message(resp.body)}"
            )
        return resp

    def get_policy(self) -> tuple[str, str]:
        resp = self._request("GET", "")
        etag = _header(resp.headers, "ETag")
        if not etag:
            raise TailnetPolicyError("Tailscale API returned the policy file without an ETag")
        try:
            return resp.body.decode("utf-8"), etag
        except UnicodeDecodeError:
            raise TailnetPolicyError("the tailnet policy file is not UTF-8") from None

    def validate(self, text: str) -> None:
        # The API answers 200 even for an invalid policy and puts the reason in `message`
        # (https://tailscale.com/api#tag/policyfile/POST/tailnet/{tailnet}/acl/validate);
        # older API docs said 400 with the same body, so read both.
        resp = self._request("POST", "/validate", text, also_ok=(400,))
        message = ""
        if resp.body.strip():
            try:
                parsed = json.loads(resp.body)
            except ValueError:
                parsed = {}
            if isinstance(parsed, dict) and parsed.get("message"):
                message = str(parsed["message"])
                if parsed.get("data"):
                    message += f" {json.dumps(parsed['data'])}"
        if resp.status == 400 and not message:
            message = _api_message(resp.body) or "HTTP 400"
        if message:
            raise TailnetPolicyError(
                f"Tailscale rejected the policy file with the relay's region: {message}; "
                "nothing was written"
            )

    def set_policy(self, text: str, etag: str) -> str:
        resp = self._request("POST", "", text, {"If-Match": etag})
        return _header(resp.headers, "ETag") or ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


Mutation = Callable[[str], tuple[str, Any]]


def read_modify_write(
    client: _Client,
    mutate: Mutation,
    *,
    attempts: int | None = None,
    pause: float | None = None,
) -> tuple[str, Any]:
    """Apply ``mutate`` to the live policy with ETag/If-Match; returns (etag, mutate's extra).

    A text that ``mutate`` leaves unchanged is not written (no validate, no POST).
    """
    attempts = MAX_ATTEMPTS if attempts is None else attempts
    pause = RETRY_PAUSE if pause is None else pause
    for attempt in range(1, attempts + 1):
        text, etag = client.get_policy()
        try:
            new_text, extra = mutate(text)
        except derpmap.PolicyTextError as err:
            raise TailnetPolicyError(f"cannot edit the tailnet policy file: {err}") from None
        if new_text == text:
            return etag, extra
        client.validate(new_text)
        try:
            new_etag = client.set_policy(new_text, etag)
        except _PreconditionFailed:
            if attempt < attempts:
                time.sleep(pause * attempt)
            continue
        if not new_etag:  # fall back to a fresh read so the recorded ETag is the live one
            new_etag = client.get_policy()[1]
        return new_etag, extra
    raise TailnetPolicyError(
        f"the tailnet policy file changed while we were writing it, {attempts} times in a row "
        "(HTTP 412 on If-Match); someone or something keeps editing it: retry `pulumi up` when "
        "the other editor is done. Nothing was written."
    )


def withdraw_region(policy_text: str, region_id: int, *, created_derp_map: bool) -> str:
    """Remove our region; never leave ``OmitDefaultRegions: true`` with no region at all.

    The block belongs to the stack that created it; when that stack went first (home and office
    sharing one derpMap), the last one out would otherwise leave a tailnet without any DERP
    region. Then the now-empty block goes too, or, if someone added other keys to it,
    ``OmitDefaultRegions`` is turned off so Tailscale's own regions come back.
    """
    text = derpmap.remove_region(policy_text, region_id, remove_empty_derp_map=created_derp_map)
    derp_map = derpmap.parse_hujson(text).get("derpMap")
    if (
        isinstance(derp_map, dict)
        and derp_map.get("OmitDefaultRegions") is True
        and not derp_map.get("Regions")
    ):
        text = derpmap.remove_region(text, region_id, remove_empty_derp_map=True)
        if "derpMap" in derpmap.parse_hujson(text):
            text = derpmap.set_omit_default_regions(text, False)
    return text


# --------------------------------------------------------------------------------------------
# The dynamic provider

INPUTS = ("region", "omit_default_regions", "adopt_region")


def _region_id(region: Any) -> int:
    region_id = region.get("RegionID") if isinstance(region, Mapping) else None
    if isinstance(region_id, float) and region_id.is_integer():
        region_id = int(region_id)
    if isinstance(region_id, bool) or not isinstance(region_id, int):
        raise TailnetPolicyError(f"region needs an integer RegionID, got {region!r}")
    return region_id


def _check_region(region: Any) -> list[str]:
    problems: list[str] = []
    if not isinstance(region, Mapping):
        return [f"region must be an object like derpmap.region_to_dict() gives, got {region!r}"]
    rid = plain(region.get("RegionID"))
    if isinstance(rid, bool) or not isinstance(rid, int) or not 900 <= rid <= 999:
        problems.append(f"RegionID must be an integer 900–999 (custom regions), got {rid!r}")
    nodes = region.get("Nodes")
    if not isinstance(nodes, list) or not nodes:
        problems.append("Nodes must be a non-empty list")
    else:
        for node in nodes:
            if not isinstance(node, Mapping) or plain(node.get("RegionID")) != rid:
                # tailscale/tailscale#9526, #17563: a node without its RegionID is ignored.
                problems.append(f"every node needs RegionID {rid!r}, got {node!r}")
    return problems


class TailnetDerpRegionProvider(pulumi.dynamic.ResourceProvider):
    """CRUD for one derpMap region; see the module docstring for the protocol."""

    # Nothing secret is captured when the program pickles this object (credentials are read in
    # configure() inside the provider process and dropped by __getstate__), so the blob need not
    # be a secret (reference/pulumi.md: secret blobs are slow).
    serialize_as_secret_always = False

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}  # never pickle configuration (it may hold credentials)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._config = {}

    def configure(self, req: pulumi.dynamic.ConfigureRequest) -> None:
        keys = (
            "tailscale:apiKey",
            "tailscale:oauthClientId",
            "tailscale:oauthClientSecret",
            "tailscale:tailnet",
            "tailscale:baseUrl",
        )
        self._config = {k: req.config.get(k) for k in keys if req.config.get(k) is not None}

    def _client(self) -> _Client:
        return _Client(resolve_auth(self._config, os.environ))

    # -- engine calls
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures: list[pulumi.dynamic.CheckFailure] = []
        region = news.get("region")
        if not is_unknown(region):
            failures = [pulumi.dynamic.CheckFailure("region", p) for p in _check_region(region)]
        return pulumi.dynamic.CheckResult(news, failures)

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        if any(is_unknown(news.get(k)) for k in INPUTS):
            return pulumi.dynamic.DiffResult(changes=True)
        changed = [k for k in INPUTS if plain(olds.get(k)) != plain(news.get(k))]
        replaces: list[str] = []
        old_region, new_region = olds.get("region"), news.get("region")
        if (
            isinstance(old_region, Mapping)
            and isinstance(new_region, Mapping)
            and plain(old_region.get("RegionID")) != plain(new_region.get("RegionID"))
        ):
            replaces = ["region"]  # another key in derpMap.Regions: a different region
        # Withdraw the old region first: a derpMap block we created is then removed and created
        # again by the new region, so its ownership (created_derp_map) moves along with it.
        return pulumi.dynamic.DiffResult(
            changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces)
        )

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        inputs = {k: plain(props.get(k)) for k in INPUTS}
        region = inputs["region"]
        region_id = _region_id(region)
        adopt = bool(inputs["adopt_region"])
        omit = bool(inputs["omit_default_regions"])

        def mutate(text: str) -> tuple[str, bool]:
            existing = derpmap.find_region(text, region_id)
            if existing is not None and not adopt:
                raise TailnetPolicyError(
                    f"the tailnet policy already has derpMap region {region_id} and this stack "
                    f"did not create it: {json.dumps(existing)}. Pick another "
                    "home-derp:regionId, remove that region from the policy file, or take it "
                    "over with `pulumi config set home-derp:adoptRegion true`."
                )
            result = derpmap.splice_region(text, region, omit_default_regions=omit)
            return result.text, result.created_derp_map

        client = self._client()
        etag, created = read_modify_write(client, mutate)
        outs = {
            **inputs,
            "tailnet": client.auth.tailnet,
            "created_derp_map": bool(created),
            "policy_etag": etag,
        }
        return pulumi.dynamic.CreateResult(f"{client.auth.tailnet}/{region_id}", outs)

    def update(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        inputs = {k: plain(news.get(k)) for k in INPUTS}
        region = inputs["region"]
        omit = bool(inputs["omit_default_regions"])
        owned_derp_map = bool(olds.get("created_derp_map"))

        def mutate(text: str) -> tuple[str, bool]:
            # The region is ours (it is in our state), so overwrite whatever is there now.
            result = derpmap.splice_region(text, region, omit_default_regions=omit)
            new_text = result.text
            if owned_derp_map and not result.created_derp_map:
                # We own OmitDefaultRegions only in a derpMap block we created.
                new_text = derpmap.set_omit_default_regions(new_text, omit)
            return new_text, owned_derp_map or result.created_derp_map

        client = self._client()
        etag, created = read_modify_write(client, mutate)
        outs = {
            **inputs,
            "tailnet": client.auth.tailnet,
            "created_derp_map": bool(created),
            "policy_etag": etag,
        }
        return pulumi.dynamic.UpdateResult(outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        region_id = _region_id(plain(props.get("region")))
        created = bool(props.get("created_derp_map"))

        def mutate(text: str) -> tuple[str, None]:
            return withdraw_region(text, region_id, created_derp_map=created), None

        read_modify_write(self._client(), mutate)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        region = plain(props.get("region"))
        region_id = _region_id(region) if region else int(id_.rsplit("/", 1)[-1])
        client = self._client()
        text, etag = client.get_policy()
        try:
            live = derpmap.find_region(text, region_id)
        except derpmap.PolicyTextError as err:
            raise TailnetPolicyError(f"cannot read the tailnet policy file: {err}") from None
        if live is None:
            # Gone from the policy: the engine drops it from state and the next `up` re-creates it.
            return pulumi.dynamic.ReadResult(None, {})
        outs = {
            **{k: plain(props.get(k)) for k in INPUTS},
            "region": live,
            "tailnet": client.auth.tailnet,
            "created_derp_map": bool(props.get("created_derp_map")),
            # The ETag of our last write, not the live one: edits elsewhere in the policy (ACL
            # rules, other stacks) must not show up as drift of this resource on refresh.
            "policy_etag": props.get("policy_etag") or etag,
        }
        return pulumi.dynamic.ReadResult(id_, outs)


# --------------------------------------------------------------------------------------------
# The resource


class TailnetDerpRegion(pulumi.dynamic.Resource, module="homederp", name="TailnetDerpRegion"):
    """This relay's region in the tailnet policy file (patched, withdrawn on destroy)."""

    region: pulumi.Output[dict[str, Any]]
    """The region as written to ``derpMap.Regions."<id>"`` (on refresh: as found live)."""
    omit_default_regions: pulumi.Output[bool]
    """``OmitDefaultRegions`` used when this resource had to create ``derpMap``."""
    adopt_region: pulumi.Output[bool]
    """Whether an existing region with the same ID could be taken over."""
    tailnet: pulumi.Output[str]
    """The tailnet the credentials addressed (``-`` = the credential's own)."""
    created_derp_map: pulumi.Output[bool]
    """True when this resource created ``derpMap`` (then destroy removes it once empty)."""
    policy_etag: pulumi.Output[str]
    """ETag of the policy file right after this resource last wrote (or found) its region."""

    def __init__(
        self,
        resource_name: str,
        *,
        region: pulumi.Input[Mapping[str, Any]],
        omit_default_regions: pulumi.Input[bool] = False,
        adopt_region: pulumi.Input[bool] = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "region": region,
            "omit_default_regions": omit_default_regions,
            "adopt_region": adopt_region,
            "tailnet": None,
            "created_derp_map": None,
            "policy_etag": None,
        }
        super().__init__(TailnetDerpRegionProvider(), resource_name, props, opts)
