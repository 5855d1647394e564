"""The stack's config keys: name, type and default, each written once (no Pulumi import).

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


#: Every key of the namespace, by topic; anything else in a stack is a typo. What each means is
#: declared in Pulumi.yaml (the CLI shows it) and docs/guide/configuration.md.
KEYS: Final[tuple[Key, ...]] = (
    Key("hostname", "string", REQUIRED),
    Key("zone", "string", ""),
    Key("zoneId", "string", ""),
    Key("ipv6", "string", REQUIRED),
    Key("ipv6Interface", "string", ""),
    Key("ipv4", "string", ""),
    Key("derpPort", "integer", 443),
    Key("stunPort", "integer", 3478),
    Key("regionId", "integer", 900),
    Key("regionCode", "string", "home"),
    Key("regionName", "string", "Home"),
    Key("verifyClients", "boolean", True),
    Key("tailscaleVersion", "string", "auto"),
    Key("tailscaleSocket", "string", "/var/run/tailscale/tailscaled.sock"),
    Key("acmeServer", "string", "production"),
    Key("acmeEmail", "string", ""),
    Key("dockerHost", "string", "unix:///var/run/docker.sock"),
    Key("image", "string", ""),
    Key("goProxy", "string", "https://proxy.golang.org,direct"),
    Key("buildImage", "string", "golang:1.26-alpine"),
    Key("runtimeImage", "string", "scratch"),
    Key("networkMode", "string", "host"),
    Key("pinIpv6", "boolean", False),
    Key("omitDefaultRegions", "boolean", False),
    # -- who can reach devices homed on the region (components/settings/topology.py)
    Key("companionHostname", "string", ""),
    Key("companionDockerHost", "string", ""),
    Key("companionIpv4", "string", ""),
    Key("companionIpv6", "string", "auto"),
    Key("validate", "string", "enforce"),
    Key("validateTimeout", "integer", 120),
    Key("validateNonce", "string", ""),
    Key("tailnetPolicy", "string", "patch"),
    Key("policyFile", "string", ""),
    Key("adoptRegion", "boolean", False),
    Key("ddns", "boolean", False),
    # favonia/cloudflare-ddns at git tag v1.17.0 (Docker Hub tags are the bare semver): >= 1.17.0
    # for ``hostid6``, >= 1.15.0 for ``local.iface`` and ``CLOUDFLARE_API_TOKEN``
    # (components/ddns.py). Add ``@sha256:…`` once the digest is read from a registry.
    Key("ddnsImage", "string", "favonia/cloudflare-ddns:1.17.0"),
    Key("peerRelayPort", "integer", 0),
    Key("peerRelaySources", "array", ()),
    Key("peerRelayDestination", "string", ""),
    # -- usage (components/usage.py, docs/guide/usage.md)
    Key("usageHistory", "integer", 60),
    Key("usageIdleRuns", "integer", 8),
    Key("usageCompareMap", "string", "tailscale"),
    # -- the control plane (components/settings/control_plane.py, docs/guide/headscale.md)
    Key("controlPlane", "string", "tailscale"),
    Key("headscaleUrl", "string", ""),
    Key("headscaleHost", "string", ""),
    Key("headscaleConfig", "string", "/etc/headscale/config.yaml"),
    Key("headscaleDerpFile", "string", "/etc/headscale/derp.yaml"),
    Key("headscaleReload", "string", ""),
    Key("headscalePolicyReload", "string", "systemctl reload headscale"),
    Key("headscaleDebugAddress", "string", "127.0.0.1:9090"),
    Key("ddnsApiToken", "string", "", secret=True),
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
