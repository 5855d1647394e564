"""RelayValidation through pulumi.dynamic's real provider server (tests/provider_host.py).

Every provider call here is a real protobuf request to the servicer of the installed
``pulumi/dynamic/__main__.py``, carrying the ``__provider`` blob that ``RelayValidation``'s own
constructor registers (captured under mocks). Probes go to the local peers of ``tests/peers``
(faithful DERP over TLS, strict STUN, a DNS server) on loopback only.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.validation import (
    INPUT_KEYS,
    OUTPUT_KEYS,
    TYPE_TOKEN,
    RelayValidation,
    RelayValidationArgs,
    validation_trigger,
)
from tests.peers.relay import LocalRelay, local_relay
from tests.provider_host import (
    UNKNOWN,
    ProviderError,
    ProviderHost,
    capture_registrations,
    registered_inputs_for,
    urn_for,
)

URN = urn_for(TYPE_TOKEN, "relay-validation", parent_type="homederp:index:HomeDerpRelay")


def program_inputs(relay: LocalRelay, **overrides: Any) -> dict[str, Any]:
    """Inputs exactly as the program registers them (with `__provider`) for this relay."""
    fields: dict[str, Any] = {
        "hostname": relay.hostname,
        "derp_port": relay.derp_port,
        "stun_port": relay.stun_port,
        "expected_addresses": list(relay.addresses),
        "expect_verify_clients": True,
        "mode": "enforce",
        "timeout_seconds": 5,
        "trigger": validation_trigger("c0ffee", "03a1", list(relay.addresses), ""),
        "resolvers": [relay.resolver],
        "ca_file": relay.ca_file,
    }
    fields.update(overrides)
    args = RelayValidationArgs(**fields)
    return registered_inputs_for(lambda: RelayValidation("relay-validation", args))


@pytest.fixture
def host() -> Iterator[ProviderHost]:
    with ProviderHost(timeout=60) as h:
        h.configure({"home-derp:validate": "enforce"})
        yield h


@pytest.fixture
def relay() -> Iterator[LocalRelay]:
    with local_relay() as r:
        yield r


def create(host: ProviderHost, inputs: dict[str, Any]) -> dict[str, Any]:
    """Check then Create, as `pulumi up` does for a new resource."""
    checked = host.check(URN, {}, inputs)
    assert checked.failures == []
    reply = host.create(URN, checked.inputs)
    assert reply.secret_keys == frozenset()
    return reply.outputs


# --- what the program registers ------------------------------------------------------------


# The program registers the typed token and a plain (non-secret) provider pickled by reference.
def test_registration_carries_provider_by_reference(relay: LocalRelay) -> None:
    args = RelayValidationArgs(
        hostname=relay.hostname,
        derp_port=relay.derp_port,
        stun_port=relay.stun_port,
        expected_addresses=list(relay.addresses),
        expect_verify_clients=True,
    )
    [reg] = capture_registrations(lambda: RelayValidation("v", args))
    assert reg.typ == TYPE_TOKEN
    assert reg.secret_keys == frozenset()
    pickled = base64.b64decode(reg.inputs["__provider"])
    assert b"components.validation" in pickled and b"RelayValidationProvider" in pickled
    assert b"co_code" not in pickled and len(pickled) < 500  # a reference, not bytecode
    assert set(reg.inputs) - {"__provider"} <= set(INPUT_KEYS)
    assert reg.inputs["mode"] == "enforce" and reg.inputs["timeout_seconds"] == 120


# The blob is the same on every run, so an unchanged program never diffs on `__provider`.
def test_provider_blob_is_deterministic(relay: LocalRelay) -> None:
    assert program_inputs(relay)["__provider"] == program_inputs(relay)["__provider"]


# --- Check / Diff (what `preview` calls): pure -------------------------------------------------


# Check passes valid inputs through and names every invalid one.
def test_check_reports_bad_inputs(host: ProviderHost, relay: LocalRelay) -> None:
    good = program_inputs(relay)
    assert host.check(URN, {}, good).inputs == good
    bad = {**good, "mode": "strict", "derp_port": 0, "expected_addresses": ["derp.test"]}
    failures = dict(host.check(URN, {}, bad).failures)
    assert set(failures) == {"mode", "derp_port", "expected_addresses"}
    assert "enforce, warn, off" in failures["mode"]


# Check accepts unknown inputs (preview before the container exists) and sends no probe.
def test_check_with_unknowns_is_quiet(host: ProviderHost, relay: LocalRelay) -> None:
    inputs = {**program_inputs(relay), "trigger": UNKNOWN, "expected_addresses": UNKNOWN}
    assert host.check(URN, {}, inputs).failures == []
    assert relay.dns.queries == [] and relay.derp.state.requests == []


# Diff: quiet when nothing changed, a change on a new trigger, never a replacement.
def test_diff_changes_only_on_input_or_trigger_change(
    host: ProviderHost, relay: LocalRelay
) -> None:
    inputs = program_inputs(relay)
    olds = create(host, inputs)  # the engine diffs the new inputs against the old *outputs*
    same = host.diff("id", olds, inputs, urn=URN)
    assert same.changes == "none"
    reordered = {**inputs, "expected_addresses": list(reversed(inputs["expected_addresses"]))}
    assert host.diff("id", olds, reordered, urn=URN).changes == "none"
    nonce = validation_trigger("c0ffee", "03a1", list(relay.addresses), "2026-11-25")
    bumped = host.diff("id", olds, {**inputs, "trigger": nonce}, urn=URN)
    assert bumped.changes == "some" and bumped.replaces == []
    assert host.diff("id", olds, {**inputs, "mode": "warn"}, urn=URN).changes == "some"


# Diff: an unknown new input (a container being replaced) counts as a change.
def test_diff_changes_on_unknown(host: ProviderHost, relay: LocalRelay) -> None:
    inputs = program_inputs(relay)
    olds = {**inputs, "ok": True}
    reply = host.diff("id", olds, {**inputs, "trigger": UNKNOWN}, urn=URN)
    assert reply.changes == "some" and reply.replaces == []
    nested = {**inputs, "expected_addresses": [relay.addresses[0], UNKNOWN]}
    assert host.diff("id", olds, nested, urn=URN).changes == "some"


# --- Create / Update (what `up` calls): real probes ------------------------------------------


# A good relay passes on the first try; outputs echo the inputs and carry the measurements.
def test_create_good_relay(host: ProviderHost, relay: LocalRelay) -> None:
    inputs = program_inputs(relay)
    outs = create(host, inputs)
    assert outs["ok"] is True and outs["attempts"] == 1
    assert set(OUTPUT_KEYS) - {"diagnosis"} <= set(outs) and "diagnosis" not in outs
    assert {k: outs[k] for k in inputs} == inputs  # {**inputs, **computed}
    assert outs["server_public_key"] == relay.server_public_key
    assert outs["stun_latency_ms"] > 0 and outs["tls_latency_ms"] > 0
    assert outs["certificate_days_left"] > 30
    names = {(c["name"], c.get("address")) for c in outs["checks"]}  # Pulumi drops nulls
    for address in relay.addresses:
        assert {("tls", address), ("derp", address), ("stun", address)} <= names
    assert all(c["ok"] for c in outs["checks"])
    assert outs["checked_at"].endswith("+00:00")


# STUN silent: `up` fails at this resource with netcheck's diagnosis and hint.
def test_create_fails_with_diagnosis_when_stun_is_silent(host: ProviderHost) -> None:
    with local_relay(stun="silent") as broken:
        inputs = program_inputs(broken, timeout_seconds=0)
        with pytest.raises(ProviderError) as err:
            host.create(URN, inputs)
    assert err.value.code.name == "UNKNOWN"  # what _abort_with_traceback sends
    message = err.value.details
    assert "RelayValidationError: relay derp.test failed 2 of" in message
    assert "✗ stun 127.0.0.1: no answer from UDP 127.0.0.1:" in message
    assert "hint: open UDP port" in message and "STUN server listening" in message
    assert "home-derp:validate=warn" in message


# Wrong certificate name: fails after retrying until the deadline, with the last diagnosis.
def test_create_times_out_with_last_diagnosis(host: ProviderHost) -> None:
    with local_relay(cert="wrong_name") as broken:
        inputs = program_inputs(broken, timeout_seconds=3)
        started = time.monotonic()
        with pytest.raises(ProviderError) as err:
            host.create(URN, inputs)
        elapsed = time.monotonic() - started
    assert 3 <= elapsed < 3 + 5 + 1  # deadline, plus at most one probe budget
    message = err.value.details
    assert "3 attempts over 3s" in message
    assert "✗ tls ::1: certificate is for other.test, not derp.test" in message
    assert "hint: issue the certificate for derp.test" in message


# A relay whose DNS record appears after ~2 s (propagation) passes within the timeout.
def test_create_waits_for_dns_propagation(host: ProviderHost, relay: LocalRelay) -> None:
    relay.dns.records.clear()  # NXDOMAIN until the record "propagates"
    later = threading.Timer(2.0, relay.dns.set_addresses, (relay.hostname, list(relay.addresses)))
    later.start()
    try:
        started = time.monotonic()
        outs = create(host, program_inputs(relay, timeout_seconds=20))
    finally:
        later.cancel()
    assert outs["ok"] is True and outs["attempts"] >= 2
    assert time.monotonic() - started < 10


# Warn mode: a broken relay does not fail `up`; ok is False and the diagnosis is an output.
def test_warn_mode_records_failure(host: ProviderHost) -> None:
    with local_relay(stun="closed") as broken:
        outs = create(host, program_inputs(broken, mode="warn", timeout_seconds=0))
    assert outs["ok"] is False
    failed = [c for c in outs["checks"] if not c["ok"]]
    assert {c["name"] for c in failed} == {"stun"} and all(c["hint"] for c in failed)
    assert "✗ stun" in outs["diagnosis"] and "hint:" in outs["diagnosis"]


# Off mode: no DNS query, no connection; ok is None.
def test_off_mode_does_not_probe(host: ProviderHost, relay: LocalRelay) -> None:
    outs = create(host, program_inputs(relay, mode="off"))
    assert "ok" not in outs and outs["attempts"] == 0 and outs["checks"] == []
    assert relay.dns.queries == [] and relay.derp.state.requests == []


# Update re-probes (new trigger) and returns fresh outputs with the new inputs.
def test_update_reprobes(host: ProviderHost, relay: LocalRelay) -> None:
    inputs = program_inputs(relay)
    olds = create(host, inputs)
    queries = len(relay.dns.queries)
    news = {**inputs, "trigger": validation_trigger("beef", "03a2", list(relay.addresses), "")}
    reply = host.update("id", olds, news, urn=URN)
    assert reply.secret_keys == frozenset()
    assert reply.outputs["trigger"] == news["trigger"] and reply.outputs["ok"] is True
    assert reply.outputs["checked_at"] >= olds["checked_at"]
    assert len(relay.dns.queries) > queries


# Refresh (Read) and Delete keep state and send nothing.
def test_read_and_delete_do_not_probe(host: ProviderHost, relay: LocalRelay) -> None:
    olds = create(host, program_inputs(relay, mode="off"))
    read = host.read("id", olds, urn=URN)
    assert read.id == "id" and read.outputs == olds
    host.delete("id", olds, urn=URN)
    assert relay.dns.queries == [] and relay.derp.state.requests == []


# --- the trigger ------------------------------------------------------------------------------


# The trigger changes with each relay fact and the nonce, not with address order or spelling.
def test_validation_trigger() -> None:
    base = validation_trigger("c1", "s1", ["2001:db8::10", "192.0.2.1"], "")
    assert base == validation_trigger("c1", "s1", ["192.0.2.1", "2001:DB8:0::10"], "")
    others = {
        validation_trigger("c2", "s1", ["2001:db8::10", "192.0.2.1"], ""),
        validation_trigger("c1", "s2", ["2001:db8::10", "192.0.2.1"], ""),
        validation_trigger("c1", "s1", ["2001:db8::11", "192.0.2.1"], ""),
        validation_trigger("c1", "s1", ["2001:db8::10", "192.0.2.1"], "1"),
    }
    assert base not in others and len(others) == 4


# --- the real provider process ----------------------------------------------------------------


# The real `python -m pulumi.dynamic` process, started in the project root as the engine does,
# imports components.validation by its pickled path and probes; warn mode reaches its stderr.
def test_real_provider_process(relay: LocalRelay) -> None:
    inputs = program_inputs(relay)
    with ProviderHost(process=True, timeout=60) as real:
        assert real.configure({"home-derp:validate": "warn"}).accept_secrets is False
        assert create(real, inputs)["ok"] is True
        with local_relay(stun="closed") as broken:
            outs = create(real, program_inputs(broken, mode="warn", timeout_seconds=0))
        assert outs["ok"] is False
        stderr = real.stderr_text()
    assert "home-derp:validate=warn, deploying anyway" in stderr
    assert "✗ stun" in stderr and "hint: nothing listens on the STUN port" in stderr
