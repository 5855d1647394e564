"""Every committed stack file (Pulumi.<stack>.yaml) evaluates under mocks and passes the policy
pack, and the CI stack list names exactly those stacks (a broken example never lands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from policy import rules
from tests.mocks import (
    FAKE_TAILSCALE_KEY,
    FAKE_TOKEN,
    ROOT,
    RelayMocks,
    evaluate,
    install_mocks,
    stack_config,
)

STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
CI_STACKS = ROOT / ".github" / "stacks.json"


def stack_name(path: Path) -> str:
    """``Pulumi.office.yaml`` → ``office``."""
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def evaluate_stack(stack_file: Path, mocks: RelayMocks) -> dict[str, str]:
    """Run the program as ``pulumi up -s <stack>`` would, with a fake Cloudflare token (secrets
    are never committed); returns the config used."""
    assert install_mocks(stack_name(stack_file)) is mocks
    config = {
        **stack_config(stack_file),
        "cloudflare:apiToken": FAKE_TOKEN,
        "tailscale:apiKey": FAKE_TAILSCALE_KEY,
    }
    outputs = evaluate(config)
    assert outputs["hostname"][0] == config["home-derp:hostname"]
    return config


# The glob really finds the shipped stacks, so the parametrized tests below cannot pass empty.
def test_stack_files_are_found() -> None:
    assert {"home", "office"} <= {stack_name(p) for p in STACK_FILES}


# Each stack file runs the whole program without an error and registers one relay.
@pytest.mark.parametrize("stack_file", STACK_FILES, ids=stack_name)
def test_stack_file_evaluates(stack_file: Path, mocks: RelayMocks) -> None:
    config = evaluate_stack(stack_file, mocks)
    relay = mocks.one("homederp:index:HomeDerpRelay")
    assert relay.name == f"relay-{config['home-derp:regionId']}"
    record = mocks.one("cloudflare:index/dnsRecord:DnsRecord")
    assert record.inputs["content"] == config["home-derp:ipv6"]


# What each stack registers passes every rule of the policy pack (advisory ones included).
@pytest.mark.parametrize("stack_file", STACK_FILES, ids=stack_name)
def test_stack_passes_policy_pack(
    stack_file: Path, mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_STACK", stack_name(stack_file))
    evaluate_stack(stack_file, mocks)
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    found: list[str] = []
    by_urn: dict[str, PolicyResource] = {}
    for res in mocks.resources:
        props = unknown_checking_proxy(deserialize_properties(res.inputs))
        urn = mocks.options[res.name].urn
        by_urn[urn] = PolicyResource(res.typ, props, urn, res.name, opts, None, None, [], {})
        args = ResourceValidationArgs(res.typ, props, urn, res.name, opts, None)
        for policy in rules.POLICIES:
            if isinstance(policy, ResourceValidationPolicy):
                policy.validate(
                    args, lambda msg, _urn=None, p=policy.name: found.append(f"{p}: {msg}")
                )
    for res in mocks.resources:  # property dependencies, as the engine sends AnalyzeStack
        deps = mocks.options[res.name].property_dependencies
        resource = by_urn[mocks.options[res.name].urn]
        resource.property_dependencies = {
            key: [by_urn[u] for u in urns if u in by_urn] for key, urns in deps.items()
        }
    stack = StackValidationArgs(list(by_urn.values()))
    for policy in rules.POLICIES:
        if not isinstance(policy, ResourceValidationPolicy):
            policy.validate(
                stack, lambda msg, _urn=None, p=policy.name: found.append(f"{p}: {msg}")
            )
    assert found == []
    checked = {r.typ for r in mocks.resources}
    assert {
        rules.DNS_RECORD,
        rules.CONTAINER,
        rules.REMOTE_IMAGE,
        rules.IMAGE_BUILD,
        rules.ACME_PROVIDER,
        rules.DERP_REGION,
    } <= checked


# The workflows' matrix list (.github/stacks.json) names exactly the committed stack files.
def test_ci_stack_list_matches_stack_files() -> None:
    listed = json.loads(CI_STACKS.read_text())["stacks"]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(stack_name(p) for p in STACK_FILES)


# Two stacks must not claim one derpMap region or one hostname (they would overwrite each other).
def test_stacks_do_not_collide() -> None:
    configs = [stack_config(p) for p in STACK_FILES]
    regions = [c.get("home-derp:regionId", "900") for c in configs]
    hostnames = [c["home-derp:hostname"] for c in configs]
    assert len(set(regions)) == len(regions), regions
    assert len(set(hostnames)) == len(hostnames), hostnames
