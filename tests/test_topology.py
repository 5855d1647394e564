"""Who can reach devices homed on the region, as the stack says it: ``ipv4`` chosen explicitly, a
meshed companion node deployed like the home one, the one-region warning (components/settings/
topology.py, components/relay.py). The real-program proof is tests/real_tailnet/test_reach.py."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components import relay_host as relay_host_module
from components.host import HostReadError
from components.settings import Environment, parse_settings
from tests.conftest import HostFacts, RelayMocks, evaluate, home_config, run_program, set_config
from tests.mocks import HostProbeAdapter
from tests.test_relay import is_secret_input, unwrap

TOKEN = pulumi.Output.secret("token")
HOME_V6 = "2409:8a00:1a2b:3c40::10"
VPS = "ssh://root@vps.example.com"
VPS_V6 = "2a01:4f8:c0c:9a1e::1"
VPS_V4 = "203.0.114.9"
COMPANION = {
    "companionHostname": "derp2.example.com",
    "companionDockerHost": VPS,
    "companionIpv4": VPS_V4,
}
CONTAINER = "docker:index/container:Container"
RECORD = "cloudflare:index/dnsRecord:DnsRecord"
VALIDATION = "pulumi-python:dynamic/homederp:RelayValidation"
MESH_KEY = "pulumi-python:dynamic/homederp:MeshKey"
REGION = "pulumi-python:dynamic/homederp:TailnetDerpRegion"


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch, relay_host: HostFacts) -> dict[str, HostFacts]:
    """The home host (the suite's) and the companion VPS, each answering for itself."""
    vps = HostFacts(addresses=[VPS_V6], version="1.100.0")
    by_url = {VPS: vps}

    def live(docker_host: str) -> HostProbeAdapter:
        return HostProbeAdapter(by_url.get(docker_host, relay_host).probe(docker_host))

    monkeypatch.setattr(relay_host_module, "LiveHost", live)
    return {"home": relay_host, "vps": vps}


def parse(raw: dict[str, str], *, health_run: bool = False, **probes: Any) -> Any:
    base = {"hostname": "derp.example.com", "zone": "example.com", "ipv6": HOME_V6}
    return parse_settings(
        {**base, **raw},
        env=Environment(cloudflare_api_token=TOKEN, health_run=health_run),
        host=HostProbeAdapter(probes.get("home", HostFacts())),
        companion_host=HostProbeAdapter(probes["vps"]) if "vps" in probes else None,
    )


# An unset ipv4 stops a deploy before any resource, saying exactly what to add for each choice.
def test_unset_ipv4_is_refused_with_the_three_choices(mocks: RelayMocks) -> None:
    set_config(home_config(ipv4=None))
    with pytest.raises(pulumi.RunError) as failure:
        pulumi.runtime.test(run_program)()
    message = str(failure.value)
    assert "home-derp:ipv4 = (not set)" in message
    assert "`pulumi config set home-derp:ipv4 none`" in message
    assert "`pulumi config set home-derp:ipv4 <public IPv4>`" in message
    assert "home-derp:companionHostname" in message and "nothing was deployed" in message
    assert mocks.resources == []


# A health run of an existing stack without ipv4 still judges (and drains) the relay: a warning.
def test_unset_ipv4_in_a_health_run_is_a_warning() -> None:
    verdict = parse({}, health_run=True)
    assert verdict.ok, verdict.problems
    assert any("home-derp:ipv4 is not set" in w for w in verdict.warnings)


# IPv6-only by choice is allowed and announced with what it costs; with an address, it is not.
def test_ipv6_only_by_choice_is_announced() -> None:
    verdict = parse({"ipv4": "none"})
    assert verdict.ok and not verdict.settings.region_has_ipv4
    assert any("IPv6-only" in w and "cannot start a connection" in w for w in verdict.warnings)
    dual = parse({"ipv4": "203.0.114.7"})
    assert dual.ok and dual.settings.region_has_ipv4
    assert not any("IPv6-only" in w for w in dual.warnings)


# omitDefaultRegions: a drain of the only region moves nobody — said at preview and up.
def test_one_region_warning() -> None:
    verdict = parse({"ipv4": "203.0.114.7", "omitDefaultRegions": "true"})
    assert any("draining it moves nobody" in w for w in verdict.warnings)
    v6 = parse({"ipv4": "none", "omitDefaultRegions": "true"})
    assert any("no DERP relay at all" in w for w in v6.warnings)


# The companion: its own name, host, addresses (IPv6 read on the VPS) and derper built at the
# VPS tailscaled's release; each node meshes with the other; no ipv4 needed at home.
def test_companion_settings() -> None:
    vps = HostFacts(addresses=[VPS_V6], version="1.100.0")
    verdict = parse(COMPANION, vps=vps)
    assert verdict.ok, verdict.problems
    s = verdict.settings
    c = s.companion
    assert c is not None and s.region_has_ipv4 and s.addresses.ipv4 is None
    assert (c.hostname, c.docker.host) == ("derp2.example.com", VPS)
    assert (c.addresses.ipv4, c.addresses.ipv6) == (VPS_V4, VPS_V6)
    assert c.derper.build is not None and c.derper.build.tailscale_version == "1.100.0"
    assert s.derper.build is not None and s.derper.build.tailscale_version == "1.102.5"
    assert s.mesh_with == ("derp2.example.com",)  # derpPort 443: no port in the URL
    assert not any("IPv6-only" in w for w in verdict.warnings)
    assert any(r.startswith("addresses") for r in vps.reads)


# Every companion key problem names its key and the fix; nothing half-configured goes through.
@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"companionIpv4": VPS_V4}, "companionIpv4", "companionHostname is empty"),
        ({**COMPANION, "companionDockerHost": ""}, "companionDockerHost", "required"),
        ({**COMPANION, "companionIpv4": ""}, "companionIpv4", "what devices without IPv6"),
        ({**COMPANION, "companionIpv4": "2a01::1"}, "companionIpv4", ""),
        ({**COMPANION, "companionIpv6": "none"}, "companionIpv6", "dials the home node"),
        ({**COMPANION, "companionHostname": "derp.example.com"}, "companionHostname", "own"),
        ({**COMPANION, "companionHostname": "derp.example.org"}, "companionHostname", "zone"),
        ({**COMPANION, "companionDockerHost": "ftp://vps"}, "companionDockerHost", ""),
        ({**COMPANION, "networkMode": "bridge"}, "companionHostname", "networkMode host"),
        (
            {**COMPANION, "image": "fredliang/derper:1.102.5@sha256:" + "a" * 64},
            "image",
            "-mesh-with",
        ),
    ],
)
def test_companion_problems(raw: dict[str, str], key: str, words: str) -> None:
    verdict = parse(raw, vps=HostFacts(addresses=[VPS_V6]))
    problems = [p for p in verdict.problems if p.key == key]
    assert problems, verdict.problems
    assert words in str(problems[0])


# A companion host whose tailscaled is down has no build: its own problem is named, not an
# `image` the user never set.
def test_companion_without_tailscaled_blames_no_image() -> None:
    vps = HostFacts(addresses=[VPS_V6], socket_exists=False)
    verdict = parse(COMPANION, vps=vps)
    assert not any(p.key == "image" for p in verdict.problems), verdict.problems


# What the companion host says is reported as the companion's, under its own key.
def test_unreadable_companion_host_is_named() -> None:
    vps = HostFacts(error=HostReadError("unreachable", "ssh: connect to host vps: refused"))
    verdict = parse({**COMPANION, "companionIpv6": VPS_V6}, vps=vps)
    problems = [p for p in verdict.problems if p.key == "companionDockerHost"]
    assert problems and f"companion host {VPS}" in str(problems[0]), verdict.problems
    assert "refused" in str(problems[0])


def containers(mocks: RelayMocks) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in mocks.of_type(CONTAINER)}


# The companion is deployed exactly like the home node on its own Docker host (records, its own
# certificate, image built at its release, hardened derper), both derpers mesh with each other
# with one generated secret key, both nodes are validated, and the region lists home first.
def test_companion_is_deployed_meshed_and_validated(
    mocks: RelayMocks, hosts: dict[str, HostFacts]
) -> None:
    outputs = evaluate(home_config(ipv4=None, **COMPANION))
    found = containers(mocks)
    home, vps = found["relay-900-derper"], found["relay-900-companion-derper"]
    assert "-mesh-with=derp2.example.com:12345" in home["command"]
    assert "-mesh-with=derp.example.com:12345" in vps["command"]
    for derper in (home, vps):
        assert "-mesh-psk-file=/certs/mesh.key" in derper["command"]
        assert derper["user"] == "65532:65532" and derper["readOnly"] is True
    assert "-hostname=derp2.example.com" in vps["command"]
    key = mocks.one(MESH_KEY)
    assert key.name == "relay-900-mesh-key"
    for init in ("relay-900-init", "relay-900-companion-init"):
        uploads = {u["file"]: u for u in unwrap(found[init]["uploads"])}
        assert uploads["/certs/mesh.key"]["permissions"] == "0600"
    images = {r.name: r.inputs for r in mocks.of_type("docker:index/image:Image")}
    # each derper at its own host's tailscaled release (-verify-clients needs the same release)
    assert images["relay-900-companion-derper-image"]["imageName"] == "home-derp/derper:v1.100.0"
    assert images["relay-900-derper-image"]["imageName"] == "home-derp/derper:v1.102.5"
    providers = {r.name: r.inputs for r in mocks.of_type("pulumi:providers:docker")}
    assert providers["relay-900-companion-docker"]["host"] == VPS
    records = {(r.inputs["name"], r.inputs["type"]): r.inputs for r in mocks.of_type(RECORD)}
    assert records[("derp2.example.com", "A")]["content"] == VPS_V4
    assert records[("derp2.example.com", "AAAA")]["content"] == VPS_V6
    assert ("derp.example.com", "A") not in records
    certs = [r.inputs for r in mocks.of_type("tls:index/certRequest:CertRequest")]
    assert sorted(c["dnsNames"][0] for c in certs) == ["derp.example.com", "derp2.example.com"]
    validations = {r.name: r.inputs for r in mocks.of_type(VALIDATION)}
    assert set(validations) == {"relay-900-validation", "relay-900-companion-validation"}
    assert validations["relay-900-companion-validation"]["hostname"] == "derp2.example.com"
    assert validations["relay-900-companion-validation"]["docker_host"] == VPS
    assert all(v["region_ipv4"] is True for v in validations.values())
    nodes = mocks.one(REGION).inputs["region"]["Nodes"]
    assert [(n["Name"], n["HostName"], n["IPv4"]) for n in nodes] == [
        ("900a", "derp.example.com", "none"),
        ("900b", "derp2.example.com", VPS_V4),
    ]
    validation, _ = outputs["validation"]
    assert validation["healthy"] is True and validation["companion"]["healthy"] is True


# The mesh key is secret wherever it goes: the resource's output and both uploads.
def test_mesh_key_is_secret(mocks: RelayMocks, hosts: dict[str, HostFacts]) -> None:
    evaluate(home_config(ipv4=None, **COMPANION))
    for init in ("relay-900-init", "relay-900-companion-init"):
        assert is_secret_input(containers(mocks)[init]["uploads"])  # the whole property
    assert mocks.options["relay-900-mesh-key"].additional_secret_outputs == ("key",)


# Removing the companion gives back a one-node region, a derper without mesh flags, no key.
def test_removing_the_companion_restores_a_one_node_region(
    mocks: RelayMocks, hosts: dict[str, HostFacts]
) -> None:
    evaluate(home_config(ipv4="none"))
    assert not mocks.of_type(MESH_KEY)
    command = containers(mocks)["relay-900-derper"]["command"]
    assert not any(flag.startswith("-mesh") for flag in command)
    assert [n["Name"] for n in mocks.one(REGION).inputs["region"]["Nodes"]] == ["900a"]
    assert [r.name for r in mocks.of_type(VALIDATION)] == ["relay-900-validation"]
    assert mocks.one(VALIDATION).inputs["region_ipv4"] is False


# One failing node fails the region: a broken companion drains it and fails the gate.
def test_a_failing_companion_fails_the_region(
    mocks: RelayMocks, hosts: dict[str, HostFacts]
) -> None:
    mocks.validation_healthy = False
    outputs = evaluate(home_config(ipv4=None, **COMPANION))
    validation, _ = outputs["validation"]
    assert validation["healthy"] is False and validation["companion"]["healthy"] is False
    gate = mocks.one("pulumi-python:dynamic/homederp:RelayHealthGate").inputs
    assert gate["healthy"] is False
    assert "derp.example.com: relay derp.example.com failed" in gate["diagnosis"]
    assert "derp2.example.com: " in gate["diagnosis"]


# A health run that cannot read a dual-stack host's `ipv6: auto` validates what DNS publishes:
# expecting the IPv4 alone would call the published AAAA "unexpected" and drain a healthy relay.
def test_health_run_with_unread_ipv6_expects_what_dns_publishes(
    mocks: RelayMocks, relay_host: HostFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME_DERP_HEALTH_RUN", "1")
    relay_host.error = HostReadError("unreachable", "ssh: connect to host home: refused")
    evaluate(home_config(ipv6="auto", ipv4="203.0.114.7", dockerHost="ssh://pi@home.lan"))
    validation = mocks.one(VALIDATION).inputs
    assert validation["expected_addresses"] == []
    assert validation["region_ipv4"] is True
