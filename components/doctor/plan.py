"""What the stack asks for, read leniently: every value settings would accept, None for the rest.

``parse_settings`` stops the program at the first bad stack, but the doctor still checks what it
can: a bad ``hostname`` must not hide a busy port. So each value here goes through the same reader
(``settings.Collector``) and rule (``settings.check_*``) as the program's, and a value the rules
refuse becomes None — the rows that need it say "not checked" and the settings row says why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from components import derpmap, settings, tailscaled
from components.ipv6 import INTERFACE_NAME

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    hostname: str | None
    zone_name: str | None
    zone_id: str | None
    docker_host: str | None
    network_mode: str
    ipv6: str | None
    """``auto`` or the normalised static address."""
    ipv6_interface: str | None
    ipv4: str | None
    derp_port: int | None
    stun_port: int | None
    region_id: int | None
    region_code: str | None
    verify_clients: bool
    socket: str | None
    policy_mode: str | None
    adopt_region: bool
    ddns: bool


def _valid(c: settings.Collector, read: Callable[[], T]) -> T | None:
    """``read()``'s value, or None when it recorded a problem."""
    before = len(c.problems)
    value = read()
    return value if len(c.problems) == before else None


def _checked(value: str | None, why: str | None) -> str | None:
    return value if value is not None and why is None else None


def _hostname(c: settings.Collector) -> str | None:
    name = (c.optional("hostname") or "").lower().rstrip(".")
    return _checked(name or None, settings.check_hostname(name) if name else None)


def _ipv6(c: settings.Collector) -> str | None:
    raw = c.optional("ipv6")
    if raw is None:
        return None
    if raw.lower() == "auto":
        return "auto"
    if settings.check_ipv6(raw) is not None:
        return None
    return str(ipaddress.IPv6Address(raw))


def _port(c: settings.Collector, key: str, default: int) -> int | None:
    port = _valid(c, lambda: c.integer(key, default, 1, 65535, "port"))
    return None if port == 80 and key == "derpPort" else port


def read_plan(raw: Mapping[str, str | None]) -> Plan:
    """The stack's values (see the module docstring); never raises."""
    c = settings.Collector(raw)
    docker_host = c.text("dockerHost", settings.DEFAULT_DOCKER_HOST)
    socket = c.text("tailscaleSocket", tailscaled.DEFAULT_SOCKET)
    interface = c.optional("ipv6Interface")
    low, high = derpmap.CUSTOM_REGION_IDS
    ipv4 = c.optional("ipv4")
    return Plan(
        hostname=_hostname(c),
        zone_name=(c.optional("zone") or "").lower().rstrip(".") or None,
        zone_id=c.optional("zoneId"),
        docker_host=_checked(docker_host, settings.check_docker_host(docker_host)),
        network_mode=c.text("networkMode", "host"),
        ipv6=_ipv6(c),
        ipv6_interface=interface if interface and INTERFACE_NAME.match(interface) else None,
        ipv4=None if ipv4 is None or ipv4.lower() == "none" else ipv4,
        derp_port=_port(c, "derpPort", 443),
        stun_port=_port(c, "stunPort", 3478),
        region_id=_valid(c, lambda: c.integer("regionId", low, low, high, "region")),
        region_code=c.text("regionCode", "home"),
        verify_clients=c.boolean("verifyClients", True),
        socket=_checked(socket, settings.check_socket_path(socket)),
        policy_mode=_valid(c, lambda: c.choice("tailnetPolicy", "patch", settings.POLICY_MODES)),
        adopt_region=c.boolean("adoptRegion", False),
        ddns=c.boolean("ddns", False),
    )
