"""What the settings are: one dataclass per topic, the problems found, and the whole verdict.

Pure data (no I/O, no Pulumi import at run time): the rules in this package build it, the program
(``components/relay.py``), the doctor and the policy pack read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from components.errors import HomeDerpError
from components.settings.keys import (
    ControlPlaneKind,
    Ipv6Mode,
    NetworkMode,
    PolicyMode,
    ValidateMode,
    default_int,
    full_name,
)
from components.tailscaled import TailscaledFacts

if TYPE_CHECKING:
    import pulumi


@dataclass(frozen=True)
class Problem:
    """One reason the stack cannot be deployed, about one key (or none: credentials, runner)."""

    key: str | None
    """The ``home-derp:`` key without its namespace; None when the problem is not about one key."""
    value: object
    """The value as the stack has it (None: not set)."""
    why: str
    """What is wrong, and what would be valid."""
    fix: str | None = None
    """The step that fixes it, when it is not already in ``why``."""
    on_host: bool = False
    """The value is fine, the relay host disagrees (no socket there, another release, …): the
    doctor's host rows show the same cause with what they read."""
    credential: str | None = None
    """``cloudflare`` or ``tailscale``: the problem is a missing provider credential (the
    doctor's ``cloudflare.token`` / ``tailnet.policy`` rows show it with what the API says)."""

    def __str__(self) -> str:
        if self.key is None:
            text = self.why
        else:
            shown = f"{self.value!r}" if self.value is not None else "(not set)"
            text = f"{full_name(self.key)} = {shown}: {self.why}"
        return f"{text}; {self.fix}" if self.fix else text


class ConfigError(HomeDerpError):
    """The stack config is invalid: ``problems`` one line each, ``details`` their structure."""

    def __init__(self, problems: Sequence[Problem | str]) -> None:
        self.details: tuple[Problem, ...] = tuple(
            p if isinstance(p, Problem) else Problem(None, None, p) for p in problems
        )
        self.problems = [str(p) for p in self.details]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"home-derp: {len(self.problems)} problem(s) in the stack config "
            f"(nothing was deployed):\n{lines}"
        )


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
    ipv6_found_on: str | None = None
    """The interface ``auto`` took the address from."""
    ipv6_why: str | None = None
    """Why ``auto`` chose that address (its kind and the ranking), for the doctor and the log."""

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
        """A port below 1024 needs CAP_NET_BIND_SERVICE: in host mode derper, uid 65532, gets it
        from its binary's file capability (settings.derper_privileges)."""
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
    verify_url: str | None = None
    """With headscale: the admission controller derper asks (``-verify-client-url``) instead of
    the host's tailscaled; no socket is mounted then."""

    @property
    def uses_socket(self) -> bool:
        """derper verifies through the host tailscaled's socket (mounted into the container)."""
        return self.verify_clients and self.verify_url is None


@dataclass(frozen=True)
class Validation:
    mode: ValidateMode
    timeout: int
    nonce: str


@dataclass(frozen=True)
class Usage:
    """The ``usage`` output: how many runs its history keeps, when an idle relay is called out."""

    history: int = default_int("usageHistory")
    idle_runs: int = default_int("usageIdleRuns")
    compare_map: str | None = None
    """The DERP map to compare with (URL or file); None compares nothing (``off``). Settings
    resolve ``tailscale`` to Tailscale's own map (components/settings/usage.py)."""


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
    destination: str | None = None
    """The tag the grant's ``dst`` names; None: the relay host's own Tailscale IP
    (components/peer_relay.py ``grant_destination``)."""

    @property
    def enabled(self) -> bool:
        return self.port != 0


@dataclass(frozen=True)
class Headscale:
    """headscale as the control plane (docs/guide/headscale.md)."""

    url: str
    """headscale's ``server_url`` (no trailing slash)."""
    host: str
    """The headscale host's shell: ``unix://`` or ``ssh://`` (components/host.py)."""
    config: str
    """headscale's config file on that host (read only)."""
    derp_file: str
    """The DERP map YAML file on that host that holds our region."""
    reload: tuple[str, ...]
    """Command that makes headscale load the file now (empty: its own periodic re-read)."""
    debug_address: str
    """``host:port`` of headscale's debug listener as seen on its host (``/debug/derp``)."""
    refresh_seconds: float | None = None
    """``derp.update_frequency`` when headscale re-reads its DERP files by itself, as read."""
    policy_reload: tuple[str, ...] = ()
    """Command that makes headscale reload its policy (SIGHUP) after the peer-relay grant."""
    config_read: bool = False
    """headscale's config was read at this evaluation (``policy_file`` is then known)."""
    policy_file: str | None = None
    """The HuJSON policy file headscale reads (None: database mode or no policy file)."""

    @property
    def verify_url(self) -> str:
        """What derper's ``-verify-client-url`` is (docs/upstream/headscale.md#verify)."""
        return f"{self.url}/verify"


@dataclass(frozen=True)
class ControlPlane:
    """Where the region is published and who admits clients."""

    kind: ControlPlaneKind = "tailscale"
    headscale: Headscale | None = None


@dataclass(frozen=True)
class Companion:
    """A second derper of the region on a host with IPv4 (a small VPS), meshed with the home
    node so devices without IPv6 reach devices homed on the region (docs/guide/reach.md)."""

    hostname: str
    """Its own DNS name, certificate and derpMap node (``<id>b``)."""
    docker: Docker
    """Its Docker engine (``home-derp:companionDockerHost``; the home stack's network mode)."""
    addresses: Addresses
    """Its public IPv4 (required) and IPv6 (static, or read on the companion host)."""
    derper: Derper
    """derper there: the same build rules, at the companion host's tailscaled release."""
    relay_host: TailscaledFacts | None = None
    """The companion host's tailscaled as read at this evaluation."""


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
    usage: Usage = field(default_factory=Usage)
    """The usage history's bound and the idle-relay warning (components/usage.py)."""
    relay_host: TailscaledFacts | None = None
    """The host's tailscaled as read at this evaluation (None when it could not be read)."""
    health_run: bool = False
    """Register only validation and publication (``HOME_DERP_HEALTH_RUN``)."""
    cloudflare_api_token: pulumi.Output[str] | None = field(default=None, compare=False)
    """Cloudflare token (secret): DNS records and the DNS-01 challenge."""
    warnings: tuple[str, ...] = ()
    """Legal but risky choices, logged by the component."""
    control_plane: ControlPlane = field(default_factory=ControlPlane)
    """Tailscale (the default) or headscale."""
    companion: Companion | None = None
    """The meshed companion node (``home-derp:companionHostname``), or None."""
    mesh_with: tuple[str, ...] = ()
    """``host:port`` of the other derpers of the region this one dials (``-mesh-with``)."""

    @property
    def region_has_ipv4(self) -> bool:
        """Whether a device without IPv6 can dial some node of the region (docs/guide/reach.md)."""
        return self.addresses.ipv4 is not None or self.companion is not None

    @property
    def writes_tailnet_policy(self) -> bool:
        """Whether publication writes the Tailscale tailnet policy through Tailscale's API (so
        validation proves that credential every run). With headscale the region goes into its
        DERP map file and no Tailscale credential exists (docs/guide/headscale.md)."""
        return self.control_plane.kind == "tailscale" and self.policy.mode in ("patch", "file")


@dataclass(frozen=True)
class Verdict:
    """Everything the rules concluded about one stack: the program, the doctor and the pack read
    this, never the raw config again.

    ``settings`` is always complete: a key whose value was refused holds its default there, so a
    reader can still use every other value (:meth:`usable` says which are trustworthy).
    """

    settings: RelaySettings
    problems: tuple[Problem, ...] = ()
    """Why `up` would stop; empty when it would not."""
    warnings: tuple[str, ...] = ()
    """Legal but risky choices (the program logs them as warnings)."""
    notes: tuple[str, ...] = ()
    """What the rules chose for the user (e.g. the address ``ipv6: auto`` picked)."""
    warning_keys: tuple[tuple[str, str], ...] = ()
    """(warning, key) for the warnings about one key's value as the relay host sees it (the
    doctor's row for that key shows the same, and says it once)."""

    def warning_key(self, warning: str) -> str | None:
        """The key a warning is about (see :attr:`warning_keys`), or None."""
        return next((key for text, key in self.warning_keys if text == warning), None)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def failed_keys(self) -> frozenset[str]:
        """Keys whose value itself was refused (a problem found on the host does not count)."""
        return frozenset(p.key for p in self.problems if p.key is not None and not p.on_host)

    def usable(self, *keys: str) -> bool:
        """True when the values of ``keys`` are the stack's own and valid in themselves."""
        return not self.failed_keys.intersection(keys)

    def require(self) -> RelaySettings:
        """The settings, or :class:`ConfigError` listing every problem."""
        if self.problems:
            raise ConfigError(self.problems)
        return self.settings
