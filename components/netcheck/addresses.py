"""Address helpers every probe shares (one home for each rule)."""

from __future__ import annotations

import ipaddress


def hostport(address: str, port: int) -> str:
    """``[v6]:port`` or ``v4:port``, the way Go's net.JoinHostPort writes it."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def family(address: str) -> int:
    """4 or 6 (a zone suffix such as ``%eth0`` is ignored)."""
    return ipaddress.ip_address(address.split("%")[0]).version


def not_public(address: str) -> bool:
    """A private/ULA or link-local address that clients elsewhere cannot reach."""
    ip = ipaddress.ip_address(address)
    return not ip.is_loopback and (ip.is_private or ip.is_link_local)
