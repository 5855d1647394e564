"""What the engine hands a dynamic provider, made comparable (shared by validation and tailnet).

Unknown values arrive during preview as ``pulumi.output.Unknown`` or as the wire sentinel string,
possibly nested; numbers come back from protobuf as floats
(docs/upstream/pulumi.md#dynamic-provider-preview).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi.output import Unknown
from pulumi.runtime import rpc


def is_unknown(value: Any) -> bool:
    """True for a value (or a value inside a list/dict) the engine does not know yet."""
    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_unknown(v) for v in value)
    return False


def plain(value: Any) -> Any:
    """Undo the wire format: protobuf numbers come back as floats (900 → 900.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
