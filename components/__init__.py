"""home-derp: a Tailscale DERP relay on a home server, as a Pulumi component.

Exports resolve lazily: ``python -m components.netcheck`` and the dynamic-provider process import
this package too, and must not pay ~2 s and ~140 MB for the Pulumi SDKs they never use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.errors import HomeDerpError
    from components.relay import HomeDerpRelay, HomeDerpRelayArgs
    from components.settings import ConfigError, RelaySettings, load_settings

_EXPORTS = {
    "HomeDerpError": "components.errors",
    "HomeDerpRelay": "components.relay",
    "HomeDerpRelayArgs": "components.relay",
    "ConfigError": "components.settings",
    "RelaySettings": "components.settings",
    "load_settings": "components.settings",
}

__all__ = [
    "ConfigError",
    "HomeDerpError",
    "HomeDerpRelay",
    "HomeDerpRelayArgs",
    "RelaySettings",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
