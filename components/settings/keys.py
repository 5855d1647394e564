"""The stack's config keys: name, type, default and meaning, each written once (no Pulumi import).

Everything that needs a key's default reads it here: the rules (``components/settings/``), the
doctor, the workflows' ``stack_facts.py``; ``Pulumi.yaml`` declares the same keys for the CLI and
``tests/test_project_file.py`` fails when the two disagree, like derper declares each flag and its
default once where it is parsed (docs/architecture.md, "Settings").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

#: The config namespace of the project's own keys (``home-derp:<key>``): the project's name.
NAMESPACE: Final = "home-derp"

#: Env var the health workflow sets: register only what validation and publication need
#: (docs/architecture.md, "Health runs").
HEALTH_RUN_ENV: Final = "HOME_DERP_HEALTH_RUN"

KeyType = Literal["string", "integer", "boolean", "array"]
Value = str | int | bool | tuple[str, ...]


class _Required:
    """The default of a key every stack must set (the CLI refuses a stack without it)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


@dataclass(frozen=True)
class Key:
    """One ``home-derp:`` key as ``Pulumi.yaml`` declares it."""

    name: str
    type: KeyType
    default: Value | _Required
    """What an unset key means; :data:`REQUIRED` when a stack must set it."""
    description: str
    secret: bool = False
    """Read with ``get_secret``; never declared in Pulumi.yaml (a typed secret without a default
    would be required in every stack, pulumi/pulumi#21797)."""

    @property
    def required(self) -> bool:
        return isinstance(self.default, _Required)

    @property
    def declared(self) -> bool:
        """Whether ``Pulumi.yaml`` declares it (secrets are not)."""
        return not self.secret


#: Every key of the namespace, in Pulumi.yaml's order; anything else in a stack is a typo.
KEYS: Final[tuple[Key, ...]] = (
    Key(
        "hostname",
        "string",
        REQUIRED,
        (
            "Fully qualified name of the relay (e.g. derp.example.com); DNS record, TLS "
            "certificate and derpMap HostName. Required."
        ),
    ),
    Key(
        "zone",
        "string",
        "",
        "Cloudflare zone that holds the hostname (e.g. example.com). Set this or zoneId.",
    ),
    Key(
        "zoneId",
        "string",
        "",
        "Cloudflare zone id, instead of looking the zone up by name.",
    ),
    Key(
        "ipv6",
        "string",
        REQUIRED,
        (
            "The relay host's public, stable global IPv6 address, or `auto` to discover it on the"
            " Docker host at every preview/up. Required."
        ),
    ),
    Key(
        "ipv6Interface",
        "string",
        "",
        (
            "With ipv6=auto (and ddns), the host interface that carries the address (e.g. eth0). "
            "Default any."
        ),
    ),
    Key(
        "ipv4",
        "string",
        "",
        (
            "Public IPv4 address of the relay (an A record; forward derpPort/stunPort to the "
            "host), or `none` for IPv6-only - devices without IPv6 then cannot reach devices homed"
            " on the relay (docs/guide/reach.md). Required unless companionHostname is set."
        ),
    ),
    Key(
        "derpPort",
        "integer",
        443,
        "TCP port derper serves HTTPS/DERP on. Home lines usually block 443; use e.g. 12345.",
    ),
    Key(
        "stunPort",
        "integer",
        3478,
        "UDP port of derper's STUN server.",
    ),
    Key(
        "regionId",
        "integer",
        900,
        "derpMap region id, 900-999 (reserved for your own relays). One per stack.",
    ),
    Key(
        "regionCode",
        "string",
        "home",
        "Short region code shown by `tailscale netcheck` (lowercase letters, digits, dashes).",
    ),
    Key(
        "regionName",
        "string",
        "Home",
        "Human readable region name.",
    ),
    Key(
        "verifyClients",
        "boolean",
        True,
        (
            "Only relay for nodes of your tailnet (derper -verify-clients through the host's "
            "tailscaled)."
        ),
    ),
    Key(
        "tailscaleVersion",
        "string",
        "auto",
        (
            "Release derper is built from - `auto` (the relay host's tailscaled, read at every "
            "preview/up) or X.Y.Z. A tcp:// dockerHost needs X.Y.Z."
        ),
    ),
    Key(
        "tailscaleSocket",
        "string",
        "/var/run/tailscale/tailscaled.sock",
        (
            "Host path of tailscaled's LocalAPI socket (the tailscale container uses "
            "/tmp/tailscaled.sock). Its directory is mounted into derper."
        ),
    ),
    Key(
        "acmeServer",
        "string",
        "production",
        "`production`, `staging` (Let's Encrypt) or an ACME directory URL.",
    ),
    Key(
        "acmeEmail",
        "string",
        "",
        "Contact e-mail for the ACME account (expiry notices). Optional.",
    ),
    Key(
        "dockerHost",
        "string",
        "unix:///var/run/docker.sock",
        (
            "Docker engine of the relay host - unix:///path, ssh://user@host[:port] or "
            "tcp://host:port."
        ),
    ),
    Key(
        "image",
        "string",
        "",
        (
            "Empty (default) builds derper from upstream source on the Docker host at "
            "tailscaleVersion; an image pinned by digest (name:tag@sha256:…) replaces the build."
        ),
    ),
    Key(
        "goProxy",
        "string",
        "https://proxy.golang.org,direct",
        (
            "GOPROXY for building derper (e.g. https://goproxy.cn,direct where proxy.golang.org "
            "is blocked)."
        ),
    ),
    Key(
        "buildImage",
        "string",
        "golang:1.26-alpine",
        (
            "Go image of derper's build stage (and of the one-shot init container); point it at a"
            " registry mirror if Docker Hub is unreachable."
        ),
    ),
    Key(
        "runtimeImage",
        "string",
        "scratch",
        "Image derper runs in (scratch - derper is static; only CA certificates are copied in).",
    ),
    Key(
        "networkMode",
        "string",
        "host",
        (
            "`host` (default; correct IPv6 STUN) or `bridge` (published ports; IPv6 STUN answers "
            "are wrong through docker-proxy)."
        ),
    ),
    Key(
        "pinIpv6",
        "boolean",
        False,
        (
            "Put the IPv6 address into the derpMap node (skips DNS for clients; goes stale when "
            "the prefix changes)."
        ),
    ),
    Key(
        "omitDefaultRegions",
        "boolean",
        False,
        (
            "Drop Tailscale's own DERP regions from the tailnet (IPv4-only clients then have no "
            "relay unless the region has IPv4; with no other region a drain moves nobody)."
        ),
    ),
    # -- who can reach devices homed on the region (components/settings/topology.py)
    Key(
        "companionHostname",
        "string",
        "",
        (
            "DNS name of a companion derper in this region on a host with IPv4 (e.g. a small "
            "VPS), meshed with this one so IPv4-only devices reach the region (docs/guide/"
            "reach.md). Empty means no companion."
        ),
    ),
    Key(
        "companionDockerHost",
        "string",
        "",
        (
            "Docker engine of the companion host - ssh://user@host[:port] (or unix:// when "
            "Pulumi runs there). Required with companionHostname."
        ),
    ),
    Key(
        "companionIpv4",
        "string",
        "",
        "The companion host's public IPv4 address (its A record). Required with companionHostname.",
    ),
    Key(
        "companionIpv6",
        "string",
        "auto",
        (
            "The companion host's public IPv6 address (its AAAA record), or `auto` to read it on "
            "the companion host. It dials the home node over IPv6 when home has no IPv4."
        ),
    ),
    Key(
        "validate",
        "string",
        "enforce",
        (
            "Check the relay from outside on `up` - `enforce` (fail up), `warn` (record only) or "
            "`off`."
        ),
    ),
    Key(
        "validateTimeout",
        "integer",
        120,
        "Seconds validation waits for DNS propagation and the container to come up.",
    ),
    Key(
        "validateNonce",
        "string",
        "",
        (
            "Change this value to re-run validation on the next `up` (the weekly workflow sets "
            "the run id)."
        ),
    ),
    Key(
        "tailnetPolicy",
        "string",
        "patch",
        (
            "`patch` (only this region, via the API), `file` (whole policy from policyFile via "
            "tailscale.Acl) or `off`."
        ),
    ),
    Key(
        "policyFile",
        "string",
        "",
        "With tailnetPolicy=file, path of the HuJSON policy file kept in this repository.",
    ),
    Key(
        "adoptRegion",
        "boolean",
        False,
        "Take over an existing region with the same id that this stack did not create.",
    ),
    Key(
        "ddns",
        "boolean",
        False,
        "Run a Cloudflare DDNS updater container beside derper that follows IPv6 prefix changes.",
    ),
    # favonia/cloudflare-ddns at git tag v1.17.0 (Docker Hub tags are the bare semver): >= 1.17.0
    # for ``hostid6``, >= 1.15.0 for ``local.iface`` and ``CLOUDFLARE_API_TOKEN``
    # (components/ddns.py). Add ``@sha256:…`` once the digest is read from a registry.
    Key(
        "ddnsImage",
        "string",
        "favonia/cloudflare-ddns:1.17.0",
        "Pinned image of the DDNS updater (default a pinned favonia/cloudflare-ddns release).",
    ),
    Key(
        "peerRelayPort",
        "integer",
        0,
        (
            "UDP port on which the relay host's tailscaled serves as a Tailscale Peer Relay (0 = "
            "off). Open it on the router for IPv6 (and IPv4 if forwarded)."
        ),
    ),
    Key(
        "peerRelaySources",
        "array",
        (),
        (
            "Policy selectors that may use the peer relay (the grant's src); empty = every device"
            ' ("*").'
        ),
    ),
    # -- usage (components/usage.py, docs/guide/usage.md)
    Key(
        "usageHistory",
        "integer",
        60,
        (
            "Runs kept in the `usage` output's history (each health run and each `up` that "
            "probes adds one; 0 keeps none)."
        ),
    ),
    Key(
        "usageIdleRuns",
        "integer",
        8,
        (
            "Warn when no client (other than the relay host) was homed on the published, healthy "
            "relay in this many runs in a row (0 = never)."
        ),
    ),
    Key(
        "usageCompareMap",
        "string",
        "tailscale",
        (
            "DERP map whose regions the relay's latency is compared with on each run - `tailscale`"
            " (Tailscale's own), `off`, an http(s) URL or a JSON file."
        ),
    ),
    Key(
        "peerRelayDestination",
        "string",
        "",
        (
            "The peer relay grant's dst: empty = the relay host's own Tailscale IP; a tag "
            "(tag:relay) grants every device with that tag as a relay."
        ),
    ),
    Key(
        "controlPlane",
        "string",
        "tailscale",
        (
            "`tailscale` (the region in the tailnet policy through Tailscale's API) or "
            "`headscale` (the region in a DERP map file headscale reads; clients verified "
            "through headscale's /verify)."
        ),
    ),
    Key(
        "headscaleUrl",
        "string",
        "",
        (
            "With controlPlane=headscale, headscale's server_url (e.g. https://hs.example.com); "
            "derper admits clients through <url>/verify."
        ),
    ),
    Key(
        "headscaleHost",
        "string",
        "",
        (
            "The headscale host's shell: unix:// (this machine) or ssh://user@host[:port]; empty "
            "= the relay host (dockerHost)."
        ),
    ),
    Key(
        "headscaleConfig",
        "string",
        "/etc/headscale/config.yaml",
        "headscale's config file on the headscale host (read only: derp.paths and derp updates).",
    ),
    Key(
        "headscaleDerpFile",
        "string",
        "/etc/headscale/derp.yaml",
        (
            "The DERP map YAML file on the headscale host, listed in headscale's derp.paths; only "
            "this stack's region in it is edited."
        ),
    ),
    Key(
        "headscaleReload",
        "string",
        "",
        (
            "Command run on the headscale host after the file changed (e.g. `systemctl restart "
            "headscale`); empty = wait for headscale's own re-read (derp.auto_update_enabled, "
            "derp.update_frequency)."
        ),
    ),
    Key(
        "headscalePolicyReload",
        "string",
        "systemctl reload headscale",
        (
            "With peerRelayPort: command run on the headscale host after the grant was written to "
            "headscale's policy file (a SIGHUP reloads the policy)."
        ),
    ),
    Key(
        "headscaleDebugAddress",
        "string",
        "127.0.0.1:9090",
        (
            "headscale's metrics_listen_addr as seen on the headscale host; its /debug/derp shows "
            "the DERP map clients receive."
        ),
    ),
    Key(
        "ddnsApiToken",
        "string",
        "",
        "A narrower Cloudflare token for the DDNS updater; default cloudflare:apiToken.",
        secret=True,
    ),
)

KEY: Final[Mapping[str, Key]] = {key.name: key for key in KEYS}
KNOWN_KEYS: Final = tuple(key.name for key in KEYS)
#: Secrets are read with get_secret, never as plain raw strings.
SECRET_KEYS: Final = tuple(key.name for key in KEYS if key.secret)


def default(name: str) -> Value:
    """The default of an optional key (KeyError for an unknown key, ValueError for a required
    one: a rule that needs a required key's value has to say it is missing)."""
    value = KEY[name].default
    if isinstance(value, _Required):
        raise ValueError(f"home-derp:{name} is required and has no default")
    return value


def default_text(name: str) -> str:
    """The default as the raw string Pulumi hands the program (booleans lower-case)."""
    value = default(name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def full_name(name: str) -> str:
    """The full config key (``home-derp:<name>``)."""
    return f"{NAMESPACE}:{name}"


# ---------------------------------------------------------------------------------------------
# The values some keys choose from, and constants the rules share with the rest of the program

DockerScheme = Literal["unix", "ssh", "tcp"]
NetworkMode = Literal["host", "bridge"]
ValidateMode = Literal["enforce", "warn", "off"]
PolicyMode = Literal["patch", "file", "off"]
ControlPlaneKind = Literal["tailscale", "headscale"]
Ipv6Mode = Literal["static", "auto"]

DOCKER_SCHEMES: Final[tuple[DockerScheme, ...]] = ("unix", "ssh", "tcp")
NETWORK_MODES: Final[tuple[NetworkMode, ...]] = ("host", "bridge")
POLICY_MODES: Final[tuple[PolicyMode, ...]] = ("patch", "file", "off")
VALIDATE_MODES: Final[tuple[ValidateMode, ...]] = ("enforce", "warn", "off")
CONTROL_PLANES: Final[tuple[ControlPlaneKind, ...]] = ("tailscale", "headscale")
#: The longest a validation may keep retrying (home-derp:validateTimeout and the provider's check).
MAX_VALIDATE_TIMEOUT_SECONDS: Final = 1800

#: ``acmeServer``'s names for Let's Encrypt's directories (https://letsencrypt.org/docs/staging-environment/).
ACME_DIRECTORIES: Final = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}

#: The most runs ``usageHistory`` and ``usageIdleRuns`` may name: the history is stack state,
#: carried by every run (about 200 bytes a run).
MAX_USAGE_HISTORY: Final = 500

#: The release the project's own tests run; ``tailscaleVersion: auto`` falls back to it only when
#: the host has no tailscaled and derper does not need one (``verifyClients: false``).
FALLBACK_TAILSCALE_VERSION: Final = "1.102.5"
#: tailscaled's default WireGuard port (tailscaled --port); a peer relay cannot share it.
TAILSCALED_DEFAULT_PORT: Final = 41641
#: Releases that can serve as a peer relay (docs/upstream/peer-relay.md).
PEER_RELAY_MIN_VERSION: Final = "1.86.0"
#: ``--relay-server-static-endpoints`` came later (docs/upstream/tailscale-cli.md#set-relay-server).
PEER_RELAY_STATIC_ENDPOINTS_MIN_VERSION: Final = "1.92.0"


def default_int(name: str) -> int:
    """The default of an integer key."""
    value = default(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"home-derp:{name} is not an integer key")
    return value
