"""The Tailscale API v2, as home-derp uses it: credentials, the policy file, the device list.

Credentials are taken exactly the way the Tailscale Pulumi provider takes them (it is the Terraform
provider underneath: tailscale/terraform-provider-tailscale@0a85227
tailscale/provider_framework.go Configure and resolveValueFromFile, provider_sdk.go
validateProviderCreds), so one stack config serves both ``tailscale.Acl`` and home-derp's own
dynamic providers (docs/upstream/tailscale-api.md):

* an API access token — ``tailscale:apiKey`` / ``TAILSCALE_API_KEY``;
* an OAuth client — ``tailscale:oauthClientId`` + ``tailscale:oauthClientSecret`` /
  ``TAILSCALE_OAUTH_CLIENT_ID`` + ``TAILSCALE_OAUTH_CLIENT_SECRET`` (also ``OAUTH_CLIENT_ID`` /
  ``OAUTH_CLIENT_SECRET``), exchanged at ``POST /api/v2/oauth/token`` (client credentials);
* workload identity federation — the OAuth client id plus an identity token
  (``tailscale:identityToken`` / ``TAILSCALE_IDENTITY_TOKEN`` / ``IDENTITY_TOKEN`` / the variable
  named by ``tailscale:identityTokenEnvironmentVariableName``), or an ``audience``
  (``tailscale:audience`` / ``TAILSCALE_AUDIENCE``) with which the token is fetched from the
  runtime, GitHub Actions' OIDC endpoint here (tailscale.com@v1.102.5/wif/wif.go:121-166); the token
  is exchanged at ``POST /api/v2/oauth/token-exchange`` with ``client_id`` and ``jwt``
  (tailscale.com/client/tailscale/v2@v2.12.0 identityfederation.go:95-99).

Every value may be ``file:<path>``: the trimmed content of that file is used instead. Nothing here
is pickled or stored in state: callers build a client per operation from config they were given.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from components import http_retry
from components.errors import HomeDerpError
from components.http_retry import RATE_LIMITED, Log, RetryPolicy

DEFAULT_BASE_URL: Final = "https://api.tailscale.com"
HTTP_TIMEOUT: Final = 30.0
"""Seconds per API request; the API answers in well under a second when healthy."""
HUJSON: Final = "application/hujson"

#: Stack config keys of the Tailscale provider that carry credentials (namespace ``tailscale:``).
CONFIG_KEYS: Final = (
    "apiKey",
    "oauthClientId",
    "oauthClientSecret",
    "identityToken",
    "identityTokenEnvironmentVariableName",
    "audience",
    "tailnet",
    "baseUrl",
    "scopes",
)

#: The write-permission probe (docs/upstream/tailscale-api.md#write-permission-probe): an ETag the
#: API never makes (its ETags are quoted hashes) and a body that is not a policy (unclosed object),
#: so the probe can never be saved.
WRITE_PROBE_ETAG: Final = '"home-derp-write-permission-probe"'
WRITE_PROBE_BODY: Final = "// home-derp write-permission probe: never a valid policy\n{"

SCOPE_HINT: Final = (
    "writing the tailnet policy file needs an API access token of a user with the Owner, Admin "
    "or Network admin role (tailscale:apiKey / TAILSCALE_API_KEY), or an OAuth client or federated "
    "identity with the `policy_file` scope (write) (tailscale:oauthClientId plus "
    "tailscale:oauthClientSecret, tailscale:identityToken or tailscale:audience)"
)
#: A 401: the API does not know the credential at all — the scope is not the question. API access
#: tokens expire after 1-90 days (https://tailscale.com/kb/1101/api, docs/upstream/tailscale-api.md
#: #base-and-auth); a revoked token or a deleted OAuth client is refused the same way.
UNAUTHORIZED_HINT: Final[Mapping[str, str]] = {
    "api-key": (
        "the API access token is expired, revoked or wrong: generate a new one (admin console → "
        "Settings → Keys; they expire after 1-90 days) and set it again with `pulumi config set "
        "--secret tailscale:apiKey` (or export TAILSCALE_API_KEY)"
    ),
    "oauth": (
        "the OAuth client is deleted, or its id or secret is wrong: check tailscale:oauthClientId "
        "and tailscale:oauthClientSecret against admin console → Settings → OAuth clients"
    ),
    "federated": (
        "the federated identity was refused (expired identity token, wrong client id or "
        "audience): check tailscale:oauthClientId and tailscale:audience/identityToken"
    ),
}
DEVICES_HINT: Final = (
    "listing devices needs an API access token, or an OAuth client or federated identity with the "
    "`devices:core:read` scope"
)
MISSING_HINT: Final = (
    "run `pulumi config set --secret tailscale:apiKey` (or set tailscale:oauthClientId + "
    "`--secret tailscale:oauthClientSecret`, scope policy_file; or tailscale:oauthClientId + "
    "tailscale:audience for GitHub OIDC; or export TAILSCALE_API_KEY)"
)

AuthKind = Literal["api-key", "oauth", "federated"]


class TailscaleApiError(HomeDerpError):
    """A Tailscale API call failed; the message is what the user reads (what, and the fix)."""


class TailscaleApiUnreachable(TailscaleApiError):
    """No whole HTTP answer (DNS, connection, timeout, a cut-short body) after the retries.

    ``sent`` is True when the request may have reached the API (so a write may have landed).
    """

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class AmbiguousWrite(TailscaleApiError):
    """A policy write got no clear answer (a 5xx, no answer, a cut-short answer): it may or may
    not have been saved. ``tailnet.read_modify_write`` reads the policy again to find out."""


class AccessDenied(TailscaleApiError):
    """HTTP 401 (the credential is not valid) or 403 (it may not do this). ``what`` is what the
    API answered, ``fix`` what to do (a 401 is never a scope question)."""

    def __init__(self, what: str, fix: str, *, status: int | None = None) -> None:
        super().__init__(f"{what}; {fix}")
        self.what = what
        self.fix = fix
        self.status = status


class PreconditionFailed(TailscaleApiError):
    """HTTP 412 on ``If-Match``: someone saved the policy between our read and our write."""


# ---------------------------------------------------------------------------------------------
# Credentials (pure, given the config, the environment and a file reader)


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials; ``secret`` values never appear in messages."""

    kind: AuthKind
    base_url: str
    tailnet: str
    api_key: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    audience: str | None = None
    scopes: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """How a message names the credential."""
        return {
            "api-key": "API access token",
            "oauth": "OAuth client",
            "federated": "federated identity (workload identity federation)",
        }[self.kind]


def _config_value(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(f"tailscale:{key}")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


def _resolve_file(key: str, value: str | None, read_file: Callable[[str], str]) -> str | None:
    """``file:<path>`` → the trimmed file content (resolveValueFromFile upstream)."""
    if value is None or not value.startswith("file:"):
        return value
    path = value.removeprefix("file:")
    try:
        return read_file(path).strip() or None
    except OSError as exc:
        raise TailscaleApiError(
            f"tailscale:{key} points at file:{path}, which cannot be read ({exc.strerror}); "
            "fix the path or set the value itself"
        ) from None


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _scopes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value.split(",")
        value = parsed
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return ()


def resolve_credentials(
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    read_file: Callable[[str], str] = _read_file,
) -> Credentials:
    """Credentials as the Tailscale provider resolves them; :class:`TailscaleApiError` otherwise.

    Precedence and conflicts follow the provider (stack config first, then its environment
    variables; ``audience`` excludes a secret or a token; an API key excludes the rest).
    """

    def value(key: str, *env_names: str) -> str | None:
        raw = _first(_config_value(config, key), *(environ.get(n) or None for n in env_names))
        return _resolve_file(key, raw, read_file)

    token_var = _config_value(config, "identityTokenEnvironmentVariableName")
    api_key = value("apiKey", "TAILSCALE_API_KEY")
    client_id = value("oauthClientId", "TAILSCALE_OAUTH_CLIENT_ID", "OAUTH_CLIENT_ID")
    client_secret = value(
        "oauthClientSecret", "TAILSCALE_OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET"
    )
    token_envs = ["TAILSCALE_IDENTITY_TOKEN", "IDENTITY_TOKEN", *([token_var] if token_var else [])]
    identity_token = value("identityToken", *token_envs)
    audience = value("audience", "TAILSCALE_AUDIENCE")
    tailnet = _first(_config_value(config, "tailnet"), environ.get("TAILSCALE_TAILNET")) or "-"
    base_url = (
        _first(_config_value(config, "baseUrl"), environ.get("TAILSCALE_BASE_URL"))
        or DEFAULT_BASE_URL
    )
    where: dict[str, Any] = {"base_url": base_url.rstrip("/"), "tailnet": tailnet}
    if not any((api_key, client_id, client_secret, identity_token, audience)):
        raise TailscaleApiError(f"no Tailscale credentials: {MISSING_HINT}")
    if api_key and any((client_id, client_secret, identity_token, audience)):
        raise TailscaleApiError(
            "conflicting Tailscale credentials: tailscale:apiKey is set together with "
            "tailscale:oauthClientId/oauthClientSecret/identityToken/audience; keep one kind"
        )
    if api_key:
        return Credentials("api-key", api_key=api_key, **where)
    if audience and (client_secret or identity_token):
        raise TailscaleApiError(
            "conflicting Tailscale credentials: tailscale:audience cannot be combined with "
            "tailscale:oauthClientSecret or tailscale:identityToken"
        )
    if not client_id:
        raise TailscaleApiError(
            "tailscale:oauthClientId is not set: an OAuth client secret, identity token or "
            f"audience needs the client id too; {MISSING_HINT}"
        )
    if client_secret:
        return Credentials(
            "oauth",
            client_id=client_id,
            client_secret=client_secret,
            scopes=_scopes(config.get("tailscale:scopes")),
            **where,
        )
    if identity_token or audience:
        return Credentials(
            "federated",
            client_id=client_id,
            identity_token=identity_token,
            audience=audience,
            **where,
        )
    raise TailscaleApiError(
        "tailscale:oauthClientId needs one of tailscale:oauthClientSecret, "
        "tailscale:identityToken or tailscale:audience"
    )


# ---------------------------------------------------------------------------------------------
# HTTP


#: How hard one API call tries (docs/upstream/tailscale-api.md#rate-limits-and-errors): a drain
#: that gives up on one 503 leaves a broken relay published for hours, so retries are worth a
#: minute; longer than that, the run fails with what happened.
RETRY_POLICY: Final = RetryPolicy(attempts=5, base=1.0, cap=10.0, budget=60.0)


#: An API answer: the retried HTTP answer as it arrived (status, body, headers, tries, waited).
Response = http_retry.Answer


def validation_verdict(status: int, body: bytes) -> tuple[str | None, list[str]]:
    """(rejection or None, warnings) of an ``/acl/validate`` answer
    (docs/upstream/tailscale-api.md#policy-file-validate)."""
    parsed: Any = {}
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
    parsed = parsed if isinstance(parsed, dict) else {}
    message = str(parsed.get("message") or "")
    entries = [e for e in parsed.get("data") or [] if isinstance(e, dict)]
    warnings = [
        f"{e.get('user') or 'policy'}: {w}" for e in entries for w in e.get("warnings") or []
    ]
    errors = [e for e in entries if e.get("errors")]
    if message and (errors or not warnings):
        return f"{message} {json.dumps(parsed['data'])}" if entries else message, warnings
    if status == 400 and not message:
        return api_message(body) or "HTTP 400", warnings
    return None, warnings


def api_message(body: bytes) -> str:
    """The API's ``message`` field, or the body (bounded) when there is none."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return body.decode("utf-8", "replace").strip()[:500]
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return json.dumps(parsed)[:500]


def _tries(resp: Response) -> str:
    if resp.tries <= 1:
        return ""
    return f" ({resp.tries} tries over {resp.waited:.0f}s)"


def server_trouble(resp: Response, what: str) -> str | None:
    """The message for a 429 or 5xx that outlasted the retries, None for any other status."""
    if resp.status == RATE_LIMITED:
        after = resp.header("Retry-After")
        wait = f", and asks to wait {after}s more" if after else ""
        return (
            f"{what}: the Tailscale API rate-limited home-derp (HTTP 429{wait}){_tries(resp)}; "
            "wait a few minutes and run again (another tool using the same credential may be "
            "busy)"
        )
    if 500 <= resp.status <= 599:
        return (
            f"{what}: the Tailscale API failed (HTTP {resp.status}: {api_message(resp.body)})"
            f"{_tries(resp)}; this is on Tailscale's side: run again later "
            "(https://status.tailscale.com)"
        )
    return None


def _send(
    request: urllib.request.Request,
    timeout: float,
    base_url: str,
    *,
    safe: bool = True,
    log: Log | None = None,
) -> Response:
    """One call with the retries of :data:`RETRY_POLICY`; no answer at all is
    :class:`TailscaleApiUnreachable` (``safe=False``: the caller turns it into an ambiguity)."""
    what = f"{request.get_method()} {request.full_url}"
    try:
        answer = http_retry.send(
            request,
            timeout=timeout,
            policy=RETRY_POLICY,
            what=what,
            safe=safe,
            log=log or _stderr,
        )
    except http_retry.TransportError as err:
        tries = f" ({err.tries} tries)" if err.tries > 1 else ""
        raise TailscaleApiUnreachable(
            f"cannot reach the Tailscale API at {base_url}: {err.reason}{tries}",
            sent=err.sent,
        ) from None
    return answer


_stderr = http_retry.stderr_log("home-derp")


def github_oidc_token(
    environ: Mapping[str, str], audience: str, timeout: float, *, log: Log | None = None
) -> str:
    """An ID token from GitHub Actions' OIDC endpoint (tailscale.com@v1.102.5/wif/wif.go:121)."""
    url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    token = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url or not token:
        raise TailscaleApiError(
            "tailscale:audience needs a GitHub Actions OIDC token, but ACTIONS_ID_TOKEN_REQUEST_URL"
            "/TOKEN are not set: give the job `permissions: id-token: write`, or set "
            "tailscale:identityToken"
        )
    parts = urllib.parse.urlsplit(url)
    query = [*urllib.parse.parse_qsl(parts.query), ("audience", audience)]
    full = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    request = urllib.request.Request(
        full, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    resp = _send(request, timeout, "the GitHub OIDC endpoint", log=log)
    if resp.status // 100 != 2:
        raise TailscaleApiError(
            f"GitHub's OIDC endpoint answered HTTP {resp.status}: {api_message(resp.body)}"
        )
    try:
        value = json.loads(resp.body)["value"]
    except (ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, str) or not value.strip():
        raise TailscaleApiError("GitHub's OIDC endpoint returned no token")
    return value.strip()


class Client:
    """The calls home-derp makes, over stdlib urllib (no extra dependency in the provider)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        environ: Mapping[str, str] | None = None,
        timeout: float = HTTP_TIMEOUT,
        log: Log | None = None,
    ) -> None:
        """``log`` receives a line per retry (default: stderr, what the provider process has)."""
        self.credentials = credentials
        self.environ = os.environ if environ is None else environ
        self.timeout = timeout
        self.log = log or _stderr
        self._token: str | None = None

    @property
    def tailnet(self) -> str:
        return self.credentials.tailnet

    def _url(self, path: str) -> str:
        return f"{self.credentials.base_url}/api/v2{path}"

    def _tailnet_url(self, suffix: str) -> str:
        return self._url(f"/tailnet/{urllib.parse.quote(self.tailnet, safe='')}{suffix}")

    def _form(self, path: str, fields: Mapping[str, str], what: str) -> str:
        request = urllib.request.Request(
            self._url(path),
            data=urllib.parse.urlencode(fields).encode(),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        # Asking for a token again is harmless, so every fault may be retried.
        resp = _send(request, self.timeout, self.credentials.base_url, log=self.log)
        trouble = server_trouble(resp, f"Tailscale {what}")
        if trouble:
            raise TailscaleApiError(trouble)  # not the credential's fault: no "check the id"
        if resp.status == 401:  # the client or its proof is unknown (RFC 6749 §5.2 invalid_client)
            raise AccessDenied(
                f"Tailscale {what} failed (HTTP {resp.status}: {api_message(resp.body)})",
                UNAUTHORIZED_HINT[self.credentials.kind],
                status=resp.status,
            )
        if resp.status != 200:
            raise TailscaleApiError(
                f"Tailscale {what} failed (HTTP {resp.status}: {api_message(resp.body)}); check "
                f"tailscale:oauthClientId and its secret/identity. {SCOPE_HINT}"
            )
        try:
            token = json.loads(resp.body)["access_token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise TailscaleApiError(f"Tailscale {what} returned no access_token")
        return token

    def _bearer(self) -> str:
        creds = self.credentials
        if creds.kind == "api-key" and creds.api_key:
            return creds.api_key
        if self._token is None:
            if creds.kind == "oauth":
                # OAuth client credentials grant: https://tailscale.com/kb/1215/oauth-clients
                fields = {
                    "client_id": creds.client_id or "",
                    "client_secret": creds.client_secret or "",
                    "grant_type": "client_credentials",
                }
                if creds.scopes:
                    fields["scope"] = " ".join(creds.scopes)
                self._token = self._form("/oauth/token", fields, "OAuth token exchange")
            else:
                jwt = creds.identity_token or github_oidc_token(
                    self.environ, creds.audience or "", self.timeout, log=self.log
                )
                self._token = self._form(
                    "/oauth/token-exchange",
                    {"client_id": creds.client_id or "", "jwt": jwt},
                    "identity token exchange",
                )
        return self._token

    def request(
        self,
        method: str,
        suffix: str,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        accept: str = HUJSON,
        also_ok: tuple[int, ...] = (),
        write: bool = False,
        scope_hint: str = SCOPE_HINT,
    ) -> Response:
        """One call under ``/tailnet/{tailnet}``; 401/403/404/412, a 429 or 5xx that outlasted
        the retries, and no answer at all become clear errors.

        ``write``: the call changes the policy. It is then not sent again after a fault that may
        have come after the API saved it; such a fault raises :class:`AmbiguousWrite`.
        """
        url = self._tailnet_url(suffix)
        all_headers = {"Authorization": f"Bearer {self._bearer()}", "Accept": accept}
        all_headers.update(headers or {})
        data = None
        if body is not None:
            data = body.encode("utf-8")
            all_headers["Content-Type"] = HUJSON
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            resp = _send(
                request, self.timeout, self.credentials.base_url, safe=not write, log=self.log
            )
        except TailscaleApiUnreachable as exc:
            if write and exc.sent:
                raise AmbiguousWrite(f"{method} {url}: {exc}") from None
            raise
        if write and 500 <= resp.status <= 599:
            raise AmbiguousWrite(
                f"{method} {url}: HTTP {resp.status} ({api_message(resp.body)})"
            ) from None
        if (trouble := server_trouble(resp, f"Tailscale API {method} {url}")) is not None:
            raise TailscaleApiError(trouble)
        if resp.status in (401, 403):
            what = "rejected" if resp.status == 401 else "not allowed"
            raise AccessDenied(
                f"Tailscale API {method} {url}: HTTP {resp.status} ({what}: "
                f"{api_message(resp.body)}) with the {self.credentials.source} for tailnet "
                f"{self.tailnet!r}",
                UNAUTHORIZED_HINT[self.credentials.kind] if resp.status == 401 else scope_hint,
                status=resp.status,
            )
        if resp.status == 412:
            raise PreconditionFailed(api_message(resp.body))
        if resp.status == 404:
            raise TailscaleApiError(
                f"Tailscale API {method} {url}: HTTP 404 ({api_message(resp.body)}); check "
                f"tailscale:tailnet / TAILSCALE_TAILNET (now {self.tailnet!r}; '-' means the "
                "credential's own tailnet)"
            )
        if not 200 <= resp.status < 300 and resp.status not in also_ok:
            raise TailscaleApiError(
                f"Tailscale API {method} {url}: HTTP {resp.status}: {api_message(resp.body)}"
            )
        return resp

    # -- the policy file (GET/POST /tailnet/{tailnet}/acl, POST …/acl/validate)

    def get_policy(self) -> tuple[str, str]:
        """(HuJSON text, ETag) of the tailnet policy file."""
        resp = self.request("GET", "/acl")
        etag = resp.header("ETag")
        if not etag:
            raise TailscaleApiError("Tailscale API returned the policy file without an ETag")
        try:
            return resp.body.decode("utf-8"), etag
        except UnicodeDecodeError:
            raise TailscaleApiError("the tailnet policy file is not UTF-8") from None

    def validate_policy(self, text: str) -> list[str]:
        """Raise unless Tailscale would accept ``text`` (nothing is saved); return its warnings.

        The API answers 200 even for an invalid policy and puts the reason in ``message``
        (docs/upstream/tailscale-api.md#policy-file-validate); older docs said 400 with the same
        body. A body whose entries carry only ``warnings`` ("warning(s) found", e.g. a group not
        synced from SCIM) is not a rejection: the policy saves, and the user's own policy must
        not block home-derp's edit.
        """
        resp = self.request("POST", "/acl/validate", text, also_ok=(400,))
        rejection, warnings = validation_verdict(resp.status, resp.body)
        if rejection:
            raise TailscaleApiError(
                f"Tailscale rejected the policy file with home-derp's edit: {rejection}; "
                "nothing was written"
            )
        return warnings

    def set_policy(self, text: str, etag: str) -> str:
        """Save ``text`` if the policy is still at ``etag``; the new ETag ('' if none sent)."""
        resp = self.request("POST", "/acl", text, {"If-Match": etag}, write=True)
        return resp.header("ETag") or ""

    def check_policy_access(self, *, write: bool) -> None:
        """Prove the credential may read the policy and, with ``write``, may save it — without
        saving anything (docs/upstream/tailscale-api.md#write-permission-probe); raise
        :class:`TailscaleApiError` with the fix otherwise.

        The write half sends ``POST …/acl`` with an ``If-Match`` no policy can have and a body no
        policy can be: an authorized credential gets 412 (or 400 for the body), one that may not
        write gets 403, a revoked one 401.
        """
        self.get_policy()
        if not write:
            return
        try:
            self.request("POST", "/acl", WRITE_PROBE_BODY, {"If-Match": WRITE_PROBE_ETAG},
                         also_ok=(400,))  # fmt: skip
        except PreconditionFailed:
            return
        except AccessDenied as exc:
            raise AccessDenied(
                "the Tailscale credential may read the tailnet policy but not write it, so a "
                f"drain of a failing relay would fail: {exc.what}",
                exc.fix,
                status=exc.status,
            ) from None

    # -- devices (GET /tailnet/{tailnet}/devices)

    def list_devices(self, fields: str | None = None) -> list[dict[str, Any]]:
        """Every device of the tailnet (``devices:core:read``); each a dict as the API sends.
        ``fields="all"`` adds ``clientConnectivity``
        (docs/upstream/tailscale-api.md#devices-list)."""
        path = "/devices" if fields is None else f"/devices?fields={urllib.parse.quote(fields)}"
        resp = self.request("GET", path, accept="application/json", scope_hint=DEVICES_HINT)
        try:
            devices = json.loads(resp.body).get("devices")
        except (ValueError, AttributeError):
            devices = None
        if not isinstance(devices, list):
            raise TailscaleApiError("Tailscale API answered the device list without `devices`")
        return [d for d in devices if isinstance(d, dict)]
