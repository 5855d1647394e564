"""Rules of who can reach the devices homed on the region: an explicit IPv4 choice, the meshed
companion node, and a tailnet where our region is the only one (docs/guide/reach.md).

A device is reached through its home region, and a device without IPv6 can dial a node only over
IPv4 (docs/upstream/magicsock.md#peer-home-region). So every stack says how such devices get in:
``ipv4`` (dual stack), a companion node with IPv4 meshed with the home node, or ``ipv4: none``
— IPv6-only by choice, announced at every preview and up with what it costs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING

from components.host import HostReadError, can_read_host
from components.ipv6 import Ipv6DiscoveryError, choose_stable_ipv6
from components.reach import ipv6_only_cost
from components.settings import derper as derper_rules
from components.settings.checks import (
    check_docker_host,
    check_hostname,
    check_ipv4,
    check_ipv6,
    hostname_in_zone,
    normalized_hostname,
)
from components.settings.collector import Collector
from components.settings.model import (
    Addresses,
    Companion,
    Ddns,
    Derper,
    Docker,
    PeerRelay,
    Ports,
    Region,
    RelaySettings,
    Zone,
)
from components.settings.network import hosted_runner_problem
from components.tailscaled import TailscaledFacts

if TYPE_CHECKING:
    from components.settings.environment import Environment, HostProbe

COMPANION_KEYS = ("companionHostname", "companionDockerHost", "companionIpv4", "companionIpv6")
#: Keys the home node's derper rules report that mean "the companion's" when run for it.
_HOST_KEYS = {"dockerHost": "companionDockerHost"}


def ipv4_choice(
    c: Collector,
    addresses: Addresses,
    ports: Ports,
    region: Region,
    companion: Companion | None,
    env: Environment,
) -> None:
    """``ipv4`` must say how devices without IPv6 get in; IPv6-only is allowed, never silent."""
    if companion is not None:
        return
    if c.optional("ipv4") is None:
        fix = (
            f"`pulumi config set home-derp:ipv4 <public IPv4>` (dual stack: forward TCP "
            f"{ports.derp} and UDP {ports.stun} to the relay host), or `pulumi config set "
            "home-derp:ipv4 none` to stay IPv6-only, or a companion node with IPv4 "
            "(home-derp:companionHostname; docs/guide/reach.md)"
        )
        why = (
            "not set: say how devices without IPv6 (office and hotel networks, GitHub-hosted "
            f"runners) reach the devices homed on region {region.id}; with no IPv4 in the region "
            "they cannot"
        )
        if env.health_run:  # the deployed relay is judged as it is: IPv6-only until a deploy
            c.warn(f"health run: home-derp:ipv4 is not set: judged as IPv6-only; set it: {fix}")
        else:
            c.fail("ipv4", None, why, fix)
        return
    if addresses.ipv4 is None:
        c.warn(
            f"home-derp:ipv4 = none, an IPv6-only relay: {ipv6_only_cost(region.id)}", key="ipv4"
        )


def single_region(c: Collector, region: Region, has_ipv4: bool) -> None:
    """With ``omitDefaultRegions`` a drain can only move clients to other custom regions."""
    if not region.omit_default_regions:
        return
    if not has_ipv4:
        c.warn(
            "omitDefaultRegions=true and the region has no IPv4: devices without IPv6 will have "
            "no DERP relay at all"
        )
    c.warn(
        f"omitDefaultRegions=true: if region {region.id} is the only region of the derpMap, "
        "draining it moves nobody — clients keep their home region, or pick one among all "
        "regions, the drained one included — so a broken relay stays in use; keep Tailscale's "
        "regions or another relay of yours (docs/guide/reach.md#one-region)"
    )


def companion(
    c: Collector,
    *,
    home_hostname: str,
    zone: Zone,
    docker: Docker,
    ports: Ports,
    env: Environment,
    probe: HostProbe | None,
    verify_url: str | None = None,
) -> Companion | None:
    """The companion node of ``companionHostname``, or None (see the module docstring);
    ``verify_url``: headscale's /verify admits its clients too (docs/guide/headscale.md)."""
    raw_name = c.optional("companionHostname")
    if raw_name is None:
        for key in COMPANION_KEYS[1:]:
            if c.is_set(key) and not (key == "companionIpv6" and c.text(key) == "auto"):
                c.fail(
                    key,
                    c.optional(key),
                    "set, but home-derp:companionHostname is empty: set the companion's DNS "
                    "name, or remove the key",
                )
        return None
    hostname = normalized_hostname(raw_name)
    if c.checked("companionHostname", hostname, check_hostname(hostname)):
        if zone.name is not None and not hostname_in_zone(hostname, zone.name):
            c.fail("companionHostname", hostname, f"is not inside the zone {zone.name!r}")
        if hostname == home_hostname:
            c.fail(
                "companionHostname",
                hostname,
                "is the home node's own hostname: the companion needs a name (and a "
                "certificate) of its own, e.g. derp2." + (zone.name or "example.com"),
            )
        if docker.network_mode == "bridge":
            # The companion dials the home node over IPv6 (-mesh-with); a container on Docker's
            # default bridge has no IPv6 route out, so the mesh would never connect, while the
            # host's own route (all a check from the host can see) looks fine.
            c.fail(
                "companionHostname",
                hostname,
                "needs networkMode host: the two derpers mesh over IPv6, which a container on "
                "Docker's bridge network has no route for",
                "pulumi config set home-derp:networkMode host",
            )
    host_url = c.optional("companionDockerHost")
    host_ok = False
    if host_url is None:
        c.fail(
            "companionDockerHost",
            None,
            "required with home-derp:companionHostname: the companion host's Docker engine "
            "(ssh://user@host)",
        )
        host_url = ""
    elif c.checked("companionDockerHost", host_url, check_docker_host(host_url)):
        why = hosted_runner_problem(host_url, env, key="companionDockerHost")
        host_ok = c.checked("companionDockerHost", host_url, why)
    companion_docker = Docker(host=host_url, network_mode=docker.network_mode)

    ipv4 = c.optional("companionIpv4")
    if ipv4 is None:
        c.fail(
            "companionIpv4",
            None,
            "required with home-derp:companionHostname: the companion's public IPv4 address is "
            "what devices without IPv6 dial",
        )
    elif not c.checked("companionIpv4", ipv4, check_ipv4(ipv4)):
        ipv4 = None
    readable = host_ok and can_read_host(host_url) and probe is not None
    ipv6 = _companion_ipv6(c, host_url, readable, probe, env.health_run)

    derper, facts = _companion_derper(c, companion_docker, host_ok, probe, env, verify_url)
    if derper.build is None and c.optional("image") not in (None, ""):
        c.fail(
            "image",
            derper.image,
            "a pinned image cannot be given -mesh-with and -mesh-psk-file, which the companion "
            "and the home node need: leave home-derp:image empty to build derper from source",
        )
    addresses = Addresses(
        ipv6=ipv6,
        ipv6_mode="auto" if c.text("companionIpv6").lower() == "auto" else "static",
        ipv6_interface=None,
        ipv6_host_id=None,
        ipv4=ipv4,
        pin_ipv6=False,
    )
    return Companion(hostname, companion_docker, addresses, derper, facts)


def _companion_ipv6(
    c: Collector, host_url: str, readable: bool, probe: HostProbe | None, health_run: bool
) -> str:
    raw = c.text("companionIpv6")
    if raw.lower() != "auto":
        why = check_ipv6(raw)
        if raw.lower() == "none":
            why = (
                "the companion needs IPv6: it dials the home node, which has no IPv4, to forward "
                "packets to the devices homed there (docs/guide/reach.md#mesh)"
            )
        if c.checked("companionIpv6", raw, why):
            return str(ipaddress.IPv6Address(raw))
        return ""
    if not readable or probe is None:
        if host_url and not health_run:
            c.fail(
                "companionIpv6",
                "auto",
                "auto reads the companion host's addresses over unix:// or ssh://; set the "
                "address explicitly",
            )
        return ""
    try:
        found = choose_stable_ipv6(list(probe.addresses(None)), None)
    except (HostReadError, Ipv6DiscoveryError) as exc:
        if health_run:
            c.warn(f"health run: home-derp:companionIpv6 = 'auto': {exc}")
        else:
            c.fail_on_host("companionIpv6", "auto", f"no usable address on the companion: {exc}")
        return ""
    c.note(f"home-derp:companionIpv6=auto chose {found.address} on {found.interface}")
    return found.address


def _companion_derper(
    c: Collector,
    docker: Docker,
    host_ok: bool,
    probe: HostProbe | None,
    env: Environment,
    verify_url: str | None,
) -> tuple[Derper, TailscaledFacts | None]:
    """The derper rules of the home node, run against the companion host; what they find there
    is reported under the companion's keys and named as the companion's."""
    sub = Collector(c.raw)
    derper, facts = derper_rules.derper(
        sub, docker, host_ok, probe if host_ok else None, env, verify_url=verify_url
    )
    for p in sub.problems:
        if p.key is None or p.key in _HOST_KEYS or p.on_host:
            c.problems.append(
                dataclasses.replace(
                    p,
                    key=_HOST_KEYS.get(p.key or "", p.key),
                    why=f"companion host {docker.host}: {p.why}",
                )
            )
        elif not c.failed(p.key):  # a value refused for both nodes is reported once
            c.problems.append(p)
    for w in sub.warnings:
        if w not in c.warnings:
            c.warn(f"companion host {docker.host}: {w}")
    return derper, facts


def node_settings(settings: RelaySettings, companion: Companion) -> RelaySettings:
    """The companion node as the settings of one relay: deployed, validated and built exactly
    like the home node (its own records, certificate, image and container), meshed with it."""
    return dataclasses.replace(
        settings,
        hostname=companion.hostname,
        addresses=companion.addresses,
        docker=companion.docker,
        derper=companion.derper,
        ddns=Ddns(False, settings.ddns.image),
        peer_relay=PeerRelay(0, ()),
        relay_host=companion.relay_host,
        companion=None,
        mesh_with=(mesh_peer(settings.hostname, settings.ports),),
        warnings=(),
    )


def mesh_peer(hostname: str, ports: Ports) -> str:
    """A ``-mesh-with`` entry: derper dials ``https://<entry>/derp`` (cmd/derper/mesh.go:52)."""
    return hostname if ports.derp == 443 else f"{hostname}:{ports.derp}"
