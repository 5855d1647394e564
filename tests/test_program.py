"""The whole program (``__main__.py``) evaluated under mocks with the home stack's config."""

from __future__ import annotations

import json

import pulumi
import pytest

from tests.conftest import FAKE_ZONE_ID, RelayMocks, evaluate, home_config, run_program, set_config


# The committed home stack deploys every part and exports what the other issues need.
def test_home_stack_registers_every_part(mocks: RelayMocks) -> None:
    outputs = evaluate(home_config())
    region = json.loads(outputs["derp_map_fragment"][0])["derpMap"]["Regions"]["900"]
    assert region["RegionCode"] == "homelab"
    assert region["Nodes"][0]["DERPPort"] == 12345
    assert region["Nodes"][0]["IPv4"] == "none"
    assert outputs["addresses"][0] == ["2409:8a00:1a2b:3c40::10"]
    assert outputs["certificate_serial"][0] == mocks.certificate_serial
    assert outputs["container_id"][0] == "relay-900-derper-id"
    types = {r.typ for r in mocks.resources}
    assert {
        "homederp:index:HomeDerpRelay",
        "cloudflare:index/dnsRecord:DnsRecord",
        "acme:index/certificate:Certificate",
        "docker:index/container:Container",
        "docker:index/volume:Volume",
        "docker:index/remoteImage:RemoteImage",
    } <= types
    zone_lookups = [c for c in mocks.calls if c[0] == "cloudflare:index/getZone:getZone"]
    assert zone_lookups and zone_lookups[0][1]["filter"] == {"name": "example.com", "match": "all"}
    assert mocks.one("cloudflare:index/dnsRecord:DnsRecord").inputs["zoneId"] == FAKE_ZONE_ID


# Bad config stops the program before a single resource is registered, naming the key.
def test_bad_config_registers_nothing(mocks: RelayMocks) -> None:
    set_config(home_config(derpPort="80"))

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    with pytest.raises(pulumi.RunError, match="home-derp:derpPort"):
        run()
    assert mocks.resources == []


# A health run that cannot read the last deployment's outputs from the backend says so: the
# outputs it does not compute are then empty until the next deploy, never silently.
def test_health_run_without_previous_outputs_warns(
    mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components import stack_state

    warned: list[str] = []
    monkeypatch.setenv("HOME_DERP_HEALTH_RUN", "1")
    monkeypatch.setattr(stack_state, "previous_outputs", lambda: None)
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warned.append(message))
    set_config(home_config())

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    run()
    assert any("last deployment's outputs could not be read" in w for w in warned), warned
