"""Adopting an existing DNS record (components/dns.py), the program under Pulumi mocks.

The lookup is the program's own, over HTTP to the Cloudflare API peer
(tests/peers/cloudflare_api.py) through ``cloudflare:baseUrl``, the provider's config key; what the
engine receives is read from the mocks: the Python SDK hands a registration's ``import`` id to
``Mocks.new_resource`` as ``args.resource_id`` (pulumi 3.272.0 pulumi/runtime/mocks.py:324,
``resource_id=request.importId``; the protobuf default ``""`` means no import).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pulumi
import pytest

from components import cloudflare_api
from components.cloudflare_api import DnsRecord
from components.dns import RECORD_TYPE_TOKEN
from components.dns_adoption import lookup_adoption, plan_adoption, record_comment
from components.http_retry import RetryPolicy
from components.settings import ConfigError
from tests.conftest import FAKE_TOKEN, FAKE_ZONE_ID, RelayMocks, evaluate, home_config, run_program
from tests.conftest import set_config as set_stack_config
from tests.mocks import install_mocks
from tests.peers.cloudflare_api import CloudflarePeer, Fault

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
HOST = "derp.example.com"
IPV6 = "2409:8a00:1a2b:3c40::10"  # what the suite's relay host (tests/mocks.py HostFacts) holds


@pytest.fixture(scope="module")
def served() -> Iterator[CloudflarePeer]:
    with CloudflarePeer().serve() as peer:
        yield peer


@pytest.fixture
def peer(served: CloudflarePeer, monkeypatch: pytest.MonkeyPatch) -> CloudflarePeer:
    """The peer, emptied: zone example.com (the mocks' zone id), the suite's token, no records."""
    served.tokens.clear()
    served.zones.clear()
    served.records.clear()
    served.requests.clear()
    served.add_zone("example.com", FAKE_ZONE_ID)
    served.add_token(FAKE_TOKEN)
    for name in ("CLOUDFLARE_BASE_URL", "CLOUDFLARE_API_TOKEN", "HOME_DERP_HEALTH_RUN"):
        monkeypatch.delenv(name, raising=False)
    return served


@pytest.fixture
def import_ids(mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """Resource name → the import id the engine received with its registration."""
    seen: dict[str, str | None] = {}
    original = mocks.new_resource

    def new_resource(args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        seen[args.name] = args.resource_id or None
        return original(args)

    monkeypatch.setattr(mocks, "new_resource", new_resource)
    return seen


def config(peer: CloudflarePeer, **overrides: str | None) -> dict[str, str]:
    return home_config(**{"cloudflare:baseUrl": peer.base_url, **overrides})


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# A hand-made AAAA record (another address, a long TTL) is imported as <zone>/<id>, not created;
# the registration carries home-derp's inputs, so the update after the import sets them.
def test_existing_record_is_imported(
    peer: CloudflarePeer,
    mocks: RelayMocks,
    import_ids: dict[str, str | None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::dead", ttl=3600)
    caplog.set_level(logging.INFO)
    evaluate(config(peer))
    record = mocks.one(RECORD)
    assert import_ids[record.name] == f"{FAKE_ZONE_ID}/{old.id}"
    assert record.inputs["content"] == IPV6 and record.inputs["ttl"] == 60
    assert record.inputs["comment"] == record_comment("home", 900)
    notes = [r.getMessage() for r in caplog.records if "adopting" in r.getMessage()]
    assert len(notes) == 1 and "2001:db8::dead becomes " + IPV6 in notes[0]
    asked = [(r.path, dict(r.query)) for r in peer.requests]
    zone_query = {"name": "example.com", "match": "all", "page": "1", "per_page": "100"}
    assert ("/client/v4/zones", zone_query) in asked  # the zone by name, as getZone finds it
    assert {q.get("type") for p, q in asked if p.endswith("/dns_records")} == {"AAAA", "A"}


# No existing record → a plain create: no import id reaches the engine, nothing is logged.
def test_no_record_is_created(
    peer: CloudflarePeer,
    mocks: RelayMocks,
    import_ids: dict[str, str | None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    evaluate(config(peer, ipv4="203.0.114.7"))
    names = {r.name for r in mocks.of_type(RECORD)}
    assert names == {"relay-900-aaaa", "relay-900-a"}
    assert [import_ids[n] for n in sorted(names)] == [None, None]
    assert not warnings(caplog)
    assert peer.requests, "the lookup went to the peer"


def in_state(mocks: RelayMocks, record_id: str) -> None:
    """This stack's state holds relay-900-aaaa as that record (what the engine reports)."""
    urn = f"urn:pulumi:home::home-derp::homederp:index:HomeDerpRelay${RECORD}::relay-900-aaaa"
    mocks.stack_resources = {urn: {"type": RECORD, "outputs": {"id": record_id}}}


# A record this stack's state holds is left to the state, whatever its comment says (edited by
# hand here): importing what the engine manages would be an import-replacement that deletes it.
@pytest.mark.parametrize("comment", [record_comment("home", 900), "edited by hand", None])
def test_record_in_state_is_not_imported(
    peer: CloudflarePeer,
    mocks: RelayMocks,
    import_ids: dict[str, str | None],
    comment: str | None,
) -> None:
    record = peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, IPV6, ttl=60, comment=comment)
    in_state(mocks, record.id)
    evaluate(config(peer))
    assert import_ids[mocks.one(RECORD).name] is None


# A record carrying this stack's comment that the state does not hold (the state was lost:
# `pulumi stack rm --force`) is adopted instead of colliding with it (Cloudflare refuses an
# identical record).
def test_own_record_not_in_state_is_adopted(
    peer: CloudflarePeer, mocks: RelayMocks, import_ids: dict[str, str | None]
) -> None:
    record = peer.add_record(
        FAKE_ZONE_ID, "AAAA", HOST, IPV6, ttl=60, comment=record_comment("home", 900)
    )
    evaluate(config(peer))
    assert import_ids[mocks.one(RECORD).name] == f"{FAKE_ZONE_ID}/{record.id}"


# Both types adopted at once with an explicit zone id: no zone lookup, ids from that zone.
def test_both_types_with_zone_id(
    peer: CloudflarePeer, mocks: RelayMocks, import_ids: dict[str, str | None]
) -> None:
    zone = peer.add_zone("example.com", "fedcba9876543210fedcba9876543210")
    peer.zones.pop(FAKE_ZONE_ID)
    aaaa = peer.add_record(zone.id, "AAAA", HOST, IPV6)
    a = peer.add_record(zone.id, "A", HOST, "203.0.114.7", proxied=True)
    evaluate(config(peer, zone=None, zoneId=zone.id, ipv4="203.0.114.7"))
    assert import_ids["relay-900-aaaa"] == f"{zone.id}/{aaaa.id}"
    assert import_ids["relay-900-a"] == f"{zone.id}/{a.id}"
    assert not [r for r in peer.requests if r.path == "/client/v4/zones"]


# A round-robin (two AAAA records) stops the program with the records and the fix; nothing of
# the relay's DNS is registered.
def test_round_robin_is_an_error(peer: CloudflarePeer, mocks: RelayMocks) -> None:
    one = peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::1")
    two = peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::2")
    set_stack_config(config(peer))

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    with pytest.raises(pulumi.RunError) as caught:
        run()
    text = str(caught.value)
    assert "2 AAAA records" in text and one.id in text and two.id in text
    assert "Delete all but the one to keep" in text
    assert not mocks.of_type(RECORD)


# Without a token at evaluation the lookup cannot run: no import, and a warning that an existing
# record would collide. (The program always has one here — settings refuse a run without — so
# the lookup is called as the program calls it, with the client it would get: none.)
def test_no_token_warns(peer: CloudflarePeer) -> None:
    from components.settings import load_settings

    peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::dead")
    set_stack_config(config(peer))
    adoption = lookup_adoption(load_settings(), stack="home", client=None)
    assert adoption.imports == {}
    (warning,) = adoption.warnings
    assert "no Cloudflare API token" in warning and "An identical record already exists" in warning
    assert "second record" in warning and peer.requests == []


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short waits: the product's retry policy is exercised in tests/test_cloudflare_api.py."""
    monkeypatch.setattr(cloudflare_api, "RETRY_POLICY", RetryPolicy(4, base=0.05, cap=0.05))


def nothing_listens() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/client/v4"


def deploy_fails(config: dict[str, str]) -> str:
    """Run the program as `pulumi up` does and return the error it ends with."""
    set_stack_config(config)

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    with pytest.raises(pulumi.RunError) as caught:
        run()
    return str(caught.value)


# A preview whose lookup cannot reach the API (nothing listens): no import and the collision
# warning, never a traceback.
def test_unreachable_api_warns_on_preview(
    peer: CloudflarePeer,
    import_ids: dict[str, str | None],
    caplog: pytest.LogCaptureFixture,
    fast_retries: None,
) -> None:
    mocks = install_mocks(preview=True)
    evaluate(home_config(**{"cloudflare:baseUrl": nothing_listens()}))
    assert import_ids[mocks.one(RECORD).name] is None
    (warning,) = [w for w in warnings(caplog) if "existing DNS records" in w]
    assert "cannot reach the Cloudflare API" in warning and "identical record" in warning
    assert "(4 tries)" in warning and FAKE_TOKEN not in warning


# The same failure on `up` stops the deploy with the fix before any record is registered.
def test_unreachable_api_stops_a_deploy(
    peer: CloudflarePeer, mocks: RelayMocks, fast_retries: None
) -> None:
    said = deploy_fails(home_config(**{"cloudflare:baseUrl": nothing_listens()}))
    assert "could not look for existing DNS records of derp.example.com" in said
    assert "Nothing was deployed" in said and "round-robin" in said and "Traceback" not in said
    assert not mocks.of_type(RECORD) and FAKE_TOKEN not in said


# A foreign record of another address and a Cloudflare API that keeps failing: the deploy stops
# instead of creating a second record next to it (a round-robin the user deletes by hand).
def test_a_failing_lookup_never_makes_a_round_robin(
    peer: CloudflarePeer, mocks: RelayMocks, fast_retries: None
) -> None:
    peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::dead")
    peer.fail(*[Fault("GET", "/dns_records", 503)] * 4)
    said = deploy_fails(config(peer))
    assert "HTTP 503" in said and "Cloudflare had a problem on its side" in said
    assert not mocks.of_type(RECORD)
    assert [r.content for r in peer.records_of(HOST)] == ["2001:db8::dead"]


# One 429 during the lookup is waited out (the retry logged through pulumi.log) and the
# foreign record is adopted as usual.
def test_a_rate_limited_lookup_is_retried_then_adopts(
    peer: CloudflarePeer,
    mocks: RelayMocks,
    import_ids: dict[str, str | None],
    caplog: pytest.LogCaptureFixture,
    fast_retries: None,
) -> None:
    old = peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::dead")
    peer.fail(Fault("GET", "/dns_records", 429, retry_after="0"))
    caplog.set_level(logging.INFO)
    evaluate(config(peer))
    assert import_ids[mocks.one(RECORD).name] == f"{FAKE_ZONE_ID}/{old.id}"
    retried = [
        r.getMessage() for r in caplog.records if "HTTP 429, Retry-After 0s" in r.getMessage()
    ]
    assert len(retried) == 1 and FAKE_TOKEN not in retried[0]


# A token the API refuses stops a deploy too, naming the token's fix (a preview only warns).
def test_refused_token_stops_a_deploy(peer: CloudflarePeer, mocks: RelayMocks) -> None:
    peer.tokens.clear()
    peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::dead")
    said = deploy_fails(config(peer))
    assert "HTTP 400" in said or "HTTP 403" in said
    assert "API Tokens" in said and not mocks.of_type(RECORD)


# A health run registers no DNS and asks Cloudflare nothing.
def test_health_run_makes_no_lookup(
    peer: CloudflarePeer, mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME_DERP_HEALTH_RUN", "1")
    peer.add_record(FAKE_ZONE_ID, "AAAA", HOST, "2001:db8::dead")
    evaluate(config(peer, validateNonce="health-1"))
    assert not mocks.of_type(RECORD)
    assert peer.requests == []


# ---------------------------------------------------------------------------------------------
# The rules themselves (pure)


def rec(kind: str, content: str, comment: str | None = None, rid: str = "r1") -> DnsRecord:
    return DnsRecord(rid, kind, HOST, content, False, 1, comment)


def plan(records: list[DnsRecord], **kwargs: object) -> object:
    args: dict[str, object] = {
        "zone_id": "z",
        "hostname": HOST,
        "wanted": {"AAAA": IPV6},
        "records": records,
        "stack": "home",
        "ddns": False,
    }
    args.update(kwargs)
    return plan_adoption(**args)  # type: ignore[arg-type]


# An A record home-derp does not manage (no ipv4) is not adopted but named in a warning.
def test_unmanaged_type_warns() -> None:
    adoption = plan([rec("A", "203.0.113.9")])
    assert adoption.imports == {}  # type: ignore[attr-defined]
    (warning,) = adoption.warnings  # type: ignore[attr-defined]
    assert "home-derp:ipv4 is not set" in warning and "203.0.113.9" in warning


# Another stack's record is never adopted (it may be that stack's), with a warning naming it.
def test_other_stack_record_not_adopted() -> None:
    adoption = plan([rec("AAAA", IPV6, record_comment("office", 901))])
    assert adoption.imports == {}  # type: ignore[attr-defined]
    assert any("office" in w for w in adoption.warnings)  # type: ignore[attr-defined]


# A truncated comment of this stack still counts as ours (long stack names).
def test_truncated_comment_is_ours() -> None:
    stack = "a-very-long-stack-name-" * 4
    adoption = plan([rec("AAAA", IPV6, record_comment(stack, 900))], stack=stack)
    assert adoption.imports == {} and adoption.warnings == ()  # type: ignore[attr-defined]


# With DDNS the adopted record's content is the updater's to set, and the note says so.
def test_ddns_note() -> None:
    adoption = plan([rec("AAAA", "2001:db8::1")], ddns=True)
    assert adoption.imports == {"AAAA": "z/r1"}  # type: ignore[attr-defined]
    assert "set by the DDNS updater" in adoption.notes[0]  # type: ignore[attr-defined]


# Ours next to a foreign record of the same type: nothing imported, the round-robin is warned.
def test_foreign_next_to_ours_warns() -> None:
    ours = rec("AAAA", IPV6, record_comment("home", 900), "r1")
    adoption = plan([ours, rec("AAAA", "2001:db8::1", None, "r2")])
    assert adoption.imports == {}  # type: ignore[attr-defined]
    assert any("round-robin" in w for w in adoption.warnings)  # type: ignore[attr-defined]


# The round-robin error is a ConfigError naming every record.
def test_round_robin_config_error() -> None:
    with pytest.raises(ConfigError, match=r"r1 → 2001:db8::1.*r2 → 2001:db8::2"):
        plan([rec("AAAA", "2001:db8::1", None, "r1"), rec("AAAA", "2001:db8::2", None, "r2")])


# What the state holds, by resource name first, else by the record it is (name and type) under a
# former component name: a changed regionId renames the component, and the record must be moved
# to its new name, never imported again (docs/upstream/pulumi.md#import).
def test_held_records_by_name_or_by_what_they_are() -> None:
    from components import stack_state

    def entry(name: str, kind: str, id_: str) -> dict[str, object]:
        outputs = {"id": id_, "name": name, "type": kind}
        return {"type": RECORD_TYPE_TOKEN, "outputs": outputs}

    root = "urn:pulumi:home::home-derp::homederp:index:HomeDerpRelay$cloudflare:index/dnsRecord:"
    names = {"AAAA": "relay-901-aaaa", "A": "relay-901-a"}
    carried = {k: {"name": "derp.example.com", "type": k} for k in names}
    moved = {f"{root}DnsRecord::relay-900-aaaa": entry("derp.example.com", "AAAA", "r1")}
    found = stack_state.held(moved, RECORD_TYPE_TOKEN, names, carried)
    assert list(found) == ["AAAA"] and found["AAAA"].name == "relay-900-aaaa"
    assert found["AAAA"].id == "r1"
    both = {**moved, f"{root}DnsRecord::relay-901-aaaa": entry("derp.example.com", "AAAA", "r2")}
    assert stack_state.held(both, RECORD_TYPE_TOKEN, names, carried)["AAAA"].id == "r2"
    other = {f"{root}DnsRecord::relay-900-aaaa": entry("derp.other.com", "AAAA", "r3")}
    assert stack_state.held(other, RECORD_TYPE_TOKEN, names, carried) == {}
