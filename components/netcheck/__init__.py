"""Validate a Tailscale DERP relay from outside, the way real clients use it (issue #3).

A leaf library: no Pulumi import and nothing else of the project, so the CLI
(``python -m components.netcheck``), the validation dynamic provider and the tests share it.
"""

from .probes import check_relay, probe_relay
from .regions import DEFAULT_DERP_MAP_URL, DerpMapError, load_derp_map
from .report import Check, RegionLatency, RelayTarget, Report

__all__ = [
    "DEFAULT_DERP_MAP_URL",
    "Check",
    "DerpMapError",
    "RegionLatency",
    "RelayTarget",
    "Report",
    "check_relay",
    "load_derp_map",
    "probe_relay",
]
