"""Who can reach the devices homed on our region, and who cannot (docs/guide/reach.md).

A client sends to a peer through the peer's *home* DERP region, and dials a region's nodes only
over the address families the derpMap allows (docs/upstream/magicsock.md#peer-home-region,
docs/upstream/derpmap.md#ip-fields). The relay host, and the devices near it, make our region
their home. When no node of the region has IPv4, a device with no IPv6 cannot start a
conversation with any of them: its `tailscale ping` gets no reply (reproduced with the real
programs: tests/real_tailnet/test_reach.py).

Pure rules, one home each, read by the settings (what preview and up announce), validation (the
devices an IPv6-only region leaves out, a health run whose runner has no path) and the doctor.
No I/O, no Pulumi.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

#: What a health run says when its own machine cannot reach the relay host over the tailnet
#: because of the topology, not because of the relay (docs/architecture.md, "Health runs").
NOT_JUDGED: Final = "not judged: this runner has no path to a region with no IPv4"


def ipv6_only_cost(region_id: int) -> str:
    """What an IPv6-only region costs, said the same way by preview, up and the doctor."""
    return (
        "devices without IPv6 (many office and hotel networks, GitHub-hosted runners) cannot "
        f"start a connection to any device homed on region {region_id} — the relay host and the "
        "devices near it — because a peer is reached through its home region and no node of "
        "this one has IPv4. Give the region an IPv4 path: "
        "home-derp:ipv4 with a port forward, or a companion node (home-derp:companionHostname; "
        "docs/guide/reach.md)"
    )


def endpoint_address(endpoint: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of a magicsock endpoint ``ip:port`` / ``[ip]:port`` (None when it is not one)."""
    text = endpoint.strip()
    if text.startswith("["):
        host = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        host = text.split(":", 1)[0]
    else:
        host = text  # a bare address
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def shows_ipv6(endpoints: Iterable[str]) -> bool:
    """Whether a device's endpoints include an IPv6 address it could use towards a relay.

    The endpoints are magicsock's: STUN-discovered public addresses and interface addresses
    (tailscale.com@v1.102.5/wgengine/magicsock/magicsock.go:1292-1446); tailscaled never lists
    link-local IPv6 (net/netmon/state.go:59-125). Loopback, link-local and multicast do not count.
    """
    for endpoint in endpoints:
        ip = endpoint_address(str(endpoint))
        if (
            ip is not None
            and ip.version == 6
            and not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)
            and getattr(ip, "ipv4_mapped", None) is None
        ):
            return True
    return False


def device_endpoints(device: Mapping[str, Any]) -> list[str] | None:
    """``clientConnectivity.endpoints`` of a device from the API's list (``fields=all``), or None
    when the API did not say (docs/upstream/tailscale-api.md#devices-list)."""
    connectivity = device.get("clientConnectivity")
    if not isinstance(connectivity, Mapping):
        return None
    endpoints = connectivity.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        return None
    return [str(e) for e in endpoints]


def device_name(device: Mapping[str, Any]) -> str:
    return str(device.get("name") or device.get("hostname") or device.get("id") or "?")


def devices_without_ipv6(devices: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The devices whose last endpoints show no IPv6: they cannot reach devices homed on a region
    with no IPv4. Devices the API gave no endpoints for are counted, not named."""
    left_out, unknown = [], 0
    for device in devices:
        endpoints = device_endpoints(device)
        if endpoints is None:
            unknown += 1
        elif not shows_ipv6(endpoints):
            left_out.append(device_name(device))
    return {
        "checked": True,
        "devices": len(devices),
        "withoutIpv6": sorted(left_out),
        "unknown": unknown,
        "reason": None,
    }


def devices_not_checked(reason: str) -> dict[str, Any]:
    return {"checked": False, "devices": None, "withoutIpv6": [], "unknown": 0, "reason": reason}


def runner_without_path(status: Mapping[str, Any] | None) -> str | None:
    """Why this machine cannot reach a region with no IPv4 over the tailnet, or None.

    ``status`` is this machine's ``tailscale status --json`` (None: no tailscaled here). Only a
    tailnet node whose own endpoints show no IPv6 is without a path: its tailscaled dials DERP
    outside any exit node, so an exit node that gives the *probes* IPv6 does not give tailscaled
    one (docs/upstream/magicsock.md#own-sockets-bypass).
    """
    if not isinstance(status, Mapping) or status.get("BackendState") != "Running":
        return None
    me = status.get("Self")
    endpoints = me.get("Addrs") if isinstance(me, Mapping) else None
    if not isinstance(endpoints, list) or not endpoints or shows_ipv6(endpoints):
        return None
    shown = ", ".join(str(e) for e in endpoints[:4]) + (", …" if len(endpoints) > 4 else "")
    return (
        f"{NOT_JUDGED}: this machine's tailscaled has no IPv6 (its endpoints: {shown}), so it "
        "cannot reach the relay host, which is homed on the region; derper's log could not be "
        "read over the tailnet and admission is unknown. The region was left as it is. Run health "
        "checks from a machine with IPv6 of its own (a self-hosted runner at home), or give the "
        "region IPv4 (home-derp:ipv4, or a companion node: docs/guide/reach.md)"
    )
