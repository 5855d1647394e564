"""A TCP listener that accepts and never speaks: a stalled service (TLS handshake timeout)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from tests.peers.ports import LOOPBACKS, bind_same_port


@contextmanager
def silent_tcp(hosts: tuple[str, ...] = LOOPBACKS) -> Iterator[int]:
    """Yield the port; the kernel completes the TCP handshake, nobody ever reads or writes."""
    socks = bind_same_port(hosts, socket.SOCK_STREAM)
    try:
        yield int(socks[0].getsockname()[1])
    finally:
        for s in socks:
            s.close()
