"""Validate a Tailscale DERP relay from outside, the way real clients use it.

A leaf library: no Pulumi import and nothing else of the project, so the CLI
(``python -m components.netcheck``), the validation dynamic provider and the tests share it.

Layout, after tailscale's prober/ (one file per probe kind with its I/O and its verdict, a
generic runner): ``dns``, ``tls``, ``https``, ``derp``, ``stun``, ``regions`` are the probes;
``probes`` runs them within the budgets; ``stun_codec``, ``derp_codec`` and ``http1`` are the
wire formats; ``report`` is the result model; ``errors`` the one exception tree; ``cli`` the
command line.
"""

from .derp import Admission, AdmissionEvidence, EvidenceSource
from .errors import DerpError, DerpMapError, HttpError, NetcheckError, StunError, TlsFailure
from .probes import check_relay, probe_relay
from .regions import DEFAULT_DERP_MAP_URL, load_derp_map
from .report import Check, RegionLatency, RelayTarget, Report

__all__ = [
    "DEFAULT_DERP_MAP_URL",
    "Admission",
    "AdmissionEvidence",
    "Check",
    "DerpError",
    "DerpMapError",
    "EvidenceSource",
    "HttpError",
    "NetcheckError",
    "RegionLatency",
    "RelayTarget",
    "Report",
    "StunError",
    "TlsFailure",
    "check_relay",
    "load_derp_map",
    "probe_relay",
]
