"""A local stand-in for the Tailscale API v2 policy-file endpoints, for the tailnet tests.

The real API (https://api.tailscale.com) is not reachable from these machines, and tests may only
talk to loopback, so this server reproduces the parts of it that ``components/tailnet.py`` relies
on, as documented at https://tailscale.com/api (policyfile and oauth sections):

* ``GET /api/v2/tailnet/{tailnet}/acl``: the policy verbatim with ``Accept: application/hujson``
  (``Content-Type: application/hujson``), else standardized JSON; always an ``ETag`` header
  (a quoted hash of the stored text);
* ``POST /api/v2/tailnet/{tailnet}/acl``: stores the body verbatim; ``If-Match`` that does not equal
  the current ETag → ``412 {"message": "precondition failed, invalid old hash"}``; an invalid
  policy → ``400 {"message": ...}``; answers with the stored policy and its new ``ETag``;
* ``POST /api/v2/tailnet/{tailnet}/acl/validate``: ``200 {}`` when valid, and — like the real
  API — ``200 {"message": ..., "data": [...]}`` when not (nothing is stored);
* auth: ``Authorization: Bearer <token>`` or HTTP basic with the API key as user name and an empty
  password; unknown credentials → 401, known ones without the needed scope → 403;
* ``POST /api/v2/oauth/token`` (``client_credentials``, form-encoded ``client_id`` and
  ``client_secret``) → an access token carrying the OAuth client's scopes (``policy_file`` for
  read/write, ``policy_file:read`` for read only);
* ``POST /api/v2/oauth/token-exchange`` (workload identity federation: form-encoded
  ``client_id`` and ``jwt``; tailscale.com/client/tailscale/v2@v2.12.0 identityfederation.go:95-127)
  → ``{"access_token", "token_type", "expires_in", "scope"}``, 401 for an unknown client or token;
* ``GET /api/v2/tailnet/{tailnet}/devices`` → ``{"devices": [...]}`` with ``name``, ``hostname``,
  ``nodeKey``, ``addresses`` (devices.go:82-114), scope ``devices:core:read`` (or ``devices:core``);
  without ``?fields=all`` the answer omits ``enabledRoutes``, ``advertisedRoutes`` and
  ``clientConnectivity`` (``{"endpoints": ["ip:port", …], …}``, the client's magicsock endpoints:
  tailscale/tailscale@afec2d41b/publicapi/device.md:108-113, :257-268;
  tailscale/tailscale-client-go-v2@4f50555/devices.go:61-67, :187-195);
* tailnet ``-`` means the credential's own tailnet; another name than the configured one → 404.

The policy is parsed with ``json5`` (a HuJSON superset, independent of ``components/derpmap.py``),
plus the derpMap rules the control plane enforces that matter here (``Regions`` keys equal
``RegionID``, every node's ``RegionID`` equals its region's, node names unique).

Faults (:class:`Fault`, queued with :meth:`TailscaleApiPeer.fail`; they fire in queue order, each
once, on the first request that matches the head of the queue), as the API and the HTTP layer in
front of it can answer (docs/upstream/tailscale-api.md#rate-limits-and-errors):

* ``429`` with or without ``Retry-After`` (seconds or an HTTP date): the request was not acted on
  (RFC 6585 §4). Tailscale does not publish its API's limits (tailscale/tailscale#14328, open);
  its own control server answers a rate-limited request with 429 and ``Retry-After``
  (tailscale.com@v1.102.5 tstest/integration/testcontrol/testcontrol.go:953-961) and its clients
  read both header forms (control/controlclient/direct.go:641-661);
* ``5xx`` with the API's error body ``{"message": …}`` (client.go:72-82 of the Go client: every
  error status is decoded that way);
* ``after_save``: the write is saved, then the fault is the answer — the ambiguous write a
  gateway timeout or a dropped connection leaves behind;
* ``truncate``: the status line and headers of the real answer (its full ``Content-Length``),
  half of the body, then the connection closes (``http.client.IncompleteRead`` for the client);
* ``stall``: seconds to wait before answering at all (a client timeout).

Test hooks: :attr:`TailscaleApiPeer.before_write` runs inside a ``POST …/acl`` before the
``If-Match`` check (to simulate someone saving between our read and our write); :attr:`requests`
logs every request (method, path, headers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import json5

HUJSON = "application/hujson"
WRITE_SCOPE = "policy_file"
READ_SCOPE = "policy_file:read"
DEVICES_SCOPE = "devices:core:read"
#: Device fields the list sends only with ``?fields=all`` (module docstring).
ALL_ONLY = frozenset({"enabledRoutes", "advertisedRoutes", "clientConnectivity"})


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Fault:
    """One injected fault for the next request whose method and path match (see the module
    docstring); ``path`` is a suffix of the URL path (``/acl``, ``/acl/validate``,
    ``/oauth/token``, ``/devices``)."""

    method: str
    path: str
    status: int | None = 503
    """The status to answer with (None: the real answer, for ``truncate``/``stall`` alone)."""
    retry_after: str | None = None
    after_save: bool = False
    truncate: bool = False
    stall: float = 0.0


FAULT_MESSAGES = {429: "rate limit exceeded", 500: "internal server error"}


@dataclass
class OAuthClient:
    secret: str
    scopes: tuple[str, ...]


@dataclass
class TailscaleApiPeer:
    """State of one fake tailnet; :meth:`start` serves it on 127.0.0.1 (use as a context)."""

    policy: str = "{}\n"
    tailnet: str = "example.com"
    api_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> scopes
    oauth_clients: dict[str, OAuthClient] = field(default_factory=dict)  # client id -> client
    federated: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    """Federated identities: client id -> (the ID token it accepts, scopes)."""
    devices: list[dict[str, Any]] = field(default_factory=list)
    validate_failure_status: int = 200  # the current API says 200; its older docs said 400
    validate_warnings: dict[str, list[str]] = field(default_factory=dict)
    """Warnings /acl/validate reports for a valid policy, per ``user`` (e.g. a group not synced
    from SCIM): ``{"message": "warning(s) found", "data": [{"user", "warnings"}]}``
    (tailscale/tailscale@afec2d41b publicapi/tailnet.md:485-521). POST /acl saves regardless."""
    before_write: Callable[[TailscaleApiPeer], None] | None = None
    requests: list[Request] = field(default_factory=list)
    writes: int = 0
    faults: list[Fault] = field(default_factory=list)
    """Queued faults, fired in order (:meth:`fail`)."""
    _tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle
    @property
    def base_url(self) -> str:
        assert self._server is not None, "call start() first"
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def start(self) -> TailscaleApiPeer:
        api = self

        class Handler(_Handler):
            state = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TailscaleApiPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests
    @property
    def etag(self) -> str:
        return etag_of(self.policy)

    def edit(self, text: str) -> None:
        """Save a new policy as another admin would (changes the ETag)."""
        with self._lock:
            self.policy = text

    def fail(self, *faults: Fault) -> None:
        """Queue faults; the head of the queue answers the next request that matches it."""
        with self._lock:
            self.faults.extend(faults)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first queued fault, if this request matches it (faults fire in queue order)."""
        with self._lock:
            head = self.faults[0] if self.faults else None
            if head is not None and head.method == method and path.endswith(head.path):
                return self.faults.pop(0)
        return None

    def calls(self, method: str, suffix: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]


def _fault_answer(fault: Fault) -> tuple[int, bytes, str, dict[str, str]]:
    """(status, body, content type, headers) of an injected status fault."""
    status = fault.status or 503
    message = FAULT_MESSAGES.get(status, "service unavailable")
    body = json.dumps({"message": message, "status": status}).encode()
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    return status, body, "application/json", headers


def etag_of(text: str) -> str:
    return '"' + hashlib.sha256(text.encode("utf-8")).hexdigest() + '"'


def policy_problems(text: str) -> list[str]:
    """Why the control plane would refuse this policy (empty when it would accept it)."""
    try:
        policy = json5.loads(text)
    except ValueError as err:
        return [f"parsing policy: {err}"]
    if not isinstance(policy, dict):
        return ["policy must be an object"]
    derp_map = policy.get("derpMap")
    if derp_map is None:
        return []
    if not isinstance(derp_map, dict):
        return ["derpMap must be an object"]
    regions = derp_map.get("Regions", {})
    if not isinstance(regions, dict):
        return ["derpMap.Regions must be an object"]
    problems: list[str] = []
    names: set[str] = set()
    for key, region in regions.items():
        if not isinstance(region, dict) or str(region.get("RegionID")) != key:
            problems.append(f"derpMap region {key}: RegionID must equal the key")
            continue
        for node in region.get("Nodes") or []:
            if not isinstance(node, dict) or node.get("RegionID") != region["RegionID"]:
                problems.append(f"derpMap region {key}: node RegionID must equal the region's")
                continue
            if node.get("Name") in names:
                problems.append(f"derpMap: duplicate node name {node.get('Name')!r}")
            names.add(str(node.get("Name")))
    return problems


class _Handler(BaseHTTPRequestHandler):
    state: TailscaleApiPeer
    protocol_version = "HTTP/1.1"
    _fault: Fault | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes | str | dict[str, Any],
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode("utf-8") if isinstance(body, str) else body
        fault, self._fault = self._fault, None
        if fault is not None and fault.after_save and fault.status is not None:
            status, data, content_type, headers = _fault_answer(fault)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if fault is not None and fault.truncate:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True  # the rest never comes
            return
        self.wfile.write(data)

    def _injected(self) -> bool:
        """Take this request's fault; True when the fault is the whole answer (already sent)."""
        self._fault = self.state.take_fault(self.command, urllib.parse.urlsplit(self.path).path)
        fault = self._fault
        if fault is None:
            return False
        if fault.stall:
            time.sleep(fault.stall)
        if fault.status is None or fault.after_save or fault.truncate:
            return False  # the real answer, saved first / cut short in _send
        self._send(*_fault_answer(fault))
        return True

    def _record(self, body: bytes) -> None:
        with self.state._lock:
            self.state.requests.append(
                Request(self.command, self.path, dict(self.headers.items()), body)
            )

    def _scopes(self) -> tuple[str, ...] | None:
        auth = self.headers.get("Authorization", "")
        token = None
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        elif auth.startswith("Basic "):
            try:
                user, _, _password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
            token = user
        if token is None:
            return None
        if token in self.state.api_keys:
            return self.state.api_keys[token]
        return self.state._tokens.get(token)

    def _authorize(self, needed: str) -> bool:
        scopes = self._scopes()
        if scopes is None:
            self._send(401, {"message": "API token invalid"})
            return False
        ok = (
            needed in scopes
            or (needed == READ_SCOPE and WRITE_SCOPE in scopes)
            or (needed == DEVICES_SCOPE and "devices:core" in scopes)
        )
        if not ok:
            self._send(
                403, {"message": f"calling actor does not have enough permissions ({needed})"}
            )
            return False
        return True

    def _route(self) -> tuple[str, str] | None:
        """("acl" | "validate", tailnet) for the policy paths, else None."""
        path = urllib.parse.urlsplit(self.path).path
        parts = path.split("/")
        # ['', 'api', 'v2', 'tailnet', '<tailnet>', 'acl'(, 'validate')]
        if len(parts) in (6, 7) and parts[1:4] == ["api", "v2", "tailnet"] and parts[5] == "acl":
            if len(parts) == 6:
                return "acl", urllib.parse.unquote(parts[4])
            if parts[6] == "validate":
                return "validate", urllib.parse.unquote(parts[4])
        return None

    def _tailnet_ok(self, tailnet: str) -> bool:
        if tailnet in ("-", self.state.tailnet):
            return True
        self._send(404, {"message": "tailnet not found"})
        return False

    # -- verbs
    def do_GET(self) -> None:
        self._record(b"")
        if self._injected():
            return
        parts = urllib.parse.urlsplit(self.path).path.split("/")
        if len(parts) == 6 and parts[1:4] == ["api", "v2", "tailnet"] and parts[5] == "devices":
            if self._authorize(DEVICES_SCOPE) and self._tailnet_ok(urllib.parse.unquote(parts[4])):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                devices = self.state.devices
                if query.get("fields") != ["all"]:
                    devices = [{k: v for k, v in d.items() if k not in ALL_ONLY} for d in devices]
                self._send(200, {"devices": devices})
            return
        route = self._route()
        if route is None or route[0] != "acl":
            self._send(404, {"message": "not found"})
            return
        if not self._authorize(READ_SCOPE) or not self._tailnet_ok(route[1]):
            return
        with self.state._lock:
            text = self.state.policy
        headers = {"ETag": etag_of(text)}
        if HUJSON in self.headers.get("Accept", ""):
            self._send(200, text, HUJSON, headers)
        else:
            self._send(200, json.dumps(json5.loads(text), indent=2), "application/json", headers)

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        if self._injected():
            return
        path = urllib.parse.urlsplit(self.path).path
        if path == "/api/v2/oauth/token":
            self._token(body)
            return
        if path == "/api/v2/oauth/token-exchange":
            self._token_exchange(body)
            return
        route = self._route()
        if route is None:
            self._send(404, {"message": "not found"})
            return
        kind, tailnet = route
        needed = READ_SCOPE if kind == "validate" else WRITE_SCOPE
        if not self._authorize(needed) or not self._tailnet_ok(tailnet):
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self._send(400, {"message": "policy is not UTF-8"})
            return
        problems = policy_problems(text)
        if kind == "validate":
            # The real endpoint reports an invalid policy with 200 and a message.
            if problems:
                status = self.state.validate_failure_status
                self._send(status, {"message": "; ".join(problems), "data": []})
            elif self.state.validate_warnings:
                data = [{"user": u, "warnings": w} for u, w in self.state.validate_warnings.items()]
                self._send(200, {"message": "warning(s) found", "data": data})
            else:
                self._send(200, {})
            return
        if self.state.before_write is not None:
            self.state.before_write(self.state)
        with self.state._lock:
            if_match = self.headers.get("If-Match")
            if if_match is not None and if_match != etag_of(self.state.policy):
                self._send(412, {"message": "precondition failed, invalid old hash"})
                return
            if problems:
                self._send(400, {"message": "; ".join(problems)})
                return
            self.state.policy = text
            self.state.writes += 1
        self._send(200, text, HUJSON, {"ETag": etag_of(text)})

    def _token_exchange(self, body: bytes) -> None:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        client_id = (form.get("client_id") or [""])[0]
        jwt = (form.get("jwt") or [""])[0]
        identity = self.state.federated.get(client_id)
        if identity is None or not secrets.compare_digest(identity[0], jwt):
            self._send(401, {"message": "invalid federated identity or token"})
            return
        token = "tskey-fedtoken-" + secrets.token_hex(8)
        with self.state._lock:
            self.state._tokens[token] = identity[1]
        self._send(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": " ".join(identity[1]),
            },
        )

    def _token(self, body: bytes) -> None:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        client_id = (form.get("client_id") or [""])[0]
        client_secret = (form.get("client_secret") or [""])[0]
        client = self.state.oauth_clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, client_secret):
            self._send(401, {"message": "invalid client credentials"})
            return
        token = "tskey-oauthtoken-" + secrets.token_hex(8)
        with self.state._lock:
            self.state._tokens[token] = client.scopes
        self._send(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": " ".join(client.scopes),
            },
        )
