"""Names and labels of what home-derp creates on the relay host: one home for each.

The program, the policy pack and ``doctor`` all need to recognise our containers and volumes, so
the names are built here and nowhere else (pure, no Pulumi import).
"""

from __future__ import annotations

import re
from typing import Final

#: Container label whose value says what a container is; the policy pack and doctor read it.
ROLE_LABEL: Final = "home-derp.role"
#: Container label with the relay's region id.
REGION_LABEL: Final = "home-derp.region"
#: Container label saying where derper's image comes from: ``built`` here or ``pinned``.
IMAGE_LABEL: Final = "home-derp.image"
ROLE_DERPER: Final = "derper"
ROLE_DDNS: Final = "ddns"
ROLE_STATE: Final = "derper-state"
ROLE_STATE_OWNER: Final = "derper-state-owner"


def image_source(pinned: bool) -> str:
    """The :data:`IMAGE_LABEL` value."""
    return "pinned" if pinned else "built"


def container_name(region_id: int, region_code: str) -> str:
    """derper's container, named after the region so two stacks on one host never collide."""
    return f"derper-{region_id}-{region_code}"


def state_volume_name(region_id: int, region_code: str) -> str:
    """The named volume holding derper's server key (``/var/lib/derper``)."""
    return f"{container_name(region_id, region_code)}-state"


def state_owner_name(region_id: int, region_code: str) -> str:
    """The one-shot container that hands an old root-owned state volume to derper's user."""
    return f"{container_name(region_id, region_code)}-state-owner"


def ddns_container_name(hostname: str) -> str:
    """One DDNS updater per relay name."""
    return "home-derp-ddns-" + re.sub(r"[^a-z0-9-]+", "-", hostname.lower()).strip("-")


def derper_image_name(tailscale_version: str) -> str:
    """The locally built derper image, tagged with the tailscale release it was built from."""
    return f"home-derp/derper:v{tailscale_version}"
