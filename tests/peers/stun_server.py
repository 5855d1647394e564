"""A strict STUN responder that behaves like derper's (tailscale.com@v1.102.5/net/stunserver).

It answers only Tailscale-formatted binding requests (SOFTWARE ``tailnode`` + a correct
FINGERPRINT: stun.ParseBindingRequest, net/stun/stun.go:87) with one XOR-MAPPED-ADDRESS
(stun.Response, stun.go:155), and stays silent for generic STUN requests (stunserver.go:83-91).
Each reply goes back with ``sendto`` to the request's source on the socket it came in on, like
``s.pc.WriteTo(res, ua)`` (stunserver.go:99).

Sockets: by default one per loopback address on one port (derper bound to an IP with
``-a [ip]:port``: replies leave from that IP). ``wildcard_socket()`` is derper's default instead:
``-a :443`` gives the STUN listener no IP (cmd/derper/derper.go:59,178-185), Go's
``net.ListenUDP("udp", ":3478")`` opens one dual-stack socket on ``[::]`` (stunserver.go:50), and
the kernel picks each reply's source address.

Knobs reproduce field failures: ``mapped`` forces the reported address (the docker-proxy
symptom, tailscale/tailscale#17565) and ``silent`` drops everything (a blocked STUN port).
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from components.netcheck.stun_codec import StunError, binding_response, parse_tailscale_request
from tests.peers.ports import LOOPBACKS, bind_same_port


def wildcard_socket(port: int = 0) -> socket.socket:
    """derper's STUN listener with ``-a :PORT``: UDP on ``[::]:port``, IPv4 mapped in (Go turns
    IPV6_V6ONLY off for a wildcard "udp" listener). Create it inside the namespace it serves."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
    except OSError:
        s.close()
        raise
    return s


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
        """derper's rule: silence unless the request is Tailscale's."""
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
                s.sendto(reply, addr)  # WriteTo: no source address chosen here
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
    wildcard: bool = False,
) -> Iterator[StrictStunServer]:
    """Strict responder on 127.0.0.1 and ::1 (same port), on one wildcard socket
    (``wildcard``), or on the sockets given."""
    if socks is None and wildcard:
        socks = [wildcard_socket()]
    server = StrictStunServer(socks, mapped=mapped, silent=silent)
    try:
        yield server
    finally:
        server.close()
