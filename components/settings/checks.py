"""Pure rules over one value each: None when the value is fine, else what is wrong.

No I/O and no Pulumi: the topic rules (``components/settings/rules_*.py``), the doctor and the
policy pack call these, so each value has one rule.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Sequence
from typing import Final

from components import image_reference
from components.host import can_read_host
from components.ipv6 import address_class_problem
from components.settings.keys import (
    ACME_DIRECTORIES,
    DOCKER_SCHEMES,
    KNOWN_KEYS,
    default_text,
    full_name,
)

_LABEL: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
REGION_CODE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ZONE_ID: Final = re.compile(r"^[0-9a-f]{32}$")
# Policy selectors a grant's "src" takes (docs/upstream/tailscale-api.md#selectors).
_SELECTOR: Final = re.compile(
    r"^(\*|autogroup:[a-z][a-z-]*|tag:[A-Za-z][A-Za-z0-9-]*|group:[A-Za-z0-9][\w.-]*"
    r"|[^@\s:]+@[^@\s:]*|[A-Za-z][A-Za-z0-9-]*)$"
)
_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
_TRUE: Final = ("true", "yes", "1", "on")
_FALSE: Final = ("false", "no", "0", "off")


def check_hostname(value: str) -> str | None:
    """None when ``value`` is a usable FQDN, else what is wrong."""
    if len(value) > 253:
        return "longer than 253 characters"
    labels = value.split(".")
    if len(labels) < 2:
        return "not fully qualified (needs at least one dot, e.g. derp.example.com)"
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        return (
            f"label {bad[0]!r} is not a DNS label "
            "(1-63 of a-z, 0-9, '-', not starting or ending with '-')"
        )
    if labels[-1].isdigit():
        return "looks like an IP address; a DNS name is needed for the certificate"
    return None


def check_ipv6(value: str) -> str | None:
    """None when ``value`` is a global unicast IPv6 address a client can reach.

    The address class rule is ``components.ipv6.address_class_problem``, shared with discovery.
    """
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return "not an IPv6 address"
    return address_class_problem(address)


def check_ipv4(value: str) -> str | None:
    """None when ``value`` is a public IPv4 address."""
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        return "not an IPv4 address"
    if addr in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10), not reachable from outside"
    if addr.is_private or addr.is_loopback or addr.is_link_local:
        return "a private address, not reachable from outside"
    if addr.is_multicast or addr.is_reserved or addr.is_unspecified or not addr.is_global:
        return "not a public unicast address"
    return None


def check_image(value: str) -> str | None:
    """None when ``value`` is a pinned image reference (a release tag or a digest)."""
    return image_reference.pin_problem(value)


def check_docker_host(value: str) -> str | None:
    """None when ``value`` is a Docker engine URL the provider can use."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in DOCKER_SCHEMES:
        return "scheme must be one of " + ", ".join(f"{s}://" for s in DOCKER_SCHEMES)
    if parsed.scheme == "unix":
        return None if parsed.path.startswith("/") else "unix:// needs an absolute socket path"
    try:
        port = parsed.port
    except ValueError:
        return "the port is not a number"
    if not parsed.hostname:
        return f"{parsed.scheme}:// needs a host (e.g. ssh://user@home.lan)"
    if parsed.scheme == "tcp" and port is None:
        return "tcp:// needs a port (e.g. tcp://home.lan:2376)"
    return None


def check_acme_server(value: str) -> tuple[str | None, str | None]:
    """Map ``production``/``staging``/URL to a directory URL, or say what is wrong."""
    if value in ACME_DIRECTORIES:
        return ACME_DIRECTORIES[value], None
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme == "https" and parsed.hostname:
        return value, None
    return None, "must be production, staging or an https:// ACME directory URL"


def check_socket_path(value: str) -> str | None:
    """None when ``value`` can be tailscaled's socket path on the host."""
    if not value.startswith("/"):
        return (
            f"must be an absolute path on the relay host (e.g. {default_text('tailscaleSocket')})"
        )
    # POSIX normpath keeps a leading '//' (implementation-defined), Docker's mount does not.
    if os.path.normpath(value) != value or value.endswith("/") or "//" in value:
        return "must be a normalized path to the socket file (no '..', '//' or trailing '/')"
    # Which directory derper may get is settings/derper.py's rule (socket_directory_problem).
    return None


def check_go_proxy(value: str) -> str | None:
    """None for a GOPROXY list (https URLs, ``direct``, ``off``; ``,`` or ``|`` separated)."""
    for entry in re.split(r"[,|]", value):
        if entry in ("direct", "off"):
            continue
        parsed = urllib.parse.urlsplit(entry)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            return (
                f"{entry!r} is not a proxy URL, 'direct' or 'off' (e.g. https://goproxy.cn,direct)"
            )
    return None


def check_selector(value: str) -> str | None:
    """None for a grant source selector (``*``, ``autogroup:…``, ``tag:…``, a user, an IP …)."""
    try:
        ipaddress.ip_network(value, strict=False)
        return None
    except ValueError:
        pass
    if not _SELECTOR.match(value):
        return (
            f"{value!r} is not a policy selector (*, autogroup:member, tag:name, group:name, "
            "user@example.com, a host alias or an IP/CIDR)"
        )
    return None


def parse_bool(value: str) -> bool | None:
    """Pulumi stores booleans as strings; None when it is not one."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def parse_int(value: str) -> int | None:
    """None when ``value`` is not a whole number."""
    try:
        return int(value.strip(), 10)
    except ValueError:
        return None


def hostname_in_zone(hostname: str, zone: str) -> bool:
    """True when the record name lives in the zone (the apex counts)."""
    return hostname == zone or hostname.endswith("." + zone)


def unknown_keys(keys: Sequence[str]) -> list[str]:
    """Problems for keys of our namespace that no rule reads (typos lose settings silently)."""
    problems = []
    for full in keys:
        name = full.split(":", 1)[1]
        if name not in KNOWN_KEYS:
            guess = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
            hint = (
                f"did you mean {full_name(guess[0])}?" if guess else "see Pulumi.yaml for the keys"
            )
            problems.append(f"{full}: unknown key — {hint}")
    return problems


def normalized_hostname(value: str) -> str:
    """A DNS name as the rules compare it: lower case, without the root's trailing dot."""
    return value.strip().lower().rstrip(".")


def check_derp_port(port: int) -> str | None:
    """derper serves DERP over TLS only; 80 is its plain-HTTP port (docs/upstream/derper.md)."""
    if port == 80:
        return "derper serves DERP over TLS; pick a TLS port such as 443 or 12345"
    return None


def readable_docker_host(value: str | None) -> str | None:
    """The ``dockerHost`` (unset: its default) when the relay host can be read through it, else
    None (an invalid URL, or a bare ``tcp://`` API). The program and the doctor open the host's
    channel (``components.relay_host.LiveHost``) exactly when this says so."""
    url = (value or "").strip() or default_text("dockerHost")
    return url if check_docker_host(url) is None and can_read_host(url) else None
