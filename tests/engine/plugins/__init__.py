"""Provider plugins of the tests: the engine's gRPC ``ResourceProvider`` protocol, in Python.

The Pulumi engine loads provider ``<name>`` from an executable ``pulumi-resource-<name>`` on PATH
whatever version the program's SDK asks for (it warns ``using pulumi-resource-<name> from $PATH``).
The bridged providers the program uses (docker, cloudflare, tls, acme, tailscale) cannot be had on
these machines, so ``tests/engine/bin`` holds one such executable per provider, each running
``python -m tests.engine.plugins <name>``: a test double of that provider, written from the real
provider's schema (which inputs replace, which update: docs/upstream/bridged-providers.md) and
backed by the real peer of the tests (the real dockerd, the Cloudflare API peer, pebble, real
keys, the Tailscale API peer). Each module's docstring says which provider it stands for and
what backs it.

What the engine sees, from this module (github.com/pulumi/pulumi/sdk/v3@v3.274.1
proto/pulumi/provider.proto is the protocol; the Python stubs ship with the SDK):

* the plugin prints its gRPC port on stdout and serves until the engine kills it;
* ``Configure`` answers ``acceptSecrets: false`` and ``supportsPreview: false``: the engine then
  sends plain values and never calls ``Create``/``Update`` during a preview (its plugin layer
  answers them with the inputs, as for the Python dynamic provider:
  docs/upstream/pulumi.md#dynamic-provider-preview). The real bridged providers accept secrets
  and preview; what differs is only how unknown computed outputs look in a preview;
* ``Check`` returns the inputs with the provider's defaults; ``Diff`` compares the new inputs
  with the old ones key by key and reports a replacement for a changed key the real provider
  marks ForceNew / RequiresReplace, with a ``detailedDiff`` (what ``pulumi preview --diff``
  shows);
* ``Read`` serves refresh and ``import``: it returns the live state and the inputs it implies.

Every call is appended to ``$HOME_DERP_ENGINE_PLUGIN_LOG`` (one JSON object per line: plugin, pid,
method, urn), so a test can say which plugins the engine started and what it asked of them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final

import grpc
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from tests.provider_host import UNKNOWN, _Unknown, from_struct, to_struct

LOG_ENV: Final = "HOME_DERP_ENGINE_PLUGIN_LOG"
_log_lock = threading.Lock()


def log_call(plugin: str, method: str, urn: str = "", **extra: Any) -> None:
    """One line per call in the plugin log (see the module docstring)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    entry = {"plugin": plugin, "pid": os.getpid(), "method": method, "urn": urn, **extra}
    with _log_lock, open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def note(plugin: str, message: str) -> None:
    """A line on stderr: the engine shows a plugin's stderr to the user (verbose runs keep it)."""
    print(f"{plugin}: {message}", file=sys.stderr, flush=True)


class ProviderError(Exception):
    """A failure the real provider would report; the message is what the engine shows."""


def is_unknown(value: Any) -> bool:
    if isinstance(value, _Unknown):
        return True
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_unknown(v) for v in value)
    return False


@dataclass
class Diff:
    """What changed between old and new inputs, by top-level key."""

    changed: list[str]
    replaces: list[str]
    unknown: bool = False


@dataclass
class ResourceType:
    """One resource type of a provider: its replace rules and its CRUD.

    ``force_new`` are the input keys whose change replaces the resource (the real provider's
    ForceNew / RequiresReplace). ``ignored`` are keys never compared (outputs echoed as inputs).
    """

    token: ClassVar[str]
    force_new: ClassVar[frozenset[str]] = frozenset()
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    provider: Provider = field(repr=False)

    def check(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **news}

    def diff(
        self, old_inputs: Mapping[str, Any], olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> Diff:
        keys = sorted(set(old_inputs) | set(news))
        changed = [k for k in keys if _comparable(old_inputs.get(k)) != _comparable(news.get(k))]
        unknown = any(is_unknown(news.get(k)) for k in changed)
        return Diff(changed, [k for k in changed if k in self.force_new], unknown)

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def update(
        self, urn: str, id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        raise ProviderError(f"{self.token}: no in-place update (every input replaces)")

    def delete(self, urn: str, id: str, olds: dict[str, Any]) -> None:
        return None

    def read(
        self, urn: str, id: str, olds: dict[str, Any], inputs: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """(id, state, inputs) as found live; None when the resource is gone."""
        return id, olds, inputs


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value


class Provider(provider_pb2_grpc.ResourceProviderServicer):
    """A provider plugin: its name, version, config, resource types and invokes."""

    name: ClassVar[str]
    version: ClassVar[str]
    types: ClassVar[Sequence[type[ResourceType]]] = ()

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self._types = {t.token: t(provider=self) for t in self.types}
        self.invokes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}

    # -- configuration

    def configured(self) -> None:
        """Called after ``Configure``: read ``self.config`` (engine names, e.g. ``host``)."""

    def _type(self, urn: str) -> ResourceType:
        token = urn.split("::")[2].split("$")[-1] if urn.count("::") >= 3 else urn
        try:
            return self._types[token]
        except KeyError:
            raise ProviderError(f"{self.name}: unknown resource type {token}") from None

    # -- the protocol

    def _guard(
        self, method: str, urn: str, context: grpc.ServicerContext, fn: Callable[[], Any]
    ) -> Any:
        log_call(self.name, method, urn)
        try:
            return fn()
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        except Exception:
            context.abort(grpc.StatusCode.UNKNOWN, traceback.format_exc())

    def GetPluginInfo(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> Any:
        return plugin_pb2.PluginInfo(version=self.version)

    def CheckConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        olds, _ = from_struct(request.olds)
        news, _ = from_struct(request.news)
        changed = [k for k in sorted(set(olds) | set(news)) if olds.get(k) != news.get(k)]
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME
            if changed
            else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed,
        )

    def Configure(self, request: Any, context: grpc.ServicerContext) -> Any:
        log_call(self.name, "Configure")
        args, _ = from_struct(request.args)
        variables = dict(request.variables)
        # ``variables`` are "<pkg>:config:<key>" (older engines) or ``args`` the structured form.
        config: dict[str, Any] = {}
        for key, value in variables.items():
            config[key.rsplit(":", 1)[-1]] = value
        config.update(args)
        self.config = config
        self.configured()
        return provider_pb2.ConfigureResponse(acceptSecrets=False, supportsPreview=False)

    def Invoke(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            fn = self.invokes.get(request.tok)
            if fn is None:
                raise ProviderError(f"{self.name}: unknown function {request.tok}")
            args, _ = from_struct(request.args)
            return provider_pb2.InvokeResponse(
                **{"return": to_struct(fn(args), accept_secrets=False)}
            )

        return self._guard("Invoke", request.tok, context, run)

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            olds, _ = from_struct(request.olds)
            news, _ = from_struct(request.news)
            checked = self._type(request.urn).check(olds, news)
            return provider_pb2.CheckResponse(inputs=to_struct(checked, accept_secrets=False))

        return self._guard("Check", request.urn, context, run)

    def Diff(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            olds, _ = from_struct(request.olds)
            news, _ = from_struct(request.news)
            old_inputs, _ = from_struct(request.old_inputs)
            ignore = set(request.ignoreChanges)
            kind = self._type(request.urn)
            diff = kind.diff(old_inputs or olds, olds, news)
            changed = [k for k in diff.changed if k not in ignore]
            replaces = [k for k in diff.replaces if k not in ignore]
            detailed = {
                k: provider_pb2.PropertyDiff(
                    kind=_kind(k in replaces, k in (old_inputs or olds), k in news),
                    inputDiff=True,
                )
                for k in changed
            }
            if not changed:
                changes = provider_pb2.DiffResponse.DIFF_NONE
            else:
                changes = provider_pb2.DiffResponse.DIFF_SOME
            return provider_pb2.DiffResponse(
                changes=changes,
                replaces=replaces,
                diffs=changed,
                detailedDiff=detailed,
                hasDetailedDiff=True,
            )

        return self._guard("Diff", request.urn, context, run)

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            inputs, _ = from_struct(request.properties)
            id_, outputs = self._type(request.urn).create(request.urn, inputs)
            return provider_pb2.CreateResponse(
                id=id_, properties=to_struct(outputs, accept_secrets=False)
            )

        return self._guard("Create", request.urn, context, run)

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            olds, _ = from_struct(request.olds)
            news, _ = from_struct(request.news)
            outputs = self._type(request.urn).update(request.urn, request.id, olds, news)
            return provider_pb2.UpdateResponse(properties=to_struct(outputs, accept_secrets=False))

        return self._guard("Update", request.urn, context, run)

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            olds, _ = from_struct(request.properties)
            self._type(request.urn).delete(request.urn, request.id, olds)
            return empty_pb2.Empty()

        return self._guard("Delete", request.urn, context, run)

    def Read(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            olds, _ = from_struct(request.properties)
            inputs, _ = from_struct(request.inputs)
            found = self._type(request.urn).read(request.urn, request.id, olds, inputs)
            if found is None:
                return provider_pb2.ReadResponse(id="")
            id_, state, live_inputs = found
            return provider_pb2.ReadResponse(
                id=id_,
                properties=to_struct(state, accept_secrets=False),
                inputs=to_struct(live_inputs, accept_secrets=False),
            )

        return self._guard("Read", request.urn, context, run)

    def Cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()


def _kind(replace: bool, had: bool, has: bool) -> Any:
    kinds = provider_pb2.PropertyDiff
    if not had:
        return kinds.ADD_REPLACE if replace else kinds.ADD
    if not has:
        return kinds.DELETE_REPLACE if replace else kinds.DELETE
    return kinds.UPDATE_REPLACE if replace else kinds.UPDATE


def serve(provider: Provider) -> None:
    """Serve on a free loopback port, print it (the engine reads it), wait to be killed."""
    log_call(provider.name, "start", argv=sys.argv[1:])
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[
            ("grpc.max_receive_message_length", 400 * 1024 * 1024),
            ("grpc.max_send_message_length", 400 * 1024 * 1024),
        ],
    )
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(provider, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop(0)


__all__ = [
    "UNKNOWN",
    "Diff",
    "Provider",
    "ProviderError",
    "ResourceType",
    "is_unknown",
    "log_call",
    "note",
    "serve",
    "struct_pb2",
]
