"""A TCP port on this namespace's loopback that leads to a port on another namespace's loopback.

A server bound to 127.0.0.1 inside a network namespace (sshd of tests/peers/sshd.py in the relay
host's namespace) cannot be reached from here. This forwarder listens on 127.0.0.1 here and, for
each connection, dials the target from a thread inside the namespace (a socket keeps the
namespace it was made in: tests/peers/netns.py), then copies bytes both ways unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from tests.peers.netns import run_in_netns


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def forward_into_netns(netns: str, port: int) -> Iterator[int]:
    """127.0.0.1:<yielded port> here → 127.0.0.1:``port`` inside ``netns``."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    open_sockets: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = run_in_netns(
                    netns, lambda: socket.create_connection(("127.0.0.1", port), timeout=5)
                )
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            open_sockets.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, name=f"forward-{netns}", daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for s in open_sockets:
            with contextlib.suppress(OSError):
                s.close()
        thread.join(5)
