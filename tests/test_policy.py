"""CrossGuard rules (policy/rules.py): each rule with passing and violating resources, and the pack
itself driven over gRPC the way the Pulumi CLI drives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from components import derpmap
from policy import rules

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


def engine_props(props: dict[str, Any]) -> Any:
    """Props as the analyzer hands them to a rule: through a protobuf Struct (numbers become
    floats), deserialized and wrapped in the unknown-checking proxy (pulumi_policy.policy)."""
    struct = struct_pb2.Struct()
    struct.update(props)
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


def violations(
    policy: ResourceValidationPolicy, typ: str, props: dict[str, Any], name: str = "r"
) -> list[str]:
    """Messages the policy reports for one resource."""
    reported: list[str] = []
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(
        typ, engine_props(props), f"urn:pulumi:home::home-derp::{typ}::{name}", name, opts, None
    )
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def container(
    role: str | None = "derper",
    network_mode: str | None = "host",
    ports: list[dict[str, Any]] | None = None,
    verify: str | None = "true",
) -> dict[str, Any]:
    """Container inputs shaped like components/container.py registers them."""
    envs = ["DERP_DOMAIN=derp.example.com", "DERP_ADDR=:12345", "DERP_CERT_MODE=manual"]
    if verify is not None:
        envs.append(f"DERP_VERIFY_CLIENTS={verify}")
    props: dict[str, Any] = {"name": "derper-900", "image": "sha256:abc", "envs": envs}
    if role is not None:
        props["labels"] = [{"label": "home-derp.role", "value": role}]
    if network_mode is not None:
        props["networkMode"] = network_mode
    if ports is not None:
        props["ports"] = ports
    return props


def dual_stack_ports(*families: str) -> list[dict[str, Any]]:
    """DERP TCP and STUN UDP published on each of ``families``."""
    return [
        {"internal": port, "external": port, "ip": ip, "protocol": proto}
        for ip in families
        for port, proto in ((12345, "tcp"), (3478, "udp"))
    ]


def region(region_id: int = 900, **node_extra: Any) -> dict[str, Any]:
    """A derpMap region like components/derpmap.region_to_dict builds."""
    node = {
        "Name": f"{region_id}a",
        "RegionID": region_id,
        "HostName": "derp.example.com",
        "IPv4": "none",
        "DERPPort": 12345,
        "STUNPort": 3478,
    }
    node.update(node_extra)
    return {
        "RegionID": region_id,
        "RegionCode": "homelab",
        "RegionName": "HomeLab",
        "Nodes": [node],
    }


# --- relay DNS records -----------------------------------------------------------------------


# A DNS-only record (what components/dns.py registers) passes.
def test_dns_record_dns_only_passes() -> None:
    props = {
        "name": "derp",
        "type": "AAAA",
        "content": "2400:cb00:2049:1::a29f:1",
        "proxied": False,
    }
    assert violations(rules.dns_not_proxied, rules.DNS_RECORD, props) == []


# A proxied record is a mandatory violation naming the record.
def test_dns_record_proxied_is_violation() -> None:
    props = {"name": "derp", "type": "AAAA", "content": "2400:cb00:2049:1::a29f:1", "proxied": True}
    found = violations(rules.dns_not_proxied, rules.DNS_RECORD, props)
    assert len(found) == 1 and "derp" in found[0] and "proxied" in found[0]
    assert rules.dns_not_proxied.enforcement_level is EnforcementLevel.MANDATORY


# --- derper networking -------------------------------------------------------------------------


# Host networking passes without any published port.
def test_derper_host_network_passes() -> None:
    assert violations(rules.derper_networking, rules.CONTAINER, container()) == []


# Bridge mode passes when every port is published on both 0.0.0.0 and ::.
def test_derper_bridge_dual_stack_passes() -> None:
    props = container(network_mode="bridge", ports=dual_stack_ports("0.0.0.0", "::"))
    assert violations(rules.derper_networking, rules.CONTAINER, props) == []


# Docker's default port binding (no ip → 0.0.0.0 only) leaves the relay unreachable on IPv6.
def test_derper_bridge_ipv4_only_is_violation() -> None:
    ports = [{"internal": 12345, "external": 12345}, {"internal": 3478, "protocol": "udp"}]
    found = violations(
        rules.derper_networking, rules.CONTAINER, container(network_mode="bridge", ports=ports)
    )
    assert len(found) == 1
    assert "12345/tcp on ::" in found[0] and "3478/udp on ::" in found[0]
    assert "on 0.0.0.0" not in found[0]


# No networkMode means Docker's bridge: publishing nothing is a violation too.
def test_derper_default_bridge_without_ports_is_violation() -> None:
    found = violations(rules.derper_networking, rules.CONTAINER, container(network_mode=None))
    assert found and "publishes no ports" in found[0]


# Only the derper container is held to this rule; the DDNS updater is not.
def test_ddns_container_is_not_checked() -> None:
    props = container(role="ddns", network_mode="bridge", ports=[])
    assert violations(rules.derper_networking, rules.CONTAINER, props) == []


# An unlabelled container is recognised as derper by its DERP_DOMAIN env.
def test_unlabelled_derper_is_recognised_by_env() -> None:
    props = container(role=None, network_mode="bridge", ports=dual_stack_ports("::"))
    found = violations(rules.derper_networking, rules.CONTAINER, props)
    assert found and "12345/tcp on 0.0.0.0" in found[0]


# --- pinned images -------------------------------------------------------------------------


# Version tags and digests are pinned.
@pytest.mark.parametrize(
    "image",
    [
        "fredliang/derper:v1.90.6",
        "ghcr.io/yangchuansheng/derper:1.80.3",
        "registry.local:5000/derper:1.2.3",
        "fredliang/derper@sha256:" + "a" * 64,
    ],
)
def test_pinned_image_passes(image: str) -> None:
    assert violations(rules.images_pinned, rules.REMOTE_IMAGE, {"name": image}) == []


# No tag, :latest, a registry port mistaken for a tag, or a malformed digest are violations.
@pytest.mark.parametrize(
    "image",
    [
        "fredliang/derper",
        "fredliang/derper:latest",
        "registry.local:5000/derper",
        "fredliang/derper@sha256:short",
    ],
)
def test_unpinned_image_is_violation(image: str) -> None:
    found = violations(rules.images_pinned, rules.REMOTE_IMAGE, {"name": image})
    assert len(found) == 1 and image in found[0]


# --- verifyClients (advisory) ----------------------------------------------------------------


# DERP_VERIFY_CLIENTS=true passes.
def test_verify_clients_on_passes() -> None:
    assert violations(rules.verify_clients, rules.CONTAINER, container(verify="true")) == []


# Off or unset is reported (advisory: an open relay is a choice, not an error).
@pytest.mark.parametrize("value", ["false", None])
def test_verify_clients_off_is_reported(value: str | None) -> None:
    found = violations(rules.verify_clients, rules.CONTAINER, container(verify=value))
    assert len(found) == 1 and "DERP_VERIFY_CLIENTS" in found[0]
    assert rules.verify_clients.enforcement_level is EnforcementLevel.ADVISORY


# --- ACME production (advisory) --------------------------------------------------------------


def acme_policy(stack: str | None) -> ResourceValidationPolicy:
    """The ACME rule with a fixed stack name."""
    return ResourceValidationPolicy(
        name="acme-production",
        description="test",
        validate=rules.make_validate_acme_production(lambda: stack),
    )


# A production stack on the production directory passes.
def test_acme_production_passes() -> None:
    found = violations(acme_policy("home"), rules.ACME_PROVIDER, {"serverUrl": PRODUCTION})
    assert found == []


# Staging on a production stack is reported with the stack's name.
def test_acme_staging_on_production_stack_is_reported() -> None:
    found = violations(acme_policy("office"), rules.ACME_PROVIDER, {"serverUrl": STAGING})
    assert len(found) == 1 and "office" in found[0] and STAGING in found[0]
    assert rules.acme_production.enforcement_level is EnforcementLevel.ADVISORY


# Stacks named *test*/*dev* may use staging.
@pytest.mark.parametrize("stack", ["dev", "home-test", "Office-DEV"])
def test_acme_staging_on_test_stack_passes(stack: str) -> None:
    assert violations(acme_policy(stack), rules.ACME_PROVIDER, {"serverUrl": STAGING}) == []


# The stack name comes from PULUMI_STACK, which the CLI sets for policy packs.
def test_current_stack_reads_pulumi_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_STACK", "office-dev")
    assert rules.current_stack() == "office-dev"
    found = violations(rules.acme_production, rules.ACME_PROVIDER, {"serverUrl": STAGING})
    assert found == []


# --- derpMap regions -----------------------------------------------------------------------


# The region the program builds passes (engine numbers arrive as floats).
def test_dynamic_region_in_range_passes() -> None:
    props = {"region": region(900), "regionId": 900}
    assert violations(rules.derp_region_range, rules.DERP_REGION, props) == []


# Out-of-range ids, InsecureForTests, and nodes without their RegionID are violations.
@pytest.mark.parametrize(
    ("reg", "expected"),
    [
        (region(899), "outside 900-999"),
        (region(1000), "outside 900-999"),
        (region(901, InsecureForTests=True), "InsecureForTests"),
        (region(902, RegionID=None), "RegionID must be set to 902"),
        ({"RegionCode": "x", "Nodes": []}, "RegionID missing"),
    ],
)
def test_dynamic_region_violations(reg: dict[str, Any], expected: str) -> None:
    found = violations(rules.derp_region_range, rules.DERP_REGION, {"region": reg})
    assert any(expected in message for message in found), found
    assert rules.derp_region_range.enforcement_level is EnforcementLevel.MANDATORY


# The region components/derpmap.py builds for the program satisfies the rule (contract check).
def test_region_built_by_derpmap_passes() -> None:
    built = derpmap.region_to_dict(
        derpmap.home_region(
            region_id=901,
            region_code="office",
            region_name="Office",
            hostname="derp-office.example.com",
            derp_port=12346,
            stun_port=3479,
            ipv4=None,
            ipv6="2a01:4f8:c0c:9a1e::1",
            pin_ipv6=True,
        )
    )
    props = {"region": built, "omit_default_regions": False}
    assert violations(rules.derp_region_range, rules.DERP_REGION, props) == []
    built["RegionID"] = 1001
    assert violations(rules.derp_region_range, rules.DERP_REGION, {"region": built})


POLICY_TEXT = """// tailnet policy kept in git (tailnetPolicy=file)
{
  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}], // "quoted" in a comment
  "derpMap": {
    "OmitDefaultRegions": false,
    /* our relays */
    "Regions": {
      "900": %s,
      "901": %s,
    },
  },
}
"""


def acl_text(first: dict[str, Any], second: dict[str, Any]) -> str:
    """A HuJSON policy with comments and trailing commas holding two regions."""
    return POLICY_TEXT % (json.dumps(first), json.dumps(second))


# A whole-policy Acl with valid regions passes despite comments and trailing commas.
def test_acl_with_valid_regions_passes() -> None:
    props = {"acl": acl_text(region(900), region(901)), "overwriteExistingContent": True}
    assert violations(rules.derp_region_range, rules.TAILSCALE_ACL, props) == []


# A policy without a derpMap has nothing to check.
def test_acl_without_derp_map_passes() -> None:
    props = {"acl": '{"acls": [],}'}
    assert violations(rules.derp_region_range, rules.TAILSCALE_ACL, props) == []


# Region ids out of range, keys that differ from RegionID and test-only nodes are reported.
def test_acl_region_violations() -> None:
    text = acl_text(region(901), region(901, InsecureForTests=True))
    found = violations(rules.derp_region_range, rules.TAILSCALE_ACL, {"acl": text})
    assert any("region 900: key must equal RegionID 901" in m for m in found), found
    assert any("InsecureForTests" in m for m in found), found
    text = POLICY_TEXT.replace('"900"', '"42"') % (json.dumps(region(42)), json.dumps(region(901)))
    found = violations(rules.derp_region_range, rules.TAILSCALE_ACL, {"acl": text})
    assert found == [
        "region 42: RegionID 42 outside 900-999 (the range Tailscale reserves for custom relays)"
    ]


# A policy text that is not even lenient JSON cannot be checked, so it is reported.
def test_acl_unparseable_is_violation() -> None:
    found = violations(rules.derp_region_range, rules.TAILSCALE_ACL, {"acl": "{derpMap: ]"})
    assert len(found) == 1 and "cannot be read" in found[0] and "line 1" in found[0]


# Strings keep their commas, slashes and comment markers.
def test_strip_hujson_leaves_strings_alone() -> None:
    text = '{"a": "x, } // y /* z */", "b": [1, 2,], /* c */ "d": "\\"q\\"",}'
    assert derpmap.parse_hujson(text) == {"a": "x, } // y /* z */", "b": [1, 2], "d": '"q"'}


# --- preview and the pack as a whole -----------------------------------------------------------


# An unknown value (preview) raises instead of passing silently; the analyzer turns this into
# "can't run policy during preview".
def test_unknown_value_is_not_a_pass() -> None:
    props = {"name": "derp", "proxied": UNKNOWN_STRING_VALUE}
    with pytest.raises(UnknownValueError):
        violations(rules.dns_not_proxied, rules.DNS_RECORD, props)


# The pack holds eight uniquely named rules with the levels the issue asks for.
def test_pack_contents() -> None:
    levels = {p.name: p.enforcement_level for p in rules.POLICIES}
    assert len(levels) == len(rules.POLICIES) == 8
    advisory = {n for n, level in levels.items() if level is EnforcementLevel.ADVISORY}
    assert advisory == {"derper-verify-clients", "acme-production"}


# --- derper hardening ----------------------------------------------------------------------------


def hardened(**changes: Any) -> dict[str, Any]:
    """derper's container as components/container.py registers it for the built image."""
    props = container()
    props.pop("envs")
    props.update(
        {
            "command": [
                "-hostname=derp.example.com",
                "-a=:12345",
                "-stun-port=3478",
                "-verify-clients",
                "-socket=/var/run/tailscale/tailscaled.sock",
            ],
            "user": "65532:65532",
            "readOnly": True,
            "capabilities": {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]},
            "securityOpts": ["no-new-privileges:true"],
            "networkMode": "host",
            "volumes": [
                {"containerPath": "/var/lib/derper", "volumeName": "derper-900-home-state"},
                {"containerPath": "/var/run/tailscale", "hostPath": "/run/tailscale"},
            ],
        }
    )
    props.update(changes)
    return props


def low_port(**changes: Any) -> dict[str, Any]:
    """The built derper on 443 in host networking: it binds through its file capability, so it
    runs without no-new-privileges (components/container.py)."""
    command = [c.replace("-a=:12345", "-a=:443") for c in hardened()["command"]]
    return hardened(command=command, securityOpts=[], **changes)


PINNED = [
    {"label": "home-derp.role", "value": "derper"},
    {"label": "home-derp.image", "value": "pinned"},
]
BUILT = [
    {"label": "home-derp.role", "value": "derper"},
    {"label": "home-derp.image", "value": "built"},
]


# The built derper's settings pass: 65532 with no-new-privileges; 65532 without it only where
# it binds below 1024 in host networking (derpPort or stunPort).
@pytest.mark.parametrize(
    "props",
    [
        hardened(),
        hardened(securityOpts=["no-new-privileges=true"]),
        low_port(),
        hardened(
            command=[c.replace("-stun-port=3478", "-stun-port=999") for c in hardened()["command"]],
            securityOpts=[],
        ),
        hardened(networkMode="bridge", ports=[{"internal": 443, "external": 443, "ip": "::"}]),
    ],
)
def test_hardened_derper_passes(props: dict[str, Any]) -> None:
    assert violations(rules.derper_hardened, rules.CONTAINER, props) == []
    assert violations(rules.verify_clients, rules.CONTAINER, props) == []


# uid 0 never with tailscaled's socket: tailscaled gives uid 0 write access to its LocalAPI
# (docs/upstream/localapi.md#write-permission). A pinned image (labelled so by
# components/container.py) may run as root only without it; the built derper never as root.
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"user": "0:0"}, "runs as root (0:0) with tailscaled's socket (/run/tailscale)"),
        ({"user": "0:0", "labels": PINNED}, "with tailscaled's socket (/run/tailscale)"),
        (
            {"user": "", "labels": PINNED, "volumes": []},
            "with tailscaled's socket (verify-clients)",
        ),
        (
            {"user": "0:0", "labels": BUILT, "volumes": [], "command": []},
            "the built derper is 65532",
        ),
    ],
)
def test_root_with_the_socket_is_violation(changes: dict[str, Any], words: str) -> None:
    found = violations(rules.derper_hardened, rules.CONTAINER, hardened(**changes))
    assert len(found) == 1 and words in found[0], found


# A pinned image without the socket may run as root; everything else of the hardening applies.
def test_pinned_image_may_run_as_root_without_the_socket() -> None:
    pinned = hardened(
        user="0:0", labels=PINNED, volumes=[], command=[], capabilities={"drops": ["ALL"]}
    )
    assert violations(rules.derper_hardened, rules.CONTAINER, pinned) == []
    found = violations(rules.derper_hardened, rules.CONTAINER, {**pinned, "readOnly": False})
    assert len(found) == 1 and "root filesystem is writable" in found[0]
    found = violations(rules.derper_hardened, rules.CONTAINER, {**pinned, "securityOpts": []})
    assert len(found) == 1 and "no-new-privileges is not set" in found[0]


# Each missing piece of least privilege is named; the rule is mandatory. Without
# no-new-privileges only the built derper binding below 1024 in host networking passes.
@pytest.mark.parametrize(
    ("props", "words"),
    [
        (hardened(readOnly=False), "root filesystem is writable"),
        (hardened(capabilities={"drops": ["NET_RAW"], "adds": []}), "not every capability"),
        (hardened(capabilities={"drops": ["ALL"], "adds": ["SYS_ADMIN"]}), "SYS_ADMIN are added"),
        (hardened(securityOpts=[]), "no-new-privileges is not set"),
        (low_port(networkMode="bridge"), "no-new-privileges is not set"),
        (low_port(labels=PINNED, user="65532"), "no-new-privileges is not set"),
        (hardened(user=""), "runs as root (the image default)"),
        (hardened(user="root"), "runs as root (root)"),
    ],
)
def test_unhardened_derper_is_violation(props: dict[str, Any], words: str) -> None:
    found = violations(rules.derper_hardened, rules.CONTAINER, props)
    assert len(found) == 1 and words in found[0], found
    assert rules.derper_hardened.enforcement_level is EnforcementLevel.MANDATORY


# Other containers (the DDNS updater, the init container) are not derper.
def test_hardening_checks_only_derper() -> None:
    assert violations(rules.derper_hardened, rules.CONTAINER, container(role="ddns")) == []


# --- derper's image provenance (a stack rule: it needs the image the container depends on) --------


def stack_violations(
    resources: list[tuple[str, str, dict[str, Any], dict[str, list[str]]]],
) -> list[str]:
    """Messages of the provenance rule for (type, name, props, property dependencies)."""
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    made = {
        name: PolicyResource(
            typ, engine_props(props), f"urn:{name}", name, opts, None, None, [], {}
        )
        for typ, name, props, _ in resources
    }
    for _, name, _, deps in resources:
        made[name].property_dependencies = {k: [made[n] for n in v] for k, v in deps.items()}
    reported: list[str] = []
    rules.derper_image_provenance.validate(
        StackValidationArgs(list(made.values())), lambda message, urn=None: reported.append(message)
    )
    return reported


BUILT = (
    rules.IMAGE_BUILD,
    "img",
    {
        "imageName": "home-derp/derper:v1.102.5",
        "build": {"context": "/srv/home-derp/components/derper"},
    },
    {},
)


# derper built from the project's Dockerfile, or a pinned digest, passes.
@pytest.mark.parametrize(
    "source",
    [
        BUILT,
        (rules.REMOTE_IMAGE, "img", {"name": "fredliang/derper@sha256:" + "ab" * 32}, {}),
    ],
)
def test_image_built_here_or_pinned_by_digest_passes(source: Any) -> None:
    derper_props = hardened()
    assert (
        stack_violations([source, (rules.CONTAINER, "d", derper_props, {"image": ["img"]})]) == []
    )


# A tag (rebuilt weekly upstream), another build context, or no image resource is a violation.
@pytest.mark.parametrize(
    ("source", "words"),
    [
        (
            (rules.REMOTE_IMAGE, "img", {"name": "fredliang/derper:v1.90.6"}, {}),
            "not pinned by digest",
        ),
        (
            (rules.IMAGE_BUILD, "img", {"build": {"context": "/tmp/else"}}, {}),
            "built from /tmp/else",
        ),
        (None, "comes from no image resource"),
    ],
)
def test_untrusted_image_is_violation(source: Any, words: str) -> None:
    deps = {"image": ["img"]} if source else {}
    resources = [*([source] if source else []), (rules.CONTAINER, "d", hardened(), deps)]
    found = stack_violations(resources)
    assert len(found) == 1 and words in found[0]


# The stack rule runs through the analyzer protocol too (AnalyzeStack with property dependencies).
def test_provenance_runs_under_the_analyzer_protocol(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    def resource(typ: str, name: str, props: dict[str, Any], deps: dict[str, list[str]]) -> Any:
        struct = struct_pb2.Struct()
        struct.update(props)
        return analyzer_pb2.AnalyzerResource(
            type=typ,
            properties=struct,
            urn=f"urn:pulumi:home::home-derp::{typ}::{name}",
            name=name,
            propertyDependencies={
                k: analyzer_pb2.AnalyzerPropertyDependencies(
                    urns=[f"urn:pulumi:home::home-derp::{rules.REMOTE_IMAGE}::{n}" for n in v]
                )
                for k, v in deps.items()
            },
        )

    pinned_tag = resource(rules.REMOTE_IMAGE, "img", {"name": "fredliang/derper:v1.90.6"}, {})
    derper_res = resource(rules.CONTAINER, "d", hardened(), {"image": ["img"]})
    response = analyzer.AnalyzeStack(
        analyzer_pb2.AnalyzeStackRequest(resources=[pinned_tag, derper_res])
    )
    names = [d.policyName for d in response.diagnostics]
    assert names == ["derper-image-provenance"]


@pytest.fixture
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The policy pack started as the CLI starts it (python -m pulumi.policy in policy/)."""
    env = {**os.environ, "PULUMI_STACK": "home", "PULUMI_PROJECT": "home-derp"}
    env["PULUMI_DRY_RUN"] = "true"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=ROOT / "policy",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read() if proc.stderr else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# The pack boots from policy/__main__.py, lists its rules and blocks a proxied record.
def test_pack_runs_under_the_analyzer_protocol(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "home-derp"
    assert {p.name for p in info.policies} == {p.name for p in rules.POLICIES}

    props = struct_pb2.Struct()
    props.update({"name": "derp", "type": "AAAA", "content": "2400:cb00::1", "proxied": True})
    request = analyzer_pb2.AnalyzeRequest(
        type=rules.DNS_RECORD,
        properties=props,
        urn="urn:pulumi:home::home-derp::cloudflare:index/dnsRecord:DnsRecord::relay-aaaa",
        name="relay-aaaa",
    )
    response = analyzer.Analyze(request)
    diagnostics = [(d.policyName, d.enforcementLevel) for d in response.diagnostics]
    assert diagnostics == [("relay-dns-not-proxied", analyzer_pb2.MANDATORY)]
