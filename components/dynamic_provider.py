"""The base of home-derp's dynamic providers: stable names in the stack state, the diff over
declared inputs, credentials configured one way, errors a person can read.

* **Stable names.** The SDK pickles the provider object into each resource's ``__provider`` input
  and output, and the provider process unpickles the stored one for ``delete``, ``read`` and
  replacements (docs/upstream/pulumi.md#dynamic-provider-pickling). A class pickled by reference
  ties every stack to its module path: move or rename it and destroying an older stack fails with
  ``AttributeError: Can't get attribute`` — and those deletes are what withdraw the region and
  clear the peer relay. So a provider pickles as a call of :func:`restore` with its stable name
  (``__reduce__``), and :data:`PROVIDERS` says where each class lives today: moving a class is
  one line here. The paths older stacks stored (``components.validation.RelayValidationProvider``
  …) are where the classes still are; keep them importable.
* **Refreshing the stored reference.** ``diff`` reports a change when only ``__provider`` differs
  (an older stack's pickle), and the update that follows returns the old outputs untouched — no
  probe, no API call — so the engine stores the new reference (docs/architecture.md,
  "Decisions").
* **Diff over declared inputs.** Each provider names its inputs (``INPUT_KEYS``); a change is a
  difference between old outputs (inputs echoed) and new inputs, compared after
  :func:`~components.wire.plain`; an unknown input is a change. A provider says which changes
  replace the resource (``REPLACE_KEYS``, :meth:`~HomeDerpProvider.replaced_inputs`), whether the
  old one goes first (``DELETE_BEFORE_REPLACE``) and when it must run again with unchanged inputs
  (:meth:`~HomeDerpProvider.runs_again`).
* **Probes.** A resource that only observes (:class:`ProbeProvider`) gets a new id and runs on
  create, runs again with its last outputs on update, keeps its last result on refresh and
  leaves nothing behind on delete.
* **Credentials one way.** Tailscale credentials are read in ``configure()`` from the stack config
  the engine sends the provider process (:class:`TailscaleCredentials`); nothing of the instance is
  ever pickled, so no credential reaches the state.
* **Errors a person can read.** A :class:`~components.errors.HomeDerpError` raised by a provider
  reaches the user as its message alone: the dynamic-provider process renders every exception
  with ``traceback.format_exc()`` into the error the CLI prints (``pulumi/dynamic/__main__.py``
  ``_abort_with_traceback``), twelve internal frames before the diagnosis; in that process only,
  :func:`readable_errors` makes the project's own errors print as their message. Any other
  exception keeps its traceback (it is a bug to report).
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final

import pulumi
import pulumi.dynamic

from components.errors import HomeDerpError
from components.wire import is_unknown, plain

if TYPE_CHECKING:
    from components.tailscale_api import Client

#: The input that holds the pickled provider (pulumi/dynamic/__main__.py ``PROVIDER_KEY``).
PROVIDER_KEY: Final = "__provider"

#: Stable name → ``module:Class`` where the provider lives today. The names are stack state.
PROVIDERS: Final = {
    "RelayValidation": "components.validation:RelayValidationProvider",
    "TailnetDerpRegion": "components.tailnet:TailnetDerpRegionProvider",
    "TailnetPeerRelayGrant": "components.tailnet:TailnetPeerRelayGrantProvider",
    "PeerRelayServer": "components.peer_relay:PeerRelayServerProvider",
    "RelayHealthGate": "components.gate:RelayHealthGateProvider",
    "DerperRestart": "components.derper_restart:DerperRestartProvider",
    "RelayUsage": "components.usage:RelayUsageProvider",
    "MeshKey": "components.mesh:MeshKeyProvider",
    "HeadscaleDerpRegion": "components.headscale_region:HeadscaleDerpRegionProvider",
    "HeadscalePeerRelayGrant": "components.headscale_grant:HeadscalePeerRelayGrantProvider",
}


def restore(name: str) -> pulumi.dynamic.ResourceProvider:
    """The provider called ``name`` (what a stored ``__provider`` unpickles to)."""
    module, _, attribute = PROVIDERS[name].partition(":")
    provider: pulumi.dynamic.ResourceProvider = getattr(
        importlib.import_module(module), attribute
    )()
    return provider


class HomeDerpProvider(pulumi.dynamic.ResourceProvider):
    """A dynamic provider of home-derp (see the module docstring)."""

    #: The stable name (a key of :data:`PROVIDERS`).
    NAME: ClassVar[str]
    #: The inputs the diff compares.
    INPUT_KEYS: ClassVar[tuple[str, ...]]
    #: Inputs whose change replaces the resource (what it owns is elsewhere then).
    REPLACE_KEYS: ClassVar[tuple[str, ...]] = ()
    #: A replacement deletes the old resource first (both would own the same thing).
    DELETE_BEFORE_REPLACE: ClassVar[bool] = False
    # Nothing secret is ever pickled (only the name), so the blob need not be a secret
    # (docs/upstream/pulumi.md#dynamic-provider-preview: serialize_as_secret_always).
    serialize_as_secret_always = False

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return restore, (self.NAME,)

    # -- the diff

    def comparable(self, key: str, value: Any) -> Any:
        """``value`` of input ``key`` as the diff compares it."""
        return plain(value)

    def changed_inputs(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        """Declared inputs whose value differs (``olds`` are the last outputs)."""
        return [
            k
            for k in self.INPUT_KEYS
            if self.comparable(k, olds.get(k)) != self.comparable(k, news.get(k))
        ]

    def unknown_inputs(self, news: Mapping[str, Any]) -> bool:
        return any(is_unknown(news.get(k)) for k in self.INPUT_KEYS)

    def replaced_inputs(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], changed: list[str]
    ) -> list[str]:
        """The changed inputs that replace the resource."""
        return [k for k in self.REPLACE_KEYS if k in changed]

    def runs_again(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
        """Whether the resource must run again although no input changed."""
        return False

    def diff_inputs(self, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        """What the inputs say: a change when one differs or is unknown, or the provider must
        run again; a replacement when :meth:`replaced_inputs` names one."""
        if self.unknown_inputs(news):
            return pulumi.dynamic.DiffResult(changes=True, replaces=[])
        changed = self.changed_inputs(olds, news)
        replaces = self.replaced_inputs(olds, news, changed)
        return pulumi.dynamic.DiffResult(
            changes=bool(changed) or self.runs_again(olds, news),
            replaces=replaces,
            delete_before_replace=self.DELETE_BEFORE_REPLACE and bool(replaces),
        )

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        result = self.diff_inputs(olds, news)
        if not result.changes and stored_reference_differs(olds, news):
            return pulumi.dynamic.DiffResult(changes=True, replaces=[])
        return result

    # -- create / update

    def update(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        if not self.diff_inputs(olds, news).changes:
            # Only the stored provider reference changed: keep every output, do nothing.
            return pulumi.dynamic.UpdateResult(stored_outputs(olds))
        return self.change(_id, olds, news)

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        """The update of a real change of inputs (what ``update`` does, per provider)."""
        raise NotImplementedError


class ProbeProvider(HomeDerpProvider):
    """A resource that observes and holds nothing: a new id and a run on create, a run with the
    last outputs on update, the last result kept on refresh (probing is what ``up`` and the
    trigger are for), nothing to undo on delete."""

    def run(self, props: Mapping[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
        """The outputs of one run (``olds``: the last outputs, empty on create)."""
        raise NotImplementedError

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(uuid.uuid4().hex, self.run(props, {}))

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self.run(news, olds))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_, stored_outputs(props))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


def stored_outputs(props: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's stored outputs without the pickled provider (what read and update return)."""
    return {k: v for k, v in props.items() if k != PROVIDER_KEY}


def stored_reference_differs(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """The stack holds another pickle of the provider than this program makes (an older one)."""
    old, new = olds.get(PROVIDER_KEY), news.get(PROVIDER_KEY)
    return old is not None and not is_unknown(new) and old != new


class TailscaleCredentials(HomeDerpProvider):
    """A provider that calls the Tailscale API: credentials from ``configure()`` only."""

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Stacks of older releases stored the class itself (module.Class + empty state).
        self._config = {}

    def configure(self, req: pulumi.dynamic.ConfigureRequest) -> None:
        from components.tailscale_api import CONFIG_KEYS

        keys = [f"tailscale:{key}" for key in CONFIG_KEYS]
        self._config = {k: req.config.get(k) for k in keys if req.config.get(k) is not None}

    def api_client(self) -> Client:
        """A Tailscale API client from the configured credentials, else the environment the
        Tailscale provider reads (``tailscale_api.resolve_credentials``); raises
        :class:`~components.tailscale_api.TailscaleApiError` when none are usable."""
        from components.tailscale_api import Client, resolve_credentials

        return Client(resolve_credentials(self._config, os.environ))


# ---------------------------------------------------------------------------------------------
# Errors a person can read


class _ReadableTraceback:
    """Stands in for the ``traceback`` module in the dynamic-provider process's ``__main__``."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def format_exc(self, limit: int | None = None, chain: bool = True) -> str:
        exc = sys.exc_info()[1]
        if isinstance(exc, HomeDerpError):
            return str(exc)
        text: str = self._real.format_exc(limit, chain)
        return text

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def readable_errors(main: ModuleType | None = None) -> bool:
    """In the dynamic-provider process (``python -m pulumi.dynamic``), render the project's
    errors as their message; elsewhere do nothing. True when installed."""
    main = main if main is not None else sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    real = getattr(main, "traceback", None)
    if getattr(spec, "name", None) != "pulumi.dynamic.__main__" or real is None:
        return False
    if isinstance(real, _ReadableTraceback):
        return True
    if not callable(getattr(real, "format_exc", None)):
        return False
    main.traceback = _ReadableTraceback(real)  # type: ignore[union-attr]
    return True


readable_errors()
