"""What the region and grant providers of both control planes share.

The relay's DERP region and its peer-relay grant are each written to a file the control plane
reads — the tailnet policy through the Tailscale API (``components/tailnet.py``), headscale's DERP
map and policy files on the headscale host (``components/headscale_region.py``,
``components/headscale_grant.py``). How each file is read, written and confirmed stays with its
control plane; the rules of the resources are the same and live here:

* a region follows the validation's verdict (docs/architecture.md, "Health"): every unhealthy run
  of a published region runs again (a drain flag removed by hand while the relay is still broken
  is set again); another ``RegionID`` is another entry, so the resource is replaced, the old entry
  withdrawn first — what it created (the ``derpMap`` block, the ``regions:`` key) is then created
  again by the new one, so its ownership moves along;
* a grant needs ``src`` and ``dst``; another region id is another marked grant (replaced, the old
  one removed first).

The providers' stable names and classes stay in their modules (components/dynamic_provider.py);
these bases hold no ``NAME``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import pulumi.dynamic

from components.dynamic_provider import HomeDerpProvider
from components.errors import HomeDerpError
from components.wire import is_unknown, plain


def region_id(region: Any, error: type[HomeDerpError]) -> int:
    """The integer ``RegionID`` of ``region`` (a whole float counts); ``error`` otherwise."""
    value = region.get("RegionID") if isinstance(region, Mapping) else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"region needs an integer RegionID, got {region!r}")
    return value


class Placement(Protocol):
    """Where a region stands in its file (each control plane's state has these and more)."""

    @property
    def published(self) -> bool: ...
    @property
    def drained(self) -> bool: ...


def drain_note(
    region: int, was: Placement, now: Placement, *, flag: str, where: str = ""
) -> str | None:
    """What the user is told when an edit drained or restored the region (``flag``: the drain
    flag's spelling in that file; ``where``: the file, for a control plane with several)."""
    if now.drained and not was.drained:
        return f"region {region} DRAINED ({flag}){where}: the relay failed"
    if was.drained and not now.drained and now.published:
        return f"region {region} restored{where}: the relay is healthy again"
    return None


class RegionProvider(HomeDerpProvider):
    """A provider of the relay's region in a control plane's DERP map (the module docstring)."""

    DELETE_BEFORE_REPLACE = True

    def runs_again(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
        # Every unhealthy run re-reads the file: a drain flag removed by hand while the relay is
        # still broken is set again (an unchanged file is not written).
        return news.get("healthy") is False and bool(olds.get("published"))

    def replaced_inputs(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], changed: list[str]
    ) -> list[str]:
        replaces = super().replaced_inputs(olds, news, changed)
        old_region, new_region = plain(olds.get("region")), plain(news.get("region"))
        if (
            isinstance(old_region, Mapping)
            and isinstance(new_region, Mapping)
            and old_region.get("RegionID") != new_region.get("RegionID")
        ):
            replaces.append("region")  # another key in the map: a different region
        return replaces


class GrantProvider(HomeDerpProvider):
    """A provider of the relay's marked peer-relay grant in a control plane's policy."""

    REPLACE_KEYS: ClassVar[tuple[str, ...]] = ("region_id",)
    DELETE_BEFORE_REPLACE = True

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        grant = news.get("grant")
        if not is_unknown(grant) and (
            not isinstance(grant, Mapping) or not grant.get("src") or not grant.get("dst")
        ):
            failures.append(pulumi.dynamic.CheckFailure("grant", "needs src and dst"))
        return pulumi.dynamic.CheckResult(news, failures)
