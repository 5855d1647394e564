"""components/cloudflare_api.py against the Cloudflare API peer (tests/peers/cloudflare_api.py)."""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components import cloudflare_api
from components.cloudflare_api import (
    DEFAULT_BASE_URL,
    Client,
    CloudflareApiError,
    DnsRecord,
    Zone,
    resolve_base_url,
    resolve_token,
)
from components.http_retry import RetryPolicy
from tests.peers.cloudflare_api import CloudflarePeer, Fault
from tests.peers.silent_tcp import silent_tcp

GOOD = "Gd0dT0kenForTheTestsOnly0123456789abcdefXY"  # 42 of [A-Za-z0-9_-]: well-formed
DISABLED = "D1sabledT0kenForTheTestsOnly0123456789abc"
EXPIRED = "Exp1redT0kenForTheTestsOnly0123456789abcd"
NO_DNS = "N0DnsReadT0kenForTheTestsOnly0123456789ab"
OTHER_ZONE = "0therZ0neT0kenForTheTestsOnly0123456789ab"
UNKNOWN = "UnknownT0kenForTheTestsOnly0123456789abcd"
ZONE_ID = "0123456789abcdef0123456789abcdef"
ALL_TOKENS = (GOOD, DISABLED, EXPIRED, NO_DNS, OTHER_ZONE, UNKNOWN)


@pytest.fixture(scope="module")
def peer() -> Iterator[CloudflarePeer]:
    """One peer for the module: example.com with the relay's records and some noise."""
    state = CloudflarePeer()
    state.add_zone("example.com", ZONE_ID)
    other = state.add_zone("example.org")
    state.add_token(GOOD)
    state.add_token(DISABLED, status="disabled")
    state.add_token(EXPIRED, status="expired")
    state.add_token(NO_DNS, dns_read=False, dns_edit=False)
    state.add_token(OTHER_ZONE, zones={other.id})
    state.add_record(ZONE_ID, "AAAA", "derp.example.com", "2001:db8::1", ttl=300, comment="old")
    state.add_record(ZONE_ID, "A", "derp.example.com", "203.0.113.7", proxied=True)
    state.add_record(ZONE_ID, "TXT", "derp.example.com", "v=spf1 -all")
    state.add_record(ZONE_ID, "AAAA", "www.example.com", "2001:db8::2")
    state.add_record(ZONE_ID, "AAAA", "derp.example.com.evil", "2001:db8::3")
    with state.serve() as running:
        yield running


#: Short waits for this module; the product's own policy is exercised through the program
#: (tests/test_dns.py) and the retry rules in tests/test_http_retry.py.
FAST = RetryPolicy(attempts=4, base=0.05, cap=0.05, budget=2.0)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloudflare_api, "RETRY_POLICY", FAST)


def client(peer: CloudflarePeer, token: str = GOOD, **kwargs: object) -> Client:
    return Client(token, base_url=peer.base_url, **kwargs)  # type: ignore[arg-type]


def no_token_in(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), str(exc.args)):
        for token in ALL_TOKENS:
            assert token not in text


# An active token verifies as active, with the id the API gives it.
def test_verify_active(peer: CloudflarePeer) -> None:
    status = client(peer).verify_token()
    assert status.status == "active" and status.active
    assert status.id == peer.tokens[GOOD].id


# Disabled and expired tokens verify (HTTP 200) with their status, not as errors.
@pytest.mark.parametrize(("token", "state"), [(DISABLED, "disabled"), (EXPIRED, "expired")])
def test_verify_inactive(peer: CloudflarePeer, token: str, state: str) -> None:
    status = client(peer, token).verify_token()
    assert (status.status, status.active) == (state, False)


# An unknown token is HTTP 401 / code 1000, and the message says how to make a working token.
def test_verify_invalid_token(peer: CloudflarePeer) -> None:
    with pytest.raises(CloudflareApiError) as caught:
        client(peer, UNKNOWN).verify_token()
    exc = caught.value
    assert (exc.status, exc.codes) == (401, (1000,))
    assert "Invalid API Token" in str(exc) and "Zone:Read and DNS:Edit" in str(exc)
    no_token_in(exc)


# A malformed token (pasted with a quote) is the gateway's 400 6003/6111, named a format error.
def test_malformed_token(peer: CloudflarePeer) -> None:
    with pytest.raises(CloudflareApiError) as caught:
        client(peer, '"' + GOOD + '"').find_zone("example.com")
    assert (caught.value.status, caught.value.codes) == (400, (6003, 6111))
    assert "not in the format of an API token" in str(caught.value)
    no_token_in(caught.value)


# A zone is found by name, case-insensitively, and read back by id.
def test_find_zone_and_get_zone(peer: CloudflarePeer) -> None:
    api = client(peer)
    zone = api.find_zone("Example.COM.")
    assert zone == Zone(ZONE_ID, "example.com", "active")
    assert api.get_zone(ZONE_ID) == zone
    last = peer.requests[-2]
    assert last.path == "/client/v4/zones" and ("name", "example.com") in last.query


# A zone that does not exist, or that the token may not read, is None (not an error).
def test_find_zone_missing(peer: CloudflarePeer) -> None:
    assert client(peer).find_zone("example.net") is None
    assert client(peer, OTHER_ZONE).find_zone("example.com") is None


# Reading a zone the token may not read is a 403 10000 with the permissions to grant.
def test_get_zone_forbidden(peer: CloudflarePeer) -> None:
    with pytest.raises(CloudflareApiError) as caught:
        client(peer, OTHER_ZONE).get_zone(ZONE_ID)
    assert (caught.value.status, caught.value.codes) == (403, (10000,))
    assert "Authentication error" in str(caught.value) and "Zone:Read" in str(caught.value)
    no_token_in(caught.value)


# A disabled token outside verify is refused (403 9109) with a clear error.
def test_disabled_token_cannot_list(peer: CloudflarePeer) -> None:
    with pytest.raises(CloudflareApiError) as caught:
        client(peer, DISABLED).find_zone("example.com")
    assert (caught.value.status, caught.value.codes) == (403, (9109,))
    assert "not valid or may not do this" in str(caught.value)


# Records: exactly the hostname's AAAA then A, with their fields; other names and types are not.
def test_find_records_type_filter(peer: CloudflarePeer) -> None:
    records = client(peer).find_records(ZONE_ID, "DERP.example.com")
    assert [(r.type, r.content) for r in records] == [
        ("AAAA", "2001:db8::1"),
        ("A", "203.0.113.7"),
    ]
    aaaa, a = records
    assert aaaa == DnsRecord(aaaa.id, "AAAA", "derp.example.com", "2001:db8::1", False, 300, "old")
    assert a.proxied is True and a.comment is None and a.ttl == 1
    only_a = client(peer).find_records(ZONE_ID, "derp.example.com", types=("A",))
    assert [r.type for r in only_a] == ["A"]
    sent = [dict(r.query) for r in peer.requests[-3:]]
    assert all(q["name.exact"] == "derp.example.com" for q in sent)
    assert [q["type"] for q in sent] == ["AAAA", "A", "A"]


# Records spread over several pages are all read (result_info.total_pages), each page once.
def test_pagination(peer: CloudflarePeer) -> None:
    for i in range(7):
        peer.add_record(ZONE_ID, "AAAA", "rr.example.com", f"2001:db8::{i + 10:x}")
    before = len(peer.requests)
    records = client(peer, per_page=3).find_records(ZONE_ID, "rr.example.com", types=("AAAA",))
    assert sorted(r.content for r in records) == sorted(f"2001:db8::{i + 10:x}" for i in range(7))
    pages = [dict(r.query)["page"] for r in peer.requests[before:]]
    assert pages == ["1", "2", "3"]


# A token without DNS read permission gets a 403 on the records, with the fix in the message.
def test_records_forbidden(peer: CloudflarePeer) -> None:
    with pytest.raises(CloudflareApiError) as caught:
        client(peer, NO_DNS).find_records(ZONE_ID, "derp.example.com")
    assert caught.value.status == 403 and "DNS:Edit" in str(caught.value)
    no_token_in(caught.value)


# The peer refuses a second identical record the way Cloudflare does (81058), and accepts another
# content for the same name (a round-robin): why adoption is needed at all.
def test_peer_refuses_identical_record(peer: CloudflarePeer) -> None:
    import json
    import urllib.error
    import urllib.request

    def post(content: str) -> tuple[int, dict[str, object]]:
        body = {"type": "AAAA", "name": "derp.example.com", "content": content, "ttl": 60}
        request = urllib.request.Request(
            f"{peer.base_url}/zones/{ZONE_ID}/dns_records",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {GOOD}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, envelope = post("2001:db8::1")
    assert status == 400 and envelope["success"] is False
    assert envelope["errors"] == [{"code": 81058, "message": "An identical record already exists."}]
    status, envelope = post("2001:db8::99")
    assert status == 200 and envelope["success"] is True
    assert len([r for r in peer.records_of("derp.example.com") if r.type == "AAAA"]) == 2
    peer.records.pop(envelope["result"]["id"])  # type: ignore[index]


# A refused connection is "cannot reach", with the URL, no status and no token.
def test_network_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = Client(GOOD, base_url=f"http://127.0.0.1:{port}/client/v4")
    with pytest.raises(CloudflareApiError) as caught:
        api.verify_token()
    assert caught.value.status is None and caught.value.codes == ()
    assert "cannot reach the Cloudflare API at http://127.0.0.1" in str(caught.value)
    no_token_in(caught.value)


# A server that accepts and never answers costs the retry budget and one timeout, not forever.
def test_timeout_is_bounded() -> None:
    with silent_tcp(("127.0.0.1",)) as port:
        api = Client(GOOD, base_url=f"http://127.0.0.1:{port}/client/v4", timeout=0.5)
        start = time.monotonic()
        with pytest.raises(CloudflareApiError, match="cannot reach"):
            api.find_zone("example.com")
        assert time.monotonic() - start < FAST.budget + 0.5 + 2  # margin for a loaded machine


# A path the API has no route for is its 400 7003/7000, surfaced with both codes.
def test_no_route(peer: CloudflarePeer) -> None:
    api = Client(GOOD, base_url=peer.base_url.removesuffix("/client/v4") + "/elsewhere")
    with pytest.raises(CloudflareApiError) as caught:
        api.verify_token()
    assert (caught.value.status, caught.value.codes) == (400, (7003, 7000))


# A server that is not the API (an HTML 404 page) is named as such, not parsed as one.
def test_not_the_api(tmp_path: Path) -> None:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = Client(GOOD, base_url=f"http://127.0.0.1:{server.server_address[1]}/client/v4")
        with pytest.raises(CloudflareApiError) as caught:
            api.verify_token()
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.status == 404
    assert "without a JSON envelope" in str(caught.value) and "Cloudflare API v4" in str(
        caught.value
    )


# The token is in no repr, and an empty token is refused before any request.
def test_token_never_shown(peer: CloudflarePeer) -> None:
    api = client(peer)
    assert GOOD not in repr(api) and peer.base_url in repr(api)
    with pytest.raises(CloudflareApiError, match="no Cloudflare API token"):
        Client("  ")


# Base URL and token resolve as the provider resolves them: stack config, then environment.
def test_resolution_order() -> None:
    env = {"CLOUDFLARE_BASE_URL": "http://env/client/v4/", "CLOUDFLARE_API_TOKEN": "from-env"}
    config = {"cloudflare:baseUrl": "http://config/client/v4", "cloudflare:apiToken": "from-cfg"}
    assert resolve_base_url(config, env) == "http://config/client/v4"
    assert resolve_base_url({}, env) == "http://env/client/v4"
    assert resolve_base_url({}, {}) == DEFAULT_BASE_URL
    assert resolve_token(config, env) == "from-cfg"
    assert resolve_token({}, env) == "from-env"
    assert resolve_token({}, {}) is None


# --- transient faults (docs/upstream/cloudflare.md#rate-limits-and-errors) -------------------


def logged_client(peer: CloudflarePeer) -> tuple[Client, list[str]]:
    lines: list[str] = []
    return Client(GOOD, base_url=peer.base_url, log=lines.append), lines


# One 429 (Retry-After honoured) on the record listing is waited out; the retry is logged,
# without the token.
def test_a_429_is_waited_out(peer: CloudflarePeer) -> None:
    api, lines = logged_client(peer)
    peer.fail(Fault("GET", "/dns_records", 429, retry_after="1"))
    started = time.monotonic()
    records = api.find_records(ZONE_ID, "derp.example.com", ("AAAA",))
    assert [r.content for r in records] == ["2001:db8::1"]
    assert time.monotonic() - started >= 0.9
    assert lines == [
        "Cloudflare API list the AAAA records of derp.example.com: HTTP 429, Retry-After 1s; "
        "retry 1 of 3 in 1.0s"
    ]


# A rate limit that outlasts the budget is named as such — with the wait Cloudflare asked for —
# never as a token problem.
def test_a_long_rate_limit_is_not_a_token_problem(peer: CloudflarePeer) -> None:
    peer.fail(Fault("GET", "/zones", 429, retry_after="300"))
    with pytest.raises(CloudflareApiError) as caught:
        client(peer).find_zone("example.com")
    said = str(caught.value)
    assert caught.value.status == 429 and caught.value.codes == (971,)
    assert "asks to wait 300s" in said and "1200 requests per 5 minutes" in said
    assert "API Tokens" not in said
    no_token_in(caught.value)


# Edge 5xx pages (HTML, no envelope) are retried; when they last, the error says it is
# Cloudflare's side and how often it was tried — not "is this the Cloudflare API?".
def test_lasting_edge_5xx_is_cloudflares_side(peer: CloudflarePeer) -> None:
    peer.fail(*[Fault("GET", "/zones", 502)] * 4)
    with pytest.raises(CloudflareApiError) as caught:
        client(peer).find_zone("example.com")
    said = str(caught.value)
    assert caught.value.status == 502 and "(4 tries over" in said
    assert "Cloudflare had a problem on its side" in said and "v4?" not in said


# One edge 503 page, then the real answer.
def test_one_edge_5xx_is_retried(peer: CloudflarePeer) -> None:
    peer.fail(Fault("GET", "/zones", 503))
    zone = client(peer).find_zone("example.com")
    assert zone is not None and zone.id == ZONE_ID


# A body cut short is read again; cut short every time it is a typed error (never
# http.client.IncompleteRead).
def test_cut_short_answers(peer: CloudflarePeer) -> None:
    peer.fail(Fault("GET", "/zones", None, truncate=True))
    assert client(peer).find_zone("example.com") is not None
    peer.fail(*[Fault("GET", "/zones", None, truncate=True)] * 4)
    with pytest.raises(CloudflareApiError, match=r"cut short .* \(4 tries\)"):
        client(peer).find_zone("example.com")


# A stalled answer is asked again within the budget.
def test_a_stall_is_asked_again(peer: CloudflarePeer) -> None:
    peer.fail(Fault("GET", "/zones", None, stall=1.0))
    assert client(peer, timeout=0.3).find_zone("example.com") is not None
