"""The home-derp guardrails: rules a reviewer would otherwise check by eye in a preview diff.

Each rule is a plain validate function ``(args, report) -> None`` wrapped in a
``ResourceValidationPolicy``; importing this module starts nothing (constructing the
``PolicyPack`` in ``__main__.py`` does). Props arrive in engine (camelCase) names, numbers as
floats, nested values as read-only mappings/sequences; an unknown value (preview) raises
``UnknownValueError`` on access, which the analyzer reports as "can't run during preview".
Why each rule exists: docs/architecture.md ("Decisions") and the upstream facts in docs/upstream/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components import image_reference
from components.derpmap import CUSTOM_REGION_IDS, PolicyTextError, regions
from components.hujson import equal_fold
from components.naming import (
    IMAGE_LABEL,
    ROLE_DERPER,
    ROLE_LABEL,
    image_source,
)
from components.settings import ACME_DIRECTORIES, Ports, file_capability_needed
from components.settings.derper import NET_BIND_SERVICE

DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE_BUILD = "docker:index/image:Image"
ACME_PROVIDER = "pulumi:providers:acme"
DERP_REGION = "pulumi-python:dynamic/homederp:TailnetDerpRegion"
#: The same region in headscale's DERP map file (components/headscale_region.py).
HEADSCALE_REGION = "pulumi-python:dynamic/homederp:HeadscaleDerpRegion"
TAILSCALE_ACL = "tailscale:index/acl:Acl"

DERPER_ROLE = ROLE_DERPER  # kept for readers of older rules

ACME_PRODUCTION = ACME_DIRECTORIES["production"]
#: Stacks whose name contains one of these may use a staging/test ACME directory.
NON_PRODUCTION_MARKERS = ("test", "dev")

#: derpMap region ids reserved for custom relays (docs/upstream/derpmap.md#regions).
REGION_MIN, REGION_MAX = CUSTOM_REGION_IDS
#: The one capability derper may keep: binding a port below 1024 (components/container.py).
ALLOWED_CAPABILITY = NET_BIND_SERVICE
#: Where the program's Dockerfile lives: the only build a derper image may come from.
DERPER_BUILD_CONTEXT = "components/derper"

Validate = Callable[[ResourceValidationArgs, ReportViolation], None]


# --- small pure helpers -----------------------------------------------------------------------


def _items(value: Any) -> list[Any]:
    """A props list as a Python list; anything else (None, a scalar) as empty."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def as_int(value: Any) -> int | None:
    """An integral number from props (engine numbers are floats) or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def labels_of(props: Mapping[str, Any]) -> dict[str, str]:
    """Container labels ``[{label, value}]`` as a dict."""
    labels: dict[str, str] = {}
    for entry in _items(props.get("labels")):
        if isinstance(entry, Mapping) and isinstance(entry.get("label"), str):
            labels[entry["label"]] = str(entry.get("value", ""))
    return labels


def env_of(props: Mapping[str, Any]) -> dict[str, str]:
    """Container ``envs`` (``["KEY=value", ...]``) as a dict."""
    env: dict[str, str] = {}
    for entry in _items(props.get("envs")):
        if isinstance(entry, str) and "=" in entry:
            key, value = entry.split("=", 1)
            env[key] = value
    return env


def is_derper(props: Mapping[str, Any]) -> bool:
    """The relay container: labelled ``home-derp.role=derper`` (or, unlabelled, derper's env)."""
    role = labels_of(props).get(ROLE_LABEL)
    if role is not None:
        return role == ROLE_DERPER
    return "DERP_DOMAIN" in env_of(props)


def verify_clients_on(props: Mapping[str, Any]) -> str | None:
    """None when derper verifies clients (flag on its command line, or DERP_VERIFY_CLIENTS=true
    for a pinned image), else what it runs with."""
    command = [str(c) for c in _items(props.get("command"))]
    if any(c in ("-verify-clients", "--verify-clients", "-verify-clients=true") for c in command):
        return None
    if any(c.lstrip("-").startswith("verify-client-url=") and c.split("=", 1)[1] for c in command):
        # headscale's /verify; fail-open (derper's default) admits everyone while it is down
        # (docs/upstream/derper.md#flags).
        closed = any(c.lstrip("-") == "verify-client-url-fail-open=false" for c in command)
        return None if closed else "-verify-client-url without -verify-client-url-fail-open=false"
    value = env_of(props).get("DERP_VERIFY_CLIENTS", "")
    if value.strip().lower() == "true":
        return None
    return (
        f"DERP_VERIFY_CLIENTS={value}"
        if value
        else "no -verify-clients flag (DERP_VERIFY_CLIENTS unset)"
    )


def _is_root(user: str) -> bool:
    name = user.split(":", 1)[0].strip()
    return name in ("", "0", "root")


def socket_mount(props: Mapping[str, Any]) -> str | None:
    """The host directory bound into derper (tailscaled's socket directory: the only host path
    the program mounts), or None."""
    for volume in _items(props.get("volumes")):
        if isinstance(volume, Mapping) and volume.get("hostPath"):
            return str(volume["hostPath"])
    return None


def _flag_port(command: Sequence[str], flag: str) -> int | None:
    """The port of ``-a=[ip]:PORT`` or ``-stun-port=PORT`` on derper's command line."""
    for arg in command:
        if arg.startswith(f"{flag}="):
            tail = arg.split("=", 1)[1].rsplit(":", 1)[-1]
            return int(tail) if tail.isdigit() else None
    return None


def binds_through_file_capability(props: Mapping[str, Any]) -> bool:
    """Whether the built derper binds a port below 1024 in host networking: the one case where
    it may run without no-new-privileges (``settings.file_capability_needed``, the same rule
    the program applies)."""
    command = [str(c) for c in _items(props.get("command"))]
    derp, stun = _flag_port(command, "-a"), _flag_port(command, "-stun-port")
    if derp is None or stun is None:
        return False
    return file_capability_needed(Ports(derp, stun), str(props.get("networkMode") or "bridge"))


def hardening_problems(props: Mapping[str, Any]) -> list[str]:
    """What is missing from derper's least-privilege settings (components/container.py)."""
    problems = []
    if props.get("readOnly") is not True:
        problems.append("the root filesystem is writable (read_only=True)")
    caps = props.get("capabilities")
    caps = caps if isinstance(caps, Mapping) else {}
    drops = [str(c).upper() for c in _items(caps.get("drops"))]
    adds = [str(c).upper().removeprefix("CAP_") for c in _items(caps.get("adds"))]
    if "ALL" not in drops:
        problems.append("not every capability is dropped (capabilities.drops=[ALL])")
    extra = sorted(set(adds) - {ALLOWED_CAPABILITY})
    if extra:
        problems.append(f"capabilities {', '.join(extra)} are added (at most {ALLOWED_CAPABILITY})")
    user = str(props.get("user") or "")
    root = _is_root(user)
    pinned = labels_of(props).get(IMAGE_LABEL) == image_source(pinned=True)
    options = [str(o).replace("=", ":") for o in _items(props.get("securityOpts"))]
    no_new_privileges = "no-new-privileges:true" in options or "no-new-privileges" in options
    # Only the built derper binding below 1024 in host networking may go without it: its file
    # capability works only then, and its image holds no other program.
    exempt = not root and not pinned and binds_through_file_capability(props)
    if not no_new_privileges and not exempt:
        problems.append("no-new-privileges is not set (security_opts)")
    mounted = socket_mount(props)
    if root and (mounted is not None or verify_clients_on(props) is None):
        # tailscaled gives uid 0 write access to its LocalAPI (docs/upstream/localapi.md).
        problems.append(
            f"it runs as root ({user or 'the image default'}) with tailscaled's socket "
            f"({mounted or 'verify-clients'}): uid 0 may change tailscaled's prefs"
        )
    elif root and not pinned:
        # A pinned third-party image's derper starts only as root (components/container.py),
        # without the socket; the built derper never runs as root.
        problems.append(
            f"it runs as root ({user or 'the image default'}); the built derper is 65532"
        )
    return problems


def image_pin_problem(reference: str) -> str | None:
    """Why an image reference is not pinned, or None (the one grammar:
    ``components.image_reference``, which settings use too)."""
    return image_reference.pin_problem(reference)


def missing_address_families(ports: Iterable[Any]) -> list[str]:
    """For bridge mode: ``"12345/tcp on ::"``-style entries for each published port that lacks
    an IPv4 (0.0.0.0) or IPv6 (::) binding. Docker binds only 0.0.0.0 unless told otherwise."""
    bound: dict[tuple[int, str], set[str]] = {}
    for port in ports:
        if not isinstance(port, Mapping):
            continue
        external = as_int(port.get("external")) or as_int(port.get("internal"))
        if external is None:
            continue
        protocol = str(port.get("protocol") or "tcp").lower()
        ip = str(port.get("ip") or "0.0.0.0")
        bound.setdefault((external, protocol), set()).add(ip)
    missing = []
    for (external, protocol), ips in sorted(bound.items()):
        for family in ("0.0.0.0", "::"):
            if family not in ips:
                missing.append(f"{external}/{protocol} on {family}")
    return missing


def region_problems(key: str | None, region: Any) -> list[str]:
    """What is wrong with one derpMap region (id range, node RegionID, InsecureForTests)."""
    label = f"region {key}" if key is not None else "region"
    if not isinstance(region, Mapping):
        return [f"{label}: not an object"]
    problems = []
    region_id = as_int(_field(region, "RegionID"))
    if region_id is None:
        problems.append(f"{label}: RegionID missing or not a number")
    elif not REGION_MIN <= region_id <= REGION_MAX:
        problems.append(
            f"{label}: RegionID {region_id} outside {REGION_MIN}-{REGION_MAX} "
            "(the range Tailscale reserves for custom relays)"
        )
    if key is not None and region_id is not None and key != str(region_id):
        problems.append(f"{label}: key must equal RegionID {region_id}")
    for index, node in enumerate(_items(_field(region, "Nodes"))):
        name = _field(node, "Name") or index if isinstance(node, Mapping) else index
        if not isinstance(node, Mapping):
            problems.append(f"{label} node {name}: not an object")
            continue
        if _field(node, "InsecureForTests") is True:
            problems.append(f"{label} node {name}: InsecureForTests skips TLS checks (tests only)")
        node_region = as_int(_field(node, "RegionID"))
        if region_id is not None and node_region != region_id:
            # tailscale/tailscale#9526, #17563: a node without its RegionID misroutes.
            problems.append(f"{label} node {name}: RegionID must be set to {region_id}")
    return problems


def _field(value: Any, name: str) -> Any:
    """A struct field of the policy, matched as Go's encoding/json does: in any case."""
    if not isinstance(value, Mapping):
        return None
    return next((v for k, v in value.items() if equal_fold(str(k), name)), None)


def derp_map_problems(policy_text: str) -> list[str]:
    """Problems of every region in a tailnet policy's ``derpMap``, read as the program reads it
    (``components.derpmap.regions``: ``"0900"`` is region 900, two spellings are refused)."""
    try:
        found = regions(policy_text)
    except PolicyTextError as exc:
        return [f"the policy's derpMap cannot be read: {exc}"]
    problems: list[str] = []
    for number, region in found.items():
        problems.extend(region_problems(str(number), region))
    return problems


def current_stack() -> str | None:
    """The stack being analyzed: the CLI passes PULUMI_STACK to policy packs (and pulumi_policy
    configures ``pulumi.get_stack()`` from it); None when unknown."""
    name = os.environ.get("PULUMI_STACK")
    if name:
        return name
    try:
        import pulumi

        return pulumi.get_stack() or None
    except Exception:  # outside a Pulumi run there is simply no stack
        return None


def is_non_production_stack(stack: str | None) -> bool:
    """Stacks named like test/dev may use the staging ACME directory."""
    return stack is not None and any(m in stack.lower() for m in NON_PRODUCTION_MARKERS)


# --- validations ----------------------------------------------------------------------------


def validate_dns_not_proxied(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Cloudflare's proxy speaks HTTP(S) only: DERP upgrades and STUN never reach the relay."""
    if args.resource_type != DNS_RECORD:
        return
    if args.props.get("proxied") is True:
        name = args.props.get("name", args.name)
        report(f"DNS record {name} has proxied=true; set proxied=False (DNS only).", None)


def validate_derper_networking(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Host networking, or every published port on both 0.0.0.0 and :: (IPv6 is the point)."""
    if args.resource_type != CONTAINER or not is_derper(args.props):
        return
    mode = str(args.props.get("networkMode") or "bridge")
    if mode == "host":
        return
    ports = _items(args.props.get("ports"))
    if not ports:
        report(f"derper container in networkMode {mode!r} publishes no ports.", None)
        return
    missing = missing_address_families(ports)
    if missing:
        report(
            f"derper container in networkMode {mode!r} does not publish "
            f"{', '.join(missing)}; use networkMode host or publish on both 0.0.0.0 and ::.",
            None,
        )


def validate_image_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A moving tag swaps derper under a running tailnet (and -verify-clients needs a match)."""
    if args.resource_type != REMOTE_IMAGE:
        return
    reference = args.props.get("name")
    if not isinstance(reference, str) or not reference:
        report("image has no name.", None)
        return
    problem = image_pin_problem(reference)
    if problem:
        report(f"image {reference!r} is not pinned: {problem}; use a version tag or @sha256.", None)


def validate_verify_clients(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Without -verify-clients anyone on the internet can relay through the home line."""
    if args.resource_type != CONTAINER or not is_derper(args.props):
        return
    problem = verify_clients_on(args.props)
    if problem:
        report(f"derper runs with {problem}; set home-derp:verifyClients true.", None)


def validate_derper_hardened(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """derper holds the tailscaled socket and faces the internet: least privilege only."""
    if args.resource_type != CONTAINER or not is_derper(args.props):
        return
    problems = hardening_problems(args.props)
    if problems:
        report(
            "the derper container is not hardened: " + "; ".join(problems) + ". Leave "
            "home-derp:image empty to run the built, hardened derper.",
            None,
        )


def image_source_problem(source_type: str, props: Mapping[str, Any]) -> str | None:
    """None when derper's image is built here or pinned by digest, else why not."""
    if source_type == IMAGE_BUILD:
        build = props.get("build")
        context = str(build.get("context") or "") if isinstance(build, Mapping) else ""
        if context.rstrip("/").endswith(DERPER_BUILD_CONTEXT):
            return None
        return f"it is built from {context or 'an unknown context'}, not {DERPER_BUILD_CONTEXT}"
    if source_type == REMOTE_IMAGE:
        name = str(props.get("name") or "")
        if image_reference.pinned_by_digest(name):
            return None
        return f"{name or 'a remote image'} is not pinned by digest (@sha256:…)"
    return f"it comes from a {source_type}"


def validate_image_provenance(args: StackValidationArgs, report: ReportViolation) -> None:
    """derper's image is built here from upstream source, or pinned by digest: a third-party tag
    can be rebuilt under you, and that image gets the tailscaled socket."""
    for resource in args.resources:
        if resource.resource_type != CONTAINER or not is_derper(resource.props):
            continue
        sources = resource.property_dependencies.get("image") or []
        if not sources:
            report(
                "the derper container's image comes from no image resource of this stack "
                "(it must be built here or pinned by digest).",
                resource.urn,
            )
        for source in sources:
            problem = image_source_problem(source.resource_type, source.props)
            if problem:
                report(f"derper's image is not trustworthy: {problem}.", resource.urn)


def make_validate_acme_production(
    stack_name: Callable[[], str | None] = current_stack,
) -> Validate:
    """Build the ACME check with a way to learn the stack name (injected by tests)."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type != ACME_PROVIDER:
            return
        stack = stack_name()
        if is_non_production_stack(stack):
            return
        url = args.props.get("serverUrl")
        if url != ACME_PRODUCTION:
            report(
                f"stack {stack or '(unknown)'} uses ACME directory {url or '(unset)'}; "
                "staging certificates are untrusted, so clients refuse the relay. Use "
                "home-derp:acmeServer production, or name the stack *test*/*dev*.",
                None,
            )

    return validate


def validate_derp_region(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Region ids 900-999, RegionID on every node, never InsecureForTests."""
    if args.resource_type in (DERP_REGION, HEADSCALE_REGION):
        problems = region_problems(None, args.props.get("region"))
    elif args.resource_type == TAILSCALE_ACL:
        text = args.props.get("acl")
        if not isinstance(text, str):
            return
        problems = derp_map_problems(text)
    else:
        return
    for problem in problems:
        report(problem, None)


# --- the policies ---------------------------------------------------------------------------

dns_not_proxied = ResourceValidationPolicy(
    name="relay-dns-not-proxied",
    description="Relay DNS records are DNS-only (Cloudflare proxied=false).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_dns_not_proxied,
)

derper_networking = ResourceValidationPolicy(
    name="derper-reachable-on-ipv6",
    description="The derper container uses host networking or publishes on 0.0.0.0 and ::.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_derper_networking,
)

images_pinned = ResourceValidationPolicy(
    name="images-pinned",
    description="Container images are pinned to a version tag or digest, never :latest.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_image_pinned,
)

verify_clients = ResourceValidationPolicy(
    name="derper-verify-clients",
    description="derper only relays for this tailnet's nodes (DERP_VERIFY_CLIENTS=true).",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=validate_verify_clients,
)

acme_production = ResourceValidationPolicy(
    name="acme-production",
    description="Stacks other than *test*/*dev* get certificates from Let's Encrypt production.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=make_validate_acme_production(),
)

derp_region_range = ResourceValidationPolicy(
    name="derp-region-range",
    description="derpMap regions are 900-999 with RegionID on each node and no InsecureForTests.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_derp_region,
)

derper_hardened = ResourceValidationPolicy(
    name="derper-hardened",
    description=(
        "derper runs read-only, with at most NET_BIND_SERVICE, no-new-privileges (unless it binds "
        "below 1024 through its file capability), never as root with tailscaled's socket."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_derper_hardened,
)

derper_image_provenance = StackValidationPolicy(
    name="derper-image-provenance",
    description="derper's image is built here from upstream source or pinned by digest.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_image_provenance,
)

POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    dns_not_proxied,
    derper_networking,
    images_pinned,
    verify_clients,
    acme_production,
    derp_region_range,
    derper_hardened,
    derper_image_provenance,
]
