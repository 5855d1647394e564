"""Rules of how the relay reaches the tailnet and stays right: validation, the tailnet policy,
the DDNS updater and the host's peer relay (docs/architecture.md, "Settings").
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from components import tailscaled
from components.host import can_read_host
from components.settings.checks import check_image, check_selector
from components.settings.collector import Collector
from components.settings.keys import (
    MAX_VALIDATE_TIMEOUT_SECONDS,
    PEER_RELAY_MIN_VERSION,
    PEER_RELAY_STATIC_ENDPOINTS_MIN_VERSION,
    POLICY_MODES,
    TAILSCALED_DEFAULT_PORT,
    VALIDATE_MODES,
    ControlPlaneKind,
)
from components.settings.model import (
    Addresses,
    ControlPlane,
    Ddns,
    Docker,
    Headscale,
    PeerRelay,
    Policy,
    Ports,
    Validation,
)
from components.tailscaled import TailscaledFacts

if TYPE_CHECKING:
    from components.settings.environment import Environment

#: A tailnet tag as the policy writes it (tag:name).
_TAG: Final = re.compile(r"^tag:[A-Za-z][A-Za-z0-9-]*$")


def validation(c: Collector) -> Validation:
    return Validation(
        mode=c.choice("validate", VALIDATE_MODES),
        timeout=c.integer(
            "validateTimeout",
            0,
            MAX_VALIDATE_TIMEOUT_SECONDS,
            f"must be 0-{MAX_VALIDATE_TIMEOUT_SECONDS} seconds of waiting for the relay",
        ),
        nonce=c.text("validateNonce"),
    )


def policy(c: Collector, env: Environment, control: ControlPlaneKind = "tailscale") -> Policy:
    mode = c.choice("tailnetPolicy", POLICY_MODES)
    path = c.optional("policyFile")
    if control == "headscale":
        # headscale: `patch` edits our region in its DERP map file, `off` writes nothing.
        if mode == "file":
            c.fail(
                "tailnetPolicy",
                mode,
                "file writes a Tailscale policy through Tailscale's API; with "
                "controlPlane=headscale use patch (our region in headscale's DERP map file) or off",
            )
        if path is not None:
            c.fail("policyFile", path, "not used with controlPlane=headscale: remove it")
        return Policy(mode="off" if mode == "off" else "patch", file=None)
    if mode == "file":
        if path is None:
            c.fail("policyFile", None, "required with tailnetPolicy=file: the HuJSON policy path")
        elif not env.file_exists(path):
            c.fail("policyFile", path, "no such file (path is relative to the project)")
    if mode != "off" and env.tailscale_credentials_problem is not None:
        # Found now, not after DNS, certificate and container were already created.
        c.problem(
            f"tailscale credentials: {env.tailscale_credentials_problem}; home-derp:tailnetPolicy"
            f"={mode} writes the tailnet policy (or set home-derp:tailnetPolicy off)",
            credential="tailscale",
        )
    return Policy(mode=mode, file=path)


def ddns(c: Collector, pin_ipv6: bool) -> Ddns:
    enabled = c.boolean("ddns")
    image = c.text("ddnsImage")
    c.checked("ddnsImage", image, check_image(image))
    if enabled and pin_ipv6:
        c.fail(
            "pinIpv6",
            "true",
            "cannot be combined with ddns=true: the pin would go stale at the next prefix change",
        )
    return Ddns(enabled=enabled, image=image)


def peer_relay(
    c: Collector,
    ports: Ports,
    addresses: Addresses,
    docker: Docker,
    docker_ok: bool,
    facts: TailscaledFacts | None,
    control: ControlPlane | None = None,
) -> PeerRelay:
    port = c.integer("peerRelayPort", 0, 65535, "must be 0 (off) or a UDP port 1-65535")
    if port and control is not None and control.headscale is not None:
        _headscale_grant(c, str(port), control.headscale, docker, docker_ok, facts)
    sources = c.strings("peerRelaySources")
    for source in sources:
        c.checked("peerRelaySources", source, check_selector(source))
    destination = c.optional("peerRelayDestination")
    if destination is not None and not _TAG.match(destination):
        c.fail(
            "peerRelayDestination",
            destination,
            "must be a tag (tag:name), or empty for the relay host's own Tailscale IP",
        )
        destination = None
    if port == 0:
        for key, value in (
            ("peerRelaySources", list(sources)),
            ("peerRelayDestination", destination),
        ):
            if value:
                c.fail(
                    key,
                    value,
                    "set, but home-derp:peerRelayPort is 0 (off): set the port, or remove it",
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
        c.fail_on_host(
            "peerRelayPort",
            str(port),
            f"the relay host's tailscaled {facts.version} cannot be a peer relay: it needs "
            f"tailscaled >= {PEER_RELAY_MIN_VERSION}",
        )
    if destination is not None:
        _tag_destination(c, destination, facts)
    endpoints = _static_endpoints(c, addresses, port, facts)
    return PeerRelay(port, sources or ("*",), endpoints, destination)


def _tag_destination(c: Collector, tag: str, facts: TailscaledFacts | None) -> None:
    """A tag as the grant's dst names every device with that tag, not only the relay host
    (docs/upstream/peer-relay.md#grant): it must be the host's, and the user is told."""
    if facts is not None and tag not in facts.tags:
        shown = ", ".join(facts.tags) or "none"
        c.fail_on_host(
            "peerRelayDestination",
            tag,
            f"the relay host does not carry {tag} (its tags: {shown}), so the grant would not "
            "name it",
            fix=f"tag the host (`tailscale up --advertise-tags={tag}`), or leave "
            "home-derp:peerRelayDestination empty for the host's own Tailscale IP",
        )
        return
    others = sorted(
        p.dns_name.split(".", 1)[0] or p.host_name
        for p in (facts.peers if facts else ())
        if tag in p.tags
    )
    seen = (
        f"; the relay host sees {len(others)} other(s) with it: {', '.join(others)}"
        if others
        else ""
    )
    c.warn(
        f"home-derp:peerRelayDestination = {tag!r}: the grant makes every device tagged {tag} a "
        f"peer relay the sources may use, not only the relay host{seen}. Leave it empty to "
        "grant the relay host's own Tailscale IP only"
    )


def _headscale_grant(
    c: Collector,
    port: str,
    hs: Headscale,
    docker: Docker,
    docker_ok: bool,
    facts: TailscaledFacts | None,
) -> None:
    """With headscale the grant goes into headscale's policy file (docs/upstream/headscale.md
    #policy-grants), and the relay host's tailscaled must be read: it is the relay server and
    names the grant's destination (with headscale derper needs no tailscaled, so nothing else
    asked for it)."""
    if hs.config_read and hs.policy_file is None:
        c.fail_on_host(
            "peerRelayPort",
            port,
            "headscale's policy is not a file home-derp can edit (policy.mode database, or no "
            "policy.path): add the grant yourself (docs/guide/headscale.md) and set "
            "peerRelayPort 0, or use policy.mode file",
        )
    if facts is None and docker_ok and can_read_host(docker.host):
        c.fail_on_host(
            "peerRelayPort",
            port,
            "the peer relay is the relay host's tailscaled, which could not be read (is it "
            "installed, running and logged in to headscale?)",
        )


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
