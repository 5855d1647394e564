"""Rows about who can reach the devices homed on the region (docs/guide/reach.md).

* ``reach.ipv4`` — how devices without IPv6 get in: an IPv4 address (dual stack), a companion
  node, or nothing (IPv6-only by choice: what it costs, and, when the Tailscale credentials may
  list devices, the devices whose last endpoints show no IPv6);
* ``reach.mesh`` (only with a companion node) — each node can dial the other: a derper forwards
  to the clients of another node only over the mesh connection it dialled itself
  (docs/upstream/derper.md#mesh), so the companion needs a route to the home node's address (its
  IPv6, when home has no IPv4) and the home host one to the companion's.

Read-only: ``ip route get`` on each host through its channel (no packet is sent), and
``GET …/devices?fields=all``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from components import reach
from components.doctor.credentials import Secrets
from components.doctor.model import Check, failed, lines, not_checked, passed
from components.host import HostChannel, HostReadError
from components.relay_host import LiveHost
from components.settings import Verdict
from components.tailscale_api import AccessDenied, Client, TailscaleApiError


def ipv4_check(
    verdict: Verdict,
    secrets: Secrets,
    environ: Mapping[str, str],
    timeout: float,
    refused_shown: bool = False,
) -> Check:
    """``reach.ipv4``: the stack's answer for devices without IPv6 (``refused_shown``: a failing
    ``tailnet.policy`` row already says the credential is refused, with the fix)."""
    s = verdict.settings
    if "ipv4" in verdict.failed_keys:
        problem = next(p for p in verdict.problems if p.key == "ipv4")
        return failed(
            "reach.ipv4",
            "home-derp:ipv4 does not say how devices without IPv6 get in",
            problem.fix or problem.why,
            problem.why,
        )
    if s.companion is not None:
        return passed(
            "reach.ipv4",
            f"a companion node with IPv4: {s.companion.hostname} "
            f"({s.companion.addresses.ipv4 or 'address refused, see settings'})",
        )
    if s.addresses.ipv4 is not None:
        return passed(
            "reach.ipv4",
            f"dual stack: IPv4 {s.addresses.ipv4} (A record; forward TCP {s.ports.derp} and "
            f"UDP {s.ports.stun} to the relay host)",
        )
    summary = f"IPv6-only (ipv4: none): {reach.ipv6_only_cost(s.region.id)}"
    return passed("reach.ipv4", summary, _left_out(secrets, environ, timeout, refused_shown))


def _left_out(
    secrets: Secrets, environ: Mapping[str, str], timeout: float, refused_shown: bool
) -> str | None:
    """The devices an IPv6-only region leaves out, as a detail line (or why they are unknown)."""
    if secrets.tailscale is None:
        return "devices not listed: no Tailscale credentials"
    try:
        devices = Client(secrets.tailscale, environ=environ, timeout=timeout).list_devices("all")
    except AccessDenied as exc:
        if exc.status == 401 and refused_shown:  # tailnet.policy says it, with the fix
            return "devices not listed: the Tailscale credential is refused (tailnet.policy)"
        return f"devices not listed ({exc.what}): {exc.fix}, which lets the doctor name them"
    except TailscaleApiError as exc:
        return f"devices not listed ({exc}); devices:core:read lets the doctor name them"
    found = reach.devices_without_ipv6(devices)
    names = found["withoutIpv6"]
    unknown = f" ({found['unknown']} without endpoints)" if found["unknown"] else ""
    if not names:
        return f"no device's last endpoints lack IPv6 ({found['devices']} devices{unknown})"
    return lines(
        [f"{len(names)} of {found['devices']} devices show no IPv6{unknown}:"]
        + [f"- {name}" for name in names]
    )


def route_problem(channel: HostChannel, address: str) -> str | None:
    """Why the host behind ``channel`` has no route to ``address`` (None: it has one)."""
    family = "-6" if ipaddress.ip_address(address).version == 6 else "-4"
    try:
        done = channel.run(["ip", family, "route", "get", address], what="ask its routes")
    except HostReadError as exc:
        return f"cannot ask: {exc}"
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip() or f"no route to {address}"
    return None


def mesh_check(verdict: Verdict, home: LiveHost | None, companion: LiveHost | None) -> Check | None:
    """``reach.mesh``: both nodes can dial each other (see the module docstring); None (no row)
    without a companion node."""
    s = verdict.settings
    c = s.companion
    if c is None:
        return None
    if home is None or companion is None:
        return not_checked("reach.mesh", "a host cannot be read over its channel (settings)")
    # Home has no IPv4 unless ipv4 is set: then the companion must reach it over IPv6.
    home_targets = [a for a in (s.addresses.ipv4, s.addresses.ipv6) if a]
    companion_targets = [a for a in (c.addresses.ipv4, c.addresses.ipv6) if a]
    if not home_targets or not companion_targets:
        return not_checked("reach.mesh", "an address is unknown (settings)")
    seen, broken = [], []
    for name, channel, targets in (
        (f"companion {c.hostname}", companion.channel, home_targets),
        (f"home {s.hostname}", home.channel, companion_targets),
    ):
        problems = {t: route_problem(channel, t) for t in targets}
        routed = [t for t, why in problems.items() if why is None]
        if routed:
            seen.append(f"{name} → {', '.join(routed)}: routed")
        else:
            broken.append(f"{name} has no route to {', '.join(targets)}: " + "; ".join(
                f"{t}: {why}" for t, why in problems.items()
            ))  # fmt: skip
    if broken:
        return failed(
            "reach.mesh",
            "the two derpers cannot dial each other both ways",
            "give the host IPv6 (home has no IPv4: the companion must dial it over IPv6) or "
            "open the route; each derper forwards only over the connection it dialled itself, "
            "so one direction is not enough (docs/guide/reach.md#mesh)",
            lines(broken + seen),
        )
    return passed("reach.mesh", "each node has a route to the other (derper dials both ways)",
                  lines(seen))  # fmt: skip
