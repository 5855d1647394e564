"""Stack config → :class:`RelaySettings`: every rule checked here, once, before any resource.

The rules are small pure functions over the raw strings Pulumi stores (``parse_settings``); only
``load_settings`` touches the outside world (Pulumi config, the environment, the policy file and,
for ``ipv6: auto``, the Docker host's interfaces). All problems are collected and raised together
as one :class:`ConfigError`, each naming the key, the bad value and what would be valid, so a user
fixes the stack file in one go (issue #2).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import pulumi

NAMESPACE = "home-derp"

# Pinned default derper image. fredliang/derper is upstream derper unpatched, amd64 + arm64, with
# tags that follow Tailscale releases (reference/derp.md §1). Pick the tag of the tailscaled on the
# relay host: -verify-clients rejects every client on version skew (tailscale/tailscale#12617).
DEFAULT_IMAGE = "fredliang/derper:v1.90.6"

#: Pinned DDNS updater (favonia/cloudflare-ddns, v1.17.0 checked against its README; issue #5).
DEFAULT_DDNS_IMAGE = "favonia/cloudflare-ddns:1.17.0"

ACME_DIRECTORIES = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}

DOCKER_SCHEMES = ("unix", "ssh", "tcp")
NETWORK_MODES = ("host", "bridge")
VALIDATE_MODES = ("enforce", "warn", "off")
TAILNET_POLICY_MODES = ("patch", "file", "off")

#: Every key of the ``home-derp:`` namespace; anything else is a typo and is reported.
KNOWN_KEYS = (
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
    "acmeServer",
    "acmeEmail",
    "dockerHost",
    "image",
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
)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_REGION_CODE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")
# docker reference: [registry/]name[:tag][@sha256:<64 hex>]
_IMAGE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::\d+)?)/)?"
    r"(?P<name>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_DOCUMENTATION_V6 = ipaddress.IPv6Network("2001:db8::/32")
_ULA = ipaddress.IPv6Network("fc00::/7")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class ConfigError(ValueError):
    """Stack config is invalid; ``problems`` holds one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"home-derp: {len(problems)} problem(s) in the stack config "
            f"(nothing was deployed):\n{lines}"
        )


@dataclass(frozen=True)
class Ipv6Discovery:
    """What ``ipv6: auto`` found on the relay host (shape returned by ``components.ipv6``)."""

    address: str
    interface: str | None
    reason: str
    host_id: str | None = None
    """The address's interface identifier when it survives a prefix change (EUI-64 on a /64)."""


@dataclass(frozen=True)
class RelaySettings:
    """One relay's validated configuration; the only input of :class:`HomeDerpRelay`."""

    hostname: str
    """FQDN of the relay: DNS name, certificate name, TLS SNI and derpMap ``HostName``."""
    zone: str | None
    """Cloudflare zone name (looked up) — or None when ``zone_id`` is given."""
    zone_id: str | None
    """Cloudflare zone id, when given explicitly."""
    ipv6: str
    """The relay host's global IPv6 address (discovered when ``ipv6_mode`` is ``auto``)."""
    ipv6_mode: Literal["static", "auto"]
    """``static``: from config; ``auto``: read from the Docker host at every preview/up."""
    ipv6_interface: str | None
    """Interface to take the address from (``auto``) and to watch (DDNS)."""
    ipv6_host_id: str | None
    """Stable interface identifier of the address (``auto`` found EUI-64), pinned by DDNS."""
    ipv4: str | None
    """Public IPv4 of the relay, or None (no A record; derpMap ``IPv4: "none"``)."""
    derp_port: int
    """TCP port of derper's HTTPS/DERP listener."""
    stun_port: int
    """UDP port of derper's STUN server."""
    region_id: int
    """derpMap region id (900–999)."""
    region_code: str
    """derpMap region code."""
    region_name: str
    """derpMap region name."""
    verify_clients: bool
    """Run derper with ``-verify-clients`` (needs tailscaled on the host)."""
    acme_server_url: str
    """ACME directory URL."""
    acme_email: str | None
    """ACME account contact, optional."""
    docker_host: str
    """Docker engine URL (unix://, ssh://, tcp://)."""
    image: str
    """Pinned derper image reference."""
    network_mode: Literal["host", "bridge"]
    """Container networking; ``host`` keeps IPv6 STUN answers right."""
    pin_ipv6: bool
    """Write the IPv6 address into the derpMap node."""
    omit_default_regions: bool
    """derpMap ``OmitDefaultRegions``."""
    validate: Literal["enforce", "warn", "off"] = "enforce"
    """What a failed outside check does on ``up``."""
    validate_timeout: int = 120
    """Seconds the validation waits for DNS and the container."""
    validate_nonce: str = ""
    """Changing it re-runs validation on the next ``up``."""
    tailnet_policy: Literal["patch", "file", "off"] = "patch"
    """How the region reaches the tailnet policy file."""
    policy_file: str | None = None
    """HuJSON policy file in the repo (``tailnet_policy == "file"``)."""
    adopt_region: bool = False
    """Take over a same-id region this stack did not create."""
    ddns: bool = False
    """Run the DDNS updater container beside derper."""
    ddns_image: str = DEFAULT_DDNS_IMAGE
    """Pinned DDNS updater image."""
    cloudflare_api_token: pulumi.Output[str] | None = field(default=None, compare=False)
    """Cloudflare token (secret): DNS records and the DNS-01 challenge."""
    ddns_api_token: pulumi.Output[str] | None = field(default=None, compare=False)
    """Token for the DDNS updater (secret); defaults to the Cloudflare token."""
    warnings: tuple[str, ...] = ()
    """Legal but risky choices, logged by the component."""

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every public address clients will use, IPv6 first."""
        return (self.ipv6, self.ipv4) if self.ipv4 else (self.ipv6,)


# ---------------------------------------------------------------------------------------------
# Pure rules: each takes the raw string and returns (value, problem | None).


def _key(name: str) -> str:
    return f"{NAMESPACE}:{name}"


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
    if labels[0] == "*":
        return "wildcards are not supported"
    return None


def check_ipv6(value: str) -> str | None:
    """None when ``value`` is a global unicast IPv6 address a client can reach."""
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        return "not an IPv6 address"
    reasons = (
        (addr.is_unspecified, "the unspecified address"),
        (addr.is_loopback, "a loopback address"),
        (addr.is_link_local, "a link-local address (fe80::/10) that only works on one link"),
        (addr in _ULA, "a unique local address (fc00::/7), not routed on the internet"),
        (addr.is_multicast, "a multicast address"),
        (addr.ipv4_mapped is not None, "an IPv4-mapped address; set ipv4 instead"),
        (addr in _DOCUMENTATION_V6, "a documentation address (2001:db8::/32)"),
        (addr not in _GLOBAL_UNICAST or not addr.is_global, "not a global unicast address"),
    )
    for bad, why in reasons:
        if bad:
            return why
    return None


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
        return "not pinned; add a tag (e.g. :v1.90.6) or a digest (@sha256:…)"
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


def unknown_keys(keys: list[str]) -> list[str]:
    """Problems for keys of our namespace that no rule reads (typos lose settings silently)."""
    problems = []
    for full in keys:
        name = full.split(":", 1)[1]
        if name not in KNOWN_KEYS:
            guess = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
            hint = f"did you mean {_key(guess[0])}?" if guess else "see Pulumi.yaml for the keys"
            problems.append(f"{full}: unknown key — {hint}")
    return problems


# ---------------------------------------------------------------------------------------------


class _Collector:
    """Reads raw strings and records every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, str | None]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def fail(self, key: str, value: object, why: str) -> None:
        shown = f"{value!r}" if value is not None else "(not set)"
        self.problems.append(f"{_key(key)} = {shown}: {why}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def boolean(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value is None:
            return default
        parsed = parse_bool(value)
        if parsed is None:
            self.fail(key, value, "must be true or false")
            return default
        return parsed

    def integer(self, key: str, default: int, low: int, high: int, why: str) -> int:
        value = self.text(key)
        if value is None:
            return default
        parsed = parse_int(value)
        if parsed is None or not low <= parsed <= high:
            self.fail(key, value, why)
            return default
        return parsed

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        assert value is not None
        if value not in choices:
            self.fail(key, value, "must be one of " + ", ".join(choices))
            return default
        return value


Discover = Callable[[str, "str | None"], Ipv6Discovery]


def parse_settings(
    raw: Mapping[str, str | None],
    *,
    cloudflare_api_token: pulumi.Output[str] | None,
    ddns_api_token: pulumi.Output[str] | None = None,
    discover_ipv6: Discover | None = None,
    file_exists: Callable[[str], bool] = os.path.isfile,
    tailscale_credentials: bool = True,
) -> RelaySettings:
    """Validate the raw ``home-derp:`` strings; raise :class:`ConfigError` listing all problems."""
    c = _Collector(raw)

    hostname = (c.text("hostname") or "").lower().rstrip(".")
    if not hostname:
        c.fail("hostname", None, "required: the relay's DNS name, e.g. derp.example.com")
    elif why := check_hostname(hostname):
        c.fail("hostname", hostname, why)

    zone = (c.text("zone") or "").lower().rstrip(".") or None
    zone_id = c.text("zoneId")
    if zone is None and zone_id is None:
        c.fail("zone", None, "set home-derp:zone (e.g. example.com) or home-derp:zoneId")
    if zone is not None:
        if why := check_hostname(zone):
            c.fail("zone", zone, why)
        elif hostname and not hostname_in_zone(hostname, zone):
            c.fail("hostname", hostname, f"is not inside the zone {zone!r}")
    if zone_id is not None and not re.fullmatch(r"[0-9a-f]{32}", zone_id):
        c.fail("zoneId", zone_id, "a Cloudflare zone id is 32 lowercase hex characters")

    docker_host = c.text("dockerHost", "unix:///var/run/docker.sock")
    assert docker_host is not None
    if why := check_docker_host(docker_host):
        c.fail("dockerHost", docker_host, why)
        docker_host_ok = False
    else:
        docker_host_ok = True

    ipv6_interface = c.text("ipv6Interface")
    if ipv6_interface is not None and not _INTERFACE.match(ipv6_interface):
        c.fail("ipv6Interface", ipv6_interface, "not an interface name (e.g. eth0, enp3s0)")
        ipv6_interface = None

    ipv6 = c.text("ipv6") or ""
    ipv6_mode: Literal["static", "auto"] = "static"
    ipv6_host_id: str | None = None
    if not ipv6:
        c.fail("ipv6", None, "required: the relay host's global IPv6 address, or 'auto'")
    elif ipv6.lower() == "auto":
        ipv6_mode = "auto"
        ipv6 = ""
        if not docker_host_ok:
            pass  # already reported under dockerHost
        elif docker_host.startswith("tcp://"):
            c.fail(
                "ipv6",
                "auto",
                "auto reads the host's interfaces over unix:// or ssh:// only; with a "
                "tcp:// dockerHost set the address explicitly",
            )
        elif discover_ipv6 is None:
            c.fail("ipv6", "auto", "address discovery is not available here")
        else:
            try:
                found = discover_ipv6(docker_host, ipv6_interface)
                ipv6, ipv6_host_id = found.address, found.host_id
                pulumi.log.info(
                    f"home-derp:ipv6=auto chose {found.address} on "
                    f"{found.interface or 'the host'}: {found.reason}"
                )
            except Exception as exc:  # the discovery error says which candidates failed and why
                c.fail("ipv6", "auto", f"no usable address found: {exc}")
    else:
        ipv6 = ipv6.lower()
        if why := check_ipv6(ipv6):
            c.fail("ipv6", ipv6, f"{why}; the relay needs the host's global unicast address")
        else:
            ipv6 = str(ipaddress.IPv6Address(ipv6))

    ipv4 = c.text("ipv4")
    if ipv4 is not None and ipv4.lower() == "none":
        ipv4 = None
    if ipv4 is not None and (why := check_ipv4(ipv4)):
        c.fail("ipv4", ipv4, f"{why}; leave it unset for an IPv6-only relay")

    port_rule = "must be a port number 1-65535"
    derp_port = c.integer("derpPort", 443, 1, 65535, port_rule)
    if derp_port == 80:
        c.fail(
            "derpPort", "80", "derper serves DERP over TLS; pick a TLS port such as 443 or 12345"
        )
    stun_port = c.integer("stunPort", 3478, 1, 65535, port_rule)

    region_id = c.integer(
        "regionId", 900, 900, 999, "must be 900-999 (the range reserved for your own relays)"
    )
    region_code = c.text("regionCode", "home")
    assert region_code is not None
    if not _REGION_CODE.match(region_code):
        c.fail(
            "regionCode", region_code, "1-32 lowercase letters, digits and dashes (e.g. homelab)"
        )
    region_name = c.text("regionName", "Home")
    assert region_name is not None
    if len(region_name) > 64 or not region_name.isprintable():
        c.fail("regionName", region_name, "up to 64 printable characters")

    verify_clients = c.boolean("verifyClients", True)

    acme_raw = c.text("acmeServer", "production")
    assert acme_raw is not None
    acme_url, why = check_acme_server(acme_raw)
    if why:
        c.fail("acmeServer", acme_raw, why)
    acme_email = c.text("acmeEmail")
    if acme_email is not None and not _EMAIL.match(acme_email):
        c.fail("acmeEmail", acme_email, "not an e-mail address (or leave it unset)")

    image = c.text("image", DEFAULT_IMAGE)
    assert image is not None
    if why := check_image(image):
        c.fail("image", image, why)

    network_mode = c.choice("networkMode", "host", NETWORK_MODES)
    pin_ipv6 = c.boolean("pinIpv6", False)
    omit_default_regions = c.boolean("omitDefaultRegions", False)

    validate = c.choice("validate", "enforce", VALIDATE_MODES)
    validate_timeout = c.integer(
        "validateTimeout", 120, 0, 1800, "must be 0-1800 seconds of waiting for the relay"
    )
    validate_nonce = c.text("validateNonce", "") or ""

    tailnet_policy = c.choice("tailnetPolicy", "patch", TAILNET_POLICY_MODES)
    policy_file = c.text("policyFile")
    if tailnet_policy == "file":
        if policy_file is None:
            c.fail("policyFile", None, "required with tailnetPolicy=file: the HuJSON policy path")
        elif not file_exists(policy_file):
            c.fail("policyFile", policy_file, "no such file (path is relative to the project)")
    adopt_region = c.boolean("adoptRegion", False)

    ddns = c.boolean("ddns", False)
    ddns_image = c.text("ddnsImage", DEFAULT_DDNS_IMAGE)
    assert ddns_image is not None
    if why := check_image(ddns_image):
        c.fail("ddnsImage", ddns_image, why)
    if ddns and pin_ipv6:
        c.fail(
            "pinIpv6",
            "true",
            "cannot be combined with ddns=true: the pin would go stale at the next prefix change",
        )

    if cloudflare_api_token is None:
        c.problems.append(
            "cloudflare:apiToken is not set: run `pulumi config set --secret cloudflare:apiToken` "
            "(a token with Zone:Read and DNS:Edit on the zone) or export CLOUDFLARE_API_TOKEN"
        )

    if tailnet_policy != "off" and not tailscale_credentials:
        # Found now, not after DNS, certificate and container were already created.
        c.problems.append(
            f"tailscale:apiKey is not set, and home-derp:tailnetPolicy={tailnet_policy} writes the "
            "tailnet policy: run `pulumi config set --secret tailscale:apiKey` (or set "
            "tailscale:oauthClientId + `--secret tailscale:oauthClientSecret`, scope policy_file; "
            "or export TAILSCALE_API_KEY), or set home-derp:tailnetPolicy off"
        )

    if c.problems:
        raise ConfigError(c.problems)

    warnings = []
    if omit_default_regions and ipv4 is None:
        warnings.append(
            "omitDefaultRegions=true with no ipv4: IPv4-only clients will have no DERP relay"
        )
    if not verify_clients:
        warnings.append("verifyClients=false: anyone who learns the hostname can relay through it")
    if network_mode == "bridge":
        warnings.append(
            "networkMode=bridge: IPv6 STUN answers go through docker-proxy and carry the wrong "
            "address (tailscale/tailscale#17565); use host networking for an IPv6 relay"
        )

    return RelaySettings(
        hostname=hostname,
        zone=zone,
        zone_id=zone_id,
        ipv6=ipv6,
        ipv6_mode=ipv6_mode,
        ipv6_interface=ipv6_interface,
        ipv6_host_id=ipv6_host_id,
        ipv4=ipv4,
        derp_port=derp_port,
        stun_port=stun_port,
        region_id=region_id,
        region_code=region_code,
        region_name=region_name,
        verify_clients=verify_clients,
        acme_server_url=cast(str, acme_url),
        acme_email=acme_email,
        docker_host=docker_host,
        image=image,
        network_mode=cast(Literal["host", "bridge"], network_mode),
        pin_ipv6=pin_ipv6,
        omit_default_regions=omit_default_regions,
        validate=cast(Literal["enforce", "warn", "off"], validate),
        validate_timeout=validate_timeout,
        validate_nonce=validate_nonce,
        tailnet_policy=cast(Literal["patch", "file", "off"], tailnet_policy),
        policy_file=policy_file,
        adopt_region=adopt_region,
        ddns=ddns,
        ddns_image=ddns_image,
        cloudflare_api_token=cloudflare_api_token,
        ddns_api_token=ddns_api_token or cloudflare_api_token,
        warnings=tuple(warnings),
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


def has_tailscale_credentials() -> bool:
    """An API key or a complete OAuth client, in stack config or the provider's env variables."""
    config = pulumi.Config("tailscale")

    def present(key: str, env: str) -> bool:
        return bool(config.get(key) or os.environ.get(env))

    return present("apiKey", "TAILSCALE_API_KEY") or (
        present("oauthClientId", "TAILSCALE_OAUTH_CLIENT_ID")
        and present("oauthClientSecret", "TAILSCALE_OAUTH_CLIENT_SECRET")
    )


def load_settings(discover_ipv6: Discover | None = None) -> RelaySettings:
    """Read the current stack's config once and validate it (the program's single entry)."""
    config = pulumi.Config(NAMESPACE)
    raw = {key: config.get(key) for key in KNOWN_KEYS if key != "ddnsApiToken"}
    problems = unknown_keys(_configured_keys())
    if discover_ipv6 is None:

        def discover_ipv6(docker_host: str, interface: str | None) -> Ipv6Discovery:
            from components import ipv6 as ipv6_discovery  # only stacks with ipv6=auto need it

            found = ipv6_discovery.discover_stable_ipv6(docker_host, interface)
            host_id = found.interface_id if found.host_id_survives_prefix_change else None
            return Ipv6Discovery(
                found.address, found.interface, f"{found.kind}: {found.reason}", host_id
            )

    try:
        settings = parse_settings(
            raw,
            cloudflare_api_token=_secret_from_config_or_env(
                "cloudflare", "apiToken", "CLOUDFLARE_API_TOKEN"
            ),
            ddns_api_token=config.get_secret("ddnsApiToken"),
            discover_ipv6=discover_ipv6,
            tailscale_credentials=has_tailscale_credentials(),
        )
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return settings
