"""Drive pulumi.dynamic's real provider server in-process, the way the engine does on `pulumi up`.

The Pulumi CLI cannot run on these machines, so nothing here executes `pulumi up`. What `up` does
with a Python dynamic resource is: start `python -m pulumi.dynamic` (the module
`pulumi/dynamic/__main__.py`), then send it gRPC `Configure`, `Check`, `Diff`, `Create`, `Update`,
`Delete`, `Read` requests whose properties carry the pickled provider in the `__provider` input.
This harness does exactly that inside the test process:

* the servicer class comes from the installed `pulumi/dynamic/__main__.py` itself: its source is
  compiled with only the trailing blocking ``main()`` call removed (importing the module would
  start a server and block forever). Each :class:`ProviderHost` gets a fresh copy of the module,
  so its provider cache behaves like one fresh provider process;
* the servicer is served by a real ``grpc.server`` on ``127.0.0.1:<free port>`` with pulumi's own
  channel options, and called through the generated ``ResourceProviderStub``: requests and replies
  are real protobuf messages, and a provider exception arrives as the engine sees it
  (``StatusCode.UNKNOWN`` with the traceback as details) — raised here as :class:`ProviderError`;
* dicts are turned into ``google.protobuf.Struct`` with ``pulumi.runtime.rpc.serialize_properties``
  and back with ``rpc.deserialize_properties`` (the functions the SDK and the server use).

Values in the dicts you pass:

* :data:`UNKNOWN` (or a ``pulumi.output.Unknown`` instance) is sent as the engine's unknown
  sentinel string ``04da6b54-80e4-46f7-96ec-b56ff0331ba9`` (what `preview` sends to Check/Diff
  for an output that is not known yet);
* :func:`secret` marks a value secret. The dynamic server answers ``Configure`` with
  ``acceptSecrets=False``, so, like the engine, the host then sends secrets as plain values; it
  sends the secret envelope only to a server that accepted secrets.

API (all methods block; ``timeout`` is the gRPC deadline in seconds, default 120)::

    with ProviderHost() as host:
        host.configure({"home-derp:validate": "enforce"})  -> ConfigureReply
        host.check(urn, olds, news)                         -> CheckReply(inputs, failures)
        host.diff(id, olds, news, urn=...)                  -> DiffReply(changes, replaces, ..)
        host.create(urn, props)                             -> CreateReply(id, outputs, secret_keys)
        host.update(id, olds, news, urn=...)                -> UpdateReply(outputs, secret_keys)
        host.delete(id, props, urn=...)                     -> None
        host.read(id, props, urn=..., inputs=None)          -> ReadReply(id, outputs, .., inputs)

    ProviderHost(process=True)        same API against the real `python -m pulumi.dynamic`
                                      child process (cwd = project root, as the engine runs
                                      it); host.stderr_text() is what the CLI would show

    provider_blob_for(factory)        the `__provider` string the program registers
    registered_inputs_for(factory)    every input of the one dynamic resource the factory registers
    capture_registrations(factory)    every resource registration (type, name, inputs, secret keys)
    urn_for(type_token, name, ...)    a URN like the engine builds it

``factory`` is a zero-argument callable that constructs resources (e.g.
``lambda: RelayValidation("v", RelayValidationArgs(...))``). It runs under a capturing
``pulumi.runtime.Mocks`` inside a *copy* of the current context, in its own thread, so whatever
mocks the caller (e.g. ``tests/conftest.py``) installed stay untouched. Pass ``mocks=`` to
delegate ``new_resource``/``call`` of other resource types to your own Mocks (for a whole
component); registrations are captured either way.

Every request goes to the same provider cache the real server has: the first request that carries
a given `__provider` blob unpickles it and calls its ``configure()`` with the config of the last
``Configure``. As in the engine, call :meth:`ProviderHost.configure` first.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import pulumi
import pulumi.runtime
from google.protobuf import struct_pb2
from pulumi.output import Unknown
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

__all__ = [
    "PROVIDER_KEY",
    "UNKNOWN",
    "CheckReply",
    "ConfigureReply",
    "CreateReply",
    "DiffReply",
    "ProviderError",
    "ProviderHost",
    "ReadReply",
    "Registration",
    "UpdateReply",
    "capture_registrations",
    "provider_blob_for",
    "registered_inputs_for",
    "secret",
    "urn_for",
]

PROVIDER_KEY = "__provider"
UNKNOWN_SENTINEL: str = rpc.UNKNOWN  # "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
UNKNOWN: Unknown = pulumi.output.UNKNOWN  # pass this where the engine would send an unknown
DEFAULT_TIMEOUT = 120.0
PROJECT_ROOT = os.fspath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Secret:
    """A value the engine would send as a secret (see :func:`secret`)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"secret({self.value!r})"


def secret(value: Any) -> Any:
    """Mark ``value`` as secret in a request (plain when the server did not accept secrets)."""
    return _Secret(value)


class ProviderError(Exception):
    """The provider server aborted a request: what `pulumi up` would print for the resource."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method} failed ({code.name}):\n{details}")
        self.method = method
        self.code = code
        self.details = details


@dataclass(frozen=True)
class ConfigureReply:
    accept_secrets: bool
    accept_resources: bool
    supports_preview: bool


@dataclass(frozen=True)
class CheckReply:
    inputs: dict[str, Any]
    failures: list[tuple[str, str]]  # (property, reason)


@dataclass(frozen=True)
class DiffReply:
    changes: Literal["some", "none", "unknown"]
    replaces: list[str]
    delete_before_replace: bool
    diffs: list[str]


@dataclass(frozen=True)
class CreateReply:
    id: str
    outputs: dict[str, Any]  # secrets unwrapped; their top-level keys are in secret_keys
    secret_keys: frozenset[str]


@dataclass(frozen=True)
class UpdateReply:
    outputs: dict[str, Any]
    secret_keys: frozenset[str]


@dataclass(frozen=True)
class ReadReply:
    id: str
    outputs: dict[str, Any]
    secret_keys: frozenset[str]
    inputs: dict[str, Any] | None


@dataclass(frozen=True)
class Registration:
    """One RegisterResource call as the (mock) monitor received it."""

    typ: str
    name: str
    inputs: dict[str, Any]  # secrets unwrapped; their top-level keys are in secret_keys
    secret_keys: frozenset[str] = field(default_factory=frozenset)


# --------------------------------------------------------------------------------------------
# Loading the real servicer


def _load_dynamic_main() -> types.ModuleType:
    """Compile pulumi/dynamic/__main__.py without its final blocking ``main()`` call."""
    spec = importlib.util.find_spec("pulumi.dynamic.__main__")
    if spec is None or spec.origin is None:
        raise RuntimeError("pulumi.dynamic.__main__ is not installed")
    with open(spec.origin, encoding="utf-8") as fh:
        source = fh.read()
    tree = ast.parse(source, filename=spec.origin)
    last = tree.body[-1]
    is_main_call = (
        isinstance(last, ast.Expr)
        and isinstance(last.value, ast.Call)
        and isinstance(last.value.func, ast.Name)
        and last.value.func.id == "main"
    )
    if not is_main_call:
        raise RuntimeError(
            f"{spec.origin} no longer ends with a bare main() call; update tests/provider_host.py"
        )
    tree.body.pop()
    module = types.ModuleType("pulumi.dynamic.__main__")
    module.__file__ = spec.origin
    module.__package__ = "pulumi.dynamic"
    # Same file name in tracebacks as the real server, so a ProviderError reads like the real one.
    exec(compile(tree, spec.origin, "exec"), module.__dict__)
    return module


def _servicer_class(module: types.ModuleType) -> type:
    from pulumi.runtime.proto import ResourceProviderServicer

    named = getattr(module, "DynamicResourceProviderServicer", None)
    if isinstance(named, type):
        return named
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, ResourceProviderServicer)
        and v is not ResourceProviderServicer
    ]
    if len(found) != 1:
        raise RuntimeError(f"cannot find the dynamic provider servicer in {module.__file__}")
    return found[0]


def _channel_options() -> Any:
    # The options pulumi's own server and clients use (message size limits).
    return _GRPC_CHANNEL_OPTIONS


# --------------------------------------------------------------------------------------------
# struct <-> dict


def _run_coro(coro: Any) -> Any:
    """Run a coroutine to completion, also when the caller is inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _engine_value(value: Any, accept_secrets: bool) -> Any:
    """Replace test markers with what the engine puts on the wire."""
    if isinstance(value, Unknown):
        return UNKNOWN_SENTINEL
    if isinstance(value, _Secret):
        inner = _engine_value(value.value, accept_secrets)
        return rpc.wrap_rpc_secret(inner) if accept_secrets else inner
    if isinstance(value, Mapping):
        return {k: _engine_value(v, accept_secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_engine_value(v, accept_secrets) for v in value]
    return value


def to_struct(props: Mapping[str, Any], *, accept_secrets: bool = False) -> struct_pb2.Struct:
    """A property dict as the engine would send it (see the module docstring for markers)."""
    wire = _engine_value(dict(props), accept_secrets)
    struct: struct_pb2.Struct = _run_coro(rpc.serialize_properties(wire, {}))
    return struct


def from_struct(struct: struct_pb2.Struct) -> tuple[dict[str, Any], frozenset[str]]:
    """A reply's properties as a dict (unknowns as ``Unknown``), plus the keys that were secret."""
    props = rpc.deserialize_properties(struct, keep_unknowns=True)
    out: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in props.items():
        if rpc.is_rpc_secret(value):
            secret_keys.add(key)
            value = rpc.unwrap_rpc_secret(value)
        out[key] = value
    return out, frozenset(secret_keys)


def _config_string(value: Any) -> str:
    """The engine's flat form of one config value: strings as-is, everything else as JSON."""
    if isinstance(value, _Secret):
        value = value.value
    return value if isinstance(value, str) else json.dumps(value)


def _urn_type(urn: str) -> str:
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else ""


def urn_for(
    type_token: str,
    name: str,
    *,
    project: str = "home-derp",
    stack: str = "home",
    parent_type: str | None = None,
) -> str:
    """A URN as the engine builds it; ``parent_type`` for a child of a component."""
    qualified = f"{parent_type}${type_token}" if parent_type else type_token
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


# --------------------------------------------------------------------------------------------
# The host


_CHANGES: dict[int, Literal["some", "none", "unknown"]] = {
    provider_pb2.DiffResponse.DIFF_SOME: "some",
    provider_pb2.DiffResponse.DIFF_NONE: "none",
    provider_pb2.DiffResponse.DIFF_UNKNOWN: "unknown",
}


class _SettingsGuard:
    """Undo what the server's ``get_provider`` does to pulumi's process-wide settings defaults.

    ``get_provider`` calls ``pulumi.runtime.configure(Settings(...))`` in the gRPC worker thread.
    The settings are ContextVars, but ``ContextProperty.fset`` also rewrites its *fallback default*
    when the thread's value is None — which a fresh worker thread's always is. In a real provider
    process that is harmless; here it would leak into the test process, so restore the defaults.
    Each ``with`` keeps its own snapshot, so a guard may be shared between threads.
    """

    def __init__(self) -> None:
        self._props = [
            v
            for klass in type(pulumi_settings.SETTINGS).__mro__
            for v in vars(klass).values()
            if hasattr(v, "_ContextProperty__default")
        ]

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        saved = [p._ContextProperty__default for p in self._props]
        try:
            yield
        finally:
            for prop, value in zip(self._props, saved, strict=True):
                prop._ContextProperty__default = value


class ProviderHost:
    """An engine-like client for one `python -m pulumi.dynamic` server.

    By default the server runs in-process (see the module docstring). ``process=True`` instead
    starts the real ``python -m pulumi.dynamic`` as a child process with ``cwd`` (default: the
    project root) as its working directory — the way the engine launches it — reads the port it
    prints and talks to it over the same stub; its stderr is kept for :meth:`stderr_text`.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        process: bool = False,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.accept_secrets = False
        self._guard = _SettingsGuard()
        self._server: grpc.Server | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        options = _channel_options()
        if process:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 lives as long as the host
            self._process = subprocess.Popen(
                [sys.executable, "-u", "-m", "pulumi.dynamic"],
                cwd=os.fspath(cwd) if cwd is not None else PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
            assert self._process.stdout is not None
            line = self._process.stdout.readline().decode().strip()
            if not line.isdigit():
                self.close()
                raise RuntimeError(f"python -m pulumi.dynamic did not print a port: {line!r}")
            port = int(line)
        else:
            self.module = _load_dynamic_main()
            self.servicer = _servicer_class(self.module)()
            # Same construction as the module's main(): 4 worker threads, pulumi's options.
            self._server = grpc.server(
                concurrent.futures.ThreadPoolExecutor(max_workers=4), options=options
            )
            provider_pb2_grpc.add_ResourceProviderServicer_to_server(self.servicer, self._server)
            port = self._server.add_insecure_port("127.0.0.1:0")
            self._server.start()
        self.address = f"127.0.0.1:{port}"
        self._channel = grpc.insecure_channel(self.address, options=options)
        self.stub = provider_pb2_grpc.ResourceProviderStub(self._channel)

    # -- lifecycle
    def close(self) -> None:
        if getattr(self, "_channel", None) is not None:
            self._channel.close()
        if self._server is not None:
            self._server.stop(grace=None).wait()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def stderr_text(self) -> str:
        """What the child process wrote to stderr so far (``process=True`` only)."""
        if self._stderr is None:
            raise RuntimeError("stderr is only kept for ProviderHost(process=True)")
        self._stderr.seek(0)
        return bytes(self._stderr.read()).decode(errors="replace")

    def __enter__(self) -> ProviderHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._stderr is not None:
            self._stderr.close()

    # -- plumbing
    def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        with self._guard():
            try:
                return getattr(self.stub, method)(
                    request, timeout=self.timeout if timeout is None else timeout
                )
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
                details = err.details() if hasattr(err, "details") else str(err)
                raise ProviderError(method, code, details or "") from None

    def _struct(self, props: Mapping[str, Any]) -> struct_pb2.Struct:
        return to_struct(props, accept_secrets=self.accept_secrets)

    # -- the engine's calls
    def configure(
        self, variables: Mapping[str, Any], *, timeout: float | None = None
    ) -> ConfigureReply:
        """Send stack config (``"home-derp:validate": "warn"``, ``"tailscale:apiKey": secret(..)``).

        ``variables`` holds the flat string form, ``args`` the structured form (secrets wrapped, as
        the engine sends them before it knows whether the provider accepts secrets).
        """
        flat = {k: _config_string(v) for k, v in variables.items()}
        request = provider_pb2.ConfigureRequest(
            variables=flat,
            args=to_struct(variables, accept_secrets=True),
            acceptSecrets=True,
            acceptResources=True,
        )
        reply = self._call("Configure", request, timeout)
        self.accept_secrets = bool(reply.acceptSecrets)
        return ConfigureReply(
            accept_secrets=bool(reply.acceptSecrets),
            accept_resources=bool(reply.acceptResources),
            supports_preview=bool(reply.supportsPreview),
        )

    def check(
        self,
        urn: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> CheckReply:
        request = provider_pb2.CheckRequest(
            urn=urn,
            olds=self._struct(olds),
            news=self._struct(news),
            randomSeed=b"\x00" * 32,
            name=urn.rsplit("::", 1)[-1],
            type=_urn_type(urn),
        )
        reply = self._call("Check", request, timeout)
        inputs, _ = from_struct(reply.inputs)
        return CheckReply(inputs, [(f.property, f.reason) for f in reply.failures])

    def diff(
        self,
        id: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        *,
        urn: str = "",
        timeout: float | None = None,
    ) -> DiffReply:
        request = provider_pb2.DiffRequest(
            id=id, urn=urn, olds=self._struct(olds), news=self._struct(news)
        )
        reply = self._call("Diff", request, timeout)
        return DiffReply(
            changes=_CHANGES[reply.changes],
            replaces=list(reply.replaces),
            delete_before_replace=bool(reply.deleteBeforeReplace),
            diffs=list(reply.diffs),
        )

    def create(
        self, urn: str, props: Mapping[str, Any], *, timeout: float | None = None
    ) -> CreateReply:
        request = provider_pb2.CreateRequest(
            urn=urn, properties=self._struct(props), timeout=timeout or self.timeout
        )
        reply = self._call("Create", request, timeout)
        outputs, secret_keys = from_struct(reply.properties)
        return CreateReply(reply.id, outputs, secret_keys)

    def update(
        self,
        id: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        *,
        urn: str = "",
        timeout: float | None = None,
    ) -> UpdateReply:
        request = provider_pb2.UpdateRequest(
            id=id,
            urn=urn,
            olds=self._struct(olds),
            news=self._struct(news),
            timeout=timeout or self.timeout,
        )
        reply = self._call("Update", request, timeout)
        outputs, secret_keys = from_struct(reply.properties)
        return UpdateReply(outputs, secret_keys)

    def delete(
        self, id: str, props: Mapping[str, Any], *, urn: str = "", timeout: float | None = None
    ) -> None:
        request = provider_pb2.DeleteRequest(
            id=id, urn=urn, properties=self._struct(props), timeout=timeout or self.timeout
        )
        self._call("Delete", request, timeout)

    def read(
        self,
        id: str,
        props: Mapping[str, Any],
        *,
        urn: str = "",
        inputs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ReadReply:
        request = provider_pb2.ReadRequest(
            id=id,
            urn=urn,
            properties=self._struct(props),
            inputs=self._struct(inputs) if inputs is not None else None,
        )
        reply = self._call("Read", request, timeout)
        outputs, secret_keys = from_struct(reply.properties)
        new_inputs = from_struct(reply.inputs)[0] if reply.HasField("inputs") else None
        return ReadReply(reply.id, outputs, secret_keys, new_inputs)


# --------------------------------------------------------------------------------------------
# What the program registers


class _CapturingMocks(pulumi.runtime.Mocks):
    def __init__(self, delegate: pulumi.runtime.Mocks | None) -> None:
        self.delegate = delegate
        self.registrations: list[Registration] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        inputs: dict[str, Any] = {}
        secret_keys: set[str] = set()
        for key, value in args.inputs.items():
            if rpc.is_rpc_secret(value):
                secret_keys.add(key)
                value = rpc.unwrap_rpc_secret(value)
            inputs[key] = value
        self.registrations.append(Registration(args.typ, args.name, inputs, frozenset(secret_keys)))
        if self.delegate is not None:
            return self.delegate.new_resource(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        if self.delegate is not None:
            return self.delegate.call(args)
        return {}


def capture_registrations(
    factory: Callable[[], object],
    *,
    mocks: pulumi.runtime.Mocks | None = None,
    preview: bool = False,
    project: str = "home-derp",
    stack: str = "home",
) -> list[Registration]:
    """Run ``factory`` under capturing mocks and return every resource it registered.

    Runs in a copy of the caller's context on a separate thread, so the caller's mocks, root stack
    resource and event loop are not touched. ``preview=True`` runs like `pulumi preview`.
    """
    capturing = _CapturingMocks(mocks)
    context = contextvars.copy_context()
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        from pulumi.runtime.stack import run_pulumi_func
        from pulumi.runtime.sync_await import _sync_await

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def body() -> None:
            factory()

        try:
            # Our own root Stack, output set and lock: the copied context still holds the
            # caller's, and run_pulumi_func would wait on (and clear) the caller's pending outputs.
            pulumi_settings.ROOT.set(None)
            pulumi_settings.SETTINGS.outputs = set()
            pulumi_settings.SETTINGS.lock = threading.Lock()
            pulumi.runtime.set_mocks(capturing, project=project, stack=stack, preview=preview)
            _sync_await(run_pulumi_func(body))
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def in_context() -> None:
        context.run(run)

    with _SettingsGuard()():
        thread = threading.Thread(target=in_context, name="provider-host-capture")
        thread.start()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return capturing.registrations


def registered_inputs_for(
    factory: Callable[[], object], *, mocks: pulumi.runtime.Mocks | None = None, **kw: Any
) -> dict[str, Any]:
    """Inputs (with `__provider`) of the single dynamic resource ``factory`` registers."""
    dynamic = [
        r
        for r in capture_registrations(factory, mocks=mocks, **kw)
        if r.typ.startswith("pulumi-python:dynamic")
    ]
    if len(dynamic) != 1:
        raise AssertionError(f"expected one dynamic resource, got {[r.typ for r in dynamic]}")
    return dynamic[0].inputs


def provider_blob_for(
    factory: Callable[[], object], *, mocks: pulumi.runtime.Mocks | None = None
) -> str:
    """The `__provider` blob (base64 dill pickle) exactly as the program registers it."""
    blob = registered_inputs_for(factory, mocks=mocks)[PROVIDER_KEY]
    if not isinstance(blob, str):
        raise AssertionError(f"__provider is not a string: {type(blob)}")
    base64.b64decode(blob, validate=True)
    return blob
