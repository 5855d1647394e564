"""The DDNS updater container as the Docker provider would receive it, under mocks.

Uses the suite's autouse ``mocks`` fixture from ``tests/conftest.py`` (one process-wide
``set_mocks``).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker
import pytest

from components.ddns import (
    DEFAULT_IMAGE,
    TYPE_TOKEN,
    DdnsUpdater,
    DdnsUpdaterArgs,
    ddns_env,
    ip6_provider,
)
from tests.conftest import Registered, RelayMocks

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
TOKEN = "ddns-token-not-real"
SECRET_SIG = pulumi.runtime.rpc._special_secret_sig


def is_secret_input(value: Any) -> bool:
    return isinstance(value, dict) and value.get(pulumi.runtime.rpc._special_sig_key) == SECRET_SIG


def env_list(container: Registered) -> list[str]:
    """The env entries; the list arrives secret-wrapped because one entry (the token) is secret."""
    envs = container.inputs["envs"]
    assert is_secret_input(envs), "the env carries the token: it must reach the engine as secret"
    return list(envs["value"])


def plain_env(container: Registered) -> dict[str, str]:
    """Env entries except the token, as a dict."""
    pairs = (e.split("=", 1) for e in env_list(container))
    return {k: v for k, v in pairs if k != "CLOUDFLARE_API_TOKEN"}


def build(**overrides: Any) -> DdnsUpdater:
    """A DdnsUpdater with the relay's usual inputs; ``overrides`` replace args fields."""
    provider = docker.Provider("host", host="ssh://relay@home.example.net")
    fields: dict[str, Any] = {
        "hostname": "derp.example.com",
        "api_token": pulumi.Output.secret(TOKEN),
        "provider": provider,
    }
    fields.update(overrides)
    return DdnsUpdater("relay", DdnsUpdaterArgs(**fields))


@pulumi.runtime.test
def _run(**overrides: Any) -> pulumi.Output[Any]:
    updater = build(**overrides)
    return pulumi.Output.all(updater.container_id, updater.image)


# The container: pinned image, host network, hardened as the image's README recommends, restarts.
def test_container_spec(mocks: RelayMocks) -> None:
    _run()
    container = mocks.one(CONTAINER)
    image = mocks.one(IMAGE)
    assert image.inputs["name"] == DEFAULT_IMAGE == "favonia/cloudflare-ddns:1.17.0"
    assert image.inputs["keepLocally"] is True
    assert container.inputs["image"].startswith("sha256:")  # the pulled image's id, not a tag
    assert container.inputs["name"] == "home-derp-ddns-derp-example-com"
    assert container.inputs["networkMode"] == "host"
    assert container.inputs["restart"] == "unless-stopped"
    assert container.inputs["user"] == "1000:1000"
    assert container.inputs["readOnly"] is True
    assert container.inputs["capabilities"] == {"drops": ["ALL"]}
    assert container.inputs["securityOpts"] == ["no-new-privileges:true"]
    assert {"label": "home-derp.role", "value": "ddns"} in container.inputs["labels"]
    parent = next(r for r in mocks.resources if r.typ == TYPE_TOKEN)
    assert parent.name == "relay" and not parent.custom


# Env per the image's docs: only the AAAA name, IPv4 off, not proxied, short TTL, never deletes
# the Pulumi-owned record on stop.
def test_env_defaults(mocks: RelayMocks) -> None:
    _run()
    env = plain_env(mocks.one(CONTAINER))
    assert env == {
        "DOMAINS": "derp.example.com",
        "IP6_PROVIDER": "local",
        "IP4_PROVIDER": "none",
        "PROXIED": "false",
        "TTL": "60",
        "UPDATE_CRON": "@every 5m",
        "UPDATE_ON_START": "true",
        "DELETE_ON_STOP": "false",
        "EMOJI": "false",
    }


# The token reaches the provider inside a secret-wrapped env, exactly once, and nowhere else.
def test_token_is_secret(mocks: RelayMocks) -> None:
    _run()
    container = mocks.one(CONTAINER)
    assert [e for e in env_list(container) if TOKEN in e] == [f"CLOUDFLARE_API_TOKEN={TOKEN}"]
    others = {k: v for k, v in container.inputs.items() if k != "envs"}
    assert TOKEN not in repr(others)


# A plain (non-secret) token input still ends up secret in the container's env.
def test_plain_token_is_made_secret(mocks: RelayMocks) -> None:
    _run(api_token=TOKEN)
    assert f"CLOUDFLARE_API_TOKEN={TOKEN}" in env_list(mocks.one(CONTAINER))


# An EUI-64 host part is pinned with hostid6; IPv4 on uses Cloudflare's view (NAT); TTL follows.
def test_env_with_host_id_ipv4_and_ttl(mocks: RelayMocks) -> None:
    _run(host_id="::11:22ff:fe33:4455", ipv4_enabled=True, ttl=120, interface="enp3s0")
    container = mocks.one(CONTAINER)
    env = plain_env(container)
    assert env["DOMAINS"] == "derp.example.com{hostid6=::11:22ff:fe33:4455}"
    assert env["IP4_PROVIDER"] == "cloudflare.trace"
    assert env["TTL"] == "120"
    assert env["IP6_PROVIDER"] == "local"  # interface alone does not switch to local.iface
    assert {"label": "home-derp.interface", "value": "enp3s0"} in container.inputs["labels"]


# Reading the interface is an explicit choice and needs an interface name.
def test_ip6_provider_interface() -> None:
    assert ip6_provider("enp3s0", "interface") == "local.iface:enp3s0"
    assert ip6_provider("enp3s0", "route") == "local"
    with pytest.raises(ValueError):
        ip6_provider(None, "interface")
    env = ddns_env("d.example.com", interface="eth0", ip6_source="interface")
    assert "IP6_PROVIDER=local.iface:eth0" in env


# Container names are Docker-safe and differ per relay name.
def test_container_name() -> None:
    from components.naming import ddns_container_name as container_name

    assert container_name("Derp.Example.com") == "home-derp-ddns-derp-example-com"
    assert container_name("a.example.com") != container_name("b.example.com")
