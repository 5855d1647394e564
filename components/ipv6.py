"""Find the relay host's stable global IPv6 address (``home-derp:ipv6: auto``).

Home lines change their IPv6 prefix (PPPoE reconnects, router reboots) and hosts carry rotating
privacy addresses beside the stable one. Publishing the wrong one, or an old one, silently kills
the relay (docs/architecture.md, "Changing IPv6"). This module reads the host's addresses with
``ip -j -6 addr show scope global`` through the relay host's channel (``components.host``: this
machine for a ``unix://`` Docker host, the system OpenSSH client for ``ssh://``) and picks one by
fixed rules. :func:`address_class_problem` is also the rule for a static ``home-derp:ipv6``, so
both paths refuse exactly the same addresses with the same words.

Only :func:`read_host_addresses` has side effects (it runs a read-only command); everything else is
pure, so the choice is reproducible from a recorded ``ip -j`` output. No Pulumi import: settings
call :func:`discover_stable_ipv6` while the program is evaluated, in ``preview`` too.

Rank of the usable addresses (lower wins; ties: lowest address, then interface name):

0. ``eui64`` — interface identifier built from the MAC (``…ff:fe…``); SLAAC keeps the same host
   part under every prefix, so a router firewall rule by interface identifier keeps matching.
1. ``stable-privacy`` — RFC 7217 address (kernel flag ``stable-privacy``): stable while the
   prefix stays, never rotated.
2. ``mngtmpaddr`` — the SLAAC base address privacy extensions derive temporaries from.
3. ``static`` — configured by hand/netplan (no ``dynamic`` flag); after a prefix change a static
   address may still carry the old prefix, hence below the SLAAC kinds.
4. ``dynamic`` — other non-temporary dynamic addresses (DHCPv6, SLAAC done by NetworkManager,
   which sets none of the kernel flags above).

Lifetimes are deliberately not part of the order: they change on every read and would make the
choice (and the preview diff) flap. Routers withdraw an old prefix by announcing it with preferred
lifetime 0, which this module rejects as ``deprecated``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from components.errors import HomeDerpError
from components.host import DEFAULT_TIMEOUT, HostChannel, HostReadError, can_read_host

__all__ = [
    "INTERFACE_NAME",
    "KIND_RANK",
    "Candidate",
    "Choice",
    "HostReadError",
    "Ipv6DiscoveryError",
    "StaticHold",
    "Verdict",
    "address_class_problem",
    "choose_stable_ipv6",
    "discover_stable_ipv6",
    "ip_command",
    "parse_ip_json",
    "read_host_addresses",
    "rejection",
    "static_address_on_host",
]

#: ``ip`` reports "forever" lifetimes as this value.
FOREVER: Final = 0xFFFFFFFF

#: Lower is better; see the module docstring for why this order.
KIND_RANK: Final[dict[str, int]] = {
    "eui64": 0,
    "stable-privacy": 1,
    "mngtmpaddr": 2,
    "static": 3,
    "dynamic": 4,
}

KIND_REASON: Final[dict[str, str]] = {
    "eui64": "EUI-64 address: its host part comes from the MAC and survives prefix changes",
    "stable-privacy": "stable-privacy address (RFC 7217): stable for this prefix, never rotated",
    "mngtmpaddr": "SLAAC base address (mngtmpaddr) that privacy addresses are derived from",
    "static": "static address (configured, not from SLAAC or DHCPv6)",
    "dynamic": "dynamic, non-temporary address (DHCPv6 or SLAAC by a network manager)",
}

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# Address classes that are never the relay's public address, checked in this order.
_REJECTED_NETWORKS: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped address; set ipv4 instead"),
    (ipaddress.IPv6Network("::/128"), "unspecified address"),
    (ipaddress.IPv6Network("::1/128"), "loopback address"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local address"),
    (
        ipaddress.IPv6Network("fc00::/7"),
        "unique local address (ULA, fc00::/7): not routed publicly",
    ),
    (ipaddress.IPv6Network("ff00::/8"), "multicast address"),
    (ipaddress.IPv6Network("2001:db8::/32"), "documentation prefix 2001:db8::/32"),
    (ipaddress.IPv6Network("3fff::/20"), "documentation prefix 3fff::/20 (RFC 9637)"),
    (ipaddress.IPv6Network("2001::/32"), "Teredo tunnel address, not the home prefix"),
    (ipaddress.IPv6Network("2002::/16"), "6to4 tunnel address, not the home prefix"),
)
# Interfaces whose global addresses belong to containers, VMs or VPNs, not to the home line.
# Skipped only when no interface is configured (ipv6Interface overrides).
_VIRTUAL_INTERFACE = re.compile(
    r"^(docker\d*|br-[0-9a-f]{12}|veth.*|virbr\d*|tailscale\d*|wg\d*|zt.*|lxcbr\d*|lxdbr\d*"
    r"|cni\d*|podman\d*|flannel.*|cali.*|tun\d*|tap\d*)$"
)
#: A Linux interface name (IFNAMSIZ 16 with the NUL); the one rule for home-derp:ipv6Interface.
INTERFACE_NAME: Final = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")
_IP_COMMAND: Final = ("ip", "-j", "-6", "addr", "show", "scope", "global")


class Ipv6DiscoveryError(HomeDerpError):
    """No usable address among those the host reported; the message lists every candidate.

    (A host that cannot be asked at all raises ``components.host.HostReadError`` instead.)
    """

    def __init__(self, message: str, verdicts: Sequence[Verdict] = ()) -> None:
        super().__init__(message)
        self.verdicts = tuple(verdicts)


@dataclass(frozen=True)
class Candidate:
    """One IPv6 address as ``ip -j -6 addr`` reports it."""

    interface: str
    address: str
    prefixlen: int
    scope: str | None = None
    flags: frozenset[str] = frozenset()
    """Kernel flags that were ``true``: temporary, deprecated, tentative, dadfailed, dynamic,
    mngtmpaddr, noprefixroute, stable-privacy, nodad, home, optimistic …"""
    preferred_lft: int | None = None
    """Seconds; ``FOREVER`` for forever, None when ``ip`` did not report it."""
    valid_lft: int | None = None

    def describe(self) -> str:
        flags = " ".join(sorted(self.flags)) or "no flags"
        return f"{self.address}/{self.prefixlen} on {self.interface} ({flags})"


@dataclass(frozen=True)
class Verdict:
    """Why a candidate was usable (``kind``) or not (``rejected``)."""

    candidate: Candidate
    kind: str | None = None
    rejected: str | None = None


@dataclass(frozen=True)
class Choice:
    """The chosen address and why (logged by settings, shown in ``preview``)."""

    address: str
    interface: str
    reason: str
    kind: str
    prefixlen: int
    verdicts: tuple[Verdict, ...] = field(default=(), compare=False, repr=False)

    @property
    def interface_id(self) -> str:
        """The low 64 bits as an IPv6 literal (``::211:22ff:fe33:4455``)."""
        low = int(ipaddress.IPv6Address(self.address)) & ((1 << 64) - 1)
        return str(ipaddress.IPv6Address(low))

    @property
    def host_id_survives_prefix_change(self) -> bool:
        """True when the same host part will appear under a new prefix (EUI-64 SLAAC).

        stable-privacy hashes the prefix into the identifier (RFC 7217 §5), so it changes too.
        """
        return self.kind == "eui64" and self.prefixlen == 64


# ---------------------------------------------------------------- parsing (pure)


def _lifetime(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_ip_json(text: str) -> list[Candidate]:
    """Candidates from ``ip -j -6 addr show`` output (iproute2 ≥ 4.14).

    iproute2 prints ``{}`` for every address a ``scope``/``dev`` filter hid; those are skipped.
    """
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Ipv6DiscoveryError(f"`ip -j` printed something that is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise Ipv6DiscoveryError("`ip -j` output is not a JSON list of interfaces")
    candidates: list[Candidate] = []
    for link in data:
        if not isinstance(link, dict):
            continue
        ifname = str(link.get("ifname", "?"))
        for info in link.get("addr_info") or ():
            if not isinstance(info, dict) or "local" not in info:
                continue
            if info.get("family", "inet6") != "inet6":
                continue
            flags = frozenset(str(k) for k, v in info.items() if v is True)
            candidates.append(
                Candidate(
                    interface=ifname,
                    address=str(info["local"]),
                    prefixlen=int(info.get("prefixlen", 128)),
                    scope=str(info["scope"]) if "scope" in info else None,
                    flags=flags,
                    preferred_lft=_lifetime(info.get("preferred_life_time")),
                    valid_lft=_lifetime(info.get("valid_life_time")),
                )
            )
    return candidates


# ---------------------------------------------------------------- choosing (pure)


def is_eui64(address: ipaddress.IPv6Address) -> bool:
    """Modified EUI-64 identifier: bytes 11–12 are ``ff fe`` (RFC 4291 Appendix A)."""
    packed = address.packed
    return packed[11] == 0xFF and packed[12] == 0xFE


def address_class_problem(address: ipaddress.IPv6Address) -> str | None:
    """None for a global unicast address a client on the internet can reach.

    The one rule for the relay's address class: ``ipv6: auto`` and a static ``ipv6`` both use it.
    """
    for network, why in _REJECTED_NETWORKS:
        if address in network:
            return why
    if address not in _GLOBAL_UNICAST:
        return "outside the global unicast range 2000::/3"
    if not address.is_global:
        return "in an IANA special-purpose range that is not globally routable"
    return None


def rejection(candidate: Candidate, interface: str | None = None) -> str | None:
    """Why ``candidate`` can never be the relay's address, or None when it can."""
    if interface is not None and candidate.interface != interface:
        return f"on {candidate.interface}, not on {interface} (home-derp:ipv6Interface)"
    try:
        address = ipaddress.IPv6Address(candidate.address)
    except ValueError:
        return "not an IPv6 address"
    if why := address_class_problem(address):
        return why
    flags = candidate.flags
    if candidate.scope is not None and candidate.scope != "global":
        return f"scope {candidate.scope}, not global"
    if "dadfailed" in flags:
        return "duplicate address detection failed: another host on the link uses it"
    if "temporary" in flags:
        return "temporary privacy address (RFC 8981): rotates, never publish it"
    if "tentative" in flags:
        return "tentative: duplicate address detection has not finished"
    if "deprecated" in flags or candidate.preferred_lft == 0:
        return "deprecated (preferred lifetime 0): its prefix is being withdrawn"
    if candidate.valid_lft == 0:
        return "expired (valid lifetime 0)"
    if interface is None and _VIRTUAL_INTERFACE.match(candidate.interface):
        return (
            f"on {candidate.interface}, a container/VM/VPN interface; "
            "set home-derp:ipv6Interface to use it anyway"
        )
    return None


@dataclass(frozen=True)
class StaticHold:
    """How the relay host holds a static ``home-derp:ipv6`` (:func:`static_address_on_host`)."""

    held: tuple[Candidate, ...]
    """The host's entries for the address; empty when it is not an address of the host."""
    usable: Candidate | None
    """The first entry that may be published."""
    problem: str | None
    """Why none of them may be published (the first entry's :func:`rejection`); None if one may."""


def static_address_on_host(
    address: str, candidates: Iterable[Candidate], interface: str | None = None
) -> StaticHold:
    """The one rule for a static address on the host, shared by settings and the doctor.

    Not on the host is not an error by itself (a NAT66 or proxy may forward it; each caller says
    how much that matters to it); held only as temporary or deprecated breaks within a day.
    """
    held = tuple(c for c in candidates if _same_ip(c.address, address))
    # with home-derp:ipv6Interface, exactly auto's rule: only there, and any kind of interface
    usable = next((c for c in held if rejection(c, interface) is None), None)
    problem = rejection(held[0], interface) if held and usable is None else None
    return StaticHold(held, usable, problem)


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def address_kind(candidate: Candidate) -> str:
    """Which stable kind a usable candidate is (a key of :data:`KIND_RANK`)."""
    flags = candidate.flags
    if "stable-privacy" in flags:
        return "stable-privacy"
    if candidate.prefixlen == 64 and is_eui64(ipaddress.IPv6Address(candidate.address)):
        return "eui64"
    if "mngtmpaddr" in flags:
        return "mngtmpaddr"
    if "dynamic" not in flags:
        return "static"
    return "dynamic"


def judge(candidates: Iterable[Candidate], interface: str | None = None) -> list[Verdict]:
    """A verdict for every candidate, in input order."""
    verdicts = []
    for c in candidates:
        why = rejection(c, interface)
        verdicts.append(Verdict(c, rejected=why) if why else Verdict(c, kind=address_kind(c)))
    return verdicts


def _rank_key(verdict: Verdict) -> tuple[int, int, str]:
    assert verdict.kind is not None
    address = int(ipaddress.IPv6Address(verdict.candidate.address))
    return (KIND_RANK[verdict.kind], address, verdict.candidate.interface)


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """One line per candidate: the address and why it was (not) usable."""
    if not verdicts:
        return "  (the host reported no global IPv6 address at all)"
    lines = []
    for v in verdicts:
        why = f"rejected: {v.rejected}" if v.rejected else f"usable: {v.kind}"
        lines.append(f"  - {v.candidate.describe()}: {why}")
    return "\n".join(lines)


def choose_stable_ipv6(candidates: Sequence[Candidate], interface: str | None = None) -> Choice:
    """The best stable global address; :class:`Ipv6DiscoveryError` lists all when none fits."""
    verdicts = judge(candidates, interface)
    usable = sorted((v for v in verdicts if v.kind is not None), key=_rank_key)
    if not usable:
        where = f"on interface {interface}" if interface else "on the host"
        raise Ipv6DiscoveryError(
            f"no stable global IPv6 address {where}; candidates:\n{format_verdicts(verdicts)}",
            verdicts,
        )
    best = usable[0]
    assert best.kind is not None
    address = str(ipaddress.IPv6Address(best.candidate.address))
    reason = KIND_REASON[best.kind]
    if len(usable) > 1:
        others = ", ".join(f"{v.candidate.address} ({v.kind})" for v in usable[1:])
        reason += f"; preferred over {others} (rank: eui64, stable-privacy, mngtmpaddr, "
        reason += "static, dynamic; then lowest address)"
    return Choice(
        address=address,
        interface=best.candidate.interface,
        reason=reason,
        kind=best.kind,
        prefixlen=best.candidate.prefixlen,
        verdicts=tuple(verdicts),
    )


# ---------------------------------------------------------------- reading (side effect edge)


def ip_command(interface: str | None) -> list[str]:
    """The read-only command, identical locally and over ssh."""
    if interface is not None and not INTERFACE_NAME.match(interface):
        raise ValueError(f"not an interface name: {interface!r}")
    return [*_IP_COMMAND, *(("dev", interface) if interface else ())]


def _ip_failure(where: str, returncode: int, stderr: str) -> str:
    """A diagnosis for ``ip`` failing on the host."""
    text = stderr.strip()
    low = text.lower()
    if "-j" in text and ("unknown" in low or "usage" in low):
        return f"`ip` on {where} has no JSON output (-j): needs iproute2 4.14 or newer. ({text})"
    if "does not exist" in low or "cannot find device" in low:
        return f"{where}: {text} — check home-derp:ipv6Interface"
    return f"`ip` on {where} exited with {returncode}: {text}"


def read_host_addresses(
    docker_host: str,
    interface: str | None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    ssh_options: Sequence[str] = (),
    command_prefix: Sequence[str] = (),
) -> str:
    """``ip -j -6 addr show scope global [dev IF]`` output from the Docker host.

    Runs through the relay host's channel (``components.host``): here for ``unix://``, over the
    system ``ssh`` for ``ssh://``; ``tcp://`` cannot list host interfaces.
    """
    channel = HostChannel(
        docker_host,
        timeout=timeout,
        ssh_options=tuple(ssh_options),
        command_prefix=tuple(command_prefix),
    )
    if not can_read_host(docker_host):
        raise HostReadError(
            "unsupported",
            f"ipv6=auto reads the Docker host's interfaces with `ip`, which needs dockerHost "
            f"unix:// (this machine) or ssh://user@host (OpenSSH); {docker_host!r} cannot list "
            "host interfaces — set home-derp:ipv6 to the address instead",
        )
    try:
        done = channel.run(ip_command(interface), what="read the host's addresses")
    except HostReadError as exc:
        if exc.kind == "missing-command":
            raise HostReadError(
                exc.kind, f"`ip` is not installed on {channel.where()}: install iproute2 ({exc})"
            ) from None
        raise
    if done.returncode != 0:
        raise Ipv6DiscoveryError(_ip_failure(channel.where(), done.returncode, done.stderr))
    return done.stdout


def discover_stable_ipv6(
    docker_host: str,
    interface: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ssh_options: Sequence[str] = (),
    command_prefix: Sequence[str] = (),
) -> Choice:
    """Read the Docker host's addresses and choose the stable one (read-only, safe in preview)."""
    text = read_host_addresses(
        docker_host,
        interface,
        timeout,
        ssh_options=ssh_options,
        command_prefix=command_prefix,
    )
    return choose_stable_ipv6(parse_ip_json(text), interface)
