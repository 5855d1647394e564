"""Who can reach devices homed on the region: the pure rules of components/reach.py.

The behaviour these rules stand for is proven with the real programs in tests/real_tailnet/
test_reach.py; here each rule is pinned on its own, with the endpoint shapes tailscaled prints.
"""

from __future__ import annotations

from typing import Any

import pytest

from components import reach

# Self.Addrs as the real tailscaled printed them in tests/real_tailnet/test_reach.py's tailnets.
E_IPV4_ONLY = ["10.214.151.1:42354", "10.214.151.4:41641"]
A_DUAL_STACK = ["10.214.151.1:56503", "[fd42:214:97::1]:50514", "10.214.151.3:41641"]


# An endpoint list shows IPv6 only with a usable IPv6 address; IPv4, link-local, loopback,
# multicast, IPv4-mapped and garbage do not count.
@pytest.mark.parametrize(
    ("endpoints", "has"),
    [
        (E_IPV4_ONLY, False),
        (A_DUAL_STACK, True),
        (["[2a01:4f8:c0c:9a1e::1]:41641"], True),
        (["[fe80::1%eth0]:41641"], False),
        (["[::1]:41641"], False),
        (["[ff02::1]:41641"], False),
        (["[::ffff:198.51.100.7]:41641"], False),
        (["not an endpoint", "[zz::1]:1"], False),
        ([], False),
    ],
)
def test_shows_ipv6(endpoints: list[str], has: bool) -> None:
    assert reach.shows_ipv6(endpoints) is has


# The API names the devices whose last endpoints show no IPv6; a device the API said nothing about
# (no clientConnectivity: fields=default) is counted as unknown, never named.
def test_devices_without_ipv6() -> None:
    devices: list[dict[str, Any]] = [
        {"name": "e.tail.ts.net", "clientConnectivity": {"endpoints": E_IPV4_ONLY}},
        {"name": "a.tail.ts.net", "clientConnectivity": {"endpoints": A_DUAL_STACK}},
        {"hostname": "old-phone"},
        {"name": "idle", "clientConnectivity": {"endpoints": []}},
        {"hostname": "office-pc", "clientConnectivity": {"endpoints": ["203.0.113.9:41641"]}},
    ]
    found = reach.devices_without_ipv6(devices)
    assert found == {
        "checked": True,
        "devices": 5,
        "withoutIpv6": ["e.tail.ts.net", "office-pc"],
        "unknown": 2,
        "reason": None,
    }


def status(addrs: list[str] | None, state: str = "Running") -> dict[str, Any]:
    return {"BackendState": state, "Self": {"Addrs": addrs}}


# A runner is without a path only when it is a running tailnet node whose own endpoints show no
# IPv6; no tailscaled, another state, unknown endpoints or an IPv6 endpoint: judge as before.
@pytest.mark.parametrize(
    ("local", "without"),
    [
        (status(E_IPV4_ONLY), True),
        (status(A_DUAL_STACK), False),
        (status(E_IPV4_ONLY, "NeedsLogin"), False),
        (status(None), False),
        (status([]), False),
        (None, False),
        ({"BackendState": "Running"}, False),
    ],
)
def test_runner_without_path(local: dict[str, Any] | None, without: bool) -> None:
    why = reach.runner_without_path(local)
    assert (why is not None) is without
    if why is not None:
        assert why.startswith(reach.NOT_JUDGED)
        assert "10.214.151.4:41641" in why and "left as it is" in why


# The cost of an IPv6-only region is said with its id and the two ways out.
def test_ipv6_only_cost_names_region_and_remedies() -> None:
    text = reach.ipv6_only_cost(901)
    assert "region 901" in text and "home-derp:ipv4" in text
    assert "home-derp:companionHostname" in text and "docs/guide/reach.md" in text
