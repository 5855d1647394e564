"""Validate a Tailscale DERP relay from outside, the way real clients use it.

A leaf library: no Pulumi import and nothing else of the project, so the CLI
(``python -m components.netcheck``), the validation dynamic provider and the tests share it.

Layout, after tailscale's prober/ (one file per probe kind with its I/O and its verdict, a
generic runner): ``dns``, ``tls``, ``https``, ``derp``, ``stun``, ``regions`` are the probes;
``probes`` runs them within the budgets; ``stun_codec``, ``derp_codec`` and ``http1`` are the
wire formats; ``report`` is the result model; ``errors`` the one exception tree; ``cli`` the
command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .derp import Admission, AdmissionEvidence, EvidenceSource
    from .errors import DerpError, DerpMapError, HttpError, NetcheckError, StunError, TlsFailure
    from .probes import check_relay, probe_relay
    from .regions import DEFAULT_DERP_MAP_URL, load_derp_map
    from .report import Check, RegionLatency, RelayTarget, Report

# Resolved on first use (PEP 562): `python -m components.netcheck` imports this package before
# its __main__, which must be able to say that a Python without the project's packages (PyNaCl,
# dnspython) needs the venv, instead of failing here with a traceback.
_EXPORTS = {
    "Admission": "derp",
    "AdmissionEvidence": "derp",
    "EvidenceSource": "derp",
    "DerpError": "errors",
    "DerpMapError": "errors",
    "HttpError": "errors",
    "NetcheckError": "errors",
    "StunError": "errors",
    "TlsFailure": "errors",
    "check_relay": "probes",
    "probe_relay": "probes",
    "DEFAULT_DERP_MAP_URL": "regions",
    "load_derp_map": "regions",
    "Check": "report",
    "RegionLatency": "report",
    "RelayTarget": "report",
    "Report": "report",
}

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
