"""Stack config → a :class:`Verdict` (settings, problems, warnings, notes), checked before any
resource (docs/architecture.md, "Settings").

The package, by seam:

* ``keys`` — every ``home-derp:`` key with its type and default (no Pulumi import);
* ``model`` — the settings by topic, :class:`Problem`, :class:`Verdict`, :class:`ConfigError`;
* ``checks`` — pure rules over one value each;
* ``collector`` — typed reads of the raw strings that keep every problem;
* ``network``, ``derper``, ``topology``, ``control_plane``, ``publication``, ``usage`` — the rules
  by topic;
* ``parse`` — ``parse_settings``: all of them in one pass, pure, returning the verdict;
* ``load`` — the edge: Pulumi config, the environment, the live relay host.

Nothing here imports Pulumi but ``load`` (resolved lazily): the doctor, the policy pack and the
dynamic-provider process read the rest without paying for the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from components.settings.checks import (
    check_docker_host,
    check_hostname,
    check_image,
    check_ipv4,
    check_ipv6,
    check_selector,
    check_socket_path,
    hostname_in_zone,
    normalized_hostname,
    readable_docker_host,
    unknown_keys,
)
from components.settings.collector import Collector
from components.settings.derper import (
    DERPER_USER,
    ROOT_USER,
    Privileges,
    derper_privileges,
    file_capability_needed,
)
from components.settings.environment import Environment, HostProbe, github_hosted_runner
from components.settings.keys import (
    ACME_DIRECTORIES,
    HEALTH_RUN_ENV,
    KEY,
    KEYS,
    KNOWN_KEYS,
    NAMESPACE,
    NETWORK_MODES,
    POLICY_MODES,
    SECRET_KEYS,
    VALIDATE_MODES,
    Key,
)
from components.settings.model import (
    Acme,
    Addresses,
    ConfigError,
    Ddns,
    Derper,
    DerperBuild,
    Docker,
    PeerRelay,
    Policy,
    Ports,
    Problem,
    Region,
    RelaySettings,
    Validation,
    Verdict,
    Zone,
)
from components.settings.parse import parse_settings

if TYPE_CHECKING:
    from components.settings.load import environment, load_settings, tailscale_config

_LAZY = ("environment", "load_settings", "tailscale_config")

__all__ = [
    "ACME_DIRECTORIES",
    "DERPER_USER",
    "HEALTH_RUN_ENV",
    "KEY",
    "KEYS",
    "KNOWN_KEYS",
    "NAMESPACE",
    "NETWORK_MODES",
    "POLICY_MODES",
    "ROOT_USER",
    "SECRET_KEYS",
    "VALIDATE_MODES",
    "Acme",
    "Addresses",
    "Collector",
    "ConfigError",
    "Ddns",
    "Derper",
    "DerperBuild",
    "Docker",
    "Environment",
    "HostProbe",
    "Key",
    "PeerRelay",
    "Policy",
    "Ports",
    "Privileges",
    "Problem",
    "Region",
    "RelaySettings",
    "Validation",
    "Verdict",
    "Zone",
    "check_docker_host",
    "check_hostname",
    "check_image",
    "check_ipv4",
    "check_ipv6",
    "check_selector",
    "check_socket_path",
    "derper_privileges",
    "environment",
    "file_capability_needed",
    "github_hosted_runner",
    "hostname_in_zone",
    "load_settings",
    "normalized_hostname",
    "parse_settings",
    "readable_docker_host",
    "tailscale_config",
    "unknown_keys",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("components.settings.load"), name)
    raise AttributeError(f"module 'components.settings' has no attribute {name!r}")
