"""What this stack's last deployment left behind, as the program can ask the engine for it.

Two decisions need the stack's own state, and neither may be guessed from the outside world:

* **Health runs keep the outputs they do not recompute.** The engine replaces the root stack's
  outputs wholesale when an update succeeds (docs/upstream/pulumi.md#root-stack-outputs), and a
  health run registers no certificate, container or peer relay: without help every green health
  run would erase ``certificateNotAfter``, ``containerId`` … So ``__main__.py`` carries the last
  deployment's values over (:func:`carry_over`, fed by :func:`previous_outputs`).
* **Adoption never imports a record this stack already manages.** Whether a DNS record is ours
  is what the state holds, not a comment in Cloudflare: an ``import`` of a resource already in
  state is an import-replacement whose delete removes the live record
  (docs/upstream/pulumi.md#import). ``components/dns.py`` asks :func:`held`, which also finds
  a record held under the name of a renamed component (a changed ``regionId``).

Both are read through the engine's builtin provider (``pulumi:pulumi:readStackOutputs`` and
``pulumi:pulumi:readStackResourceOutputs``, the invokes behind stack references:
docs/upstream/pulumi.md#read-stack-state), from the backend, during ``preview`` too. When the
engine cannot answer, the caller gets None and keeps its cautious behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi

READ_OUTPUTS: Final = "pulumi:pulumi:readStackOutputs"
READ_RESOURCES: Final = "pulumi:pulumi:readStackResourceOutputs"


def this_stack() -> str:
    """``<organization>/<project>/<stack>``: how the backend names the running stack."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def _invoke(token: str, args: dict[str, Any]) -> Mapping[str, Any] | None:
    try:
        value = pulumi.runtime.invoke(token, args).value
    except Exception as exc:  # any failure of the engine means "do not know"
        pulumi.log.debug(f"{token} failed: {exc}")
        return None
    return value if isinstance(value, Mapping) else None


def previous_outputs() -> dict[str, Any] | None:
    """The root stack outputs of the last deployment; None when they cannot be read."""
    found = _invoke(READ_OUTPUTS, {"name": this_stack()})
    if found is None:
        return None
    outputs = found.get("outputs")
    return dict(outputs) if isinstance(outputs, Mapping) else {}


def resources() -> dict[str, Mapping[str, Any]] | None:
    """URN → ``{type, outputs}`` of every resource in this stack's state; None when unknown."""
    found = _invoke(READ_RESOURCES, {"stackName": this_stack()})
    if found is None:
        return None
    outputs = found.get("outputs")
    if not isinstance(outputs, Mapping):
        return {}
    return {str(urn): entry for urn, entry in outputs.items() if isinstance(entry, Mapping)}


def former_names(state: Mapping[str, Mapping[str, Any]], type_token: str, name: str) -> list[str]:
    """The name ``state`` holds the one ``type_token`` resource under, when it is not ``name``
    (a changed ``regionId`` renames the relay's component); [] otherwise (none, or several: which
    one was renamed is then not ours to guess)."""
    names = {
        urn.rsplit("::", 1)[-1] for urn, entry in state.items() if entry.get("type") == type_token
    }
    return sorted(names) if len(names) == 1 and name not in names else []


def carry_over(computed: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """``computed`` with each value the run could not compute (None) taken from ``previous``."""
    return {k: previous.get(k) if v is None else v for k, v in computed.items()}


@dataclass(frozen=True)
class Held:
    """A resource the state holds: its URN, resource name and id (``""`` when not said)."""

    urn: str
    name: str
    id: str


def held(
    state: Mapping[str, Mapping[str, Any]],
    type_token: str,
    names: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]],
) -> dict[str, Held]:
    """For each key: the ``type_token`` resource that ``state`` holds as ``names[key]`` or, when
    none is, one whose outputs carry ``outputs[key]`` under another name: the same physical
    thing registered by a parent that was renamed (a changed ``regionId`` renames the
    component, whose alias, :func:`former_names`, moves it). Adoption must count it as held: an
    import of it would be an import-replacement, whose delete removes the live object by id
    (docs/upstream/pulumi.md#import)."""
    found: dict[str, Held] = {}
    for urn, entry in state.items():
        if entry.get("type") != type_token:
            continue
        name = urn.rsplit("::", 1)[-1]
        values = entry.get("outputs")
        values = values if isinstance(values, Mapping) else {}
        this = Held(urn, name, str(values.get("id") or ""))
        for key, wanted in names.items():
            carried = outputs.get(key) or {}
            moved = bool(carried) and all(values.get(k) == v for k, v in carried.items())
            if name == wanted or (moved and key not in found):
                found[key] = this
    return found
