"""A relay host whose kernel prefers a temporary (privacy) IPv6 address, and a client facing it.

Two network namespaces joined by a veth pair, nothing else (no address in the caller's
namespace). The relay side holds a stable address (``stable``, the one a DNS record publishes)
flagged ``mngtmpaddr`` with ``use_tempaddr=2``, so its kernel derives a real temporary address
from it (``temporary``) and prefers it as the source of anything it sends to the client (RFC
6724 §5 rule 7 "prefer temporary addresses"; use_tempaddr in
https://docs.kernel.org/networking/ip-sysctl.html). The same trick makes real temporary addresses
in tests/test_ipv6.py. DAD is off on both ends so the addresses are usable at once.

Sockets of a side are made by ``relay.run(fn)`` / ``client.run(fn)`` (a thread inside that
namespace, tests.peers.netns.run_in_netns); everything is removed on exit.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from tests.peers.netns import run_in_netns

T = TypeVar("T")
PREFIX = "2001:db8:6724"  # documentation prefix (RFC 3849), only inside these namespaces
_counter = 0
_lock = threading.Lock()


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Side:
    namespace: str
    interface: str

    def run(self, fn: Callable[[], T]) -> T:
        return run_in_netns(self.namespace, fn)

    def sh(self, *argv: str) -> str:
        return _run("ip", "netns", "exec", self.namespace, *argv)


@dataclass(frozen=True)
class PrivacyHost:
    relay: Side
    client: Side
    stable: str  # the relay's published address (mngtmpaddr base)
    temporary: str  # the address its kernel prefers as source towards the client
    client_address: str

    def source_towards_client(self) -> str | None:
        """The source the relay's kernel picks for an unbound socket (``ip route get``)."""
        return _source_towards(self.relay, self.client_address)


def _cleanup_stale() -> None:
    out = _run("ip", "netns", "list")
    for m in re.finditer(r"^(nctmp(\d+)x\d+[rc])", out, re.M):
        if not os.path.exists(f"/proc/{m.group(2)}"):
            subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True, check=False)


def _source_towards(side: Side, destination: str) -> str | None:
    m = re.search(r"\bsrc (\S+)", side.sh("ip", "-6", "route", "get", destination))
    return m.group(1) if m else None


def _settled(out: str) -> bool:
    """No address in ``ip -o addr`` output is still being checked or unusable."""
    return not re.search(r"\b(tentative|dadfailed|deprecated)\b", out)


def _preferred_temporary(
    relay: Side, client: Side, stable: str, client_address: str, timeout: float
) -> str:
    """Wait until the kernel made a temporary address and prefers it towards the client, and the
    client's own global address is the source of what it sends to the relay.

    Both conditions matter: a probe sent while the client's address is not yet usable leaves from
    its link-local address, and the relay then answers from its own link-local address, which
    is neither address the tests are about.
    """
    deadline = time.monotonic() + timeout
    while True:
        out = relay.sh("ip", "-6", "-o", "addr", "show", "dev", relay.interface, "temporary")
        m = re.search(r"inet6 (\S+)/64 ", out)
        ready = (
            m is not None
            and _settled(relay.sh("ip", "-6", "-o", "addr", "show", "dev", relay.interface))
            and _settled(client.sh("ip", "-6", "-o", "addr", "show", "dev", client.interface))
            and _source_towards(relay, client_address) == m.group(1)
            and _source_towards(client, stable) == client_address
        )
        if ready and m is not None:
            return m.group(1)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the kernel made no preferred temporary address within {timeout:.0f}s, or the "
                "addresses did not settle (needs IPv6 privacy extensions, use_tempaddr):\n"
                + relay.sh("ip", "-6", "addr", "show", "dev", relay.interface)
                + client.sh("ip", "-6", "addr", "show", "dev", client.interface)
            )
        time.sleep(0.05)


@contextmanager
def privacy_host(timeout: float = 5.0) -> Iterator[PrivacyHost]:
    """Relay at PREFIX::9 (+ a kernel-made temporary address), client at PREFIX::1."""
    global _counter
    _cleanup_stale()
    with _lock:
        _counter += 1
        base = f"nctmp{os.getpid()}x{_counter}"
    relay, client = Side(f"{base}r", "eth0"), Side(f"{base}c", "eth0")
    stable, client_address = f"{PREFIX}::9", f"{PREFIX}::1"
    made: list[str] = []
    try:
        for side in (relay, client):
            _run("ip", "netns", "add", side.namespace)
            made.append(side.namespace)
            side.sh("ip", "link", "set", "lo", "up")
        _run(
            "ip", "-n", relay.namespace, "link", "add", relay.interface, "type", "veth",
            "peer", "name", client.interface, "netns", client.namespace,
        )  # fmt: skip
        for side in (relay, client):
            side.sh("sysctl", "-qw", f"net.ipv6.conf.{side.interface}.dad_transmits=0")
        relay.sh("sysctl", "-qw", f"net.ipv6.conf.{relay.interface}.use_tempaddr=2")
        for side in (relay, client):
            side.sh("ip", "link", "set", side.interface, "up")
        relay.sh(
            "ip", "-6", "addr", "add", f"{stable}/64", "dev", relay.interface, "mngtmpaddr",
            "nodad",
        )  # fmt: skip
        client.sh(
            "ip", "-6", "addr", "add", f"{client_address}/64", "dev", client.interface, "nodad"
        )
        temporary = _preferred_temporary(relay, client, stable, client_address, timeout)
        host = PrivacyHost(relay, client, stable, temporary, client_address)
        yield host
    finally:
        for name in made:  # deleting a namespace deletes the veth ends inside it
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
