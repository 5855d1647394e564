"""The whole verdict on one stack: every topic rule over the raw strings, in one pass.

``parse_settings`` is pure: the facts only the relay host knows come in through a
:class:`HostProbe`, and the facts of the environment (credentials present, GitHub runner kind,
health run) as an :class:`Environment`. It never raises for bad config and never logs: it returns
a :class:`Verdict` that the program (``load_settings``) turns into resources or one
:class:`ConfigError`, and that the doctor and the policy pack render (docs/architecture.md,
"Settings").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from components.settings import control_plane as control_rules
from components.settings import derper as derper_rules
from components.settings import network, publication, topology
from components.settings import usage as usage_rules
from components.settings.checks import unknown_keys
from components.settings.collector import Collector
from components.settings.environment import Environment, HostProbe
from components.settings.model import Ddns, RelaySettings, Verdict

if TYPE_CHECKING:
    import pulumi


def parse_settings(
    raw: Mapping[str, str | None],
    *,
    env: Environment | None = None,
    host: HostProbe | None = None,
    ddns_api_token: pulumi.Output[str] | None = None,
    configured_keys: Sequence[str] = (),
    headscale: control_rules.HeadscaleReaders | None = None,
    companion_host: HostProbe | None = None,
) -> Verdict:
    """Every rule over the raw ``home-derp:`` strings (``configured_keys``: the full names set in
    the stack, so a mistyped key is named; ``headscale`` opens a reader of the headscale host;
    ``companion_host``: the companion's Docker host, asked like ``host``); see the module
    docstring."""
    env = env or Environment()
    c = Collector(raw)
    for text in unknown_keys(configured_keys):
        c.problem(text)
    hostname = network.hostname(c)
    zone = network.zone(c, hostname)
    docker, docker_ok = network.docker(c, env)
    addresses = network.addresses(c, docker, docker_ok, host, env.health_run)
    ports = network.ports(c)
    region = network.region(c)
    acme = network.acme(c)
    control = control_rules.control_plane(c, docker, docker_ok, headscale, env)
    verify_url = control.headscale.verify_url if control.headscale else None
    derper, facts = derper_rules.derper(c, docker, docker_ok, host, env, verify_url=verify_url)
    companion = topology.companion(
        c,
        home_hostname=hostname,
        zone=zone,
        docker=docker,
        ports=ports,
        env=env,
        probe=companion_host,
        verify_url=verify_url,
    )
    topology.ipv4_choice(c, addresses, ports, region, companion, env)
    topology.single_region(c, region, addresses.ipv4 is not None or companion is not None)
    validation = publication.validation(c)
    policy = publication.policy(c, env, control.kind)
    ddns = publication.ddns(c, addresses.pin_ipv6)
    peer_relay = publication.peer_relay(c, ports, addresses, docker, docker_ok, facts, control)
    usage = usage_rules.usage(c)
    derper_rules.least_privilege(c, derper, ports, docker)
    if env.cloudflare_api_token is None and not env.health_run:
        c.problem(
            "cloudflare:apiToken is not set: run `pulumi config set --secret cloudflare:apiToken` "
            "(a token with Zone:Read and DNS:Edit on the zone) or export CLOUDFLARE_API_TOKEN",
            credential="cloudflare",
        )
    settings = RelaySettings(
        hostname=hostname,
        zone=zone,
        addresses=addresses,
        ports=ports,
        region=region,
        acme=acme,
        docker=docker,
        derper=derper,
        validation=validation,
        policy=policy,
        ddns=Ddns(ddns.enabled, ddns.image, ddns_api_token or env.cloudflare_api_token),
        peer_relay=peer_relay,
        usage=usage,
        relay_host=facts,
        health_run=env.health_run,
        cloudflare_api_token=env.cloudflare_api_token,
        warnings=tuple(c.warnings),
        control_plane=control,
        companion=companion,
        mesh_with=(topology.mesh_peer(companion.hostname, ports),) if companion else (),
    )
    return Verdict(
        settings, tuple(c.problems), tuple(c.warnings), tuple(c.notes), tuple(c.warning_keys)
    )
