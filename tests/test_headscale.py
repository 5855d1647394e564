"""controlPlane: headscale without the tailnet: the DERP map file edits, headscale's config as it
reads it, the file written on a host through a real ``unix://`` channel, the settings rules, the
derper flags, the verifier's log lines and the program's choice of publisher.

The edits are cross-checked with PyYAML (an independent parser of the same YAML); the full path
with the real headscale and clients is tests/real_tailnet/test_headscale.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any, cast

import pulumi
import pytest
import yaml

from components import container, derpmap
from components import headscale_derpmap as hm
from components.headscale import (
    FileChanged,
    HeadscaleHost,
    go_duration_seconds,
    listed_problem,
    parse_config,
    refresh_problem,
    refresh_seconds,
)
from components.headscale_region import FileRegionState, HeadscaleRegionError, edit_file_region
from components.netcheck.admission import cause_of
from components.settings import Environment, parse_settings
from policy.rules import verify_clients_on
from tests.conftest import RelayMocks, evaluate, home_config

REGION = hm.yaml_keys(
    derpmap.region_to_dict(
        derpmap.home_region(
            region_id=900,
            region_code="home",
            region_name="Home",
            hostname="derp.example.com",
            derp_port=12345,
            stun_port=3478,
            ipv4=None,
            ipv6=None,
            pin_ipv6=False,
        )
    )
)

USER_FILE = """# DERP map of my tailnet
regions:
  1: null   # no Tailscale region 1

  901:
    regionid: 901
    regioncode: office   # the office relay
    nodes:
      - name: 901a
        regionid: 901
        hostname: derp.office.example
    # a comment after the office region

  # a comment before the cloud region
  902: {regionid: 902, nodes: [{name: 902a, regionid: 902, hostname: derp.cloud.example}]}
# the end
"""

SHAPES = {
    "block with comments": USER_FILE,
    "flow (JSON-like)": '{"regions": {901: {"regionid": 901}}}\n',
    "empty flow regions": "{regions: {}}\n",
    "only a comment": "# nothing yet\n",
    "empty": "",
    "regions without value": "regions:\n",
    "no regions key": "omitdefaultregions: false\n",
    "CRLF line ends": "regions:\r\n  901:\r\n    regionid: 901\r\n",
}


# --------------------------------------------------------------------------------------------
# the file: our entry only


# Publishing then withdrawing gives back the user's file byte for byte, in every shape a DERP
# map file takes; the published file reads as the region we wrote (PyYAML, independently).
@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_publish_then_withdraw_is_the_identity(text: str) -> None:
    created = hm.created_regions_key(text)
    published = hm.set_region(text, 900, REGION)
    assert yaml.safe_load(published)["regions"][900] == REGION
    assert hm.remove_region(published, 900, remove_empty_regions=created) == text
    others = (yaml.safe_load(text) or {}).get("regions") or {}
    assert {k: v for k, v in yaml.safe_load(published)["regions"].items() if k != 900} == others


# A file whose lines all end in CRLF gets our lines in CRLF too (no mixed endings), and a drain,
# restore and withdrawal keep it so.
def test_crlf_file_gets_crlf_lines() -> None:
    text = "regions:\r\n  901:\r\n    regionid: 901\r\n"
    published = hm.set_region(text, 900, REGION)
    drained = hm.set_region(published, 900, hm.drained(REGION))
    for edited in (published, drained):
        assert edited.count("\r\n") == edited.count("\n") > text.count("\n")
    assert hm.set_region(drained, 900, REGION) == published
    assert hm.remove_region(published, 900) == text


# The bytes outside our entry are the user's: a publish only adds lines, at the end of regions.
def test_publish_keeps_every_other_byte() -> None:
    published = hm.set_region(USER_FILE, 900, REGION)
    head, _ = USER_FILE.split("# the end\n")
    assert published.startswith(head) and published.endswith("# the end\n")
    assert published[len(head) :].startswith("  900:\n    regionid: 900\n")


# A drain adds nomeasurenohome as the region's last member; a restore gives back the same bytes.
def test_drain_and_restore() -> None:
    published = hm.set_region(USER_FILE, 900, REGION)
    drained = hm.set_region(published, 900, hm.drained(REGION))
    live = hm.find_region(drained, 900)
    assert live is not None and list(live)[-1] == "nomeasurenohome" and hm.region_drained(live)
    assert hm.set_region(drained, 900, REGION) == published


def _shuffled(value: Any, seed: int) -> Any:
    """``value`` with every mapping's keys in another order (as the engine's Go maps deliver a
    dynamic provider's inputs: docs/upstream/pulumi.md#property-order)."""
    import random

    if isinstance(value, dict):
        keys = list(value)
        random.Random(seed).shuffle(keys)
        return {k: _shuffled(value[k], seed + 1) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, seed + 1) for v in value]
    return value


# The region reaches the provider in whatever key order the engine gives (it changed between
# runs in tests/engine/test_headscale.py): publish, drain and restore each from another order
# still restore the published bytes, and the entry is in the policy's key order.
def test_key_order_of_the_inputs_does_not_change_the_bytes() -> None:
    policy = derpmap.region_to_dict(
        derpmap.home_region(
            region_id=900, region_code="home", region_name="Home", hostname="derp.example.com",
            derp_port=12345, stun_port=3478, ipv4="none", ipv6="2001:db8::10", pin_ipv6=True,
        )
    )  # fmt: skip
    assert list(policy) == list(derpmap.REGION_KEY_ORDER)
    assert list(policy["Nodes"][0]) == list(derpmap.NODE_KEY_ORDER)
    shuffles = [hm.yaml_keys(_shuffled(policy, seed)) for seed in (1, 2, 3)]
    assert len({json.dumps(s) for s in [hm.yaml_keys(policy), *shuffles]}) == 1
    published, state = edit_file_region(
        USER_FILE,
        900,
        shuffles[0],
        healthy=True,
        was=FileRegionState(False, False, False),
        adopt=False,
    )
    drained, state = edit_file_region(
        published, 900, shuffles[1], healthy=False, was=state, adopt=False
    )
    assert state.drained and hm.region_drained(hm.find_region(drained, 900) or {})
    restored, _ = edit_file_region(drained, 900, shuffles[2], healthy=True, was=state, adopt=False)
    assert restored == published
    assert published == hm.set_region(USER_FILE, 900, hm.yaml_keys(policy))


# A changed region replaces our entry in place, in the style of its mapping.
def test_update_in_place_block_and_flow() -> None:
    moved = {**REGION, "nodes": [{**REGION["nodes"][0], "derpport": 443}]}
    for text in (USER_FILE, '{"regions": {901: {"regionid": 901}}}\n'):
        published = hm.set_region(text, 900, REGION)
        updated = hm.set_region(published, 900, moved)
        assert hm.find_region(updated, 900) == moved
        assert hm.remove_region(updated, 900) == text


REFUSED = {
    "quoted region id": ('regions:\n  "901": {regionid: 901}\n', "not an integer"),
    "capitalised keys": ("Regions:\n  901: {}\n", "unknown top-level key 'Regions'"),
    "a tailnet policy": ('{"derpMap": {"Regions": {}}}\n', "unknown top-level key 'derpMap'"),
    "a list": ("- 1\n- 2\n", "top level must be a mapping"),
    "duplicate region": ("regions:\n  901: {}\n  901: {}\n", "not YAML headscale can read"),
    "same id twice (0901)": ("regions:\n  901: {}\n  0901: {}\n", "not YAML headscale can read"),
    "region not a mapping": ("regions:\n  901: [1]\n", "region 901 is not a mapping"),
    "regions a list": ("regions: [1]\n", "regions must be a mapping"),
    "two documents": ("regions: {}\n---\nregions: {}\n", "not YAML headscale can read"),
}


# A file that is not a DERP map headscale can read is refused, with what is wrong.
@pytest.mark.parametrize("text, why", REFUSED.values(), ids=REFUSED.keys())
def test_not_a_derp_map_is_refused(text: str, why: str) -> None:
    with pytest.raises(hm.DerpFileError, match=why):
        hm.set_region(text, 900, REGION)


# Our entry defined through YAML anchors is not rewritten: other entries may share its nodes.
def test_anchored_entry_is_refused() -> None:
    text = "regions:\n  900: &ours {regionid: 900}\n  901: *ours\n"
    with pytest.raises(hm.DerpFileError, match="anchor"):
        hm.set_region(text, 900, REGION)


# --------------------------------------------------------------------------------------------
# the verdict on the file (the same table as the Tailscale policy: docs/architecture.md, Health)

NEW = FileRegionState(False, False, False)
PUBLISHED = FileRegionState(True, False, False)


# Never published and failing: nothing is written.
def test_failing_relay_is_never_published() -> None:
    text, state = edit_file_region(USER_FILE, 900, REGION, healthy=False, was=NEW, adopt=False)
    assert text == USER_FILE and not state.published


# No verdict leaves the region exactly as it is, drained or not.
def test_no_verdict_leaves_the_region() -> None:
    published = hm.set_region(USER_FILE, 900, hm.drained(REGION))
    was = FileRegionState(True, True, False)
    text, state = edit_file_region(published, 900, REGION, healthy=None, was=was, adopt=False)
    assert text == published and state.drained and state.note


# A region with our id that this stack did not write is refused unless adopted; an identical
# one (a write whose confirmation failed) is ours.
def test_foreign_region_is_refused_unless_adopted() -> None:
    other = hm.set_region(USER_FILE, 900, {**REGION, "regioncode": "theirs"})
    with pytest.raises(HeadscaleRegionError, match="adoptRegion"):
        edit_file_region(other, 900, REGION, healthy=True, was=NEW, adopt=False)
    text, _ = edit_file_region(other, 900, REGION, healthy=True, was=NEW, adopt=True)
    assert hm.find_region(text, 900) == REGION
    same = hm.set_region(USER_FILE, 900, REGION)
    assert edit_file_region(same, 900, REGION, healthy=True, was=NEW, adopt=False)[0] == same


# Our write landed but its confirmation failed (so the state holds nothing): the next run with a
# failing relay drains that region, as the tailnet policy does; a healthy one keeps it, and a
# drained one is restored.
def test_a_landed_write_without_state_is_ours_to_drain() -> None:
    landed = hm.set_region(USER_FILE, 900, REGION)
    text, state = edit_file_region(landed, 900, REGION, healthy=False, was=NEW, adopt=False)
    live = hm.find_region(text, 900)
    assert live is not None and hm.region_drained(live) and state.published and state.drained
    restored, state = edit_file_region(text, 900, REGION, healthy=True, was=NEW, adopt=False)
    assert restored == landed and state.published and not state.drained


# A published region removed by hand is not drained again; it is published anew when healthy.
def test_region_removed_by_hand() -> None:
    text, state = edit_file_region(
        USER_FILE, 900, REGION, healthy=False, was=PUBLISHED, adopt=False
    )
    assert text == USER_FILE and not state.published and state.note


# --------------------------------------------------------------------------------------------
# headscale's config as headscale reads it (docs/upstream/headscale.md#derp-refresh)


# Durations as viper's GetDuration reads them (spf13/cast ToDurationE); 0 or garbage disables.
@pytest.mark.parametrize(
    "value, seconds",
    [
        ("3h", 10800.0),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("2000000000", 2.0),  # no unit: nanoseconds
        (2000000000, 2.0),
        ("0", None),
        ("0s", None),
        ("soon", None),
        ("-5s", None),
    ],
)
def test_go_durations(value: Any, seconds: float | None) -> None:
    assert go_duration_seconds(value) == seconds


CONFIG = """server_url: https://hs.example.com
metrics_listen_addr: 127.0.0.1:9090
derp:
  paths: [/etc/headscale/derp.yaml]
  auto_update_enabled: true
  update_frequency: 30s
policy: {mode: file, path: /etc/headscale/policy.hujson}
"""


# The keys home-derp depends on, and the rules: the file listed, a bounded re-read.
def test_config_rules() -> None:
    config = parse_config(CONFIG)
    assert config.derp_paths == ("/etc/headscale/derp.yaml",)
    assert refresh_seconds(config) == 30.0
    assert listed_problem(config, "/etc/headscale/derp.yaml") is None
    assert "derp.paths" in str(listed_problem(config, "/srv/derp.yaml"))
    assert refresh_problem(config, has_reload=False) is None
    slow = parse_config(CONFIG.replace("30s", "3h"))
    assert "3h" in str(refresh_problem(slow, has_reload=False))
    assert refresh_problem(slow, has_reload=True) is None
    off = parse_config(CONFIG.replace("auto_update_enabled: true", "auto_update_enabled: false"))
    assert refresh_seconds(off) is None
    assert "auto_update_enabled" in str(refresh_problem(off, has_reload=False))
    # Not set at all: no periodic re-read (no default), frequency 3h (viper default).
    bare = parse_config("derp: {paths: [/x.yaml]}\n")
    assert bare.auto_update is False and bare.update_frequency == 10800.0


# --------------------------------------------------------------------------------------------
# the file on the host, through a real unix:// channel


# Bytes travel unchanged (CRLF too), the write keeps the file's mode, and a file changed since
# it was read is not overwritten.
def test_host_reads_and_writes_bytes_atomically(tmp_path: Path) -> None:
    host = HeadscaleHost("unix:///")
    path = tmp_path / "derp.yaml"
    assert host.read_file(str(path)).text is None
    path.write_bytes(b"regions:\r\n  901: {}\r\n")
    path.chmod(0o640)
    state = host.read_file(str(path))
    assert state.text == "regions:\r\n  901: {}\r\n"
    new = hm.set_region(state.text, 900, REGION)
    host.write_file(str(path), new, state.checksum)
    assert path.read_bytes() == new.encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["derp.yaml"]  # no temp file left
    with pytest.raises(FileChanged):
        host.write_file(str(path), USER_FILE, state.checksum)  # stale checksum
    assert path.read_bytes() == new.encode()
    assert host.writable_problem(str(path)) is None
    assert "no directory" in str(host.writable_problem(str(tmp_path / "nope" / "d.yaml")))


# --------------------------------------------------------------------------------------------
# settings


def _raw(tmp_path: Path, **overrides: str) -> dict[str, str]:
    derp_file = tmp_path / "derp.yaml"
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.replace("/etc/headscale/derp.yaml", str(derp_file)))
    raw = {
        "hostname": "derp.example.com",
        "zone": "example.com",
        "ipv6": "2606:4700:4700::64",
        "ipv4": "none",
        "dockerHost": "tcp://relay.example.com:2376",
        "tailscaleVersion": "1.102.5",
        "controlPlane": "headscale",
        "headscaleUrl": "https://hs.example.com",
        "headscaleHost": "unix:///",
        "headscaleConfig": str(config),
        "headscaleDerpFile": str(derp_file),
    }
    return {**raw, **overrides}


def _verdict(raw: dict[str, str]) -> Any:
    # The rules only ask whether a token is configured (as the doctor does, a marker stands for
    # it: a real Output needs an event loop, which a module fixture may not have).
    env = Environment(cloudflare_api_token=cast("pulumi.Output[str]", object()))
    return parse_settings(raw, env=env, headscale=lambda url: HeadscaleHost(url))


# A headscale stack: no Tailscale credentials needed, derper admits through /verify and fails
# closed, and no tailscaled socket is mounted.
def test_headscale_stack(tmp_path: Path) -> None:
    verdict = _verdict(_raw(tmp_path))
    assert verdict.ok, verdict.problems
    settings = verdict.settings
    assert settings.derper.verify_url == "https://hs.example.com/verify"
    assert settings.policy.mode == "patch"
    command = container.derper_command(settings)
    assert "-verify-client-url=https://hs.example.com/verify" in command
    assert "-verify-client-url-fail-open=false" in command
    assert not any(c.startswith(("-verify-clients", "-socket")) for c in command)
    mounts = [v["container_path"] for v in container.derper_volumes(settings, state_volume="s",
                                                                     certs_volume="c")]  # fmt: skip
    assert container.SOCKET_DIR not in mounts
    assert verify_clients_on({"command": command}) is None


# With headscale derper admits through /verify and never gets tailscaled's socket: in every
# combination of ports, network mode and runtime image it runs as 65532 with no host directory
# mounted, and the policy pack accepts it (docs/guide/what-derper-can-touch.md).
def test_headscale_derper_is_never_root_and_never_gets_the_socket(tmp_path: Path) -> None:
    import itertools

    from policy import rules
    from tests.test_privilege import OTHER_RUNTIME, camel, derper_args

    axes = {
        "derpPort": ("443", "12345"),
        "stunPort": ("3478", "999"),
        "networkMode": ("host", "bridge"),
        "runtimeImage": ("scratch", OTHER_RUNTIME),
    }
    accepted = 0
    for values in itertools.product(*axes.values()):
        raw = dict(zip(axes, values, strict=True))
        verdict = _verdict(_raw(tmp_path, **raw))
        if not verdict.ok:
            assert {p.key for p in verdict.problems} == {"runtimeImage"}, verdict.problems
            continue
        args = derper_args(verdict.settings)
        assert args["user"] == "65532:65532", raw
        assert not any(v.get("host_path") for v in args["volumes"]), raw
        assert rules.hardening_problems(camel(args)) == [], raw
        accepted += 1
    assert accepted == 13  # 16, less the 3 low-port host stacks on another runtime image


# Each value that cannot work is named, with what would be valid.
@pytest.mark.parametrize(
    "overrides, key, why",
    [
        ({"headscaleUrl": ""}, "headscaleUrl", "required"),
        ({"headscaleUrl": "https://hs.example.com/api"}, "headscaleUrl", "without a path"),
        ({"headscaleHost": "tcp://h:2376"}, "headscaleHost", "a shell is needed"),
        ({"headscaleDerpFile": "derp.yaml"}, "headscaleDerpFile", "absolute"),
        ({"headscaleDerpFile": "/srv/other.yaml"}, "headscaleDerpFile", "derp.paths"),
        ({"headscaleConfig": "/nonexistent/config.yaml"}, "headscaleConfig", "no such file"),
        ({"headscaleReload": "systemctl 'restart"}, "headscaleReload", "not a command line"),
        ({"headscaleDebugAddress": "9090"}, "headscaleDebugAddress", "host:port"),
        ({"tailnetPolicy": "file"}, "tailnetPolicy", "patch"),
        ({"peerRelayPort": "40000"}, "peerRelayPort", "tcp://"),
        ({"image": "fredliang/derper:v1@sha256:" + "a" * 64}, "image", "fail-open"),
        # derper asks /verify from its own namespace in bridge mode: fail-closed, it would
        # reject every client.
        (
            {"networkMode": "bridge", "headscaleUrl": "http://127.0.0.1:8080"},
            "headscaleUrl",
            "its loopback is not the host's",
        ),
        (
            {"networkMode": "bridge", "headscaleUrl": "http://localhost:8080"},
            "headscaleUrl",
            "its loopback is not the host's",
        ),
    ],
)
def test_headscale_problems(tmp_path: Path, overrides: dict[str, str], key: str, why: str) -> None:
    verdict = _verdict(_raw(tmp_path, **overrides))
    problems = [p for p in verdict.problems if p.key == key]
    assert problems and why in str(problems[0]), verdict.problems


# A loopback headscaleUrl is fine in host mode (derper shares the host's loopback).
def test_loopback_headscale_url_in_host_mode(tmp_path: Path) -> None:
    verdict = _verdict(_raw(tmp_path, headscaleUrl="http://127.0.0.1:8080"))
    assert verdict.ok, verdict.problems


# headscale that re-reads only at start-up, with no reload command, is refused before any
# resource; a restart command makes it fine.
def test_unbounded_reload_is_refused(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    config = Path(raw["headscaleConfig"])
    config.write_text(config.read_text().replace("30s", "3h"))
    (problem,) = [p for p in _verdict(raw).problems if p.key == "headscaleReload"]
    assert "3h" in problem.why
    assert _verdict({**raw, "headscaleReload": "systemctl restart headscale"}).ok


# headscale keys in a Tailscale stack are a mistake, named; their defaults are not.
def test_headscale_keys_need_controlplane_headscale(tmp_path: Path) -> None:
    raw = {k: v for k, v in _raw(tmp_path).items() if k != "controlPlane"}
    keys = {p.key for p in _verdict(raw).problems}
    assert {"headscaleUrl", "headscaleHost", "headscaleConfig", "headscaleDerpFile"} <= keys


# --------------------------------------------------------------------------------------------
# derper's verdict lines for the URL verifier (docs/upstream/derper.md#verify-log-lines)


@pytest.mark.parametrize(
    "reason, cause",
    [
        ("admission controller: nodekey:" + "ab" * 32 + "/10.0.0.1 not allowed", "denied"),
        ("admission controller: 404 Not Found", "verifier_error"),
        (
            'Post "https://hs.example.com/verify": dial tcp 10.0.0.1:443: connect: connection '
            "refused",
            "verifier_unreachable",
        ),
        ("invalid character '<' looking for beginning of value", "unconfirmed"),
        ("peer nodekey:" + "ab" * 32 + " not authorized (not found in local tailscaled)",
         "not_authorized"),
    ],
)  # fmt: skip
def test_verifier_log_causes(reason: str, cause: str) -> None:
    assert cause_of(reason) == cause


# The policy pack's advisory rule accepts headscale's verifier only when it fails closed.
def test_policy_rule_wants_fail_closed() -> None:
    url = "-verify-client-url=https://hs.example.com/verify"
    assert verify_clients_on({"command": [url, "-verify-client-url-fail-open=false"]}) is None
    assert "fail-open" in str(verify_clients_on({"command": [url]}))


# --------------------------------------------------------------------------------------------
# the program


# With controlPlane: headscale the program publishes through HeadscaleDerpRegion, never the
# Tailscale policy, and derper gets no socket.
def test_program_registers_the_headscale_region(mocks: RelayMocks, tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    overrides = {k: raw[k] for k in raw if k.startswith(("headscale", "controlPlane"))}
    evaluate(home_config(**overrides, **{"tailscale:apiKey": None}))
    (region,) = mocks.of_type("pulumi-python:dynamic/homederp:HeadscaleDerpRegion")
    assert region.name == "relay-900-headscale-region"
    assert region.inputs["derp_file"] == raw["headscaleDerpFile"]
    assert region.inputs["refresh_seconds"] == 30.0
    assert not mocks.of_type("pulumi-python:dynamic/homederp:TailnetDerpRegion")
    derper = next(
        c for c in mocks.of_type("docker:index/container:Container") if "derper" in c.name
    )
    assert not any(v.get("containerPath") == container.SOCKET_DIR for v in derper.inputs["volumes"])


# A headscale stack has no Tailscale credential, so validation must not demand one: asked to
# prove policy write access, it fails every run and the gate turns `up` red for a healthy relay
# (found by tests/engine/test_headscale.py). A Tailscale stack still proves it.
def test_validation_asks_no_tailscale_credential(mocks: RelayMocks, tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    overrides = {k: raw[k] for k in raw if k.startswith(("headscale", "controlPlane"))}
    evaluate(home_config(**overrides, **{"tailscale:apiKey": None}))
    (validation,) = mocks.of_type("pulumi-python:dynamic/homederp:RelayValidation")
    assert validation.inputs.get("policy_access") is None, validation.inputs
    mocks.reset()
    evaluate(home_config())
    (validation,) = mocks.of_type("pulumi-python:dynamic/homederp:RelayValidation")
    assert validation.inputs["policy_access"] == "write"


# A peer relay with headscale needs a policy file headscale reads (not database mode).
def test_peer_relay_needs_a_policy_file(tmp_path: Path) -> None:
    raw = _raw(tmp_path, peerRelayPort="40000")
    config = Path(raw["headscaleConfig"])
    config.write_text(config.read_text().replace("mode: file", "mode: database"))
    problems = [p for p in _verdict(raw).problems if p.key == "peerRelayPort"]
    assert any("not a file home-derp can edit" in p.why for p in problems), problems


# The policy file's path as headscale resolves it: relative to the config's directory.
def test_policy_file_path() -> None:
    from components.headscale import policy_file

    config = parse_config(CONFIG)
    assert policy_file(config, "/etc/headscale/config.yaml") == "/etc/headscale/policy.hujson"
    relative = parse_config(CONFIG.replace("/etc/headscale/policy.hujson", "acl.hujson"))
    assert policy_file(relative, "/srv/hs/config.yaml") == "/srv/hs/acl.hujson"
    assert policy_file(parse_config("policy: {mode: database}\n"), "/c.yaml") is None


# headscale's compiled filter grants the relay capability on the relay host's address.
def test_grants_relay_reads_the_compiled_filter() -> None:
    from components.headscale_grant import grants_relay

    rule = {
        "SrcIPs": ["100.64.0.3/32"],
        "CapGrant": [
            {"Dsts": ["100.64.0.1/32"], "CapMap": {"tailscale.com/cap/relay": None}},
        ],
    }
    assert grants_relay([rule], ["100.64.0.1", "fd7a:115c:a1e0::1"])
    assert not grants_relay([rule], ["100.64.0.9"])
    other = {"CapGrant": [{"Dsts": ["100.64.0.1/32"], "CapMap": {"example.com/cap/x": None}}]}
    assert not grants_relay([other], ["100.64.0.1"])
    assert not grants_relay({"not": "a list"}, ["100.64.0.1"])


# With a peer relay the program writes the grant into headscale's policy file (the one its config
# names), never into a Tailscale policy.
def test_program_registers_the_grant_in_headscales_policy(
    mocks: RelayMocks, tmp_path: Path
) -> None:
    raw = _raw(tmp_path)
    overrides = {k: raw[k] for k in raw if k.startswith(("headscale", "controlPlane"))}
    evaluate(home_config(**overrides, peerRelayPort="40000", **{"tailscale:apiKey": None}))
    (grant,) = mocks.of_type("pulumi-python:dynamic/homederp:HeadscalePeerRelayGrant")
    assert grant.inputs["policy_file"] == "/etc/headscale/policy.hujson"
    assert grant.inputs["reload"] == ["systemctl", "reload", "headscale"]
    assert grant.inputs["grant"]["app"] == {"tailscale.com/cap/relay": []}
    assert not mocks.of_type("pulumi-python:dynamic/homederp:TailnetPeerRelayGrant")


# A health run of a headscale stack registers exactly what the health workflow targets:
# validation, the region in headscale's file, the gate (.github/scripts/stack_facts.py).
def test_health_run_targets_the_headscale_region(
    mocks: RelayMocks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import sys

    from tests.mocks import ROOT

    spec = importlib.util.spec_from_file_location(
        "stack_facts", ROOT / ".github" / "scripts" / "stack_facts.py"
    )
    assert spec and spec.loader
    facts = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "stack_facts", facts)  # dataclasses resolve through it
    spec.loader.exec_module(facts)
    raw = _raw(tmp_path)
    overrides = {k: raw[k] for k in raw if k.startswith(("headscale", "controlPlane"))}
    monkeypatch.setenv("HOME_DERP_HEALTH_RUN", "1")
    evaluate(home_config(**overrides, **{"tailscale:apiKey": None}))
    registered = {
        (r.typ, r.name)
        for r in mocks.resources
        if r.custom and not r.typ.startswith("pulumi:providers:")
    }
    urns = facts.health_targets("org/home-derp/home", "home-derp", "900", "patch", "headscale")
    targets = {(u.split("::")[2].split("$")[1], u.split("::")[3]) for u in urns}
    assert registered == targets


# The policy pack's region rule judges the region written to headscale's file like the one in a
# Tailscale policy: ids 900-999.
def test_policy_pack_judges_the_headscale_region() -> None:
    from policy import rules
    from tests.test_policy import violations

    good = derpmap.region_to_dict(
        derpmap.home_region(
            region_id=900, region_code="home", region_name="Home", hostname="derp.example.com",
            derp_port=12345, stun_port=3478, ipv4=None, ipv6=None, pin_ipv6=False,
        )
    )  # fmt: skip
    assert violations(rules.derp_region_range, rules.HEADSCALE_REGION, {"region": good}) == []
    bad = {**good, "RegionID": 1000}
    assert violations(rules.derp_region_range, rules.HEADSCALE_REGION, {"region": bad})
