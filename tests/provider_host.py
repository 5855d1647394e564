"""Drive the real ``python -m pulumi.dynamic`` provider process the way the engine does.

`pulumi up` starts ``python -u -m pulumi.dynamic`` (with the project's virtualenv, in the project
directory), reads the port it prints, and sends it gRPC ``Configure``, ``Check``, ``Diff``,
``Create``, ``Update``, ``Delete`` and ``Read`` requests whose properties carry the pickled provider
in the ``__provider`` input (docs/upstream/pulumi.md#dynamic-provider-pickling). This harness does
exactly that and nothing else: a child process, the generated ``ResourceProviderStub`` that ships
with the SDK, and ``google.protobuf.Struct`` properties encoded the way the engine encodes them:

* an unknown value is the engine's sentinel string (pulumi/pulumi@1b5949891b
  sdk/go/common/resource/plugin/rpc.go:73, ``UnknownStringValue``) — pass :data:`UNKNOWN`;
* a secret is an object with the signature key ``4dabf18193072939515e22adb298388d`` set to
  ``1b47061264138c4ac30d75fd1eb44270`` and its ``value`` (sdk/go/common/resource/sig/sig.go:21-24)
  — sent only to a provider that accepted secrets in ``Configure``, plain otherwise, as the engine
  does; mark values with :func:`secret`;
* numbers travel as protobuf doubles (an int 900 arrives as 900.0).

No module of pulumi's is imported into this process except the generated protocol stubs, so the
tests keep working across SDK upgrades that do not change the protocol. A provider exception
arrives as the engine sees it (``StatusCode.UNKNOWN`` with the traceback as details) and is raised
as :class:`ProviderError`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import grpc
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

PROVIDER_KEY: Final = "__provider"
PROJECT_ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNKNOWN_SENTINEL: Final = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG_KEY: Final = "4dabf18193072939515e22adb298388d"
SECRET_SIG: Final = "1b47061264138c4ac30d75fd1eb44270"
DEFAULT_TIMEOUT: Final = 120.0
#: The engine's gRPC message size limit (pulumi/pulumi pkg/resource/plugin: 400 MB).
_CHANNEL_OPTIONS: Final = [
    ("grpc.max_receive_message_length", 400 * 1024 * 1024),
    ("grpc.max_send_message_length", 400 * 1024 * 1024),
]


class _Unknown:
    """Marker for a value the engine does not know yet (preview)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True)
class _Secret:
    value: Any


def secret(value: Any) -> Any:
    """Mark ``value`` as secret in a request."""
    return _Secret(value)


def is_secret_wire(value: Any) -> bool:
    """True for the engine's secret envelope."""
    return isinstance(value, Mapping) and value.get(SIG_KEY) == SECRET_SIG


class ProviderError(Exception):
    """The provider aborted a request: what `pulumi up` would print for the resource."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method} failed ({code.name}):\n{details}")
        self.method = method
        self.code = code
        self.details = details


@dataclass(frozen=True)
class CheckReply:
    inputs: dict[str, Any]
    failures: list[tuple[str, str]]


@dataclass(frozen=True)
class DiffReply:
    changes: Literal["some", "none", "unknown"]
    replaces: list[str]
    delete_before_replace: bool


@dataclass(frozen=True)
class CreateReply:
    id: str
    outputs: dict[str, Any]
    secret_keys: frozenset[str]


@dataclass(frozen=True)
class UpdateReply:
    outputs: dict[str, Any]
    secret_keys: frozenset[str]


@dataclass(frozen=True)
class ReadReply:
    id: str
    outputs: dict[str, Any]


_CHANGES: Final[dict[int, Literal["some", "none", "unknown"]]] = {
    provider_pb2.DiffResponse.DIFF_SOME: "some",
    provider_pb2.DiffResponse.DIFF_NONE: "none",
    provider_pb2.DiffResponse.DIFF_UNKNOWN: "unknown",
}


def _wire(value: Any, accept_secrets: bool) -> Any:
    if isinstance(value, _Unknown):
        return UNKNOWN_SENTINEL
    if isinstance(value, _Secret):
        inner = _wire(value.value, accept_secrets)
        return {SIG_KEY: SECRET_SIG, "value": inner} if accept_secrets else inner
    if isinstance(value, Mapping):
        return {str(k): _wire(v, accept_secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v, accept_secrets) for v in value]
    return value


def to_struct(props: Mapping[str, Any], *, accept_secrets: bool) -> struct_pb2.Struct:
    """Properties as the engine sends them."""
    struct = struct_pb2.Struct()
    json_format.ParseDict(_wire(dict(props), accept_secrets), struct)
    return struct


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def from_struct(struct: struct_pb2.Struct) -> tuple[dict[str, Any], frozenset[str]]:
    """A reply's properties (whole numbers as ints, secrets unwrapped) and its secret keys."""
    raw = json_format.MessageToDict(struct)
    out: dict[str, Any] = {}
    secrets: set[str] = set()
    for key, value in raw.items():
        if is_secret_wire(value):
            secrets.add(key)
            value = value.get("value")
        out[key] = UNKNOWN if value == UNKNOWN_SENTINEL else _plain(value)
    return out, frozenset(secrets)


class ProviderHost:
    """One real ``python -m pulumi.dynamic`` process and an engine-like client for it."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cwd: str = PROJECT_ROOT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env`` is the provider process's environment (default: this one's)."""
        self.timeout = timeout
        self.accept_secrets = False
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 lives as long as the host
        self._process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic"],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=dict(env) if env is not None else None,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode().strip()
        if not line.isdigit():
            self.close()
            raise RuntimeError(
                f"python -m pulumi.dynamic did not print a port: {line!r}\n{self.stderr_text()}"
            )
        self._channel = grpc.insecure_channel(f"127.0.0.1:{line}", options=_CHANNEL_OPTIONS)
        self.stub = provider_pb2_grpc.ResourceProviderStub(self._channel)

    def close(self) -> None:
        if getattr(self, "_channel", None) is not None:
            self._channel.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def stderr_text(self) -> str:
        """What the provider wrote to stderr so far (what the CLI shows the user)."""
        self._stderr.seek(0)
        return bytes(self._stderr.read()).decode(errors="replace")

    def __enter__(self) -> ProviderHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._stderr.close()

    def _call(self, method: str, request: Any, timeout: float | None) -> Any:
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

    def configure(self, variables: Mapping[str, Any], *, timeout: float | None = None) -> bool:
        """Send stack config (``"tailscale:apiKey": secret(...)``); True if secrets accepted.

        ``variables`` is the flat string form (secrets in clear: the engine decrypts config for
        its providers), ``args`` the structured form with secrets wrapped.
        """
        flat = {k: (v.value if isinstance(v, _Secret) else v) for k, v in variables.items()}
        request = provider_pb2.ConfigureRequest(
            variables={k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()},
            args=to_struct(variables, accept_secrets=True),
            acceptSecrets=True,
            acceptResources=True,
        )
        reply = self._call("Configure", request, timeout)
        self.accept_secrets = bool(reply.acceptSecrets)
        return self.accept_secrets

    def check(
        self,
        urn: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> CheckReply:
        request = provider_pb2.CheckRequest(
            urn=urn, olds=self._struct(olds), news=self._struct(news), randomSeed=b"\x00" * 32
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
        return DiffReply(_CHANGES[reply.changes], list(reply.replaces), reply.deleteBeforeReplace)

    def create(
        self, urn: str, props: Mapping[str, Any], *, timeout: float | None = None
    ) -> CreateReply:
        request = provider_pb2.CreateRequest(
            urn=urn, properties=self._struct(props), timeout=timeout or self.timeout
        )
        reply = self._call("Create", request, timeout)
        outputs, secrets = from_struct(reply.properties)
        return CreateReply(reply.id, outputs, secrets)

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
        outputs, secrets = from_struct(reply.properties)
        return UpdateReply(outputs, secrets)

    def delete(
        self, id: str, props: Mapping[str, Any], *, urn: str = "", timeout: float | None = None
    ) -> None:
        request = provider_pb2.DeleteRequest(
            id=id, urn=urn, properties=self._struct(props), timeout=timeout or self.timeout
        )
        self._call("Delete", request, timeout)

    def read(
        self, id: str, props: Mapping[str, Any], *, urn: str = "", timeout: float | None = None
    ) -> ReadReply:
        request = provider_pb2.ReadRequest(id=id, urn=urn, properties=self._struct(props))
        reply = self._call("Read", request, timeout)
        outputs, _ = from_struct(reply.properties)
        return ReadReply(reply.id, outputs)


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
