"""Stack config → :class:`RelaySettings`: every rule checked here, once, before any resource.

Each topic has one small rule function over the raw strings Pulumi stores (``_zone``,
``_addresses``, ``_derper`` …), all fed by one :class:`Collector` that records every problem instead
of stopping at the first, so a user fixes the stack file in one pass. ``parse_settings`` is pure:
the facts only the relay host knows come in through a :class:`HostProbe`, and the facts of the
environment (credentials present, GitHub runner kind, health run) as plain values.
``load_settings`` is the one edge: it reads Pulumi config, the environment, and — once per
program evaluation, ``preview`` too, read-only and bounded — the relay host (docs/architecture.md,
"Settings").

Every problem names the key, the bad value and what would be valid; :class:`ConfigError` carries
them all, and nothing is deployed.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import os
import re
import subprocess
import tempfile
import urllib.parse
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeVar

import pulumi

from components import derpmap, naming, tailscale_api, tailscaled
from components.errors import HomeDerpError
from components.host import HostChannel, HostReadError, can_read_host, scheme_of
from components.ipv6 import (
    INTERFACE_NAME,
    Candidate,
    Ipv6DiscoveryError,
    address_class_problem,
    choose_stable_ipv6,
    parse_ip_json,
    read_host_addresses,
    static_address_on_host,
)
from components.tailscaled import TailscaledError, TailscaledFacts
from components.validation import MAX_TIMEOUT_SECONDS
from components.validation import MODES as VALIDATE_MODES

NAMESPACE: Final = "home-derp"

#: Env var the health workflow sets: register only what validation and publication need
#: (docs/architecture.md, "Health runs").
HEALTH_RUN_ENV: Final = "HOME_DERP_HEALTH_RUN"

DEFAULT_DOCKER_HOST: Final = "unix:///var/run/docker.sock"
#: Pinned DDNS updater (favonia/cloudflare-ddns, v1.17.0 checked against its README; ddns.py).
DEFAULT_DDNS_IMAGE: Final = "favonia/cloudflare-ddns:1.17.0"
#: The release the project's own tests run; ``tailscaleVersion: auto`` falls back to it only when
#: the host has no tailscaled and derper does not need one (``verifyClients: false``).
DEFAULT_TAILSCALE_VERSION: Final = "1.102.5"
#: Where ``go install`` fetches modules; blocked in some countries (README: "Building derper").
DEFAULT_GO_PROXY: Final = "https://proxy.golang.org,direct"
#: Go build stage; ``GOTOOLCHAIN=auto`` fetches a newer Go through the proxy if tailscale needs it.
DEFAULT_BUILD_IMAGE: Final = "golang:1.26-alpine"
#: derper is a static binary: nothing but CA certificates is needed at run time.
DEFAULT_RUNTIME_IMAGE: Final = "scratch"
#: tailscaled's default WireGuard port (tailscaled --port); a peer relay cannot share it.
TAILSCALED_DEFAULT_PORT: Final = 41641
#: Releases that can serve as a peer relay (docs/upstream/peer-relay.md).
PEER_RELAY_MIN_VERSION: Final = "1.86.0"
#: ``--relay-server-static-endpoints`` came later (docs/upstream/tailscale-cli.md#set-relay-server).
PEER_RELAY_STATIC_ENDPOINTS_MIN_VERSION: Final = "1.92.0"

ACME_DIRECTORIES: Final = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}

DockerScheme = Literal["unix", "ssh", "tcp"]
NetworkMode = Literal["host", "bridge"]
ValidateMode = Literal["enforce", "warn", "off"]
PolicyMode = Literal["patch", "file", "off"]
Ipv6Mode = Literal["static", "auto"]

DOCKER_SCHEMES: Final[tuple[DockerScheme, ...]] = ("unix", "ssh", "tcp")
NETWORK_MODES: Final[tuple[NetworkMode, ...]] = ("host", "bridge")
POLICY_MODES: Final[tuple[PolicyMode, ...]] = ("patch", "file", "off")

#: Every key of the ``home-derp:`` namespace; anything else is a typo and is reported.
KNOWN_KEYS: Final = (
    "hostname",
    "zone",
    "zoneId",
    "ipv6",
    "ipv6Interface",
    "ipv4",
    "derpPort",
    "stunPort",
    "regionId",
    "regionCode",
    "regionName",
    "verifyClients",
    "tailscaleVersion",
    "tailscaleSocket",
    "acmeServer",
    "acmeEmail",
    "dockerHost",
    "image",
    "goProxy",
    "buildImage",
    "runtimeImage",
    "networkMode",
    "pinIpv6",
    "omitDefaultRegions",
    "validate",
    "validateTimeout",
    "validateNonce",
    "tailnetPolicy",
    "policyFile",
    "adoptRegion",
    "ddns",
    "ddnsImage",
    "ddnsApiToken",
    "peerRelayPort",
    "peerRelaySources",
)
#: Secrets are read with get_secret, never as plain raw strings.
SECRET_KEYS: Final = ("ddnsApiToken",)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_REGION_CODE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ZONE_ID = re.compile(r"^[0-9a-f]{32}$")
# docker reference: [registry/]name[:tag][@sha256:<64 hex>]
_IMAGE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::\d+)?)/)?"
    r"(?P<name>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
# Policy selectors a grant's "src" takes (docs/upstream/tailscale-api.md#selectors).
_SELECTOR = re.compile(
    r"^(\*|autogroup:[a-z][a-z-]*|tag:[A-Za-z][A-Za-z0-9-]*|group:[A-Za-z0-9][\w.-]*"
    r"|[^@\s:]+@[^@\s:]*|[A-Za-z][A-Za-z0-9-]*)$"
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class ConfigError(HomeDerpError):
    """Stack config is invalid; ``problems`` holds one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"home-derp: {len(problems)} problem(s) in the stack config "
            f"(nothing was deployed):\n{lines}"
        )


# ---------------------------------------------------------------------------------------------
# The settings, by topic


@dataclass(frozen=True)
class Zone:
    """Where the relay's records live: a Cloudflare zone by name (looked up) or by id."""

    name: str | None
    id: str | None


@dataclass(frozen=True)
class Addresses:
    """The public addresses clients use."""

    ipv6: str
    """The relay host's global IPv6 address (discovered when ``ipv6_mode`` is ``auto``)."""
    ipv6_mode: Ipv6Mode
    """``static``: from config; ``auto``: read from the Docker host at every preview/up."""
    ipv6_interface: str | None
    """Interface to take the address from (``auto``) and to watch (DDNS)."""
    ipv6_host_id: str | None
    """Stable interface identifier of the address (``auto`` found EUI-64), pinned by DDNS."""
    ipv4: str | None
    """Public IPv4 of the relay, or None (no A record; derpMap ``IPv4: "none"``)."""
    pin_ipv6: bool
    """Write the IPv6 address into the derpMap node."""

    @property
    def all(self) -> tuple[str, ...]:
        """Every public address clients will use, IPv6 first (empty when not known)."""
        return tuple(a for a in (self.ipv6, self.ipv4) if a)


@dataclass(frozen=True)
class Ports:
    derp: int
    """TCP port of derper's HTTPS/DERP listener."""
    stun: int
    """UDP port of derper's STUN server."""

    @property
    def privileged(self) -> bool:
        """A port below 1024 needs CAP_NET_BIND_SERVICE, so root (components/container.py)."""
        return min(self.derp, self.stun) < 1024


@dataclass(frozen=True)
class Region:
    """The relay's derpMap region."""

    id: int
    code: str
    name: str
    omit_default_regions: bool
    adopt: bool
    """Take over a same-id region this stack did not create."""


@dataclass(frozen=True)
class Acme:
    server_url: str
    email: str | None


@dataclass(frozen=True)
class Docker:
    host: str
    """Docker engine URL (unix://, ssh://, tcp://)."""
    network_mode: NetworkMode


@dataclass(frozen=True)
class DerperBuild:
    """derper built from upstream source on the Docker host (components/derper/Dockerfile)."""

    tailscale_version: str
    """The tailscale release derper is built from: the host tailscaled's, ``X.Y.Z``."""
    go_proxy: str
    build_image: str
    runtime_image: str


@dataclass(frozen=True)
class Derper:
    """What runs as derper and how it verifies clients."""

    build: DerperBuild | None
    """The source build (None when a pinned ``image`` replaces it)."""
    image: str
    """The pinned image, or the name of the built one (``home-derp/derper:vX.Y.Z``)."""
    verify_clients: bool
    tailscale_socket: str
    """Host path of tailscaled's LocalAPI socket; derper gets ``-socket`` and its directory."""
    init_image: str
    """Image of the one-shot init container (has ``sh`` and ``chown``): the build image."""


@dataclass(frozen=True)
class Validation:
    mode: ValidateMode
    timeout: int
    nonce: str


@dataclass(frozen=True)
class Policy:
    """How the region (and the peer-relay grant) reach the tailnet policy file."""

    mode: PolicyMode
    file: str | None


@dataclass(frozen=True)
class Ddns:
    enabled: bool
    image: str
    api_token: pulumi.Output[str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PeerRelay:
    """The relay host's tailscaled as a Tailscale Peer Relay (UDP)."""

    port: int
    """UDP port, 0 = off."""
    sources: tuple[str, ...]
    """Policy selectors that may use it (the grant's ``src``)."""
    static_endpoints: tuple[str, ...] = ()
    """``<ipv4>:<port>`` advertised besides the interface addresses (components/peer_relay.py)."""

    @property
    def enabled(self) -> bool:
        return self.port != 0


@dataclass(frozen=True)
class RelaySettings:
    """One relay's validated configuration; the only input of :class:`HomeDerpRelay`."""

    hostname: str
    """FQDN of the relay: DNS name, certificate name, TLS SNI and derpMap ``HostName``."""
    zone: Zone
    addresses: Addresses
    ports: Ports
    region: Region
    acme: Acme
    docker: Docker
    derper: Derper
    validation: Validation
    policy: Policy
    ddns: Ddns
    peer_relay: PeerRelay
    relay_host: TailscaledFacts | None = None
    """The host's tailscaled as read at this evaluation (None when it could not be read)."""
    health_run: bool = False
    """Register only validation and publication (``HOME_DERP_HEALTH_RUN``)."""
    cloudflare_api_token: pulumi.Output[str] | None = field(default=None, compare=False)
    """Cloudflare token (secret): DNS records and the DNS-01 challenge."""
    warnings: tuple[str, ...] = ()
    """Legal but risky choices, logged by the component."""


# ---------------------------------------------------------------------------------------------
# What the rules may ask outside the config (injected; see load_settings for the live one)


class HostProbe(Protocol):
    """Read-only questions to the relay host (``components.host``); each may raise
    ``HostReadError`` when the host cannot be asked."""

    def addresses(self, interface: str | None) -> Sequence[Candidate]: ...

    def tailscaled(self, socket: str) -> TailscaledFacts: ...

    def socket_exists(self, socket: str) -> bool: ...

    def runtime_directory_problem(self, socket: str) -> str | None: ...


@dataclass(frozen=True)
class Environment:
    """Facts of the machine running the program that rules depend on."""

    cloudflare_api_token: pulumi.Output[str] | None = None
    tailscale_credentials_problem: str | None = None
    """None when usable Tailscale credentials are configured; else what is missing."""
    github_hosted_runner: bool = False
    health_run: bool = False
    file_exists: Callable[[str], bool] = os.path.isfile


# ---------------------------------------------------------------------------------------------
# Pure rules over one value: None when fine, else what is wrong


def check_hostname(value: str) -> str | None:
    """None when ``value`` is a usable FQDN, else what is wrong."""
    if len(value) > 253:
        return "longer than 253 characters"
    labels = value.split(".")
    if len(labels) < 2:
        return "not fully qualified (needs at least one dot, e.g. derp.example.com)"
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        return (
            f"label {bad[0]!r} is not a DNS label "
            "(1-63 of a-z, 0-9, '-', not starting or ending with '-')"
        )
    if labels[-1].isdigit():
        return "looks like an IP address; a DNS name is needed for the certificate"
    return None


def check_ipv6(value: str) -> str | None:
    """None when ``value`` is a global unicast IPv6 address a client can reach.

    The address class rule is ``components.ipv6.address_class_problem``, shared with discovery.
    """
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return "not an IPv6 address"
    return address_class_problem(address)


def check_ipv4(value: str) -> str | None:
    """None when ``value`` is a public IPv4 address."""
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        return "not an IPv4 address"
    if addr in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10), not reachable from outside"
    if addr.is_private or addr.is_loopback or addr.is_link_local:
        return "a private address, not reachable from outside"
    if addr.is_multicast or addr.is_reserved or addr.is_unspecified or not addr.is_global:
        return "not a public unicast address"
    return None


def check_image(value: str) -> str | None:
    """None when ``value`` is a pinned image reference (tag other than latest, or a digest)."""
    match = _IMAGE.match(value)
    if not match:
        return "not an image reference ([registry/]name:tag or name@sha256:<digest>)"
    if match["digest"]:
        return None
    if not match["tag"]:
        return "not pinned; add a tag (e.g. :v1.102.5) or a digest (@sha256:…)"
    if match["tag"] == "latest":
        return "':latest' is not pinned; use a release tag or a digest"
    return None


def check_docker_host(value: str) -> str | None:
    """None when ``value`` is a Docker engine URL the provider can use."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in DOCKER_SCHEMES:
        return "scheme must be one of " + ", ".join(f"{s}://" for s in DOCKER_SCHEMES)
    if parsed.scheme == "unix":
        return None if parsed.path.startswith("/") else "unix:// needs an absolute socket path"
    try:
        port = parsed.port
    except ValueError:
        return "the port is not a number"
    if not parsed.hostname:
        return f"{parsed.scheme}:// needs a host (e.g. ssh://user@home.lan)"
    if parsed.scheme == "tcp" and port is None:
        return "tcp:// needs a port (e.g. tcp://home.lan:2376)"
    return None


def check_acme_server(value: str) -> tuple[str | None, str | None]:
    """Map ``production``/``staging``/URL to a directory URL, or say what is wrong."""
    if value in ACME_DIRECTORIES:
        return ACME_DIRECTORIES[value], None
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme == "https" and parsed.hostname:
        return value, None
    return None, "must be production, staging or an https:// ACME directory URL"


def check_socket_path(value: str) -> str | None:
    """None when ``value`` can be tailscaled's socket path on the host."""
    if not value.startswith("/"):
        return (
            "must be an absolute path on the relay host (e.g. /var/run/tailscale/tailscaled.sock)"
        )
    if os.path.normpath(value) != value or value.endswith("/"):
        return "must be a normalized path to the socket file (no '..', '//' or trailing '/')"
    if os.path.dirname(value) == "/":
        return "the socket must sit in a directory of its own (derper mounts that directory)"
    return None


def check_go_proxy(value: str) -> str | None:
    """None for a GOPROXY list (https URLs, ``direct``, ``off``; ``,`` or ``|`` separated)."""
    for entry in re.split(r"[,|]", value):
        if entry in ("direct", "off"):
            continue
        parsed = urllib.parse.urlsplit(entry)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            return (
                f"{entry!r} is not a proxy URL, 'direct' or 'off' (e.g. https://goproxy.cn,direct)"
            )
    return None


def check_selector(value: str) -> str | None:
    """None for a grant source selector (``*``, ``autogroup:…``, ``tag:…``, a user, an IP …)."""
    try:
        ipaddress.ip_network(value, strict=False)
        return None
    except ValueError:
        pass
    if not _SELECTOR.match(value):
        return (
            f"{value!r} is not a policy selector (*, autogroup:member, tag:name, group:name, "
            "user@example.com, a host alias or an IP/CIDR)"
        )
    return None


def parse_bool(value: str) -> bool | None:
    """Pulumi stores booleans as strings; None when it is not one."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def parse_int(value: str) -> int | None:
    """None when ``value`` is not a whole number."""
    try:
        return int(value.strip(), 10)
    except ValueError:
        return None


def hostname_in_zone(hostname: str, zone: str) -> bool:
    """True when the record name lives in the zone (the apex counts)."""
    return hostname == zone or hostname.endswith("." + zone)


def key_name(name: str) -> str:
    """The full config key (``home-derp:<name>``)."""
    return f"{NAMESPACE}:{name}"


def unknown_keys(keys: Sequence[str]) -> list[str]:
    """Problems for keys of our namespace that no rule reads (typos lose settings silently)."""
    problems = []
    for full in keys:
        name = full.split(":", 1)[1]
        if name not in KNOWN_KEYS:
            guess = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
            hint = (
                f"did you mean {key_name(guess[0])}?" if guess else "see Pulumi.yaml for the keys"
            )
            problems.append(f"{full}: unknown key — {hint}")
    return problems


# ---------------------------------------------------------------------------------------------
# The collector: typed reads, every problem kept

T = TypeVar("T", bound=str)


class Collector:
    """Reads raw strings and records every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, str | None]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def fail(self, key: str, value: object, why: str) -> None:
        shown = f"{value!r}" if value is not None else "(not set)"
        self.problems.append(f"{key_name(key)} = {shown}: {why}")

    def problem(self, text: str) -> None:
        """A problem that is not about one ``home-derp:`` key (credentials, runner)."""
        self.problems.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def is_set(self, key: str) -> bool:
        value = self.raw.get(key)
        return value is not None and value.strip() != ""

    def optional(self, key: str) -> str | None:
        value = self.raw.get(key)
        return value.strip() if value is not None and value.strip() else None

    def text(self, key: str, default: str) -> str:
        return self.optional(key) or default

    def checked(self, key: str, value: str, why: str | None) -> bool:
        """Record ``why`` for ``key`` if there is one; True when the value is fine."""
        if why:
            self.fail(key, value, why)
        return why is None

    def boolean(self, key: str, default: bool) -> bool:
        value = self.optional(key)
        if value is None:
            return default
        parsed = parse_bool(value)
        if parsed is None:
            self.fail(key, value, "must be true or false")
            return default
        return parsed

    def integer(self, key: str, default: int, low: int, high: int, why: str) -> int:
        value = self.optional(key)
        if value is None:
            return default
        parsed = parse_int(value)
        if parsed is None or not low <= parsed <= high:
            self.fail(key, value, why)
            return default
        return parsed

    def choice(self, key: str, default: T, choices: Sequence[T]) -> T:
        value = self.text(key, default)
        for choice in choices:
            if value == choice:
                return choice
        self.fail(key, value, "must be one of " + ", ".join(choices))
        return default

    def strings(self, key: str) -> tuple[str, ...]:
        """A list value (Pulumi hands structured config over as JSON text)."""
        value = self.optional(key)
        if value is None:
            return ()
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = [part.strip() for part in value.split(",")]
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            self.fail(key, value, 'must be a list of strings (e.g. ["tag:laptop"])')
            return ()
        return tuple(v.strip() for v in parsed)


# ---------------------------------------------------------------------------------------------
# Rules by topic


def _hostname(c: Collector) -> str:
    hostname = (c.optional("hostname") or "").lower().rstrip(".")
    if not hostname:
        c.fail("hostname", None, "required: the relay's DNS name, e.g. derp.example.com")
    else:
        c.checked("hostname", hostname, check_hostname(hostname))
    return hostname


def _zone(c: Collector, hostname: str) -> Zone:
    name = (c.optional("zone") or "").lower().rstrip(".") or None
    zone_id = c.optional("zoneId")
    if name is None and zone_id is None:
        c.fail("zone", None, "set home-derp:zone (e.g. example.com) or home-derp:zoneId")
    in_zone = name is None or not hostname or hostname_in_zone(hostname, name)
    if name is not None and c.checked("zone", name, check_hostname(name)) and not in_zone:
        c.fail("hostname", hostname, f"is not inside the zone {name!r}")
    if zone_id is not None and not _ZONE_ID.match(zone_id):
        c.fail("zoneId", zone_id, "a Cloudflare zone id is 32 lowercase hex characters")
    return Zone(name=name, id=zone_id)


def _docker(c: Collector, env: Environment) -> tuple[Docker, bool]:
    """The Docker host; the flag says whether its URL is usable (rules that read it need it)."""
    host = c.text("dockerHost", DEFAULT_DOCKER_HOST)
    ok = c.checked("dockerHost", host, check_docker_host(host))
    if ok and scheme_of(host) == "unix" and env.github_hosted_runner:
        # A hosted runner has a Docker daemon of its own: derper would be created (and recorded
        # in state) on a machine that disappears after the job (docs/architecture.md, "CI").
        c.fail(
            "dockerHost",
            host,
            "this is a GitHub-hosted runner (RUNNER_ENVIRONMENT=github-hosted): a unix:// Docker "
            "host is the runner's own throwaway daemon, not your relay. Set home-derp:dockerHost "
            "to ssh://user@<relay host> (README: CI/CD), or run the job on a self-hosted runner "
            "on the relay host",
        )
        ok = False
    network_mode = c.choice("networkMode", "host", NETWORK_MODES)
    if network_mode == "bridge":
        c.warn(
            "networkMode=bridge: IPv6 STUN answers go through docker-proxy and carry the wrong "
            "address (tailscale/tailscale#17565); use host networking for an IPv6 relay"
        )
    return Docker(host=host, network_mode=network_mode), ok


def _static_ipv6_on_host(
    c: Collector, address: str, interface: str | None, probe: HostProbe | None
) -> None:
    """A static address the host holds only as temporary or deprecated breaks within a day."""
    if probe is None:
        return
    try:
        candidates = probe.addresses(interface)
    except (HostReadError, Ipv6DiscoveryError) as exc:
        c.warn(f"home-derp:ipv6 = {address!r} could not be checked on the relay host: {exc}")
        return
    hold = static_address_on_host(address, candidates, interface)
    if not hold.held:
        c.warn(
            f"home-derp:ipv6 = {address!r} is not an address of the relay host (NAT66 or a "
            "proxy in front? otherwise the record points elsewhere): check `ip -6 addr`"
        )
    elif hold.problem:
        c.fail(
            "ipv6",
            address,
            f"the relay host holds it as {hold.problem}; publish its stable address instead, or "
            "set home-derp:ipv6 auto so the program picks it at every up",
        )


def _auto_ipv6(
    c: Collector,
    docker: Docker,
    docker_ok: bool,
    interface: str | None,
    probe: HostProbe | None,
    health_run: bool,
) -> tuple[str, str | None]:
    """(address, host id) chosen on the host, or ("", None) after recording why not.

    A health run that cannot read the host goes on without an address: validation then probes
    what DNS publishes, and a relay that cannot be judged is drained rather than left published
    (docs/architecture.md, "Health runs"). A pinned IPv6 is left out of the region meanwhile.
    """
    if health_run and (not docker_ok or probe is None or not can_read_host(docker.host)):
        return "", None
    if not docker_ok:
        return "", None  # reported under dockerHost
    if not can_read_host(docker.host):
        c.fail(
            "ipv6",
            "auto",
            "auto reads the host's interfaces over unix:// or ssh:// only; with a "
            "tcp:// dockerHost set the address explicitly",
        )
        return "", None
    if probe is None:
        c.fail("ipv6", "auto", "address discovery is not available here")
        return "", None
    try:
        found = choose_stable_ipv6(list(probe.addresses(interface)), interface)
    except (HostReadError, Ipv6DiscoveryError) as exc:
        if health_run:
            c.warn(f"health run: home-derp:ipv6 = 'auto': {exc}; validating what DNS publishes")
            return "", None
        c.fail("ipv6", "auto", f"no usable address found: {exc}")
        return "", None
    pulumi.log.info(
        f"home-derp:ipv6=auto chose {found.address} on {found.interface}: "
        f"{found.kind}: {found.reason}"
    )
    return found.address, found.interface_id if found.host_id_survives_prefix_change else None


def _addresses(
    c: Collector, docker: Docker, docker_ok: bool, probe: HostProbe | None, health_run: bool
) -> Addresses:
    interface = c.optional("ipv6Interface")
    if interface is not None and not INTERFACE_NAME.match(interface):
        c.fail("ipv6Interface", interface, "not an interface name (e.g. eth0, enp3s0)")
        interface = None
    raw = c.optional("ipv6") or ""
    mode: Ipv6Mode = "static"
    ipv6, host_id = "", None
    if not raw:
        c.fail("ipv6", None, "required: the relay host's global IPv6 address, or 'auto'")
    elif raw.lower() == "auto":
        mode = "auto"
        ipv6, host_id = _auto_ipv6(c, docker, docker_ok, interface, probe, health_run)
    elif c.checked("ipv6", raw.lower(), _static_ipv6_problem(raw)):
        ipv6 = str(ipaddress.IPv6Address(raw))
        if docker_ok and can_read_host(docker.host) and not health_run:
            _static_ipv6_on_host(c, ipv6, interface, probe)
    ipv4 = c.optional("ipv4")
    if ipv4 is not None and ipv4.lower() == "none":
        ipv4 = None
    if ipv4 is not None:
        why = check_ipv4(ipv4)
        c.checked("ipv4", ipv4, f"{why}; leave it unset for an IPv6-only relay" if why else None)
    pin = c.boolean("pinIpv6", False)
    return Addresses(ipv6, mode, interface, host_id, ipv4, pin)


def _static_ipv6_problem(value: str) -> str | None:
    why = check_ipv6(value)
    return f"{why}; the relay needs the host's global unicast address" if why else None


def _ports(c: Collector) -> Ports:
    port_rule = "must be a port number 1-65535"
    derp_port = c.integer("derpPort", 443, 1, 65535, port_rule)
    if derp_port == 80:
        c.fail(
            "derpPort", "80", "derper serves DERP over TLS; pick a TLS port such as 443 or 12345"
        )
    return Ports(derp=derp_port, stun=c.integer("stunPort", 3478, 1, 65535, port_rule))


def _region(c: Collector) -> Region:
    low, high = derpmap.CUSTOM_REGION_IDS
    region_id = c.integer(
        "regionId", low, low, high, f"must be {low}-{high} (the range reserved for your own relays)"
    )
    code = c.text("regionCode", "home")
    if not _REGION_CODE.match(code):
        c.fail("regionCode", code, "1-32 lowercase letters, digits and dashes (e.g. homelab)")
    name = c.text("regionName", "Home")
    if len(name) > 64 or not name.isprintable():
        c.fail("regionName", name, "up to 64 printable characters")
    return Region(
        id=region_id,
        code=code,
        name=name,
        omit_default_regions=c.boolean("omitDefaultRegions", False),
        adopt=c.boolean("adoptRegion", False),
    )


def _acme(c: Collector) -> Acme:
    raw = c.text("acmeServer", "production")
    url, why = check_acme_server(raw)
    c.checked("acmeServer", raw, why)
    email = c.optional("acmeEmail")
    if email is not None and not _EMAIL.match(email):
        c.fail("acmeEmail", email, "not an e-mail address (or leave it unset)")
    return Acme(server_url=url or ACME_DIRECTORIES["production"], email=email)


def _read_relay_host(
    c: Collector, docker: Docker, probe: HostProbe, socket: str, health_run: bool
) -> tuple[TailscaledFacts | None, TailscaledError | None, bool | None]:
    """(facts, why they are missing, whether the socket exists) — channel failures recorded."""
    socket_exists = None
    try:
        socket_exists = probe.socket_exists(socket)
        return probe.tailscaled(socket), None, socket_exists
    except TailscaledError as exc:
        return None, exc, socket_exists
    except HostReadError as exc:
        message = f"cannot read the relay host's tailscaled: {exc}"
        if health_run:
            c.warn(f"health run: {message}; the relay is judged from outside only")
        else:
            c.fail("dockerHost", docker.host, message)
        return None, None, None


def _tailscale_version(
    c: Collector,
    facts: TailscaledFacts | None,
    error: TailscaledError | None,
    *,
    verify: bool,
    building: bool,
    readable: bool,
) -> str | None:
    """The release derper is built from: explicit, or the daemon's (``auto``)."""
    raw = c.text("tailscaleVersion", "auto")
    explicit = None
    if raw.lower() != "auto":
        explicit = tailscaled.parse_version(raw)
        if explicit is None:
            c.fail(
                "tailscaleVersion",
                raw,
                "must be auto or a release X.Y.Z such as 1.102.5 (a moving name like 'latest' or "
                "a partial '1.90' would build a derper that drifts from tailscaled)",
            )
            return None
    if facts is not None:
        if explicit is not None and explicit != facts.version and verify:
            c.fail(
                "tailscaleVersion",
                raw,
                f"the relay host's tailscaled runs {facts.version}; derper must be the same "
                "release or -verify-clients rejects every client (tailscale/tailscale#12617): "
                f"set auto or {facts.version}",
            )
        return explicit or facts.version
    if explicit is not None or not building:
        return explicit
    if not readable:
        c.fail(
            "tailscaleVersion",
            "auto",
            "auto reads the host's tailscaled, which a tcp:// dockerHost cannot: set the "
            "release explicitly (`tailscale version` on the relay host)",
        )
        return None
    if error is not None and not verify:
        c.warn(
            f"tailscaleVersion=auto: {error}; building derper {DEFAULT_TAILSCALE_VERSION} (no "
            "tailscaled is needed with verifyClients=false)"
        )
        return DEFAULT_TAILSCALE_VERSION
    return None  # the tailscaled problem is reported by _derper


def _verification_problems(
    facts: TailscaledFacts | None,
    error: TailscaledError | None,
    socket: str,
    socket_exists: bool | None,
) -> list[tuple[str, str, str]]:
    """(key, value, problem) for every reason derper could not verify clients on this host."""
    problems = []
    if socket_exists is False:
        problems.append(("tailscaleSocket", socket, tailscaled.missing_socket_problem(socket)))
    if error is not None:
        # The CLI is pointed at that socket, so without one it can only say "not running":
        # then the socket is the cause to name (tailscaleSocket), not the daemon.
        if not problems:
            problems.append(
                ("verifyClients", "true", f"derper needs the relay host's tailscaled: {error}")
            )
        return problems
    if facts is not None and (problem := tailscaled.state_problem(facts)) is not None:
        problems.append(("verifyClients", "true", problem))
    return problems


def _derper(
    c: Collector, docker: Docker, docker_ok: bool, probe: HostProbe | None, env: Environment
) -> tuple[Derper, TailscaledFacts | None]:
    verify = c.boolean("verifyClients", True)
    if not verify:
        c.warn("verifyClients=false: anyone who learns the hostname can relay through it")
    socket = c.text("tailscaleSocket", tailscaled.DEFAULT_SOCKET)
    blank = c.raw.get("tailscaleSocket") is not None and c.optional("tailscaleSocket") is None
    # set but empty: refused rather than silently taken as the default path
    socket_ok = c.checked(
        "tailscaleSocket",
        "" if blank else socket,
        "must not be empty: remove the key for the default "
        f"{tailscaled.DEFAULT_SOCKET}, or give tailscaled's socket path"
        if blank
        else check_socket_path(socket),
    )
    image = c.optional("image")
    if image is not None:
        c.checked("image", image, check_image(image) or _derper_image_pin_problem(image))
    go_proxy = c.text("goProxy", DEFAULT_GO_PROXY)
    c.checked("goProxy", go_proxy, check_go_proxy(go_proxy))
    build_image = c.text("buildImage", DEFAULT_BUILD_IMAGE)
    c.checked("buildImage", build_image, check_image(build_image))
    runtime_image = c.text("runtimeImage", DEFAULT_RUNTIME_IMAGE)
    if runtime_image != "scratch":
        c.checked("runtimeImage", runtime_image, check_image(runtime_image))

    readable = docker_ok and can_read_host(docker.host)
    facts, error, socket_exists = None, None, None
    if readable and socket_ok and probe is not None:
        facts, error, socket_exists = _read_relay_host(c, docker, probe, socket, env.health_run)
    if verify:
        for key, value, problem in _verification_problems(facts, error, socket, socket_exists):
            if env.health_run:  # a health run judges the relay from outside; it must not stop
                c.warn(f"health run: {key_name(key)}: {problem}")
            else:
                c.fail(key, value, problem)
    stale = None
    if verify and facts is not None and probe is not None and not env.health_run:
        stale = probe.runtime_directory_problem(socket)
    if stale is not None:
        c.warn(f"home-derp:tailscaleSocket = {socket!r}: {stale}")
    if verify and docker_ok and not can_read_host(docker.host):
        c.warn(
            "verifyClients=true with a tcp:// dockerHost: the relay host's tailscaled cannot be "
            "checked before up; validation proves admission afterwards"
        )
    version = _tailscale_version(
        c, facts, error, verify=verify, building=image is None, readable=readable
    )
    if image is not None:
        c.warn(
            f"image={image}: a pinned image replaces the source build; its derper must be the "
            "release of the host's tailscaled"
        )
        if verify and socket_ok and os.path.basename(socket) != "tailscaled.sock":
            # The images' entrypoints cannot be given -socket: derper uses its default name.
            c.fail(
                "tailscaleSocket",
                socket,
                "a pinned image's derper looks for tailscaled.sock in the mounted directory; "
                "with another socket name leave home-derp:image empty (the built derper gets "
                "-socket)",
            )
        return Derper(None, image, verify, socket, build_image), facts
    build = None
    if version is not None:
        build = DerperBuild(version, go_proxy, build_image, runtime_image)
    name = naming.derper_image_name(version or DEFAULT_TAILSCALE_VERSION)
    return Derper(build, name, verify, socket, build_image), facts


def _derper_image_pin_problem(image: str) -> str | None:
    if naming.pinned_by_digest(image):
        return None
    return (
        "derper's image is handed the tailscaled socket, so a tag that can be rebuilt under you "
        "is not enough: pin it by digest (name:tag@sha256:…; `docker buildx imagetools inspect "
        "name:tag` shows it), or leave home-derp:image empty to build derper from source here"
    )


def _validation(c: Collector) -> Validation:
    return Validation(
        mode=c.choice("validate", "enforce", VALIDATE_MODES),
        timeout=c.integer(
            "validateTimeout",
            120,
            0,
            MAX_TIMEOUT_SECONDS,
            f"must be 0-{MAX_TIMEOUT_SECONDS} seconds of waiting for the relay",
        ),
        nonce=c.text("validateNonce", ""),
    )


def _policy(c: Collector, env: Environment) -> Policy:
    mode = c.choice("tailnetPolicy", "patch", POLICY_MODES)
    path = c.optional("policyFile")
    if mode == "file":
        if path is None:
            c.fail("policyFile", None, "required with tailnetPolicy=file: the HuJSON policy path")
        elif not env.file_exists(path):
            c.fail("policyFile", path, "no such file (path is relative to the project)")
    if mode != "off" and env.tailscale_credentials_problem is not None:
        # Found now, not after DNS, certificate and container were already created.
        c.problem(
            f"tailscale credentials: {env.tailscale_credentials_problem}; home-derp:tailnetPolicy"
            f"={mode} writes the tailnet policy (or set home-derp:tailnetPolicy off)"
        )
    return Policy(mode=mode, file=path)


def _ddns(c: Collector, pin_ipv6: bool) -> Ddns:
    enabled = c.boolean("ddns", False)
    image = c.text("ddnsImage", DEFAULT_DDNS_IMAGE)
    c.checked("ddnsImage", image, check_image(image))
    if enabled and pin_ipv6:
        c.fail(
            "pinIpv6",
            "true",
            "cannot be combined with ddns=true: the pin would go stale at the next prefix change",
        )
    return Ddns(enabled=enabled, image=image)


def _peer_relay(
    c: Collector,
    ports: Ports,
    addresses: Addresses,
    docker: Docker,
    docker_ok: bool,
    facts: TailscaledFacts | None,
) -> PeerRelay:
    port = c.integer("peerRelayPort", 0, 0, 65535, "must be 0 (off) or a UDP port 1-65535")
    sources = c.strings("peerRelaySources")
    for source in sources:
        c.checked("peerRelaySources", source, check_selector(source))
    if port == 0:
        if sources:
            c.fail(
                "peerRelaySources",
                list(sources),
                "set, but home-derp:peerRelayPort is 0 (off): set the port, or remove the sources",
            )
        return PeerRelay(0, ())
    if port == ports.stun:
        c.fail(
            "peerRelayPort", str(port), "is derper's STUN port (home-derp:stunPort); pick another"
        )
    if port == TAILSCALED_DEFAULT_PORT:
        c.fail(
            "peerRelayPort",
            str(port),
            "is tailscaled's own WireGuard port (41641); pick another UDP port, e.g. 40000",
        )
    if docker_ok and not can_read_host(docker.host):
        c.fail(
            "peerRelayPort",
            str(port),
            "the peer relay is set on the host's tailscaled, which a tcp:// dockerHost cannot "
            "reach: use unix:// or ssh://",
        )
    if facts is not None and tailscaled.version_key(facts.version) < tailscaled.version_key(
        PEER_RELAY_MIN_VERSION
    ):
        c.fail(
            "peerRelayPort",
            str(port),
            f"the relay host's tailscaled {facts.version} cannot be a peer relay: it needs "
            f"tailscaled >= {PEER_RELAY_MIN_VERSION}",
        )
    return PeerRelay(port, sources or ("*",), _static_endpoints(c, addresses, port, facts))


def _static_endpoints(
    c: Collector, addresses: Addresses, port: int, facts: TailscaledFacts | None
) -> tuple[str, ...]:
    """The port-forwarded public IPv4, when the host's tailscaled can advertise it."""
    if addresses.ipv4 is None:
        return ()
    minimum = PEER_RELAY_STATIC_ENDPOINTS_MIN_VERSION
    key = tailscaled.version_key
    if facts is not None and key(facts.version) < key(minimum):
        c.warn(
            f"home-derp:ipv4 = {addresses.ipv4!r}: the peer relay advertises only the host's own "
            f"addresses (its IPv6); advertising {addresses.ipv4}:{port} needs tailscaled >= "
            f"{minimum} on the relay host (it runs {facts.version})"
        )
        return ()
    return (f"{addresses.ipv4}:{port}",)


def _root_with_socket(c: Collector, derper: Derper, ports: Ports) -> None:
    """derper runs as root below port 1024 and from a pinned image (container.py), and tailscaled
    gives uid 0 write access to its LocalAPI (docs/upstream/localapi.md): say so."""
    if not derper.verify_clients:
        return
    why = None
    if derper.build is None:
        why = f"the pinned image {derper.image} runs as root"
    elif ports.privileged:
        why = (
            f"home-derp:derpPort {ports.derp} / stunPort {ports.stun}: a port below 1024 makes "
            "derper run as root"
        )
    if why:
        c.warn(
            f"{why} with tailscaled's socket: root may change tailscaled's prefs, not only ask "
            "whois. Use ports of 1024 or above with the built image to run derper as 65532"
        )


def parse_settings(
    raw: Mapping[str, str | None],
    *,
    env: Environment | None = None,
    host: HostProbe | None = None,
    ddns_api_token: pulumi.Output[str] | None = None,
) -> RelaySettings:
    """Validate the raw ``home-derp:`` strings; raise :class:`ConfigError` listing all problems."""
    env = env or Environment()
    c = Collector(raw)
    hostname = _hostname(c)
    zone = _zone(c, hostname)
    docker, docker_ok = _docker(c, env)
    addresses = _addresses(c, docker, docker_ok, host, env.health_run)
    ports = _ports(c)
    region = _region(c)
    acme = _acme(c)
    derper, facts = _derper(c, docker, docker_ok, host, env)
    validation = _validation(c)
    policy = _policy(c, env)
    ddns = _ddns(c, addresses.pin_ipv6)
    peer_relay = _peer_relay(c, ports, addresses, docker, docker_ok, facts)
    _root_with_socket(c, derper, ports)
    if env.cloudflare_api_token is None and not env.health_run:
        c.problem(
            "cloudflare:apiToken is not set: run `pulumi config set --secret cloudflare:apiToken` "
            "(a token with Zone:Read and DNS:Edit on the zone) or export CLOUDFLARE_API_TOKEN"
        )
    if c.problems:
        raise ConfigError(c.problems)
    if region.omit_default_regions and addresses.ipv4 is None:
        c.warn("omitDefaultRegions=true with no ipv4: IPv4-only clients will have no DERP relay")
    return RelaySettings(
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
        relay_host=facts,
        health_run=env.health_run,
        cloudflare_api_token=env.cloudflare_api_token,
        warnings=tuple(c.warnings),
    )


# ---------------------------------------------------------------------------------------------
# The edge: Pulumi config, the environment, the live relay host


class LiveHost:
    """The relay host asked through its channel, each answer read once per evaluation.

    Over ssh:// the reads share one OpenSSH connection (ControlMaster in a private directory), so
    four questions cost one handshake (bench/program_eval.py measures it).
    """

    def __init__(self, docker_host: str) -> None:
        options: tuple[str, ...] = ()
        if scheme_of(docker_host) == "ssh":
            self._control = tempfile.TemporaryDirectory(prefix="home-derp-ssh-")
            options = (
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={self._control.name}/%C",
                "-o",
                "ControlPersist=20",
            )
        self.channel = HostChannel(docker_host, ssh_options=options)
        if options:
            # Close the shared connection with the evaluation instead of 20 s later (its socket
            # directory goes away with this object, so nothing could reuse it anyway).
            weakref.finalize(self, _close_ssh_master, self.channel)
        self._addresses: dict[str | None, Sequence[Candidate]] = {}
        self._tailscaled: dict[str, TailscaledFacts] = {}

    def addresses(self, interface: str | None) -> Sequence[Candidate]:
        if interface not in self._addresses:
            text = read_host_addresses(
                self.channel.docker_host, interface, ssh_options=self.channel.ssh_options
            )
            self._addresses[interface] = parse_ip_json(text)
        return self._addresses[interface]

    def tailscaled(self, socket: str) -> TailscaledFacts:
        if socket not in self._tailscaled:
            self._tailscaled[socket] = tailscaled.read_tailscaled(self.channel, socket)
        return self._tailscaled[socket]

    def socket_exists(self, socket: str) -> bool:
        return tailscaled.socket_exists(self.channel, socket)

    def runtime_directory_problem(self, socket: str) -> str | None:
        return tailscaled.read_runtime_directory_problem(self.channel, socket)


def _close_ssh_master(channel: HostChannel) -> None:
    """``ssh -O exit`` on the ControlMaster of ``channel``; best effort, bounded."""
    argv = channel.argv(["true"])
    try:
        cut = argv.index("--")
    except ValueError:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [*argv[:cut], "-O", "exit", *argv[cut:-1]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=5,
            check=False,
        )


def _configured_keys() -> list[str]:
    """Full names of the ``home-derp:`` keys set in the stack."""
    from pulumi.runtime import config as runtime_config

    # The CLI passes config in PULUMI_CONFIG; tests (and `set_all_config`) in the context var.
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env() or {})
    return sorted(k for k in keys if k.startswith(NAMESPACE + ":"))


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


def github_hosted_runner(environ: Mapping[str, str]) -> bool:
    """True on a GitHub-hosted Actions runner
    (docs/upstream/github-actions.md#runner-environment)."""
    return (
        environ.get("GITHUB_ACTIONS") == "true"
        and environ.get("RUNNER_ENVIRONMENT") == "github-hosted"
    )


def environment(environ: Mapping[str, str]) -> Environment:
    """The facts of this run: credentials present, runner kind, health run."""
    return Environment(
        cloudflare_api_token=_secret_from_config_or_env(
            "cloudflare", "apiToken", "CLOUDFLARE_API_TOKEN"
        ),
        tailscale_credentials_problem=tailscale_credentials_problem(environ),
        github_hosted_runner=github_hosted_runner(environ),
        health_run=environ.get(HEALTH_RUN_ENV, "").strip().lower() in _TRUE,
    )


def load_settings(host: HostProbe | None = None) -> RelaySettings:
    """Read the current stack's config once and validate it (the program's single entry)."""
    config = pulumi.Config(NAMESPACE)
    raw = {key: config.get(key) for key in KNOWN_KEYS if key not in SECRET_KEYS}
    problems = unknown_keys(_configured_keys())
    docker_host = (raw.get("dockerHost") or "").strip() or DEFAULT_DOCKER_HOST
    if host is None and check_docker_host(docker_host) is None and can_read_host(docker_host):
        host = LiveHost(docker_host)
    try:
        settings = parse_settings(
            raw,
            env=environment(os.environ),
            host=host,
            ddns_api_token=config.get_secret("ddnsApiToken"),
        )
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return settings
