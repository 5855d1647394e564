"""What the stack asks for, as the program's own verdict says it: every value the rules accepted,
None for a value they refused.

The doctor never reads the raw config itself: ``parse_settings`` gives the whole verdict (defaults
from the key table, every problem tagged with its key), so a bad ``hostname`` does not hide a busy
port — the rows that need a refused value say "not checked" and the settings row says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import Verdict


@dataclass(frozen=True)
class Plan:
    hostname: str | None
    zone_name: str | None
    zone_id: str | None
    docker_host: str | None
    network_mode: str
    ipv6: str | None
    """``auto`` or the normalised static address."""
    ipv6_address: str | None
    """The address the record will publish: the static one, or the one ``auto`` chose."""
    ipv6_found_on: str | None
    """The interface ``auto`` took it from."""
    ipv6_why: str | None
    """Why ``auto`` chose it."""
    ipv6_interface: str | None
    ipv4: str | None
    derp_port: int | None
    stun_port: int | None
    region_id: int | None
    region_code: str | None
    verify_clients: bool
    """derper asks the host's tailscaled (through its socket); not with headscale's /verify."""
    socket: str | None
    policy_mode: str | None
    adopt_region: bool
    ddns: bool


def plan_of(verdict: Verdict) -> Plan:
    """The doctor's view of the verdict (see the module docstring)."""
    s, ok = verdict.settings, verdict.usable
    addresses = s.addresses
    static = addresses.ipv6_mode == "static"
    return Plan(
        hostname=s.hostname if s.hostname and ok("hostname") else None,
        zone_name=s.zone.name if ok("zone") else None,
        zone_id=s.zone.id if ok("zoneId") else None,
        docker_host=s.docker.host if ok("dockerHost") else None,
        network_mode=s.docker.network_mode,
        # A static address the host holds badly is still the address to show in the ipv6 row.
        ipv6=(addresses.ipv6 or None) if static else "auto",
        ipv6_address=addresses.ipv6 or None,
        ipv6_found_on=addresses.ipv6_found_on,
        ipv6_why=addresses.ipv6_why,
        ipv6_interface=addresses.ipv6_interface if ok("ipv6Interface") else None,
        ipv4=addresses.ipv4 if ok("ipv4") else None,
        derp_port=s.ports.derp if ok("derpPort") else None,
        stun_port=s.ports.stun if ok("stunPort") else None,
        region_id=s.region.id if ok("regionId") else None,
        region_code=s.region.code if ok("regionCode") else None,
        verify_clients=s.derper.uses_socket,
        socket=s.derper.tailscale_socket if ok("tailscaleSocket") else None,
        policy_mode=s.policy.mode if ok("tailnetPolicy") else None,
        adopt_region=s.region.adopt,
        ddns=s.ddns.enabled,
    )
