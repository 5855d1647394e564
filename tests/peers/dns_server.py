"""A tiny authoritative DNS server (dnspython) on loopback for the ``dns`` check.

Answers A/AAAA from a table the test sets, NXDOMAIN for unknown names, or nothing at all
(``silent``) to exercise the resolver timeout. Use as ``RelayTarget.resolvers=(server.spec,)``.
``lookup`` answers from elsewhere instead (any type: ``(name, type) → rdata texts``, None for a
name that does not exist), e.g. from the Cloudflare API peer's records; ``port`` binds a fixed
port (53 on an address inside a test's namespace).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

Lookup = Callable[[str, str], "list[str] | None"]


class DnsServer:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, lookup: Lookup | None = None
    ) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.lookup = lookup
        self.silent = False
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        )
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def spec(self) -> str:
        """The resolver as netcheck accepts it: ``IP:PORT`` / ``[IPv6]:PORT``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def set(self, name: str, rdtype: str, values: list[str]) -> None:
        self.records[(name.rstrip(".").lower(), rdtype.upper())] = list(values)

    def set_addresses(self, name: str, addresses: list[str]) -> None:
        self.set(name, "AAAA", [a for a in addresses if ":" in a])
        self.set(name, "A", [a for a in addresses if ":" not in a])

    def _answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        q = query.question[0]
        name = q.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(q.rdtype)
        self.queries.append((name, rdtype))
        if self.lookup is not None:
            found = self.lookup(name, rdtype)
            if found is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif found:
                response.answer.append(dns.rrset.from_text_list(q.name, 60, "IN", rdtype, found))
            return response.to_wire()
        known = {n for n, _ in self.records}
        if name not in known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif values := self.records.get((name, rdtype)):
            response.answer.append(dns.rrset.from_text_list(q.name, 60, "IN", rdtype, values))
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, addr = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.silent:
                continue
            reply = self._answer(wire)
            if reply:
                self._sock.sendto(reply, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@contextmanager
def dns_server(
    host: str = "127.0.0.1", port: int = 0, lookup: Lookup | None = None
) -> Iterator[DnsServer]:
    server = DnsServer(host, port, lookup)
    try:
        yield server
    finally:
        server.close()
