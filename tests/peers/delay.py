"""A userspace UDP/TCP delay relay: this kernel has no ``tc netem`` (docs/testing.md).

Every datagram or TCP chunk is forwarded after ``rtt_ms / 2`` in each direction, so a peer
behind it is ``rtt_ms`` away. Ordering is kept (a FIFO per direction). Runs on a BackgroundLoop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from tests.peers.aio import BackgroundLoop, background_loop
from tests.peers.ports import family_of


class _UdpFront(asyncio.DatagramProtocol):
    def __init__(self, relay: DelayRelay, target: tuple[str, int]) -> None:
        self.relay = relay
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.backs: dict[Any, socket.socket] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        loop = asyncio.get_running_loop()
        back = self.backs.get(addr)
        if back is None:  # one upstream socket per client, like a NAT mapping
            back = socket.socket(family_of(self.target[0]), socket.SOCK_DGRAM)
            back.setblocking(False)
            back.connect(self.target)
            self.backs[addr] = back
            loop.add_reader(back, self._from_back, back, addr)
            self.relay.sockets.append(back)
        loop.call_later(self.relay.one_way, self._send_back, back, data)

    @staticmethod
    def _send_back(back: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):
            back.send(data)

    def _from_back(self, back: socket.socket, addr: Any) -> None:
        try:
            data = back.recv(65535)
        except OSError:
            return
        loop = asyncio.get_running_loop()
        if self.transport is not None:
            loop.call_later(self.relay.one_way, self.transport.sendto, data, addr)


class DelayRelay:
    def __init__(self, bg: BackgroundLoop, rtt_ms: float) -> None:
        self.bg = bg
        self.one_way = rtt_ms / 2000.0
        self.sockets: list[socket.socket] = []
        self._closers: list[Any] = []

    def add_udp(self, listen_host: str, target: tuple[str, int], port: int = 0) -> int:
        """Listen on UDP ``port`` (0: free) of ``listen_host``; forward to ``target``; the port."""

        async def start() -> int:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpFront(self, target), local_addr=(listen_host, port)
            )
            self._closers.append(transport.close)
            return int(transport.get_extra_info("sockname")[1])

        return self.bg.run(start())

    def add_tcp(self, listen_host: str, target: tuple[str, int], port: int = 0) -> int:
        """Listen on TCP ``port`` (0: free) of ``listen_host``; forward to ``target``; the port."""

        async def start() -> int:
            server = await asyncio.start_server(self._tcp_conn(target), listen_host, port)
            self._closers.append(server.close)
            return int(server.sockets[0].getsockname()[1])

        return self.bg.run(start())

    def _tcp_conn(self, target: tuple[str, int]) -> Any:
        async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            try:
                ur, uw = await asyncio.open_connection(*target)
            except OSError:
                cw.close()
                return
            await asyncio.gather(self._pump(cr, uw), self._pump(ur, cw), return_exceptions=True)
            cw.close()
            uw.close()

        return handle

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def rx() -> None:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.one_way, data))
            queue.put_nowait((loop.time() + self.one_way, b""))

        async def tx() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        await asyncio.gather(rx(), tx())

    def close(self) -> None:
        def shut() -> None:
            for c in self._closers:
                c()
            loop = asyncio.get_event_loop()
            for s in self.sockets:
                loop.remove_reader(s)
                s.close()

        self.bg.loop.call_soon_threadsafe(shut)


@contextmanager
def delay_relay(rtt_ms: float, bg: BackgroundLoop | None = None) -> Iterator[DelayRelay]:
    """A relay adding ``rtt_ms`` of round trip; owns a BackgroundLoop unless one is given."""
    with contextlib.ExitStack() as stack:
        loop = bg or stack.enter_context(background_loop())
        relay = DelayRelay(loop, rtt_ms)
        try:
            yield relay
        finally:
            relay.close()


class UdpEcho:
    """Raw UDP echo (the precision baseline of the benchmark)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        import threading

        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
