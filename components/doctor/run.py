"""One doctor run: read the stack, ask everything once, in checklist order (the only sequencing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import pulumi

from components import settings
from components.doctor import (
    cloudflare_checks,
    credentials,
    headscale_checks,
    host_checks,
    reach_checks,
    tailnet_checks,
)
from components.doctor.model import Check, Report, failed, lines, passed
from components.doctor.plan import Plan, plan_of
from components.headscale import HeadscaleHost
from components.relay_host import LiveHost
from components.stack_config import StackConfig, load_stack

HostFactory = Callable[[str], LiveHost]
_TOKEN_PRESENT = object()


def _environment(
    stack: StackConfig, environ: Mapping[str, str], secrets: credentials.Secrets
) -> settings.Environment:
    """The program's :class:`settings.Environment`, with the credentials the doctor can see.

    An encrypted value no variable carries counts as present: the program would have it. The rules
    only ask whether a Cloudflare token is configured, so a marker stands for it: a real
    ``pulumi.Output`` needs an event loop, and the doctor must not hold the token in one anyway.
    """
    present = secrets.cloudflare_token is not None or secrets.cloudflare_unreadable
    problem = None if secrets.tailscale_unreadable else secrets.tailscale_problem
    return settings.Environment(
        cloudflare_api_token=cast("pulumi.Output[str]", _TOKEN_PRESENT) if present else None,
        tailscale_credentials_problem=problem,
        # A health run is not modelled: the doctor checks what `up` needs.
        github_hosted_runner=settings.github_hosted_runner(environ),
        file_exists=lambda path: (stack.project_dir / path).is_file(),
    )


def settings_check(verdict: settings.Verdict, stack: StackConfig) -> Check:
    """``settings``: the program's own verdict on the stack (``parse_settings``), rendered."""
    problems = [str(p) for p in verdict.problems]
    notes = lines(list(verdict.notes))
    if problems:
        return failed(
            "settings",
            f"{len(problems)} problem(s) `pulumi up` would stop on (nothing would be deployed)",
            f"fix each line in {stack.stack_file.name} (`pulumi config set home-derp:<key> …`)",
            lines([f"- {p}" for p in problems] + ([notes] if notes else [])),
        )
    return passed("settings", "every rule of the program passed", notes)


def run(
    project_dir: Path,
    stack_name: str,
    environ: Mapping[str, str],
    *,
    timeout: float = 10.0,
    host_factory: HostFactory = LiveHost,
) -> Report:
    """Every check of one stack; raises ``stack.StackFileError`` when the files are unusable."""
    stack = load_stack(project_dir, stack_name)
    secrets = credentials.resolve(stack, environ)
    docker_host = settings.readable_docker_host(stack.raw.get("dockerHost"))
    host = host_factory(docker_host) if docker_host is not None else None
    companion_url = stack.raw.get("companionDockerHost")
    companion_url = settings.readable_docker_host(companion_url) if companion_url else None
    companion = host_factory(companion_url) if companion_url is not None else None
    try:
        verdict = settings.parse_settings(
            stack.raw,
            env=_environment(stack, environ, secrets),
            host=host,
            configured_keys=stack.configured_keys,
            headscale=lambda url: HeadscaleHost(url, timeout=timeout),
            companion_host=companion,
        )
        checks, warnings = _checks(stack, verdict, secrets, host, environ, timeout)
        checks.append(reach_checks.ipv4_check(verdict, secrets, environ, timeout))
        mesh = reach_checks.mesh_check(verdict, host, companion)
        if mesh is not None:
            checks.append(mesh)
    finally:
        for opened in (host, companion):
            if opened is not None:
                opened.close()
    report = Report(
        stack=stack.stack,
        project=stack.project,
        stack_file=str(stack.stack_file),
        docker_host=plan_of(verdict).docker_host,
        checks=tuple(checks),
        warnings=warnings,
    )
    return report.redacted(secrets.values())


def _checks(
    stack: StackConfig,
    verdict: settings.Verdict,
    secrets: credentials.Secrets,
    host: LiveHost | None,
    environ: Mapping[str, str],
    timeout: float,
) -> tuple[list[Check], tuple[str, ...]]:
    plan = plan_of(verdict)
    # With headscale nothing is written through Tailscale's API: no Tailscale credentials needed.
    headscale = verdict.settings.control_plane.kind == "headscale"
    policy_off = plan.policy_mode == "off" or headscale
    checks = [credentials.secrets_check(stack, environ, policy_off=policy_off)]
    checks.append(settings_check(verdict, stack))
    warnings = verdict.warnings
    channel = host_checks.channel_check(plan, host)
    engine_row, engine = host_checks.engine_check(plan, host, channel)
    checks += [channel, engine_row]
    checks += host_checks.tailscaled_checks(plan, host, channel)
    ipv6, address = host_checks.ipv6_check(plan, host, channel)
    checks.append(ipv6)
    checks += host_checks.port_checks(plan, host, channel, engine)
    checks.append(host_checks.derper_check(plan, engine, engine_row))
    checks += host_checks.space_checks(plan, host, channel, engine)
    cloudflare, dns_warnings = _cloudflare(stack, plan, secrets, environ, timeout, address)
    checks += cloudflare
    if headscale:
        checks += headscale_checks.checks(verdict.settings, plan.docker_host, timeout)
        return checks, (*warnings, *dns_warnings)
    policy, text = tailnet_checks.policy_check(plan, secrets, timeout, environ)
    checks += [policy, tailnet_checks.region_check(plan, text, policy, engine)]
    return checks, (*warnings, *dns_warnings)


def _cloudflare(
    stack: StackConfig,
    plan: Plan,
    secrets: credentials.Secrets,
    environ: Mapping[str, str],
    timeout: float,
    address: str | None,
) -> tuple[list[Check], tuple[str, ...]]:
    client = cloudflare_checks.client_for(stack.plain, secrets, environ, timeout)
    token = cloudflare_checks.token_check(client, secrets)
    zone_row, zone = cloudflare_checks.zone_check(plan, client, token)
    records, warnings = cloudflare_checks.records_check(
        plan, client, zone, zone_row, stack=stack.stack, ddns=plan.ddns, ipv6=address
    )
    return [token, zone_row, records], warnings
