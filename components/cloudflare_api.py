"""The Cloudflare API v4, as home-derp reads it: the token, the zone, the relay's records.

Read-only and bounded (a few seconds per request, a bounded number of pages), over stdlib urllib:
the program asks it at evaluation time (``components.dns`` adopts an existing record) and the
``doctor`` command asks it before anything is deployed. It never writes; the Pulumi provider does.

The base URL and the token are found the way the Cloudflare provider finds them
(terraform-provider-cloudflare@v5.19.1 internal/provider.go:367-377, the provider inside
pulumi-cloudflare 6.x; docs/upstream/cloudflare.md#provider-config): the ``cloudflare:baseUrl`` /
``cloudflare:apiToken`` stack config first, then ``CLOUDFLARE_BASE_URL`` / ``CLOUDFLARE_API_TOKEN``.

The token is a secret: it is sent in the ``Authorization`` header and nowhere else. It is kept out
of every message, ``repr`` and exception this module makes (and scrubbed from the API's own text,
in case a proxy echoes it).
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from components import http_retry
from components.errors import HomeDerpError
from components.http_retry import RATE_LIMITED, Log, RetryPolicy

#: cloudflare/cloudflare-go@16ae7fd option/requestoption.go:276 (the provider's client).
DEFAULT_BASE_URL: Final = "https://api.cloudflare.com/client/v4"
#: Stack config keys and environment variables the provider reads (docs/upstream/cloudflare.md).
BASE_URL_CONFIG: Final = "cloudflare:baseUrl"
BASE_URL_ENV: Final = "CLOUDFLARE_BASE_URL"
TOKEN_CONFIG: Final = "cloudflare:apiToken"
TOKEN_ENV: Final = "CLOUDFLARE_API_TOKEN"

HTTP_TIMEOUT: Final = 5.0
"""Seconds per request: the API answers in well under a second; evaluation must not hang."""
MAX_TIMEOUT: Final = 30.0
#: How hard one call tries (docs/upstream/cloudflare.md#rate-limits-and-errors). The lookup runs
#: at every preview, so the budget is short; a deploy whose lookup still fails stops
#: (components/dns_adoption.py) rather than guessing.
RETRY_POLICY: Final = RetryPolicy(attempts=4, base=1.0, cap=4.0, budget=20.0)
PER_PAGE: Final = 100
"""The API's default page size for DNS records (docs/upstream/cloudflare.md#pagination)."""
MAX_PAGES: Final = 20
"""Pages read at most per listing; a name has a handful of records, never thousands."""

TOKEN_HINT: Final = (
    "create an API token with the permissions Zone:Read and DNS:Edit on the zone "
    "(dash.cloudflare.com → My Profile → API Tokens → Create Token → 'Edit zone DNS'), then "
    "`pulumi config set --secret cloudflare:apiToken` or export CLOUDFLARE_API_TOKEN"
)

#: Error codes seen with a token problem (docs/upstream/cloudflare.md#auth-errors).
CODE_INVALID_TOKEN: Final = 1000  # GET /user/tokens/verify, HTTP 401: "Invalid API Token"
CODE_INVALID_HEADERS: Final = 6003  # HTTP 400: "Invalid request headers" (malformed token)
CODE_BAD_AUTH_FORMAT: Final = 6111  # in error_chain: "Invalid format for Authorization header"
CODE_ACCESS_TOKEN: Final = 9109  # HTTP 403: "Invalid access token" / "Cannot use … from location"
CODE_AUTH_ERROR: Final = 10000  # HTTP 403: "Authentication error" (token lacks the permission)
#: POST of a record equal to one that exists (docs/upstream/cloudflare.md#identical-record).
CODE_IDENTICAL_RECORD: Final = 81058


class CloudflareApiError(HomeDerpError):
    """A Cloudflare API call failed; the message says what is wrong and the likely fix.

    ``status`` is the HTTP status (None when the API was not reached), ``codes`` the API's error
    codes (``errors[].code`` and their ``error_chain``), in order.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: Sequence[int] = (),
        fix: str | None = None,
    ) -> None:
        super().__init__(f"{message}: {fix}" if fix else message)
        self.status = status
        self.codes: tuple[int, ...] = tuple(codes)
        self.what = message
        """What went wrong, without the fix (the doctor shows the two apart)."""
        self.fix = fix

    def __repr__(self) -> str:
        return f"CloudflareApiError({str(self)!r}, status={self.status!r}, codes={self.codes!r})"


@dataclass(frozen=True)
class TokenStatus:
    """``GET /user/tokens/verify``'s result."""

    id: str
    status: str  # "active" | "disabled" | "expired"

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    status: str  # "initializing" | "pending" | "active" | "moved"


@dataclass(frozen=True)
class DnsRecord:
    id: str
    type: str
    name: str
    content: str
    proxied: bool
    ttl: int
    comment: str | None


# ---------------------------------------------------------------------------------------------
# Where to ask, with what (pure over config and environment; the edges below read the live ones)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def resolve_base_url(config: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """``cloudflare:baseUrl``, else ``CLOUDFLARE_BASE_URL``, else the public API (no trailing /).

    The provider's precedence: internal/provider.go:367-371 (docs/upstream/cloudflare.md).
    """
    value = _text(config.get(BASE_URL_CONFIG)) or _text(environ.get(BASE_URL_ENV))
    return (value or DEFAULT_BASE_URL).rstrip("/")


def resolve_token(config: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """``cloudflare:apiToken``, else ``CLOUDFLARE_API_TOKEN`` (internal/provider.go:373-377)."""
    return _text(config.get(TOKEN_CONFIG)) or _text(environ.get(TOKEN_ENV))


def runtime_config() -> dict[str, str]:
    """The ``cloudflare:`` keys this module reads, from the running Pulumi program's config."""
    from pulumi.runtime import config as runtime_config

    values = {}
    for key in (BASE_URL_CONFIG, TOKEN_CONFIG):
        value = runtime_config.get_config(key)
        if isinstance(value, str):
            values[key] = value
    return values


def client_from_runtime(environ: Mapping[str, str] | None = None) -> Client | None:
    """A client with the stack's token and base URL, or None when no token is configured; its
    retries are logged through ``pulumi.log`` (the program has an engine connection)."""
    import pulumi

    environ = os.environ if environ is None else environ
    config = runtime_config()
    token = resolve_token(config, environ)
    if token is None:
        return None
    return Client(
        token, base_url=resolve_base_url(config, environ), log=lambda m: pulumi.log.info(m)
    )


# ---------------------------------------------------------------------------------------------
# The response envelope (docs/upstream/cloudflare.md#envelope)


def _codes(errors: Any) -> list[int]:
    codes: list[int] = []
    for item in errors if isinstance(errors, list) else []:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("code"), int):
            codes.append(item["code"])
        codes.extend(_codes(item.get("error_chain")))
    return codes


def _messages(errors: Any) -> list[str]:
    out: list[str] = []
    for item in errors if isinstance(errors, list) else []:
        if not isinstance(item, dict):
            continue
        text = str(item.get("message") or "").strip()
        if isinstance(item.get("code"), int):
            text = f"{text} [{item['code']}]"
        if text:
            out.append(text)
        out.extend(_messages(item.get("error_chain")))
    return out


class Client:
    """The read-only calls home-derp makes; ``repr`` shows the base URL, never the token."""

    def __init__(
        self,
        token: str,
        base_url: str | None = None,
        timeout: float = HTTP_TIMEOUT,
        *,
        per_page: int = PER_PAGE,
        log: Log | None = None,
    ) -> None:
        """``log`` receives a line per retry (default: stderr)."""
        if not token or not token.strip():
            raise CloudflareApiError(f"no Cloudflare API token: {TOKEN_HINT}")
        self._token = token.strip()
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        # Bounded both ways: a zero/negative timeout would block or fail every call.
        self.timeout = min(max(float(timeout), 0.1), MAX_TIMEOUT)
        self.per_page = max(1, int(per_page))
        self._log = log or http_retry.stderr_log("home-derp")

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, timeout={self.timeout!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    # -- one request

    def _get(
        self, path: str, query: Sequence[tuple[str, str]] = (), *, what: str
    ) -> dict[str, Any]:
        """The parsed envelope of ``GET path`` when ``success``; else a clear error."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(list(query))
        request = urllib.request.Request(
            url,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json",
                "User-Agent": "home-derp",
            },
        )
        try:
            answer = http_retry.send(
                request,
                timeout=self.timeout,
                policy=RETRY_POLICY,
                what=f"Cloudflare API {what}",
                safe=True,  # every call here is a GET
                log=lambda line: self._log(self._scrub(line)),
            )
        except http_retry.TransportError as err:
            tries = f" ({err.tries} tries)" if err.tries > 1 else ""
            raise CloudflareApiError(
                f"cannot reach the Cloudflare API at {self.base_url} ({what}): "
                f"{self._scrub(err.reason)}{tries}; check the network and DNS of this machine "
                "(or cloudflare:baseUrl / CLOUDFLARE_BASE_URL if set)"
            ) from None
        status, body = answer.status, answer.body
        try:
            envelope = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            envelope = None
        if http_retry.retryable_status(status):
            raise self._server_trouble(answer, envelope, what)
        if not isinstance(envelope, dict):
            snippet = self._scrub(body.decode("utf-8", "replace").strip()[:200])
            raise CloudflareApiError(
                f"Cloudflare API {what}: HTTP {status} without a JSON envelope ({snippet!r}); "
                f"is {self.base_url} the Cloudflare API v4?",
                status=status,
            )
        if envelope.get("success") is True and 200 <= status < 300:
            return envelope
        raise self._failure(status, envelope, what)

    def _server_trouble(
        self, answer: http_retry.Answer, envelope: Any, what: str
    ) -> CloudflareApiError:
        """A 429 or 5xx that outlasted the retries: Cloudflare's side, never the token's."""
        errors = envelope.get("errors") if isinstance(envelope, dict) else None
        said = self._scrub("; ".join(_messages(errors))) or f"HTTP {answer.status}"
        tries = f" ({answer.tries} tries over {answer.waited:.0f}s)" if answer.tries > 1 else ""
        if answer.status == RATE_LIMITED:
            after = answer.header("Retry-After")
            wait = f"; it asks to wait {after}s" if after else ""
            fix = (
                f"rate limited by Cloudflare{wait} (1200 requests per 5 minutes per user, shared "
                "with the dashboard and other tools): wait and run again"
            )
        else:
            fix = "Cloudflare had a problem on its side: run again later (cloudflarestatus.com)"
        return CloudflareApiError(
            f"Cloudflare API {what}: HTTP {answer.status} ({said}){tries}: {fix}",
            status=answer.status,
            codes=_codes(errors),
        )

    def _failure(self, status: int, envelope: Mapping[str, Any], what: str) -> CloudflareApiError:
        errors = envelope.get("errors")
        codes = _codes(errors)
        said = self._scrub("; ".join(_messages(errors)) or "no error message")
        head = f"Cloudflare API {what}: HTTP {status} ({said})"
        if CODE_INVALID_HEADERS in codes or CODE_BAD_AUTH_FORMAT in codes:
            fix = (
                "the token is not in the format of an API token (a Global API Key or a token "
                "with stray quotes/whitespace is refused this way); " + TOKEN_HINT
            )
        elif status == 401 or CODE_INVALID_TOKEN in codes:
            fix = (
                "the token is not valid (mistyped, rolled or deleted); an account-owned token "
                "is verified per account instead, so prefer a user token; " + TOKEN_HINT
            )
        elif status == 403 and CODE_ACCESS_TOKEN in codes and "location" in said.lower():
            fix = (
                "the token has an IP address filter that excludes this machine; widen its "
                "'Client IP Address Filtering' or run from an allowed address"
            )
        elif status == 403:
            fix = "the token is not valid or may not do this; " + TOKEN_HINT
        else:
            fix = "see the message above"
        return CloudflareApiError(head, status=status, codes=codes, fix=fix)

    def _list(
        self, path: str, query: Sequence[tuple[str, str]], *, what: str
    ) -> list[dict[str, Any]]:
        """Every ``result`` item of a paginated listing (docs/upstream/cloudflare.md#pagination).

        Stops at the last page ``result_info`` announces, or at an empty page (the SDK's rule,
        cloudflare/cloudflare-go@16ae7fd packages/pagination/pagination.go:215-218), and reads
        at most :data:`MAX_PAGES` pages.
        """
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            envelope = self._get(
                path,
                [*query, ("page", str(page)), ("per_page", str(self.per_page))],
                what=what,
            )
            result = envelope.get("result")
            if not isinstance(result, list):
                raise CloudflareApiError(
                    f"Cloudflare API {what}: the answer has no result list", status=200
                )
            items.extend(r for r in result if isinstance(r, dict))
            info = envelope.get("result_info")
            info = info if isinstance(info, dict) else {}
            total_pages = info.get("total_pages")
            if not isinstance(total_pages, int):
                total, per = info.get("total_count"), info.get("per_page")
                if isinstance(total, int) and isinstance(per, int) and per > 0:
                    total_pages = -(-total // per)
            if not result or not isinstance(total_pages, int) or page >= total_pages:
                return items
        raise CloudflareApiError(
            f"Cloudflare API {what}: more than {MAX_PAGES} pages of {self.per_page}; "
            "narrow the query"
        )

    # -- the calls

    def verify_token(self) -> TokenStatus:
        """``GET /user/tokens/verify``: is the token valid, and its status."""
        envelope = self._get("/user/tokens/verify", what="verify the API token")
        result = envelope.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("status"), str):
            raise CloudflareApiError(
                "Cloudflare API verify the API token: the answer has no token status", status=200
            )
        return TokenStatus(id=str(result.get("id") or ""), status=result["status"])

    def find_zone(self, name: str) -> Zone | None:
        """The zone called ``name`` the token can read (``GET /zones?name=…``), or None.

        A token only lists the zones it has access to, so None means "no such zone, or the token
        may not read it". More than one match is an error, as in the provider's ``getZone``
        (internal/services/zone/data_source.go:81).
        """
        wanted = name.strip().rstrip(".").lower()
        items = self._list(
            "/zones", [("name", wanted), ("match", "all")], what=f"find the zone {wanted}"
        )
        zones = [_zone(item) for item in items]
        found = [z for z in zones if z.name.lower() == wanted]
        if len(found) > 1:
            ids = ", ".join(z.id for z in found)
            raise CloudflareApiError(
                f"Cloudflare API find the zone {wanted}: {len(found)} zones have that name "
                f"({ids}); set home-derp:zoneId to the one to use"
            )
        return found[0] if found else None

    def get_zone(self, zone_id: str) -> Zone:
        """``GET /zones/{zone_id}``: the zone (a 403/404 says the token cannot read it)."""
        envelope = self._get(
            f"/zones/{urllib.parse.quote(zone_id, safe='')}", what=f"read the zone {zone_id}"
        )
        result = envelope.get("result")
        if not isinstance(result, dict):
            raise CloudflareApiError(
                f"Cloudflare API read the zone {zone_id}: the answer has no zone", status=200
            )
        return _zone(result)

    def find_records(
        self, zone_id: str, hostname: str, types: Sequence[str] = ("AAAA", "A")
    ) -> list[DnsRecord]:
        """The records named exactly ``hostname`` of each of ``types``, in that order.

        ``GET /zones/{zone_id}/dns_records?name.exact=…&type=…``, one listing per type (the
        ``type`` filter takes one value); name filters are case-insensitive
        (docs/upstream/cloudflare.md#list-records).
        """
        wanted = hostname.strip().rstrip(".").lower()
        path = f"/zones/{urllib.parse.quote(zone_id, safe='')}/dns_records"
        records: list[DnsRecord] = []
        for kind in types:
            items = self._list(
                path,
                [("name.exact", wanted), ("type", kind.upper()), ("match", "all")],
                what=f"list the {kind.upper()} records of {wanted}",
            )
            for item in items:
                record = _record(item)
                # The filters are the API's; checking again costs nothing and guards a proxy.
                if record.name.lower() == wanted and record.type == kind.upper():
                    records.append(record)
        return records


def _zone(item: Mapping[str, Any]) -> Zone:
    return Zone(
        id=str(item.get("id") or ""),
        name=str(item.get("name") or ""),
        status=str(item.get("status") or ""),
    )


def _record(item: Mapping[str, Any]) -> DnsRecord:
    ttl = item.get("ttl")
    comment = item.get("comment")
    return DnsRecord(
        id=str(item.get("id") or ""),
        type=str(item.get("type") or "").upper(),
        name=str(item.get("name") or ""),
        content=str(item.get("content") or ""),
        proxied=item.get("proxied") is True,
        ttl=ttl if isinstance(ttl, int) else 1,
        comment=comment if isinstance(comment, str) and comment else None,
    )
