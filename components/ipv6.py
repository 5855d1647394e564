"""Find the relay host's stable global IPv6 address (``home-derp:ipv6: auto``, issue #5).

Home lines change their IPv6 prefix (PPPoE reconnects, router reboots) and hosts carry rotating
privacy addresses beside the stable one. Publishing the wrong one, or an old one, silently kills
the relay (reference/derp.md §7). This module reads the host's addresses with
``ip -j -6 addr show scope global`` — on this machine for a ``unix://`` Docker host, over the
system OpenSSH client for ``ssh://`` — and picks one by fixed rules.

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
import math
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

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

#: Env var with extra OpenSSH client options (shell words), appended after our own options.
SSH_OPTS_ENV: Final = "HOME_DERP_SSH_OPTS"

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# Address classes that are never the relay's public address, checked in this order.
_REJECTED_NETWORKS: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped address"),
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
_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")
_IP_COMMAND: Final = ("ip", "-j", "-6", "addr", "show", "scope", "global")


class Ipv6DiscoveryError(RuntimeError):
    """No usable address, or the host's addresses could not be read. The message says why."""

    def __init__(self, message: str, verdicts: Sequence[Verdict] = ()) -> None:
        super().__init__(message)
        self.verdicts = tuple(verdicts)


class HostReadError(Ipv6DiscoveryError):
    """Running ``ip`` on the Docker host failed (ssh unreachable, auth, ``ip`` missing …)."""


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
    """None for a global unicast address a client on the internet can reach."""
    for network, why in _REJECTED_NETWORKS:
        if address in network:
            return why
    if address not in _GLOBAL_UNICAST:
        return "outside the global unicast range 2000::/3"
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
    if interface is not None and not _INTERFACE_NAME.match(interface):
        raise ValueError(f"not an interface name: {interface!r}")
    return [*_IP_COMMAND, *(("dev", interface) if interface else ())]


@dataclass(frozen=True)
class SshTarget:
    """``ssh://[user@]host[:port]`` as the Docker CLI and provider use it."""

    host: str
    user: str | None = None
    port: int | None = None

    def display(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{user}{host}{port}"


def parse_ssh_host(docker_host: str) -> SshTarget:
    """Split an ``ssh://`` Docker host; ``ValueError`` names what is wrong."""
    parts = urlsplit(docker_host)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ValueError(f"not an ssh://[user@]host[:port] address: {docker_host!r}")
    if parts.hostname.startswith("-"):
        raise ValueError(f"host name may not start with '-': {docker_host!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {docker_host!r}: {exc}") from exc
    return SshTarget(host=parts.hostname, user=parts.username or None, port=port)


def ssh_command(
    target: SshTarget,
    remote: Sequence[str],
    *,
    timeout: float,
    ssh_options: Sequence[str] = (),
) -> list[str]:
    """The OpenSSH client call: batch mode (never prompts), bounded connect, ~/.ssh/config honored.

    Our ``-o`` options come first because ssh keeps the first value it sees for an option.
    """
    extra = [*ssh_options, *shlex.split(os.environ.get(SSH_OPTS_ENV, ""))]
    # Debian puts ip in /usr/sbin or /sbin, which a non-root ssh session's PATH may lack.
    remote_line = 'PATH="$PATH:/usr/sbin:/sbin" ' + shlex.join(remote)
    return [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, math.ceil(timeout))}",
        "-T",
        *(("-p", str(target.port)) if target.port else ()),
        *(("-l", target.user) if target.user else ()),
        *extra,
        "--",
        target.host,
        remote_line,
    ]


def _ssh_failure(target: SshTarget, stderr: str) -> str:
    """A diagnosis for ssh's exit status 255 from its stderr."""
    dest = target.display()
    text = stderr.strip()
    low = text.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return (
            f"ssh to {dest} was refused (authentication failed in batch mode, no prompts): "
            "load the key the Docker ssh:// connection uses into ssh-agent or name it in "
            f"~/.ssh/config. ssh said: {text}"
        )
    if "host key verification failed" in low or "remote host identification" in low:
        return (
            f"ssh to {dest}: the host key is unknown or changed; connect once with "
            f"`ssh {dest}` to check and record it. ssh said: {text}"
        )
    if "could not resolve hostname" in low:
        return f"ssh to {dest}: the host name does not resolve. ssh said: {text}"
    if any(
        s in low
        for s in (
            "connection refused",
            "timed out",
            "no route to host",
            "network is unreachable",
            "connection closed",
            "connection reset",
        )
    ):
        return f"ssh to {dest}: host unreachable (is sshd running and the port open?). {text}"
    return f"ssh to {dest} failed: {text or 'no message (exit 255)'}"


def _ip_failure(where: str, returncode: int, stderr: str) -> str:
    """A diagnosis for ``ip`` failing (or missing) on the host."""
    text = stderr.strip()
    low = text.lower()
    if returncode == 127 or "not found" in low or "no such file" in low:
        return f"`ip` is not installed on {where}: install iproute2 there. ({text})"
    if "-j" in text and ("unknown" in low or "usage" in low):
        return f"`ip` on {where} has no JSON output (-j): needs iproute2 4.14 or newer. ({text})"
    if "does not exist" in low or "cannot find device" in low:
        return f"{where}: {text} — check home-derp:ipv6Interface"
    return f"`ip` on {where} exited with {returncode}: {text}"


def _local_ip() -> str:
    found = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise HostReadError("`ip` is not installed on this machine: install iproute2")
    return found


def read_host_addresses(
    docker_host: str,
    interface: str | None,
    timeout: float = 10,
    *,
    ssh_options: Sequence[str] = (),
    command_prefix: Sequence[str] = (),
) -> str:
    """``ip -j -6 addr show scope global [dev IF]`` output from the Docker host.

    ``unix://`` runs it here, ``ssh://`` on the host through the system ``ssh``. ``ssh_options``
    are the same extra flags the Docker provider's ``sshOpts`` takes. ``command_prefix`` wraps
    whatever runs (e.g. ``ip netns exec NS``) — a seam for tests that leaves the command itself
    unchanged.
    """
    scheme = urlsplit(docker_host).scheme if "://" in docker_host else ""
    command = ip_command(interface)
    if scheme == "unix":
        argv = [*command_prefix, _local_ip(), *command[1:]]
        where = "this machine (the unix:// Docker host)"
        target: SshTarget | None = None
    elif scheme == "ssh":
        try:
            target = parse_ssh_host(docker_host)
        except ValueError as exc:
            raise HostReadError(str(exc)) from exc
        argv = [
            *command_prefix,
            *ssh_command(target, command, timeout=timeout, ssh_options=ssh_options),
        ]
        where = f"the Docker host {target.display()}"
    else:
        raise HostReadError(
            f"ipv6=auto reads the Docker host's interfaces with `ip`, which needs dockerHost "
            f"unix:// (this machine) or ssh://user@host (OpenSSH); {docker_host!r} cannot list "
            "host interfaces — set home-derp:ipv6 to the address instead"
        )
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + 2,  # ssh's own ConnectTimeout should fire first
            check=False,
        )
    except FileNotFoundError as exc:
        missing = "ssh (install openssh-client)" if target else "ip (install iproute2)"
        raise HostReadError(f"cannot read addresses: {missing} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise HostReadError(
            f"reading addresses from {where} took longer than {timeout + 2:.0f}s and was stopped"
        ) from exc
    if target is not None and done.returncode == 255:
        raise HostReadError(_ssh_failure(target, done.stderr))
    if done.returncode != 0:
        raise HostReadError(_ip_failure(where, done.returncode, done.stderr))
    return done.stdout


def discover_stable_ipv6(
    docker_host: str,
    interface: str | None = None,
    *,
    timeout: float = 10,
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
