"""A Cloudflare API v4 peer on loopback: tokens, zones and DNS records, as home-derp uses them.

The real API (https://api.cloudflare.com/client/v4) is not reachable from the test machines, and
tests may only talk to loopback, so this server answers like it, written from Cloudflare's API
reference and the sources of the clients that talk to it (anchors: docs/upstream/cloudflare.md):

* **Envelope** (#envelope): every answer is JSON ``{"success", "errors": [{"code", "message"}],
  "messages": [...], "result"}``; listings add ``"result_info": {"page", "per_page", "count",
  "total_count", "total_pages"}`` (cloudflare/cloudflare-go@v0.116.0 cloudflare.go:436-457;
  https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/list/).
* **Auth** (#auth-errors): ``Authorization: Bearer <token>``. Cloudflare's own answers to bad
  tokens are not in its reference; these are the live answers favonia/cloudflare-ddns@v1.17.0
  checks against the real API (scripts/github-actions/cloudflare-auth-error-watch/cases.go:32-75,
  snapshot 2026-06-30): ``GET /zones`` with a well-formed unknown token → HTTP 403 ``9109 "Invalid
  access token"`` (also used for a disabled/expired token outside ``verify`` — an assumption, no
  source shows that case), with a malformed one (``abc-def``) → HTTP 400 ``6003 "Invalid request
  headers"`` with ``error_chain`` ``[6111 "Invalid format for Authorization header"]``. The peer's
  format rule (40+ of ``A-Za-z0-9_-``; tokens it knows always pass) is an approximation: the
  documented example token is 40 such characters, the real rule is unpublished. ``GET
  /user/tokens/verify`` with an unknown token → HTTP 401 ``1000 "Invalid API Token"`` (observed:
  github.com/jackluson/sync-your-cookie/issues/47 and others). A valid token that may not do the
  call → HTTP 403 ``10000 "Authentication error"`` (cloudflare/cloudflare-go@v0.116.0
  errors_test.go:16-19; cloudflare.go:327-331 maps 403 to "authentication").
* **Verify** (#verify): ``GET /user/tokens/verify`` → ``{"id", "status"}`` with ``status`` one of
  ``active``, ``disabled``, ``expired`` (https://developers.cloudflare.com/api/resources/user/
  subresources/tokens/methods/verify/), and for an active token the message ``10000 "This API
  Token is valid and active"`` (observed: github.com/putyourlightson/craft-cloudflare/issues/88).
* **Zones** (#zones): ``GET /zones?name=…`` lists the zones the token may read whose name equals
  ``name`` (``equal`` is the default operator, case-insensitive: the API has explicit
  ``*_case_sensitive`` operators; cloudflare/cloudflare-go@16ae7fd zones/zone.go:557-568);
  ``GET /zones/{id}`` → the zone, or 403 ``10000`` when the token may not read it (also for a zone
  that does not exist: the peer does not reveal which).
* **Records** (#list-records): ``GET /zones/{id}/dns_records`` filters by ``name`` / ``name.exact``
  (case-insensitive, dns/record.go:6914-6923) and ``type`` (record.go:6839-6840), paginated by
  ``page``/``per_page`` (record.go:6820-6823; default 100, cloudflare-go@v0.116.0 dns.go
  listDNSRecordsDefaultPageSize); ``GET /zones/{id}/dns_records/{record_id}`` → one record (what the
  provider's import reads, terraform-provider-cloudflare@v5.19.1
  internal/services/dns_record/resource.go:254-262).
* **Create** (#identical-record): ``POST /zones/{id}/dns_records`` adds a record; one equal in
  type, name and content to an existing one → HTTP 400 ``81058 "An identical record already
  exists."`` (observed: github.com/jeessy2/ddns-go/issues/1378); an A/AAAA where a CNAME is →
  ``81054 "A CNAME record with that host already exists."`` (observed:
  github.com/favonia/cloudflare-ddns/issues/990). Another content for the same name is *accepted*:
  a second record, a round-robin (github.com/cloudflare/node-cloudflare/issues/46).
  ``DELETE /zones/{id}/dns_records/{record_id}`` → ``{"id"}``.
* **Overwrite** (#overwrite-record): ``PUT /zones/{id}/dns_records/{record_id}`` replaces the whole
  record with the body (what the provider's update sends: cloudflare/cloudflare-go@16ae7fd
  dns/record.go:79-91, ``RecordService.Update`` is ``http.MethodPut``; ``Edit`` is the PATCH);
  fields left out take their defaults; the result is the record.

* **Faults** (#rate-limits-and-errors), queued with :meth:`CloudflarePeer.fail` and fired in
  order, each once, on the first request matching the head of the queue: ``429`` with
  ``Retry-After`` (seconds, rounded up; "only returned when the request has exceeded the rate
  limit": https://developers.cloudflare.com/fundamentals/api/reference/limits/) and the error
  ``971 "Please wait and consider throttling your request speed"`` (observed:
  github.com/cloudflare/workers-sdk/issues/10025); a ``5xx`` from Cloudflare's edge as its branded
  HTML page, not an API envelope (observed for APIs behind that edge:
  github.com/orgs/supabase/discussions/52588; the page's text here is the peer's own); a body cut
  short (full ``Content-Length``, half the bytes, then the connection closes); a stall.

Test hooks: :meth:`CloudflarePeer.add_token`, :meth:`add_zone`, :meth:`add_record` set the state;
:attr:`requests` logs every request (method, path, query); :attr:`max_per_page` caps page sizes.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A well-formed token, approximately (see the module docstring, #auth-errors).
_TOKEN_FORMAT = re.compile(r"^[A-Za-z0-9_-]{40,}$")


@dataclass
class Token:
    id: str
    status: str = "active"  # "active" | "disabled" | "expired"
    zones: set[str] | None = None
    """Zone ids the token may read (Zone:Read); None = every zone."""
    dns_read: bool = True
    dns_edit: bool = True


@dataclass
class PeerZone:
    id: str
    name: str
    status: str = "active"


@dataclass
class PeerRecord:
    id: str
    zone_id: str
    type: str
    name: str
    content: str
    ttl: int = 1
    proxied: bool = False
    comment: str | None = None

    def as_json(self, zone_name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "zone_id": self.zone_id,
            "zone_name": zone_name,
            "name": self.name,
            "type": self.type,
            "content": self.content,
            "proxiable": self.type in ("A", "AAAA", "CNAME"),
            "proxied": self.proxied,
            "ttl": self.ttl,
            "comment": self.comment,
            "tags": [],
            "meta": {},
            "settings": {},
            "created_on": "2026-01-01T00:00:00.000000Z",
            "modified_on": "2026-01-01T00:00:00.000000Z",
        }


@dataclass(frozen=True)
class Fault:
    """One injected fault (see the module docstring); ``path`` is a suffix of the URL path."""

    method: str
    path: str
    status: int | None = 503
    """The status to answer with (None: the real answer, for ``truncate``/``stall`` alone)."""
    retry_after: str | None = None
    truncate: bool = False
    stall: float = 0.0


EDGE_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} | Cloudflare</title></head>"
    "<body><h1>Error {status}</h1><p>The web server reported an error.</p></body></html>"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        chain: list[dict[str, Any]] | None,
        more: tuple[dict[str, Any], ...] = (),
    ) -> None:
        self.status, self.code, self.message, self.chain, self.more = (
            status,
            code,
            message,
            chain,
            more,
        )


def _no_route(path: str) -> ApiError:
    """HTTP 400 7003 + 7000, the answer for a path the API has no route for (observed:
    github.com/favonia/cloudflare-ddns, its test case "account-illformed/1"; 7000 "No route for
    that URI" follows 7003 in the answers users report)."""
    return ApiError(
        400,
        7003,
        f"Could not route to {path}, perhaps your object identifier is invalid?",
        None,
        ({"code": 7000, "message": "No route for that URI"},),
    )


def _invalid(message: str) -> ApiError:
    """HTTP 400 1004 for a request the API cannot take (the code of DNS validation errors; the
    peer's own choice for a malformed body or page number, which home-derp never sends)."""
    return ApiError(400, 1004, "DNS Validation Error", [{"code": 1004, "message": message}])


def _new_id() -> str:
    return secrets.token_hex(16)  # Cloudflare ids are 32 hex characters


@dataclass
class CloudflarePeer:
    """The API's state; :meth:`serve` runs it on 127.0.0.1."""

    tokens: dict[str, Token] = field(default_factory=dict)
    zones: dict[str, PeerZone] = field(default_factory=dict)
    records: dict[str, PeerRecord] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    max_per_page: int | None = None
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[Fault] = field(default_factory=list)

    def fail(self, *faults: Fault) -> None:
        """Queue faults; the head of the queue answers the next request that matches it."""
        with self.lock:
            self.faults.extend(faults)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        head = self.faults[0] if self.faults else None
        if head is not None and head.method == method and path.endswith(head.path):
            return self.faults.pop(0)
        return None

    # -- state

    def add_token(self, token: str, **kwargs: Any) -> Token:
        entry = Token(id=_new_id(), **kwargs)
        self.tokens[token] = entry
        return entry

    def add_zone(self, name: str, zone_id: str | None = None, status: str = "active") -> PeerZone:
        zone = PeerZone(zone_id or _new_id(), name, status)
        self.zones[zone.id] = zone
        return zone

    def add_record(
        self, zone_id: str, type: str, name: str, content: str, **kwargs: Any
    ) -> PeerRecord:
        record = PeerRecord(_new_id(), zone_id, type, name, content, **kwargs)
        self.records[record.id] = record
        return record

    def records_of(self, name: str) -> list[PeerRecord]:
        return [r for r in self.records.values() if r.name.lower() == name.lower()]

    # -- the API

    def _token(self, header: str | None, path: str) -> Token:
        if not header or not header.startswith("Bearer "):
            raise ApiError(
                400,
                6003,
                "Invalid request headers",
                [{"code": 6111, "message": "Invalid format for Authorization header"}],
            )
        value = header.removeprefix("Bearer ")
        if value not in self.tokens and not _TOKEN_FORMAT.match(value):
            raise ApiError(
                400,
                6003,
                "Invalid request headers",
                [{"code": 6111, "message": "Invalid format for Authorization header"}],
            )
        token = self.tokens.get(value)
        if path == "/user/tokens/verify":
            if token is None:
                raise ApiError(401, 1000, "Invalid API Token", None)
            return token
        if token is None or token.status != "active":
            raise ApiError(403, 9109, "Invalid access token", None)
        return token

    @staticmethod
    def _denied() -> ApiError:
        return ApiError(403, 10000, "Authentication error", None)

    def _readable_zone(self, token: Token, zone_id: str) -> PeerZone:
        zone = self.zones.get(zone_id)
        if zone is None or (token.zones is not None and zone_id not in token.zones):
            raise self._denied()
        return zone

    def _page(
        self, items: list[dict[str, Any]], query: dict[str, str], default: int
    ) -> dict[str, Any]:
        try:
            page = max(1, int(query.get("page", "1")))
            per_page = max(1, int(query.get("per_page", str(default))))
        except ValueError:
            raise _invalid("page and per_page are numbers") from None
        if self.max_per_page is not None:
            per_page = min(per_page, self.max_per_page)
        chunk = items[(page - 1) * per_page : page * per_page]
        total = len(items)
        return {
            "success": True,
            "errors": [],
            "messages": [],
            "result": chunk,
            "result_info": {
                "page": page,
                "per_page": per_page,
                "count": len(chunk),
                "total_count": total,
                "total_pages": -(-total // per_page),
            },
        }

    def handle(
        self, method: str, path: str, query: dict[str, str], auth: str | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        """One call → (HTTP status, envelope)."""
        token = self._token(auth, path)
        parts = [p for p in path.split("/") if p]
        ok = {"success": True, "errors": [], "messages": []}
        if parts == ["user", "tokens", "verify"] and method == "GET":
            messages = []
            if token.status == "active":
                messages = [{"code": 10000, "message": "This API Token is valid and active"}]
            return 200, {
                **ok,
                "messages": messages,
                "result": {"id": token.id, "status": token.status},
            }
        if parts == ["zones"] and method == "GET":
            name = query.get("name", "").lower()
            zones = [
                {"id": z.id, "name": z.name, "status": z.status}
                for z in self.zones.values()
                if (token.zones is None or z.id in token.zones)
                and (not name or z.name.lower() == name)
            ]
            return 200, self._page(zones, query, 20)
        if len(parts) == 2 and parts[0] == "zones" and method == "GET":
            zone = self._readable_zone(token, parts[1])
            return 200, {**ok, "result": {"id": zone.id, "name": zone.name, "status": zone.status}}
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zone = self._readable_zone(token, parts[1])
            return self._records(token, zone, method, parts[3:], query, body)
        raise _no_route("/client/v4" + path)

    def _records(
        self,
        token: Token,
        zone: PeerZone,
        method: str,
        rest: list[str],
        query: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, Any]]:
        ok = {"success": True, "errors": [], "messages": []}
        if method == "GET" and not token.dns_read:
            raise self._denied()
        if method != "GET" and not token.dns_edit:
            raise self._denied()
        in_zone = [r for r in self.records.values() if r.zone_id == zone.id]
        if method == "GET" and not rest:
            name = (query.get("name.exact") or query.get("name") or "").lower()
            kind = query.get("type", "").upper()
            found = [
                r.as_json(zone.name)
                for r in in_zone
                if (not name or r.name.lower() == name) and (not kind or r.type == kind)
            ]
            return 200, self._page(found, query, 100)
        if method == "GET" and len(rest) == 1:
            record = self.records.get(rest[0])
            if record is None or record.zone_id != zone.id:
                raise ApiError(404, 81044, "Record does not exist.", None)
            return 200, {**ok, "result": record.as_json(zone.name)}
        if method == "POST" and not rest:
            if not isinstance(body, dict):
                raise _invalid("the request body is a JSON object")
            kind = str(body.get("type", "")).upper()
            name = str(body.get("name", "")).lower().rstrip(".")
            if name != zone.name and not name.endswith("." + zone.name):
                name = f"{name}.{zone.name}"  # a relative name is completed with the zone
            content = str(body.get("content", ""))
            same_name = [r for r in in_zone if r.name.lower() == name]
            if kind in ("A", "AAAA") and any(r.type == "CNAME" for r in same_name):
                raise ApiError(400, 81054, "A CNAME record with that host already exists.", None)
            if any(r.type == kind and r.content == content for r in same_name):
                raise ApiError(400, 81058, "An identical record already exists.", None)
            record = self.add_record(
                zone.id,
                kind,
                name,
                content,
                ttl=int(body.get("ttl", 1)),
                proxied=bool(body.get("proxied", False)),
                comment=body.get("comment") or None,
            )
            return 200, {**ok, "result": record.as_json(zone.name)}
        if method == "PUT" and len(rest) == 1:
            return 200, {**ok, "result": self._overwrite(zone, rest[0], body).as_json(zone.name)}
        if method == "DELETE" and len(rest) == 1:
            record = self.records.get(rest[0])
            if record is None or record.zone_id != zone.id:
                raise ApiError(404, 81044, "Record does not exist.", None)
            del self.records[record.id]
            return 200, {**ok, "result": {"id": record.id}}
        raise _no_route(f"/client/v4/zones/{zone.id}/dns_records/" + "/".join(rest))

    def _overwrite(self, zone: PeerZone, record_id: str, body: Any) -> PeerRecord:
        """``PUT …/dns_records/{id}``: the whole record is replaced by the body; what the body
        leaves out (``comment``, ``proxied``, ``ttl``) takes its default (#overwrite-record)."""
        record = self.records.get(record_id)
        if record is None or record.zone_id != zone.id:
            raise ApiError(404, 81044, "Record does not exist.", None)
        if not isinstance(body, dict):
            raise _invalid("the request body is a JSON object")
        kind = str(body.get("type", "")).upper()
        name = str(body.get("name", "")).lower().rstrip(".")
        if name != zone.name and not name.endswith("." + zone.name):
            name = f"{name}.{zone.name}"
        content = str(body.get("content", ""))
        others = [r for r in self.records.values() if r.zone_id == zone.id and r.id != record.id]
        if any(r.type == kind and r.name == name and r.content == content for r in others):
            raise ApiError(400, 81058, "An identical record already exists.", None)
        record.type, record.name, record.content = kind, name, content
        record.ttl = int(body.get("ttl", 1))
        record.proxied = bool(body.get("proxied", False))
        record.comment = body.get("comment") or None
        return record

    # -- HTTP

    @contextmanager
    def serve(self, host: str = "127.0.0.1") -> Iterator[CloudflarePeer]:
        """Listen on ``host`` (a free port); :attr:`base_url` is ``http://…/client/v4``."""
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                path = split.path
                query = dict(urllib.parse.parse_qsl(split.query))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with peer.lock:
                    peer.requests.append(Request(self.command, path, tuple(sorted(query.items()))))
                    fault = peer._take_fault(self.command, path)
                if fault is not None and fault.stall:
                    time.sleep(fault.stall)
                if fault is not None and fault.status is not None and not fault.truncate:
                    self._fault_answer(fault)
                    return
                with peer.lock:
                    if not path.startswith("/client/v4/"):
                        err = _no_route(path)
                        status, envelope = err.status, _error(err)
                    else:
                        try:
                            body = json.loads(raw) if raw else None
                            status, envelope = peer.handle(
                                self.command,
                                path.removeprefix("/client/v4"),
                                query,
                                self.headers.get("Authorization"),
                                body,
                            )
                        except ApiError as err:
                            status, envelope = err.status, _error(err)
                        except ValueError:
                            err = _invalid("the request body is JSON")
                            status, envelope = err.status, _error(err)
                data = json.dumps(envelope).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault is not None and fault.truncate:
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True  # the rest never comes
                    return
                self.wfile.write(data)

            def _fault_answer(self, fault: Fault) -> None:
                status = fault.status or 503
                if status == 429:
                    throttle = ApiError(
                        429, 971, "Please wait and consider throttling your request speed", None
                    )
                    data, kind = json.dumps(_error(throttle)).encode(), "application/json"
                else:
                    data, kind = EDGE_ERROR_PAGE.format(status=status).encode(), "text/html"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                if fault.retry_after is not None:
                    self.send_header("Retry-After", fault.retry_after)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

        server = ThreadingHTTPServer((host, 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.base_url = f"http://{host}:{server.server_address[1]}/client/v4"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _error(err: ApiError) -> dict[str, Any]:
    item: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.chain:
        item["error_chain"] = err.chain
    return {"success": False, "errors": [item, *err.more], "messages": [], "result": None}
