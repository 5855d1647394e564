"""Sockets bound to one port number on several loopback addresses (127.0.0.1 and ::1).

A relay listens on the same port for every address family, like derper's ``-a :PORT``.
"""

from __future__ import annotations

import ipaddress
import socket

LOOPBACKS = ("127.0.0.1", "::1")


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def bind_same_port(
    hosts: tuple[str, ...] = LOOPBACKS, kind: socket.SocketKind = socket.SOCK_STREAM
) -> list[socket.socket]:
    """Bound (and, for TCP, listening) sockets sharing one free port on every host."""
    for _ in range(50):
        socks: list[socket.socket] = []
        try:
            port = 0
            for host in hosts:
                s = socket.socket(family_of(host), kind)
                socks.append(s)
                if family_of(host) == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((host, port))
                port = s.getsockname()[1]
                if kind == socket.SOCK_STREAM:
                    s.listen(128)
            return socks
        except OSError:
            for s in socks:
                s.close()
    raise RuntimeError(f"no port free on all of {hosts}")


def free_port(
    hosts: tuple[str, ...] = LOOPBACKS, kind: socket.SocketKind = socket.SOCK_DGRAM
) -> int:
    """A port free (at this instant) on every host; for peers that bind by themselves."""
    socks = bind_same_port(hosts, kind)
    port = int(socks[0].getsockname()[1])
    for s in socks:
        s.close()
    return port
