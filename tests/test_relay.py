"""HomeDerpRelay's children under mocks: DNS, certificate, container and derpMap fragment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.settings import ACME_DIRECTORIES
from tests.conftest import (
    FAKE_TOKEN,
    Registered,
    RelayMocks,
    evaluate,
    home_config,
    run_program,
    set_config,
)

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
CONTAINER = "docker:index/container:Container"
CERT = "acme:index/certificate:Certificate"
SECRET_SIG = pulumi.runtime.rpc._special_secret_sig  # how a secret input reaches the engine


def is_secret_input(value: Any) -> bool:
    return isinstance(value, dict) and value.get(pulumi.runtime.rpc._special_sig_key) == SECRET_SIG


def unwrap(value: Any) -> Any:
    return value["value"] if is_secret_input(value) else value


def env_of(container: Registered) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.inputs["envs"])


# The AAAA record points at the host, is DNS-only (DERP cannot pass Cloudflare's proxy), short TTL.
def test_aaaa_record_only_without_ipv4(mocks: RelayMocks) -> None:
    evaluate(home_config())
    record = mocks.one(RECORD)
    assert record.inputs["type"] == "AAAA"
    assert record.inputs["name"] == "derp.example.com"
    assert record.inputs["content"] == "2409:8a00:1a2b:3c40::10"
    assert record.inputs["proxied"] is False
    assert record.inputs["ttl"] == 60
    assert "home-derp" in record.inputs["comment"]


# An A record appears only with ipv4, and the derpMap node then carries the address, not "none".
def test_a_record_with_ipv4(mocks: RelayMocks) -> None:
    outputs = evaluate(home_config(ipv4="203.0.114.7"))
    kinds = sorted(r.inputs["type"] for r in mocks.of_type(RECORD))
    assert kinds == ["A", "AAAA"]
    a = next(r for r in mocks.of_type(RECORD) if r.inputs["type"] == "A")
    assert a.inputs["content"] == "203.0.114.7" and a.inputs["proxied"] is False
    node = outputs["derp_region"][0]["Nodes"][0]
    assert node["IPv4"] == "203.0.114.7"
    assert outputs["addresses"][0] == ["2409:8a00:1a2b:3c40::10", "203.0.114.7"]


# An explicit zone id is used as is; no zone lookup is made.
def test_zone_id_skips_lookup(mocks: RelayMocks) -> None:
    evaluate(home_config(zone=None, zoneId="fedcba9876543210fedcba9876543210"))
    assert mocks.one(RECORD).inputs["zoneId"] == "fedcba9876543210fedcba9876543210"
    assert not [c for c in mocks.calls if c[0] == "cloudflare:index/getZone:getZone"]


# Certificate: P-256 keys, CSR for the hostname, DNS-01 via Cloudflare with the seed's timings.
def test_certificate_chain_of_resources(mocks: RelayMocks) -> None:
    evaluate(home_config(acmeEmail="me@example.com"))
    keys = mocks.of_type("tls:index/privateKey:PrivateKey")
    assert len(keys) == 2
    assert all(k.inputs == {"algorithm": "ECDSA", "ecdsaCurve": "P256"} for k in keys)
    provider = mocks.one("pulumi:providers:acme")
    assert provider.inputs["serverUrl"] == ACME_DIRECTORIES["production"]
    registration = mocks.one("acme:index/registration:Registration")
    assert registration.inputs["emailAddress"] == "me@example.com"
    csr = mocks.one("tls:index/certRequest:CertRequest")
    assert csr.inputs["dnsNames"] == ["derp.example.com"]
    assert csr.inputs["subject"] == {"commonName": "derp.example.com"}
    cert = mocks.one(CERT)
    assert cert.provider.startswith("urn:pulumi:home::home-derp::") and "acme" in cert.provider
    assert cert.inputs["minDaysRemaining"] == 30
    assert cert.inputs["recursiveNameservers"] == ["1.1.1.1:53", "1.0.0.1:53"]
    (challenge,) = unwrap(cert.inputs["dnsChallenges"])
    assert challenge["provider"] == "cloudflare"
    assert challenge["config"]["CLOUDFLARE_PROPAGATION_TIMEOUT"] == "300"
    assert "commonName" not in cert.inputs  # the CSR carries the name and our key


# The container runs derper in manual cert mode with every DERP_* variable set explicitly.
def test_container_env_and_mounts(mocks: RelayMocks) -> None:
    evaluate(home_config())
    container = mocks.one(CONTAINER)
    assert env_of(container) == {
        "DERP_DOMAIN": "derp.example.com",
        "DERP_CERT_MODE": "manual",
        "DERP_CERT_DIR": "/app/certs",
        "DERP_ADDR": ":12345",
        "DERP_STUN": "true",
        "DERP_STUN_PORT": "3478",
        "DERP_HTTP_PORT": "-1",
        "DERP_VERIFY_CLIENTS": "true",
    }
    assert container.inputs["name"] == "derper-900-homelab"
    assert container.inputs["networkMode"] == "host"
    assert "ports" not in container.inputs
    assert container.inputs["restart"] == "unless-stopped"
    assert container.inputs["image"].startswith("sha256:")
    volumes = {v["containerPath"]: v for v in container.inputs["volumes"]}
    assert volumes["/var/lib/derper"]["volumeName"] == "derper-900-homelab-state"
    assert volumes["/var/run/tailscale"]["hostPath"] == "/var/run/tailscale"
    image = mocks.one("docker:index/remoteImage:RemoteImage")
    assert image.inputs["name"] == "fredliang/derper:v1.90.6"
    docker_provider = mocks.one("pulumi:providers:docker")
    assert docker_provider.inputs["host"] == "unix:///var/run/docker.sock"


# Certificate and key are uploaded under derper's manual-mode names; the key 0600 and secret.
def test_container_uploads(mocks: RelayMocks) -> None:
    evaluate(home_config())
    raw = mocks.one(CONTAINER).inputs["uploads"]
    assert is_secret_input(raw)  # the key makes the whole uploads property secret in state
    uploads = {u["file"]: u for u in unwrap(raw)}
    crt = uploads["/app/certs/derp.example.com.crt"]
    key = uploads["/app/certs/derp.example.com.key"]
    chain = crt["content"]
    assert chain.index("leaf") < chain.index("issuer")  # full chain: leaf then issuer
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert crt["permissions"] == "0644" and key["permissions"] == "0600"
    assert "PRIVATE KEY" in key["content"]


# Without verification the tailscaled socket directory is not mounted and the env says false.
def test_verify_clients_off(mocks: RelayMocks) -> None:
    evaluate(home_config(verifyClients="false"))
    container = mocks.one(CONTAINER)
    assert env_of(container)["DERP_VERIFY_CLIENTS"] == "false"
    paths = [v["containerPath"] for v in container.inputs["volumes"]]
    assert paths == ["/var/lib/derper"]


# Bridge mode publishes TCP derpPort and UDP stunPort on IPv4 *and* IPv6, explicitly.
def test_bridge_mode_publishes_both_families(mocks: RelayMocks) -> None:
    evaluate(home_config(networkMode="bridge"))
    container = mocks.one(CONTAINER)
    assert container.inputs["networkMode"] == "bridge"
    ports = {
        (p["internal"], p["external"], p["ip"], p["protocol"]) for p in container.inputs["ports"]
    }
    assert ports == {
        (12345, 12345, "0.0.0.0", "tcp"),
        (12345, 12345, "::", "tcp"),
        (3478, 3478, "0.0.0.0", "udp"),
        (3478, 3478, "::", "udp"),
    }


# An ssh:// Docker host reaches the docker provider unchanged.
def test_ssh_docker_host(mocks: RelayMocks) -> None:
    evaluate(home_config(dockerHost="ssh://pi@home.lan:2222"))
    assert mocks.one("pulumi:providers:docker").inputs["host"] == "ssh://pi@home.lan:2222"


# A renewed certificate changes the container's uploads, so `up` replaces the container
# (derper reads manual certificates only at start).
def test_new_certificate_changes_container_uploads(mocks: RelayMocks) -> None:
    evaluate(home_config())
    first = unwrap(mocks.one(CONTAINER).inputs["uploads"])
    mocks.reset()
    mocks.certificate_serial = "04ffeeddccbbaa99887766554433221100"
    evaluate(home_config())
    second = unwrap(mocks.one(CONTAINER).inputs["uploads"])
    assert first[0]["file"] == second[0]["file"]
    assert first[0]["content"] != second[0]["content"]
    assert "04ffeeddccbbaa" in second[0]["content"]


# Keys and tokens are secrets everywhere: the Cloudflare provider token, the DNS-01 token.
def test_secrets_stay_secret(mocks: RelayMocks) -> None:
    evaluate(home_config())
    cloudflare_provider = mocks.one("pulumi:providers:cloudflare")
    assert is_secret_input(cloudflare_provider.inputs["apiToken"])
    assert unwrap(cloudflare_provider.inputs["apiToken"]) == FAKE_TOKEN
    challenges = mocks.one(CERT).inputs["dnsChallenges"]
    assert is_secret_input(challenges)
    assert unwrap(challenges)[0]["config"]["CF_DNS_API_TOKEN"] == FAKE_TOKEN
    # nowhere is the token passed in clear
    for resource in mocks.resources:
        assert FAKE_TOKEN not in json.dumps(_strip_secrets(resource.inputs))


def _strip_secrets(value: Any) -> Any:
    if is_secret_input(value):
        return "<secret>"
    if isinstance(value, dict):
        return {k: _strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_secrets(v) for v in value]
    return value


# Component outputs: typed values, nothing secret except what must be.
def test_component_outputs(mocks: RelayMocks) -> None:
    outputs = evaluate(home_config())
    assert outputs["hostname"] == ("derp.example.com", False)
    assert outputs["derp_port"] == (12345, False)
    assert outputs["stun_port"] == (3478, False)
    assert outputs["certificate_not_after"][0] == "2027-02-23T00:00:00Z"
    assert outputs["image"] == ("fredliang/derper:v1.90.6", False)
    for name, (_, secret) in outputs.items():
        assert not secret, f"{name} should not be secret"


# derpMap fragment: the exact shape to paste (RegionID on the node, IPv4 none, no IPv6 pin).
def test_derp_map_fragment_shape(mocks: RelayMocks) -> None:
    outputs = evaluate(home_config())
    fragment = json.loads(outputs["derp_map_fragment"][0])
    assert fragment == {
        "derpMap": {
            "OmitDefaultRegions": False,
            "Regions": {
                "900": {
                    "RegionID": 900,
                    "RegionCode": "homelab",
                    "RegionName": "HomeLab",
                    "Nodes": [
                        {
                            "Name": "900a",
                            "RegionID": 900,
                            "HostName": "derp.example.com",
                            "IPv4": "none",
                            "DERPPort": 12345,
                            "STUNPort": 3478,
                        }
                    ],
                }
            },
        }
    }


# pinIpv6 puts the address into the node; omitDefaultRegions reaches the fragment.
@pytest.mark.parametrize("pin", ["true", "false"])
def test_pin_ipv6(mocks: RelayMocks, pin: str) -> None:
    outputs = evaluate(home_config(pinIpv6=pin, omitDefaultRegions="true", ipv4="203.0.114.7"))
    fragment = json.loads(outputs["derp_map_fragment"][0])["derpMap"]
    node = fragment["Regions"]["900"]["Nodes"][0]
    assert ("IPv6" in node) is (pin == "true")
    if pin == "true":
        assert node["IPv6"] == "2409:8a00:1a2b:3c40::10"
    assert fragment["OmitDefaultRegions"] is True


# Every child hangs under the component (names derived from it) so the tree reads in `pulumi up`.
def test_children_are_parented(mocks: RelayMocks) -> None:
    evaluate(home_config())
    component = mocks.one("homederp:index:HomeDerpRelay")
    assert component.name == "relay-900"
    for resource in mocks.resources:
        if resource is not component:
            assert resource.name.startswith("relay-900-"), resource.name


# The container is deleted before its replacement starts (fixed name and host ports).
def test_container_delete_before_replace(mocks: RelayMocks) -> None:
    evaluate(home_config())
    assert mocks.options["relay-900-derper"].delete_before_replace is True
    assert mocks.options["relay-900-aaaa"].ignore_changes == ()


# ddns: the updater container runs beside derper and the records stop fighting it over content.
def test_ddns_wiring(mocks: RelayMocks) -> None:
    evaluate(home_config(ddns="true", ipv4="203.0.114.7", ddnsApiToken="narrow-token"))
    updater = mocks.one("homederp:index:DdnsUpdater")
    assert updater.name == "relay-900-ddns"
    containers = {r.name: r for r in mocks.of_type(CONTAINER)}
    ddns = next(c for name, c in containers.items() if "ddns" in name)
    assert ddns.inputs["networkMode"] == "host"
    env = dict(e.split("=", 1) for e in unwrap(ddns.inputs["envs"]))
    assert env["DOMAINS"] == "derp.example.com"
    assert env["CLOUDFLARE_API_TOKEN"] == "narrow-token"
    assert env["IP4_PROVIDER"] != "none"  # ipv4 set: the A record is followed too
    assert is_secret_input(ddns.inputs["envs"])
    for record in ("relay-900-aaaa", "relay-900-a"):
        assert mocks.options[record].ignore_changes == ("content",)


VALIDATION = "pulumi-python:dynamic/homederp:RelayValidation"
REGION = "pulumi-python:dynamic/homederp:TailnetDerpRegion"
POLICY_WITH_COMMENTS = """// our tailnet policy, kept in git
{
  // who may talk to whom
  "acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["*:*"]},],
  "tagOwners": {"tag:ci": ["autogroup:admin"]},
}
"""


# Validate, then publish: validation waits for DNS, certificate and container; the region waits
# for validation, so a relay that fails from outside is never published (issue #4).
def test_validation_before_publication(mocks: RelayMocks) -> None:
    evaluate(home_config())
    validation = mocks.options["relay-900-validation"]
    urn_of = {name: o.urn for name, o in mocks.options.items()}
    for needed in ("relay-900-aaaa", "relay-900-certificate", "relay-900-derper"):
        assert urn_of[needed] in validation.dependencies, needed
    region = mocks.options["relay-900-tailnet-region"]
    assert urn_of["relay-900-validation"] in region.dependencies
    assert region.parent == urn_of["relay-900"]
    published = mocks.one(REGION).inputs
    assert published["region"]["RegionID"] == 900
    assert published["region"]["Nodes"][0]["HostName"] == "derp.example.com"
    assert published["omit_default_regions"] is False and published["adopt_region"] is False


# The validation gets what it must check and a trigger built from what changes the relay.
def test_validation_inputs(mocks: RelayMocks) -> None:
    evaluate(home_config(validateNonce="weekly-7", validate="warn", validateTimeout="60"))
    inputs = mocks.one(VALIDATION).inputs
    assert inputs["hostname"] == "derp.example.com"
    assert (inputs["derp_port"], inputs["stun_port"]) == (12345, 3478)
    assert inputs["expected_addresses"] == ["2409:8a00:1a2b:3c40::10"]
    assert inputs["expect_verify_clients"] is True
    assert (inputs["mode"], inputs["timeout_seconds"]) == ("warn", 60)
    assert inputs["resolvers"] == ["1.1.1.1", "1.0.0.1"]
    trigger = inputs["trigger"]
    for part in ("relay-900-derper-id", mocks.certificate_serial, "2409:8a00:1a2b:3c40::10"):
        assert part in trigger
    assert "weekly-7" in trigger
    assert "__provider" in inputs
    for value in inputs.values():  # no secrets in the validation's inputs
        assert not is_secret_input(value)


# The provider is pickled by module path (components.validation / components.tailnet): those
# paths are part of the stack state (DESIGN.md), so a move would break existing stacks.
def test_dynamic_providers_pickled_by_reference(mocks: RelayMocks) -> None:
    import base64

    evaluate(home_config())
    for typ, module in ((VALIDATION, b"components.validation"), (REGION, b"components.tailnet")):
        blob = base64.b64decode(mocks.one(typ).inputs["__provider"])
        assert module in blob
        assert len(blob) < 2000  # a reference, not pickled bytecode


# tailnetPolicy=off: only the fragment output, nothing touches the tailnet.
def test_tailnet_policy_off(mocks: RelayMocks) -> None:
    evaluate(home_config(tailnetPolicy="off"))
    assert not mocks.of_type(REGION)
    assert not mocks.of_type("tailscale:index/acl:Acl")
    assert mocks.of_type(VALIDATION)


# tailnetPolicy=file: the repo's policy, comments intact, plus our region, after validation.
def test_tailnet_policy_file(mocks: RelayMocks, tmp_path: Path) -> None:
    policy = tmp_path / "policy.hujson"
    policy.write_text(POLICY_WITH_COMMENTS)
    evaluate(home_config(tailnetPolicy="file", policyFile=str(policy)))
    assert not mocks.of_type(REGION)
    acl = mocks.one("tailscale:index/acl:Acl")
    text = acl.inputs["acl"]
    assert text.startswith("// our tailnet policy, kept in git\n{\n  // who may talk to whom\n")
    assert '"tag:ci"' in text and '"900"' in text and '"HostName": "derp.example.com"' in text
    assert acl.inputs["overwriteExistingContent"] is True
    urn_of = {name: o.urn for name, o in mocks.options.items()}
    assert urn_of["relay-900-validation"] in mocks.options["relay-900-tailnet-policy"].dependencies


# A policy file we cannot splice deploys nothing and names the key.
def test_tailnet_policy_file_garbage(mocks: RelayMocks, tmp_path: Path) -> None:
    policy = tmp_path / "policy.hujson"
    policy.write_text('{"derpMap": ["not", "an", "object"]}')
    set_config(home_config(tailnetPolicy="file", policyFile=str(policy)))

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    with pytest.raises(pulumi.RunError, match="home-derp:policyFile"):
        run()
    assert mocks.resources == []


# Record comments fit Cloudflare's Free-plan limit (100 characters) whatever the stack name.
@pytest.mark.parametrize("stack", ["home", "x" * 120])
def test_record_comment_fits_free_plan(stack: str) -> None:
    from components.dns import COMMENT_LIMIT, record_comment

    comment = record_comment(stack, 900)
    assert len(comment) <= COMMENT_LIMIT
    assert comment.startswith("home-derp relay, region 900")
