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

from components.errors import HomeDerpError

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

SCOPE_HINT: Final = (
    "writing the tailnet policy file needs an API access token of a user with the Owner, Admin "
    "or Network admin role (tailscale:apiKey / TAILSCALE_API_KEY), or an OAuth client or federated "
    "identity with the `policy_file` scope (write) (tailscale:oauthClientId plus "
    "tailscale:oauthClientSecret, tailscale:identityToken or tailscale:audience)"
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
    """No HTTP answer at all (DNS, connection, timeout): nothing was judged."""


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


@dataclass
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


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


def _send(request: urllib.request.Request, timeout: float, base_url: str) -> Response:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(resp.status, resp.read(), dict(resp.headers.items()))
    except urllib.error.HTTPError as err:
        return Response(err.code, err.read(), dict(err.headers.items()))
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TailscaleApiUnreachable(
            f"cannot reach the Tailscale API at {base_url}: {reason}"
        ) from None


def github_oidc_token(environ: Mapping[str, str], audience: str, timeout: float) -> str:
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
    resp = _send(request, timeout, "the GitHub OIDC endpoint")
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
    ) -> None:
        self.credentials = credentials
        self.environ = os.environ if environ is None else environ
        self.timeout = timeout
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
        resp = _send(request, self.timeout, self.credentials.base_url)
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
                    self.environ, creds.audience or "", self.timeout
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
    ) -> Response:
        """One call under ``/tailnet/{tailnet}``; 401/403/404/412 become clear errors."""
        url = self._tailnet_url(suffix)
        all_headers = {"Authorization": f"Bearer {self._bearer()}", "Accept": accept}
        all_headers.update(headers or {})
        data = None
        if body is not None:
            data = body.encode("utf-8")
            all_headers["Content-Type"] = HUJSON
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        resp = _send(request, self.timeout, self.credentials.base_url)
        if resp.status in (401, 403):
            what = "rejected" if resp.status == 401 else "not allowed"
            raise TailscaleApiError(
                f"Tailscale API {method} {url}: HTTP {resp.status} ({what}: "
                f"{api_message(resp.body)}) with the {self.credentials.source} for tailnet "
                f"{self.tailnet!r}; " + SCOPE_HINT
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
        resp = self.request("POST", "/acl", text, {"If-Match": etag})
        return resp.header("ETag") or ""

    # -- devices (GET /tailnet/{tailnet}/devices)

    def list_devices(self, fields: str | None = None) -> list[dict[str, Any]]:
        """Every device of the tailnet (``devices:core:read``); each a dict as the API sends.
        ``fields="all"`` adds ``clientConnectivity``
        (docs/upstream/tailscale-api.md#devices-list)."""
        path = "/devices" if fields is None else f"/devices?fields={urllib.parse.quote(fields)}"
        resp = self.request("GET", path, accept="application/json")
        try:
            devices = json.loads(resp.body).get("devices")
        except (ValueError, AttributeError):
            devices = None
        if not isinstance(devices, list):
            raise TailscaleApiError("Tailscale API answered the device list without `devices`")
        return [d for d in devices if isinstance(d, dict)]
