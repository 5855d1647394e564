"""The edge: the current stack's config, the environment and the live relay host, read once.

``load_settings`` is the program's single entry (``__main__.py``): it reads Pulumi config and the
environment, asks the relay host through ``components.relay_host`` (once per evaluation,
``preview`` too, read-only and bounded), and turns the :class:`Verdict` of ``parse_settings`` into
settings or one :class:`ConfigError` (docs/architecture.md, "Settings").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pulumi

from components import relay_host, tailscale_api
from components.headscale import HeadscaleHost
from components.settings import keys
from components.settings.checks import parse_bool, readable_docker_host
from components.settings.environment import Environment, HostProbe, github_hosted_runner
from components.settings.model import RelaySettings
from components.settings.parse import parse_settings


def configured_keys() -> list[str]:
    """Full names of the ``home-derp:`` keys set in the stack."""
    from pulumi.runtime import config as runtime_config

    # The CLI passes config in PULUMI_CONFIG; tests (and `set_all_config`) in the context var.
    names = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env() or {})
    return sorted(k for k in names if k.startswith(keys.NAMESPACE + ":"))


def _secret_from_config_or_env(namespace: str, key: str, env: str) -> pulumi.Output[str] | None:
    value = pulumi.Config(namespace).get_secret(key)
    if value is not None:
        return value
    from_env = os.environ.get(env)
    return pulumi.Output.secret(from_env) if from_env else None


def tailscale_config() -> dict[str, Any]:
    """The ``tailscale:`` provider keys as plain strings (read without printing any of them)."""
    from pulumi.runtime import config as runtime_config

    values = {}
    for key in tailscale_api.CONFIG_KEYS:
        value = runtime_config.get_config(f"tailscale:{key}")
        if value is not None:
            values[f"tailscale:{key}"] = value
    return values


def tailscale_credentials_problem(environ: Mapping[str, str]) -> str | None:
    """None when the Tailscale credentials resolve as the provider resolves them, else why not."""
    try:
        tailscale_api.resolve_credentials(tailscale_config(), environ)
    except tailscale_api.TailscaleApiError as exc:
        return str(exc)
    return None


def environment(environ: Mapping[str, str]) -> Environment:
    """The facts of this run: credentials present, runner kind, health run."""
    return Environment(
        cloudflare_api_token=_secret_from_config_or_env(
            "cloudflare", "apiToken", "CLOUDFLARE_API_TOKEN"
        ),
        tailscale_credentials_problem=tailscale_credentials_problem(environ),
        github_hosted_runner=github_hosted_runner(environ),
        health_run=parse_bool(environ.get(keys.HEALTH_RUN_ENV, "")) is True,
    )


def _headscale_reader(url: str) -> HeadscaleHost:
    return HeadscaleHost(url)


def load_settings(host: HostProbe | None = None) -> RelaySettings:
    """Read the current stack's config once and validate it (the program's single entry)."""
    config = pulumi.Config(keys.NAMESPACE)
    raw = {name: config.get(name) for name in keys.KNOWN_KEYS if name not in keys.SECRET_KEYS}
    docker_host = readable_docker_host(raw.get("dockerHost"))
    companion_url = (
        readable_docker_host(raw["companionDockerHost"]) if raw.get("companionDockerHost") else None
    )
    live = None
    if host is None and docker_host is not None:
        host = live = relay_host.LiveHost(docker_host)
    companion = None
    if raw.get("companionHostname") and companion_url is not None:
        companion = relay_host.LiveHost(companion_url)
    try:
        verdict = parse_settings(
            raw,
            env=environment(os.environ),
            host=host,
            ddns_api_token=config.get_secret("ddnsApiToken"),
            configured_keys=configured_keys(),
            headscale=_headscale_reader,
            companion_host=companion,
        )
    finally:
        for opened in (live, companion):
            if opened is not None:
                opened.close()
    for note in verdict.notes:
        pulumi.log.info(note)
    return verdict.require()
