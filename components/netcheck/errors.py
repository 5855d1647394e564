"""One exception tree for the checker: everything it raises on purpose is a NetcheckError.

Callers catch the precise class where they can do something useful (a probe turns a DerpError
into a failed check; the CLI turns a DerpMapError into an exit code) and nothing else, the way
encode/httpx roots its errors in ``httpx.HTTPError`` (httpx/_exceptions.py). The package is a
leaf (it imports nothing of the project), so the root does not derive from the program's own
error root.
"""

from __future__ import annotations

from typing import Any, Literal


class NetcheckError(Exception):
    """Root of every error this package raises on purpose."""


class StunError(NetcheckError):
    """A datagram that is not a usable STUN binding response/request."""


class HttpError(NetcheckError):
    """The peer did not speak HTTP/1.x, or closed the connection.

    ``kind`` is a stable token: ``closed`` (the connection ended before the first byte of a
    response: the only case a request may be retried, see http1.KeepAlive), ``reset``
    (the same, by a TCP reset), ``not-http``, ``truncated`` (closed mid-response), ``too-long``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    @property
    def nothing_received(self) -> bool:
        return self.kind in ("closed", "reset")


class TlsFailure(NetcheckError):
    """A classified TCP/TLS failure: ``kind`` is a stable token, detail/hint are for humans."""

    def __init__(
        self, kind: str, detail: str, hint: str | None, data: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.hint = hint
        self.data = data or {}


class DerpError(NetcheckError):
    """A broken DERP handshake; ``kind`` is a stable token for the diagnosis."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


DerpMapErrorKind = Literal["unreachable", "unreadable", "invalid"]


class DerpMapError(NetcheckError):
    """A DERP map that cannot be loaded or does not have the tailcfg.DERPMap shape.

    ``kind``: ``unreachable`` (a URL could not be fetched: the network, not the user's
    arguments, so the CLI exits "could not run"), ``unreadable`` (a file), ``invalid`` (shape).
    """

    def __init__(self, detail: str, kind: DerpMapErrorKind = "invalid") -> None:
        super().__init__(detail)
        self.kind: DerpMapErrorKind = kind
        self.detail = detail
