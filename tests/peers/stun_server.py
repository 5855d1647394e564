"""A strict STUN responder written from reference/derp.md §4: it behaves like derper's.

It answers only Tailscale-formatted binding requests (SOFTWARE ``tailnode`` + a correct
FINGERPRINT) with one XOR-MAPPED-ADDRESS, and stays silent for generic STUN requests. Knobs
reproduce field failures: ``mapped`` forces the reported address (the docker-proxy symptom,
tailscale/tailscale#17565) and ``silent`` drops everything (a blocked STUN port).
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from components.netcheck.stun import StunError, binding_response, parse_tailscale_request
from tests.peers.ports import LOOPBACKS, bind_same_port


class StrictStunServer:
    def __init__(
        self,
        socks: list[socket.socket] | None = None,
        *,
        mapped: tuple[str, int] | None = None,
        silent: bool = False,
    ) -> None:
        self.socks = socks or bind_same_port(LOOPBACKS, socket.SOCK_DGRAM)
        self.port = int(self.socks[0].getsockname()[1])
        self.addresses = tuple(str(s.getsockname()[0]) for s in self.socks)
        self.mapped = mapped
        self.silent = silent
        self.received = 0
        self.answered = 0
        self.ignored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def reply_for(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        """derper's rule: silence unless the request is Tailscale's (§4)."""
        try:
            txid = parse_tailscale_request(data)
        except StunError:
            return None
        ip, port = self.mapped or (addr[0], addr[1])
        return binding_response(txid, ip, port)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(self.socks, [], [], 0.1)
            for s in ready:
                try:
                    data, addr = s.recvfrom(2048)
                except OSError:
                    continue
                self.received += 1
                reply = None if self.silent else self.reply_for(data, addr)
                if reply is None:
                    self.ignored += 1
                    continue
                s.sendto(reply, addr)
                self.answered += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for s in self.socks:
            s.close()


@contextmanager
def stun_server(
    socks: list[socket.socket] | None = None,
    *,
    mapped: tuple[str, int] | None = None,
    silent: bool = False,
) -> Iterator[StrictStunServer]:
    """Strict responder on 127.0.0.1 and ::1 (same port), or on the sockets given."""
    server = StrictStunServer(socks, mapped=mapped, silent=silent)
    try:
        yield server
    finally:
        server.close()
