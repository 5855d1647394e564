"""Rules of where the relay is: its name and zone, the Docker host, its addresses, ports, region
and ACME directory (docs/architecture.md, "Settings").

Each reads its keys through the :class:`Collector` and records every problem; the relay host is
asked only through the injected :class:`HostProbe` (``components/settings/parse.py``).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from components import derpmap
from components.host import HostReadError, can_read_host, scheme_of
from components.ipv6 import (
    INTERFACE_NAME,
    Ipv6DiscoveryError,
    choose_stable_ipv6,
    static_address_on_host,
)
from components.settings import keys
from components.settings.checks import (
    EMAIL,
    REGION_CODE,
    ZONE_ID,
    check_acme_server,
    check_derp_port,
    check_docker_host,
    check_hostname,
    check_ipv4,
    check_ipv6,
    hostname_in_zone,
    normalized_hostname,
)
from components.settings.collector import Collector
from components.settings.keys import ACME_DIRECTORIES, NETWORK_MODES, Ipv6Mode
from components.settings.model import Acme, Addresses, Docker, Ports, Region, Zone

if TYPE_CHECKING:
    from components.settings.environment import Environment, HostProbe


def hostname(c: Collector) -> str:
    hostname = normalized_hostname(c.optional("hostname") or "")
    if not hostname:
        c.fail("hostname", None, "required: the relay's DNS name, e.g. derp.example.com")
    else:
        c.checked("hostname", hostname, check_hostname(hostname))
    return hostname


def zone(c: Collector, hostname: str) -> Zone:
    name = normalized_hostname(c.optional("zone") or "") or None
    zone_id = c.optional("zoneId")
    if name is None and zone_id is None:
        c.fail("zone", None, "set home-derp:zone (e.g. example.com) or home-derp:zoneId")
    in_zone = name is None or not hostname or hostname_in_zone(hostname, name)
    if name is not None and c.checked("zone", name, check_hostname(name)) and not in_zone:
        c.fail(
            "hostname",
            hostname,
            f"is not inside the zone {name!r}",
            f"set home-derp:hostname to a name in {name} (e.g. derp.{name}), or home-derp:zone "
            f"to the Cloudflare zone that holds {hostname}",
        )
    if zone_id is not None and not ZONE_ID.match(zone_id):
        c.fail("zoneId", zone_id, "a Cloudflare zone id is 32 lowercase hex characters")
    return Zone(name=name, id=zone_id)


def hosted_runner_problem(host: str, env: Environment, key: str = "dockerHost") -> str | None:
    """A unix:// Docker host on a GitHub-hosted runner is the runner's own daemon: derper would
    be created (and recorded in state) on a machine that disappears after the job
    (docs/architecture.md, "CI")."""
    if scheme_of(host) != "unix" or not env.github_hosted_runner:
        return None
    return (
        "this is a GitHub-hosted runner (RUNNER_ENVIRONMENT=github-hosted): a unix:// Docker "
        f"host is the runner's own throwaway daemon, not your relay. Set home-derp:{key} "
        "to ssh://user@<relay host> (docs/guide/ci-cd.md), or run the job on a self-hosted "
        "runner on the relay host"
    )


def docker(c: Collector, env: Environment) -> tuple[Docker, bool]:
    """The Docker host; the flag says whether its URL is usable (rules that read it need it)."""
    host = c.text("dockerHost")
    ok = c.checked("dockerHost", host, check_docker_host(host))
    if ok and (why := hosted_runner_problem(host, env)):
        c.fail("dockerHost", host, why)
        ok = False
    network_mode = c.choice("networkMode", NETWORK_MODES)
    if network_mode == "bridge":
        c.warn(
            "networkMode=bridge: IPv6 STUN answers go through docker-proxy and carry the wrong "
            "address (tailscale/tailscale#17565), and the host's own connections reach derper "
            "from the bridge's gateway, which derper does not serve its counters to (the usage "
            "output stays empty: docs/guide/usage.md#bridge-mode); use host networking for an "
            "IPv6 relay"
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
            "proxy in front? otherwise the record points elsewhere): check `ip -6 addr`",
            key="ipv6",
        )
    elif hold.problem:
        c.fail_on_host(
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
) -> tuple[str, str | None, tuple[str, str] | None]:
    """(address, host id, how it was found) chosen on the host, or ("", None, None) after
    recording why not.

    A health run that cannot read the host goes on without an address: validation then probes
    what DNS publishes, and a relay that cannot be judged is drained rather than left published
    (docs/architecture.md, "Health runs"). A pinned IPv6 is left out of the region meanwhile.
    """
    if health_run and (not docker_ok or probe is None or not can_read_host(docker.host)):
        return "", None, None
    if not docker_ok:
        return "", None, None  # reported under dockerHost
    if not can_read_host(docker.host):
        c.fail(
            "ipv6",
            "auto",
            "auto reads the host's interfaces over unix:// or ssh:// only; with a "
            "tcp:// dockerHost set the address explicitly",
        )
        return "", None, None
    if probe is None:
        c.fail("ipv6", "auto", "address discovery is not available here")
        return "", None, None
    try:
        found = choose_stable_ipv6(list(probe.addresses(interface)), interface)
    except (HostReadError, Ipv6DiscoveryError) as exc:
        if health_run:
            c.warn(f"health run: home-derp:ipv6 = 'auto': {exc}; validating what DNS publishes")
            return "", None, None
        c.fail_on_host("ipv6", "auto", f"no usable address found: {exc}")
        return "", None, None
    why = f"{found.kind}: {found.reason}"
    c.note(f"home-derp:ipv6=auto chose {found.address} on {found.interface}: {why}")
    host_id = found.interface_id if found.host_id_survives_prefix_change else None
    return found.address, host_id, (found.interface, why)


def addresses(
    c: Collector, docker: Docker, docker_ok: bool, probe: HostProbe | None, health_run: bool
) -> Addresses:
    interface = c.optional("ipv6Interface")
    if interface is not None and not INTERFACE_NAME.match(interface):
        c.fail("ipv6Interface", interface, "not an interface name (e.g. eth0, enp3s0)")
        interface = None
    raw = c.optional("ipv6") or ""
    mode: Ipv6Mode = "static"
    ipv6, host_id, found = "", None, None
    if not raw:
        c.fail("ipv6", None, "required: the relay host's global IPv6 address, or 'auto'")
    elif raw.lower() == "auto":
        mode = "auto"
        ipv6, host_id, found = _auto_ipv6(c, docker, docker_ok, interface, probe, health_run)
    elif c.checked("ipv6", raw.lower(), _static_ipv6_problem(raw)):
        ipv6 = str(ipaddress.IPv6Address(raw))
        if docker_ok and can_read_host(docker.host) and not health_run:
            _static_ipv6_on_host(c, ipv6, interface, probe)
    ipv4 = c.optional("ipv4")
    if ipv4 is not None and ipv4.lower() == "none":
        ipv4 = None
    if ipv4 is not None:
        why = check_ipv4(ipv4)
        c.checked(
            "ipv4",
            ipv4,
            f"{why}; or none for an IPv6-only relay (docs/guide/reach.md)" if why else None,
        )
    pin = c.boolean("pinIpv6")
    on, why = found if found is not None else (None, None)
    return Addresses(ipv6, mode, interface, host_id, ipv4, pin, on, why)


def _static_ipv6_problem(value: str) -> str | None:
    why = check_ipv6(value)
    return f"{why}; the relay needs the host's global unicast address" if why else None


def ports(c: Collector) -> Ports:
    port_rule = "must be a port number 1-65535"
    derp_port = c.integer("derpPort", 1, 65535, port_rule)
    c.checked("derpPort", str(derp_port), check_derp_port(derp_port))
    return Ports(derp=derp_port, stun=c.integer("stunPort", 1, 65535, port_rule))


def region(c: Collector) -> Region:
    low, high = derpmap.CUSTOM_REGION_IDS
    region_id = c.integer(
        "regionId", low, high, f"must be {low}-{high} (the range reserved for your own relays)"
    )
    code = c.text("regionCode")
    if not REGION_CODE.match(code):
        c.fail("regionCode", code, "1-32 lowercase letters, digits and dashes (e.g. homelab)")
    name = c.text("regionName")
    if len(name) > 64 or not name.isprintable():
        c.fail("regionName", name, "up to 64 printable characters")
    return Region(
        id=region_id,
        code=code,
        name=name,
        omit_default_regions=c.boolean("omitDefaultRegions"),
        adopt=c.boolean("adoptRegion"),
    )


def acme(c: Collector) -> Acme:
    raw = c.text("acmeServer")
    url, why = check_acme_server(raw)
    c.checked("acmeServer", raw, why)
    email = c.optional("acmeEmail")
    if email is not None and not EMAIL.match(email):
        c.fail("acmeEmail", email, "not an e-mail address (or leave it unset)")
    return Acme(server_url=url or ACME_DIRECTORIES[keys.default_text("acmeServer")], email=email)
