"""Hosts with their own addresses: a network namespace joined to ours by a veth pair.

``ip netns add`` + veth with IPv4 /24 and IPv6 /64 (``nodad``: usable at once). Sockets for
servers "on that host" are created inside the namespace by a thread that ``setns()``-es into it
(a socket keeps its namespace for life), so in-process peers can live there. The kernel has no
netem: latency comes from tests.peers.delay. Everything is removed on exit.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_counter = 0
_lock = threading.Lock()


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a thread inside namespace ``name`` and return its result."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns({name})")
        finally:
            os.close(fd)
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


@dataclass(frozen=True)
class NetnsHost:
    name: str
    v4: str  # the namespace's addresses
    v6: str
    gateway_v4: str  # our side of the veth
    gateway_v6: str

    @property
    def addresses(self) -> tuple[str, str]:
        return (self.v4, self.v6)

    def run(self, fn: Callable[[], T]) -> T:
        return run_in_netns(self.name, fn)


def _cleanup_stale() -> None:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for m in re.finditer(r"^nck(\d+)x\d+", out, re.M):
        if not os.path.exists(f"/proc/{m.group(1)}"):
            subprocess.run(["ip", "netns", "del", m.group(0)], check=False)


def _free_subnet() -> int:
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        n = random.randrange(1, 250)
        if f"10.213.{n}." not in used:
            return n
    raise RuntimeError("no free 10.213.x.0/24 subnet")


@contextmanager
def netns_host() -> Iterator[NetnsHost]:
    """A namespace at 10.213.N.2 / fd42:213:N::2, reachable from here via a veth pair."""
    global _counter
    _cleanup_stale()
    with _lock:
        _counter += 1
        name = f"nck{os.getpid()}x{_counter}"
    n = _free_subnet()
    outer, inner = f"{name}a"[-15:], f"{name}b"[-15:]
    host = NetnsHost(name, f"10.213.{n}.2", f"fd42:213:{n}::2", f"10.213.{n}.1", f"fd42:213:{n}::1")
    _ip("netns", "add", name)
    try:
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", name)
        _ip("addr", "add", f"{host.gateway_v4}/24", "dev", outer)
        _ip("-6", "addr", "add", f"{host.gateway_v6}/64", "dev", outer, "nodad")
        _ip("link", "set", outer, "up")
        ns = ["netns", "exec", name, "ip"]
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "addr", "add", f"{host.v4}/24", "dev", inner)
        _ip(*ns, "-6", "addr", "add", f"{host.v6}/64", "dev", inner, "nodad")
        _ip(*ns, "link", "set", inner, "up")
        yield host
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
