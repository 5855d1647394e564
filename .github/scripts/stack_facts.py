"""What a CI run needs to know about one stack, read from the committed project and stack files.

The workflows (.github/workflows/_pulumi.yml) run this before Pulumi starts::

    venv/bin/python .github/scripts/stack_facts.py STACK >> "$GITHUB_OUTPUT"

and get, as step outputs: the Pulumi CLI version (``requirements.txt``'s ``pulumi==`` pin: the CLI
and the SDK are released together), where the Docker host is and how to reach it (ping target for
tailscale/github-action, the ``known_hosts`` name OpenSSH looks up), the validation and tailnet
policy modes, and the exact URNs a health run targets.

Config values are resolved the way the Pulumi CLI merges them, by the one reader the doctor
uses too (``components/stack_config.py`` ``merge_config``: pulumi/pulumi pkg/workspace/config.go
``mergeConfig``); defaults come from the key table (``components/settings/keys.py``). A stack
that imports Pulumi ESC environments (``environment:``) is refused: their values live in Pulumi
Cloud, which a workflow step without the CLI cannot read, and they may set any key.
tests/test_workflows.py proves, for every committed stack, that this agrees with the program's
own settings and with what the program registers in a health run; tests/engine/test_stack_facts.py
that it agrees with the real CLI's ``pulumi config --json``.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the project's own readers: one config merge, one key table

from components.settings import keys  # noqa: E402
from components.stack_config import (  # noqa: E402
    StackFileError,
    load_stack,
    merge_config,
    readable_strings,
)

# The resources of one relay, as the program registers them (components/relay.py and the health
# run contract in docs/architecture.md, "Health runs"): the component ``relay-<regionId>`` is the
# parent of every other resource; child names are ``relay-<regionId>-<suffix>``.
COMPONENT_TYPE = "homederp:index:HomeDerpRelay"
VALIDATION = ("pulumi-python:dynamic/homederp:RelayValidation", "validation")
#: The companion node's validation (``home-derp:companionHostname``, docs/guide/reach.md).
COMPANION_VALIDATION = (VALIDATION[0], "companion-validation")
TAILNET_REGION = ("pulumi-python:dynamic/homederp:TailnetDerpRegion", "tailnet-region")
TAILNET_POLICY = ("tailscale:index/acl:Acl", "tailnet-policy")
HEADSCALE_REGION = ("pulumi-python:dynamic/homederp:HeadscaleDerpRegion", "headscale-region")
HEALTH_GATE = ("pulumi-python:dynamic/homederp:RelayHealthGate", "health-gate")
USAGE = ("pulumi-python:dynamic/homederp:RelayUsage", "usage")

#: Where the IPv6 route check looks when the relay's address is discovered at run time
#: (``ipv6: auto``): Cloudflare's public resolver, a stable global address. No packet is sent.
PUBLIC_IPV6 = "2606:4700:4700::1111"

_PIN = re.compile(r"^pulumi==(?P<version>[0-9]+\.[0-9]+\.[0-9]+)\s*(?:#.*)?$")


class FactsError(Exception):
    """A committed file does not say what CI needs; the message names the file and the fix."""


@dataclass(frozen=True)
class DockerHost:
    """Where the Docker engine of the relay host is, as a runner reaches it."""

    url: str
    scheme: str
    host: str
    """Host name or address for ssh://, tcp:// (empty for unix://)."""
    port: int | None

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH looks up in known_hosts: ``host``, or ``[host]:port`` off port 22."""
        if self.scheme != "ssh" or not self.host:
            return ""
        return self.host if self.port in (None, 22) else f"[{self.host}]:{self.port}"


def pulumi_version(requirements: str) -> str:
    """The exact ``pulumi==X.Y.Z`` pin of requirements.txt (the SDK the program runs on)."""
    pins = [m["version"] for line in requirements.splitlines() if (m := _PIN.match(line.strip()))]
    if len(pins) != 1:
        raise FactsError(
            f"requirements.txt must pin the Pulumi SDK exactly once as pulumi==X.Y.Z (found "
            f"{pins or 'none'}): the workflows install the CLI of the same release"
        )
    return pins[0]


def resolved_config(
    project: dict[str, Any], stack_file: dict[str, Any], stack: str = ""
) -> dict[str, str]:
    """``<namespace>:<key>`` → value as the CLI merges them (``stack_config.merge_config``, the
    doctor's reader too); secrets ({secure: …}) are never CI facts and are left out; ESC
    environment imports are refused."""
    where = f"Pulumi.{stack}.yaml" if stack else "the stack file"
    try:
        return readable_strings(merge_config(project, stack_file, where))
    except StackFileError as exc:
        raise FactsError(str(exc)) from None


def stack_values(root: Path, stack: str) -> tuple[str, dict[str, str]]:
    """(project name, ``<key>`` → the value the CLI hands the program) for every readable
    ``home-derp:`` key: the stack's, else the project's declared default
    (``components/stack_config.py``, the doctor's reader too); a key neither sets is absent."""
    try:
        config = load_stack(root, stack)
    except StackFileError as exc:
        raise FactsError(str(exc)) from None
    return config.project, {key: value for key, value in config.raw.items() if value is not None}


def docker_host(url: str) -> DockerHost:
    """Split a ``home-derp:dockerHost`` URL (unix:///path, ssh://user@host[:port], tcp://h:p)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("unix", "ssh", "tcp"):
        raise FactsError(f"home-derp:dockerHost = {url!r}: expected unix://, ssh:// or tcp://")
    if parts.scheme == "unix":
        return DockerHost(url, "unix", "", None)
    try:
        port = parts.port
    except ValueError:
        raise FactsError(f"home-derp:dockerHost = {url!r}: the port is not a number") from None
    if not parts.hostname:
        raise FactsError(f"home-derp:dockerHost = {url!r}: no host")
    return DockerHost(url, parts.scheme, parts.hostname, port)


def ipv6_probe(value: str) -> str:
    """The address whose route the workflow checks: the relay's own, or a public one for auto."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return PUBLIC_IPV6
    return str(address) if address.version == 6 else PUBLIC_IPV6


def urn(stack: str, project: str, parent_type: str, type_: str, name: str) -> str:
    """A resource's URN as the engine builds it for a child of a component whose parent is the
    stack: ``urn:pulumi:<stack>::<project>::<parent type>$<type>::<name>`` (pulumi/pulumi
    pkg/resource/deploy/deployment.go ``generateURN``: the root stack's type is left out, the
    parent's qualified type is joined with ``$``). The stack part is the bare stack name, also
    when the CLI is given ``org/project/stack``."""
    return f"urn:pulumi:{stack.split('/')[-1]}::{project}::{parent_type}${type_}::{name}"


def health_targets(
    stack: str,
    project: str,
    region_id: str,
    tailnet_policy: str,
    control_plane: str = "tailscale",
    companion: bool = False,
) -> list[str]:
    """The URNs a health run updates, and nothing else: the validation (and the companion node's),
    the policy resource of the stack's tailnetPolicy mode (none with ``off``; headscale's DERP map
    file with ``controlPlane: headscale``), the usage history (components/usage.py), the gate.
    Literal URNs, not globs: the engine fails a run whose literal target neither exists nor is
    registered (deployment_executor ``checkTargets``), so a renamed resource turns a health run
    red instead of making it a no-op."""
    children = [VALIDATION, *([COMPANION_VALIDATION] if companion else [])]
    if control_plane == "headscale":
        if tailnet_policy != "off":
            children.append(HEADSCALE_REGION)
    elif tailnet_policy == "patch":
        children.append(TAILNET_REGION)
    elif tailnet_policy == "file":
        children.append(TAILNET_POLICY)
    children += [USAGE, HEALTH_GATE]
    component = f"relay-{region_id}"
    return [
        urn(stack, project, COMPONENT_TYPE, type_, f"{component}-{suffix}")
        for type_, suffix in children
    ]


def facts(root: Path, stack: str) -> dict[str, str]:
    """Everything the workflow reads about ``stack``, as step outputs (all strings)."""
    project, config = stack_values(root, stack)

    def value(key: str) -> str:
        return config.get(key) or keys.default_text(key)

    docker = docker_host(value("dockerHost"))
    region_id = value("regionId")
    tailnet_policy = value("tailnetPolicy")
    companion = bool(config.get("companionHostname"))
    # Whether a runner without IPv6 can still judge part of the relay (docs/guide/reach.md).
    region_ipv4 = companion or value("ipv4").lower() not in ("", "none")
    return {
        "pulumi-version": pulumi_version((root / "requirements.txt").read_text()),
        "docker-host": docker.url,
        "docker-scheme": docker.scheme,
        "tailnet-host": docker.host,
        "known-hosts-name": docker.known_hosts_name,
        "region-id": region_id,
        "ipv6-probe": ipv6_probe(config.get("ipv6", "")),
        "validate": value("validate"),
        "tailnet-policy": tailnet_policy,
        "region-ipv4": "true" if region_ipv4 else "false",
        "health-targets": "\n".join(
            health_targets(
                stack, project, region_id, tailnet_policy, value("controlPlane"), companion
            )
        ),
    }


def github_output(values: dict[str, str]) -> str:
    """``$GITHUB_OUTPUT`` syntax; multi-line values use the documented heredoc form."""
    lines = []
    for key, value in values.items():
        if "\n" in value:
            lines += [f"{key}<<HOME_DERP_EOF", value, "HOME_DERP_EOF"]
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: stack_facts.py STACK", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(github_output(facts(ROOT, argv[1])))
    except FactsError as exc:
        print(f"::error title=stack {argv[1]}::{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
