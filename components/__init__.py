"""home-derp: a Tailscale DERP relay on a home server, as a Pulumi component."""

from components.relay import HomeDerpRelay, HomeDerpRelayArgs
from components.settings import ConfigError, RelaySettings, load_settings

__all__ = ["ConfigError", "HomeDerpRelay", "HomeDerpRelayArgs", "RelaySettings", "load_settings"]
