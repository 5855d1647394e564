"""One doctor run: read the stack, ask everything once, in checklist order (the only sequencing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, cast

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


#: The row that shows, with what it read, a problem or warning about a key's value as the relay
#: host sees it (``Problem.on_host``, ``Verdict.warning_keys``): the settings row and the warnings
#: leave such a cause to that row, so it is said once.
ROW_OF_KEY: Final[Mapping[str, str]] = {
    "dockerHost": "host.channel",
    "verifyClients": "tailscaled.daemon",
    "tailscaleSocket": "tailscaled.socket",
    "ipv6": "host.ipv6",
    "ipv4": "reach.ipv4",
    "headscaleConfig": "headscale.config",
    "headscaleDerpFile": "headscale.config",
    "headscaleReload": "headscale.config",
}
#: The row that shows a missing provider credential (``Problem.credential``) with the API's word.
ROW_OF_CREDENTIAL: Final[Mapping[str, str]] = {
    "cloudflare": "cloudflare.token",
    "tailscale": "tailnet.policy",
}


def shown_elsewhere(problem: settings.Problem, failed_rows: set[str]) -> bool:
    """A failing row carries this problem's cause (see :data:`ROW_OF_KEY`)."""
    if problem.credential is not None:
        return ROW_OF_CREDENTIAL.get(problem.credential) in failed_rows
    return problem.on_host and ROW_OF_KEY.get(problem.key or "") in failed_rows


def settings_check(
    verdict: settings.Verdict, stack: StackConfig, rows: Sequence[Check] = ()
) -> Check:
    """``settings``: what ``pulumi up`` stops on before a resource — the Pulumi CLI's own check of
    typed and required keys (every message; the CLI prints the first), then the program's rules
    (``parse_settings``) — less what a failing row of ``rows`` already shows."""
    failed_rows = {c.id for c in rows if c.status == "fail"}
    cli_keys = {key for p in stack.cli_problems for key in p.keys}
    found = []
    for cli in stack.cli_problems:
        program = "; ".join(str(p) for p in verdict.problems if p.key in cli.keys)
        found.append(
            f"- {cli.message} (the Pulumi CLI's check, before the program"
            + (f": {cli.accepts}" if cli.accepts and not program else "")
            + (f"; the program then: {program})" if program else ")")
        )
    found += [
        f"- {p}"
        for p in verdict.problems
        if p.key not in cli_keys and not shown_elsewhere(p, failed_rows)
    ]
    notes = lines(list(verdict.notes))
    if found:
        return failed(
            "settings",
            f"{len(found)} problem(s) `pulumi up` would stop on (nothing would be deployed)",
            f"fix each line in {stack.stack_file.name} (`pulumi config set home-derp:<key> …`)",
            lines(found + ([notes] if notes else [])),
        )
    if verdict.problems:  # every one is a ✗ row below: not repeated, not called fine either
        return passed(
            "settings",
            "the values pass the Pulumi CLI's check and the program's rules; what `up` would stop "
            "on is in the ✗ rows below",
            notes,
        )
    return passed(
        "settings", "the values pass the Pulumi CLI's check and every rule of the program", notes
    )


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
        checks, dns_warnings = _checks(stack, verdict, secrets, host, environ, timeout)
        refused = any(c.id == "tailnet.policy" and c.status == "fail" for c in checks)
        checks.append(reach_checks.ipv4_check(verdict, secrets, environ, timeout, refused))
        mesh = reach_checks.mesh_check(verdict, host, companion)
        if mesh is not None:
            checks.append(mesh)
        # Computed last, shown second: it leaves to a failing row what that row shows.
        checks.insert(1, settings_check(verdict, stack, checks))
        warnings = (*own_warnings(verdict, checks), *dns_warnings)
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
    channel = host_checks.channel_check(plan, host)
    engine_row, engine = host_checks.engine_check(plan, host, channel)
    checks += [channel, engine_row]
    checks += host_checks.tailscaled_checks(plan, host, channel)
    ipv6, address = host_checks.ipv6_check(plan, host, channel)
    checks.append(ipv6)
    checks += host_checks.port_checks(plan, host, channel, engine)
    checks.append(host_checks.derper_check(plan, engine, engine_row))
    checks += host_checks.space_checks(plan, host, channel, engine, engine_row)
    cloudflare, dns_warnings = _cloudflare(stack, plan, secrets, environ, timeout, address)
    checks += cloudflare
    if headscale:
        checks += headscale_checks.checks(verdict.settings, plan.docker_host, timeout)
        return checks, dns_warnings
    policy, text = tailnet_checks.policy_check(plan, secrets, timeout, environ)
    checks += [policy, tailnet_checks.region_check(plan, text, policy, engine)]
    return checks, dns_warnings


def own_warnings(verdict: settings.Verdict, rows: Sequence[Check]) -> tuple[str, ...]:
    """The program's warnings less those a row already says (see :data:`ROW_OF_KEY`)."""
    judged = {c.id for c in rows if c.status != "not_checked"}
    return tuple(
        w
        for w in verdict.warnings
        if (key := verdict.warning_key(w)) is None or ROW_OF_KEY.get(key) not in judged
    )


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
