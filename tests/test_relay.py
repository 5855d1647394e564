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
    HostFacts,
    Registered,
    RelayMocks,
    evaluate,
    home_config,
    run_program,
    set_config,
)
from tests.peers.cloudflare_api import CloudflarePeer, PeerZone

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/image:Image"
CERT = "acme:index/certificate:Certificate"
USAGE = "pulumi-python:dynamic/homederp:RelayUsage"
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
def test_zone_id_skips_lookup(
    mocks: RelayMocks, cloudflare_api: CloudflarePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = PeerZone("fedcba9876543210fedcba9876543210", "example.net")
    monkeypatch.setitem(cloudflare_api.zones, other.id, other)  # the record lookup may read it
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


def derper(mocks: RelayMocks) -> Registered:
    """The derper container (the init container is the other one)."""
    return next(r for r in mocks.of_type(CONTAINER) if r.name.endswith("-derper"))


def init(mocks: RelayMocks) -> Registered:
    return next(r for r in mocks.of_type(CONTAINER) if r.name.endswith("-init"))


# derper is built on the Docker host from upstream source at the host tailscaled's release, and
# runs hardened with its flags on the command line.
def test_derper_built_and_hardened(mocks: RelayMocks) -> None:
    evaluate(home_config())
    image = mocks.one(IMAGE)
    assert image.inputs["imageName"] == "home-derp/derper:v1.102.5"
    build = image.inputs["build"]
    assert build["args"] == {
        "TAILSCALE_VERSION": "1.102.5",
        "GOPROXY": "https://proxy.golang.org,direct",
        "BUILD_IMAGE": "golang:1.26-alpine",
        "RUNTIME_IMAGE": "scratch",
    }
    assert build["context"].endswith("components/derper")
    assert build["dockerfile"] == build["context"] + "/Dockerfile"
    assert build["builderVersion"] == "BuilderV1"
    assert image.inputs["skipPush"] is True and image.inputs["buildOnPreview"] is False
    container = derper(mocks)
    assert container.inputs["image"].startswith("sha256:")  # the built image's id
    assert container.inputs["command"] == [
        "-hostname=derp.example.com",
        "-certmode=manual",
        "-certdir=/certs",
        "-a=:12345",
        "-stun=true",
        "-stun-port=3478",
        "-http-port=-1",
        "-c=/var/lib/derper/derper.key",
        "-verify-clients",
        "-socket=/var/run/tailscale/tailscaled.sock",
    ]
    assert "envs" not in container.inputs
    assert container.inputs["user"] == "65532:65532"
    assert container.inputs["readOnly"] is True
    # NET_BIND_SERVICE only in the bounding set: the binary's file capability needs it there to
    # execute at all, and no-new-privileges keeps it out of effect (components/container.py).
    assert container.inputs["capabilities"] == {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}
    assert container.inputs["securityOpts"] == ["no-new-privileges:true"]
    assert container.inputs["name"] == "derper-900-homelab"
    assert container.inputs["networkMode"] == "host"
    assert "ports" not in container.inputs
    assert container.inputs["restart"] == "unless-stopped"
    volumes = {v["containerPath"]: v for v in container.inputs["volumes"]}
    assert volumes["/var/lib/derper"]["volumeName"] == "derper-900-homelab-state"
    assert volumes["/certs"] == {
        "containerPath": "/certs",
        "volumeName": "derper-900-homelab-certs",
        "readOnly": True,
    }
    assert volumes["/var/run/tailscale"] == {
        "containerPath": "/var/run/tailscale",
        "hostPath": "/var/run/tailscale",
        "readOnly": True,
    }
    assert mocks.one("pulumi:providers:docker").inputs["host"] == "unix:///var/run/docker.sock"


# A new tailscale release (the host upgraded tailscaled) builds a new image; the container follows.
def test_new_tailscale_release_rebuilds_and_replaces(
    mocks: RelayMocks, relay_host: HostFacts
) -> None:
    evaluate(home_config())
    first_image, first_ref = mocks.one(IMAGE).inputs, derper(mocks).inputs["image"]
    mocks.reset()
    relay_host.version = "1.104.7"
    evaluate(home_config())
    second = mocks.one(IMAGE).inputs
    assert second["imageName"] == "home-derp/derper:v1.104.7"
    assert second["build"]["args"]["TAILSCALE_VERSION"] == "1.104.7"
    assert first_image["build"]["context"] == second["build"]["context"]
    assert derper(mocks).inputs["image"] != first_ref  # the container is replaced


# The stack settings reach the build: a reachable Go proxy and mirrored base images.
def test_build_settings_reach_the_build(mocks: RelayMocks) -> None:
    evaluate(
        home_config(
            goProxy="https://goproxy.cn,direct",
            buildImage="registry.example.cn/library/golang:1.26-alpine",
        )
    )
    args = mocks.one(IMAGE).inputs["build"]["args"]
    assert args["GOPROXY"] == "https://goproxy.cn,direct"
    assert args["BUILD_IMAGE"] == "registry.example.cn/library/golang:1.26-alpine"
    assert init(mocks).inputs["image"].startswith("sha256:")
    images = {r.inputs["name"] for r in mocks.of_type("docker:index/remoteImage:RemoteImage")}
    assert images == {"registry.example.cn/library/golang:1.26-alpine"}  # the init image


# Below port 1024 in host networking derper still runs as 65532: it binds through its binary's
# file capability, which works only without no-new-privileges (components/container.py); the
# init container hands the volumes to 65532. In bridge mode no-new-privileges stays on.
@pytest.mark.parametrize(
    ("extra", "no_new_privileges"),
    [
        ({"derpPort": "443"}, False),
        ({"stunPort": "999"}, False),
        ({"derpPort": "443", "networkMode": "bridge"}, True),
    ],
)
def test_privileged_port_runs_as_65532(
    mocks: RelayMocks, extra: dict[str, str], no_new_privileges: bool
) -> None:
    evaluate(home_config(**extra))
    container = derper(mocks)
    assert container.inputs["user"] == "65532:65532"
    assert container.inputs["capabilities"] == {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}
    assert container.inputs["readOnly"] is True
    options = container.inputs.get("securityOpts", [])
    assert (options == ["no-new-privileges:true"]) is no_new_privileges, options
    assert "chown -R 65532:65532" in init(mocks).inputs["command"][-1]


# A socket elsewhere (the tailscale container's /tmp/tailscaled.sock): its directory is mounted
# and derper is pointed at the file by name.
def test_custom_socket(mocks: RelayMocks) -> None:
    evaluate(home_config(tailscaleSocket="/srv/tailscale/run/tailscaled-1.sock"))
    container = derper(mocks)
    assert "-socket=/var/run/tailscale/tailscaled-1.sock" in container.inputs["command"]
    volumes = {v["containerPath"]: v for v in container.inputs["volumes"]}
    assert volumes["/var/run/tailscale"]["hostPath"] == "/srv/tailscale/run"


# A pinned image replaces the build: its DERP_* interface, the same hardening and volumes, and
# never tailscaled's socket (it runs as root: settings refuse it with verifyClients).
def test_pinned_image(mocks: RelayMocks) -> None:
    digest = "sha256:" + "ab" * 32
    evaluate(home_config(image=f"fredliang/derper@{digest}", verifyClients="false"))
    assert not mocks.of_type(IMAGE)
    names = {r.inputs["name"] for r in mocks.of_type("docker:index/remoteImage:RemoteImage")}
    assert names == {f"fredliang/derper@{digest}", "golang:1.26-alpine"}
    container = derper(mocks)
    assert "command" not in container.inputs
    assert env_of(container) == {
        "DERP_DOMAIN": "derp.example.com",
        "DERP_CERT_MODE": "manual",
        "DERP_CERT_DIR": "/certs",
        "DERP_ADDR": ":12345",
        "DERP_STUN": "true",
        "DERP_STUN_PORT": "3478",
        "DERP_HTTP_PORT": "-1",
        "DERP_VERIFY_CLIENTS": "false",
    }
    # Its entrypoint gives derper no -c, so it runs as root, without any capability or socket.
    assert container.inputs["readOnly"] is True and container.inputs["user"] == "0:0"
    assert container.inputs["capabilities"] == {"drops": ["ALL"], "adds": []}
    assert container.inputs["securityOpts"] == ["no-new-privileges:true"]
    assert [v for v in container.inputs["volumes"] if "hostPath" in v] == []
    labels = {item["label"]: item["value"] for item in container.inputs["labels"]}
    assert labels["home-derp.image"] == "pinned"


# Certificate and key reach the init container (derper's root filesystem is read-only), which
# hands them and the state volume to derper's user; the key is 0600 and secret.
def test_certificate_goes_through_the_init_container(mocks: RelayMocks) -> None:
    evaluate(home_config())
    assert "uploads" not in derper(mocks).inputs
    one_shot = init(mocks)
    raw = one_shot.inputs["uploads"]
    assert is_secret_input(raw)  # the key makes the whole uploads property secret in state
    uploads = {u["file"]: u for u in unwrap(raw)}
    crt = uploads["/certs/derp.example.com.crt"]
    key = uploads["/certs/derp.example.com.key"]
    chain = crt["content"]
    assert chain.index("leaf") < chain.index("issuer")  # full chain: leaf then issuer
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert crt["permissions"] == "0644" and key["permissions"] == "0600"
    assert "PRIVATE KEY" in key["content"]
    assert one_shot.inputs["command"] == [
        "sh",
        "-c",
        "touch /state/.home-derp && chown -R 65532:65532 /certs /state && chmod 0600 /certs/*.key",
    ]
    assert one_shot.inputs["capabilities"] == {"drops": ["ALL"], "adds": ["CHOWN", "FOWNER"]}
    assert one_shot.inputs["networkMode"] == "none"
    assert one_shot.inputs["attach"] is True and one_shot.inputs["mustRun"] is False
    mounts = {v["containerPath"]: v["volumeName"] for v in one_shot.inputs["volumes"]}
    assert mounts == {"/certs": "derper-900-homelab-certs", "/state": "derper-900-homelab-state"}
    urn_of = {name: o.urn for name, o in mocks.options.items()}
    assert urn_of["relay-900-init"] in mocks.options["relay-900-derper"].dependencies


# Without verification the tailscaled socket directory is not mounted and no flag is passed.
def test_verify_clients_off(mocks: RelayMocks) -> None:
    evaluate(home_config(verifyClients="false"))
    container = derper(mocks)
    assert "-verify-clients" not in container.inputs["command"]
    paths = [v["containerPath"] for v in container.inputs["volumes"]]
    assert paths == ["/var/lib/derper", "/certs"]


# Bridge mode publishes TCP derpPort and UDP stunPort on IPv4 *and* IPv6, explicitly.
def test_bridge_mode_publishes_both_families(mocks: RelayMocks) -> None:
    evaluate(home_config(networkMode="bridge"))
    container = derper(mocks)
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


# A renewed certificate changes the init container's uploads (it is re-run) and the serial of
# derper's restart, and nothing of derper's container: derper is restarted, not re-created
# (components/derper_restart.py; derper reads manual certificates only at start).
def test_new_certificate_reruns_init_and_restarts_derper(mocks: RelayMocks) -> None:
    evaluate(home_config())
    first = unwrap(init(mocks).inputs["uploads"])
    first_derper = derper(mocks).inputs
    mocks.reset()
    mocks.certificate_serial = "04ffeeddccbbaa99887766554433221100"
    evaluate(home_config())
    second = unwrap(init(mocks).inputs["uploads"])
    assert first[0]["file"] == second[0]["file"]
    assert first[0]["content"] != second[0]["content"]
    assert "04ffeeddccbbaa" in second[0]["content"]
    assert derper(mocks).inputs == first_derper
    restart = mocks.one("pulumi-python:dynamic/homederp:DerperRestart")
    assert restart.inputs["certificate_serial"] == "04ffeeddccbbaa99887766554433221100"
    assert restart.inputs["container"] == derper(mocks).inputs["name"]
    options = mocks.options[restart.name]
    assert {d.rsplit("::", 1)[1] for d in options.dependencies} >= {
        "relay-900-init",
        "relay-900-derper",
    }


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
    assert outputs["image"] == ("home-derp/derper:v1.102.5", False)
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
# for validation, so a relay that fails from outside is never published.
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


# The providers are pickled by their stable names (components/dynamic_provider.py), not by class
# path: the stored reference is stack state (docs/upstream/pulumi.md#dynamic-provider-pickling),
# and a moved class must not break existing stacks.
def test_dynamic_providers_pickled_by_reference(mocks: RelayMocks) -> None:
    import base64

    evaluate(home_config())
    for typ, name in ((VALIDATION, b"RelayValidation"), (REGION, b"TailnetDerpRegion")):
        blob = base64.b64decode(mocks.one(typ).inputs["__provider"])
        assert b"components.dynamic_provider" in blob and b"restore" in blob and name in blob
        assert b"components.validation" not in blob and b"components.tailnet" not in blob
        assert len(blob) < 200  # a reference, not pickled bytecode


# When publication writes the policy (patch, file), validation proves the Tailscale credential on
# every run and the gate judges that verdict; with off nothing is asked.
def test_validation_proves_the_publication_credential(mocks: RelayMocks, tmp_path: Path) -> None:
    policy = tmp_path / "policy.hujson"
    policy.write_text(POLICY_WITH_COMMENTS)
    for config, access in (
        ({}, "write"),
        ({"tailnetPolicy": "file", "policyFile": str(policy)}, "write"),
        ({"tailnetPolicy": "off"}, None),
    ):
        mocks.reset()
        evaluate(home_config(**config))
        assert mocks.one(VALIDATION).inputs.get("policy_access") == access, config
        gate = mocks.one("pulumi-python:dynamic/homederp:RelayHealthGate").inputs
        assert (gate.get("credentials") or {}).get("ok") is (True if access else None)


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
    from components.dns_adoption import COMMENT_LIMIT, record_comment

    comment = record_comment(stack, 900)
    assert len(comment) <= COMMENT_LIMIT
    assert comment.startswith("home-derp relay, region 900")


GATE = "pulumi-python:dynamic/homederp:RelayHealthGate"


# Validate, publish (or drain), then judge: the region's `healthy` is the validation's verdict and
# the gate depends on the region, so the tailnet is put right before `up` can go red.
@pytest.mark.parametrize("verdict", [True, False])
def test_verdict_feeds_publication_then_the_gate(mocks: RelayMocks, verdict: bool) -> None:
    mocks.validation_healthy = verdict
    outputs = evaluate(home_config())
    assert mocks.one(REGION).inputs["healthy"] is verdict
    urn_of = {name: o.urn for name, o in mocks.options.items()}
    gate = mocks.options["relay-900-health-gate"]
    assert urn_of["relay-900-tailnet-region"] in gate.dependencies
    inputs = mocks.one(GATE).inputs
    assert inputs["mode"] == "enforce" and inputs["healthy"] is verdict
    assert inputs["certificate_days_left"] == 80
    assert "published" not in inputs  # known only once the region was written (None: dropped)
    assert outputs["hostname"] == ("derp.example.com", False)


# warn keeps the verdict (and drains) but the gate only prints; off sends no probe and publishes
# as before (never drained); a validation that could not judge (None) reaches the region as None,
# which leaves it as it is (tests/test_tailnet.py).
@pytest.mark.parametrize(
    ("mode", "verdict", "healthy"),
    [("warn", False, False), ("off", None, True), ("enforce", None, None)],
)
def test_warn_off_and_no_verdict(
    mocks: RelayMocks, mode: str, verdict: bool | None, healthy: bool | None
) -> None:
    mocks.validation_healthy = verdict
    evaluate(home_config(validate=mode))
    assert mocks.one(REGION).inputs.get("healthy") is healthy
    assert mocks.one(GATE).inputs["mode"] == mode


# tailnetPolicy=file with a failing relay: the managed policy carries our region drained.
def test_file_mode_writes_the_drained_region(mocks: RelayMocks, tmp_path: Path) -> None:
    policy = tmp_path / "policy.hujson"
    policy.write_text(POLICY_WITH_COMMENTS)
    mocks.validation_healthy = False
    evaluate(home_config(tailnetPolicy="file", policyFile=str(policy)))
    text = mocks.one("tailscale:index/acl:Acl").inputs["acl"]
    assert '"NoMeasureNoHome": true' in text and text.startswith("// our tailnet policy")


# A health run registers only what validation, publication and the usage history need: no
# Docker, Cloudflare or ACME (the workflow targets exactly these), and needs no Cloudflare token.
def test_health_run_registers_only_validation_and_publication(
    mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME_DERP_HEALTH_RUN", "1")
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    outputs = evaluate(home_config(**{"cloudflare:apiToken": None}, validateNonce="health-9-1"))
    assert {(r.typ, r.name) for r in mocks.resources} == {
        ("homederp:index:HomeDerpRelay", "relay-900"),
        (VALIDATION, "relay-900-validation"),
        (REGION, "relay-900-tailnet-region"),
        ("pulumi-python:dynamic/homederp:RelayUsage", "relay-900-usage"),
        (GATE, "relay-900-health-gate"),
    }
    assert "nonce=health-9-1" in mocks.one(VALIDATION).inputs["trigger"]
    assert outputs["container_id"] == (None, False) and outputs["image"] == (None, False)


# The relay host as read at this run is an output (version, node name, Tailscale IPs).
def test_relay_host_output(mocks: RelayMocks) -> None:
    set_config(home_config())
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    async def run() -> None:
        relay = run_program()["relay"]
        seen["host"] = await relay.relay_host.future()

    run()
    assert seen["host"]["tailscaleVersion"] == "1.102.5"
    assert seen["host"]["nodeName"] == "homeserver"
    assert seen["host"]["tailscaleIps"] == ["100.101.102.103", "fd7a:115c:a1e0::1"]
    validation = mocks.one(VALIDATION).inputs
    assert validation["docker_host"] == "unix:///var/run/docker.sock"
    assert validation["container"] == "derper-900-homelab"
    assert validation["tailscale_version"] == validation["host_tailscale_version"] == "1.102.5"
    assert len(validation["host_peers"]) == 3  # two peers and the host itself


PEER_RELAY = "pulumi-python:dynamic/homederp:PeerRelayServer"
GRANT = "pulumi-python:dynamic/homederp:TailnetPeerRelayGrant"


# peerRelayPort: the host's tailscaled is set as a peer relay, then (after it reports the port
# bound) the grant lets the sources use it. dst is the host's own Tailscale IP even when the host
# is tagged (a tag names every device that carries it), unless peerRelayDestination names a tag.
@pytest.mark.parametrize(
    ("tags", "destination", "dst"),
    [
        ((), None, "100.101.102.103"),
        (("tag:derp",), None, "100.101.102.103"),
        (("tag:derp",), "tag:derp", "tag:derp"),
    ],
)
def test_peer_relay_wiring(
    mocks: RelayMocks,
    relay_host: HostFacts,
    tags: tuple[str, ...],
    destination: str | None,
    dst: str,
) -> None:
    relay_host.tags = tags
    evaluate(
        home_config(
            peerRelayPort="40000",
            peerRelaySources='["tag:laptop"]',
            ipv4="203.0.114.7",
            peerRelayDestination=destination,
        )
    )
    server = mocks.one(PEER_RELAY).inputs
    assert server["port"] == 40000 and server["socket"] == "/var/run/tailscale/tailscaled.sock"
    assert server["docker_host"] == "unix:///var/run/docker.sock"
    assert server["static_endpoints"] == ["203.0.114.7:40000"]
    grant = mocks.one(GRANT).inputs
    assert grant["grant"] == {
        "src": ["tag:laptop"],
        "dst": [dst],
        "app": {"tailscale.com/cap/relay": []},
    }
    assert grant["region_id"] == 900 and grant["relay_ips"] == [
        "100.101.102.103",
        "fd7a:115c:a1e0::1",
    ]
    urn_of = {name: o.urn for name, o in mocks.options.items()}
    assert (
        urn_of["relay-900-peer-relay"] in mocks.options["relay-900-peer-relay-grant"].dependencies
    )


# The validation output carries the verdict, what publication made of it, and the old ``ok``.
@pytest.mark.parametrize("healthy", [True, False])
def test_validation_output(mocks: RelayMocks, healthy: bool) -> None:
    mocks.validation_healthy = healthy
    validation, _ = evaluate(home_config(validate="warn"))["validation"]
    assert list(validation) == [
        "ok",
        "drained",
        "healthy",
        "lastHealthyAt",
        "checkedAt",
        "serverPublicKey",
        "stunLatencyMs",
        "tlsLatencyMs",
        "certificateDaysLeft",
        "admission",
        "coverage",
        "credentials",
        "reach",
    ]
    assert validation["ok"] is healthy and validation["healthy"] is healthy
    assert validation["checkedAt"] == "2026-12-02T04:00:00+00:00"
    assert validation["certificateDaysLeft"] == 80


# The peerRelay output says what was set, where the grant went and what a client confirmed.
def test_peer_relay_output(mocks: RelayMocks) -> None:
    outputs = evaluate(home_config(peerRelayPort="40000"))
    peer_relay, _ = outputs["peer_relay"]
    assert peer_relay == {
        "port": 40000,
        "bound": True,
        "grant": {"src": ["*"], "dst": ["100.101.102.103"], "app": {"tailscale.com/cap/relay": []}},
        "grantIn": "tailnet policy",
        "clientConfirmation": {"confirmed": False, "detail": "not listed within 60s"},
    }
    mocks.reset()
    assert evaluate(home_config())["peer_relay"] == (None, False)


# Without peerRelayPort nothing of it is registered; sources default to every device.
def test_peer_relay_off_and_default_sources(mocks: RelayMocks) -> None:
    evaluate(home_config())
    assert not mocks.of_type(PEER_RELAY) and not mocks.of_type(GRANT)
    mocks.reset()
    evaluate(home_config(peerRelayPort="40000"))
    assert mocks.one(GRANT).inputs["grant"]["src"] == ["*"]
    assert mocks.one(PEER_RELAY).inputs["static_endpoints"] == []


# tailnetPolicy=file: the grant is part of the managed policy text instead of its own resource.
def test_peer_relay_grant_in_file_mode(mocks: RelayMocks, tmp_path: Path) -> None:
    policy = tmp_path / "policy.hujson"
    policy.write_text(POLICY_WITH_COMMENTS)
    evaluate(home_config(tailnetPolicy="file", policyFile=str(policy), peerRelayPort="40000"))
    text = mocks.one("tailscale:index/acl:Acl").inputs["acl"]
    assert "tailscale.com/cap/relay" in text and "home-derp: peer relay of region 900" in text
    assert not mocks.of_type(GRANT) and mocks.of_type(PEER_RELAY)


# The usage record follows validation (its checked_at and verdict, our STUN latency, the
# certificate) and publication (published, drained), reads derper on the stack's Docker host and
# derpPort, compares with Tailscale's own map, and the gate waits for it, so a red run is
# recorded too; the `usage` output is registered even before anything was read.
def test_usage_follows_validation_and_the_gate_waits_for_it(mocks: RelayMocks) -> None:
    from components.netcheck.regions import DEFAULT_DERP_MAP_URL

    outputs = evaluate(home_config(derpPort="12345", usageHistory="30", usageIdleRuns="4"))
    usage = mocks.one(USAGE).inputs
    assert usage["trigger"] == "checked=2026-12-02T04:00:00+00:00;nonce="
    assert usage["healthy"] is True and usage["certificate_days_left"] == 80
    assert usage["derp_port"] == 12345 and usage["hostname"] == "derp.example.com"
    assert usage["docker_host"] == mocks.one(VALIDATION).inputs["docker_host"]
    assert usage["compare_map"] == DEFAULT_DERP_MAP_URL
    assert (usage["history_size"], usage["idle_runs"]) == (30, 4)
    assert usage["host_homed_here"] is False  # the recorded host's tailscaled has no home yet
    urn_of = {name: o.urn for name, o in mocks.options.items()}
    assert urn_of["relay-900-validation"] in mocks.options["relay-900-usage"].dependencies
    assert urn_of["relay-900-usage"] in mocks.options["relay-900-health-gate"].dependencies
    usage_out = outputs["usage"][0]
    evaluate(home_config(usageCompareMap="off"))
    assert "compare_map" not in mocks.of_type(USAGE)[-1].inputs  # None: nothing compared
    assert usage_out["history"] == [] and usage_out["regionCode"] == usage["region_code"]
