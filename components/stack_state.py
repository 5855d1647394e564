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
  (docs/upstream/pulumi.md#import). ``components/dns.py`` asks :func:`managed_ids`.

Both are read through the engine's builtin provider (``pulumi:pulumi:readStackOutputs`` and
``pulumi:pulumi:readStackResourceOutputs``, the invokes behind stack references:
docs/upstream/pulumi.md#read-stack-state), from the backend, during ``preview`` too. When the
engine cannot answer, the caller gets None and keeps its cautious behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def carry_over(computed: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """``computed`` with each value the run could not compute (None) taken from ``previous``."""
    return {k: previous.get(k) if v is None else v for k, v in computed.items()}


def managed_ids(
    state: Mapping[str, Mapping[str, Any]], type_token: str, names: Mapping[str, str]
) -> dict[str, str]:
    """``{key: id}`` for each ``names[key]`` (a resource name) that ``state`` holds as
    ``type_token``; the id is ``""`` when the state does not say it."""
    found: dict[str, str] = {}
    for urn, entry in state.items():
        if entry.get("type") != type_token:
            continue
        name = urn.rsplit("::", 1)[-1]
        for key, wanted in names.items():
            if name == wanted:
                outputs = entry.get("outputs")
                found[key] = str(outputs.get("id") or "") if isinstance(outputs, Mapping) else ""
    return found
