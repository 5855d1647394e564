"""MeshKey: the pre-shared key the derpers of one region mesh with, generated once, kept secret.

derper's ``-mesh-psk-file`` holds 64 hex characters (tailscale.com@v1.102.5/cmd/derper/derper.go:74,
parsed by types/key/derp.go:61-71); a client that presents it is a mesh peer: it may watch the
server's connections and forward packets, and it skips client verification
(docs/upstream/derper.md#mesh). Every node of the region needs the same key.

Why a dynamic resource: the key must be random, made once, and then stay the same for every later
``up`` and for both nodes — state is exactly that. The bridged ``random`` provider would do it too,
but the project does not depend on it and its plugin is not available to the tests' real-engine
harness; deriving the key from another secret (the certificate's private key) would rotate the
mesh whenever the certificate key changes and tie two unrelated secrets together. Here
``create`` draws 32 bytes from ``secrets``, ``diff`` never reports a change (no inputs), and the
output is marked secret by the resource (``additional_secret_outputs``), so the state holds it
encrypted and no log shows it.

The provider is stored in the stack state under its stable name ``MeshKey``
(components/dynamic_provider.py: moving the class is one line there). It captures nothing, so
its blob need not be secret.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any, Final

import pulumi
import pulumi.dynamic

from components.dynamic_provider import HomeDerpProvider, stored_reference_differs

TYPE_TOKEN: Final = "pulumi-python:dynamic/homederp:MeshKey"
#: What derper accepts (key.ParseDERPMesh: 32 bytes as 64 hex characters).
MESH_KEY: Final = re.compile(r"^[0-9a-f]{64}$")


def new_mesh_key() -> str:
    """32 random bytes as 64 lowercase hex characters."""
    return secrets.token_hex(32)


class MeshKeyProvider(HomeDerpProvider):
    """Create draws the key; nothing else ever changes it (see the module docstring; the base:
    components/dynamic_provider.py)."""

    NAME = "MeshKey"
    INPUT_KEYS = ()

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(uuid.uuid4().hex, {"key": new_mesh_key()})

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        # A key lost from the state (or never valid) is drawn again; otherwise it stays.
        valid = isinstance(olds.get("key"), str) and bool(MESH_KEY.match(olds["key"]))
        if not valid:
            return pulumi.dynamic.DiffResult(changes=True, replaces=["key"])
        # An older stored provider reference is refreshed; the key stays (base ``update``).
        return pulumi.dynamic.DiffResult(changes=stored_reference_differs(olds, news), replaces=[])

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_, {"key": props.get("key")})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class MeshKey(pulumi.dynamic.Resource, module="homederp", name="MeshKey"):
    """The region's mesh key; ``key`` is secret."""

    key: pulumi.Output[str]
    """64 lowercase hex characters, the content of derper's ``-mesh-psk-file``."""

    def __init__(self, resource_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["key"])
        super().__init__(
            MeshKeyProvider(),
            resource_name,
            {"key": None},
            pulumi.ResourceOptions.merge(opts, secret),
        )
