"""A faithful DERP server written from Tailscale's source, for tests.

The real derper (tests.peers.derper) proves the checker against the real thing; the fault
catalogue needs a server that misbehaves on purpose, so most DERP tests run against this one,
written from tailscale.com@v1.102.5:

* TLS >= 1.2 with ALPN http/1.1 only (cmd/derper/cert.go:165-167, derper.go:360), refusing an
  SNI other than ``hostname`` with an alert like derper's manual cert mode (cert.go:172-175,
  ``sni_check``); without certificates it serves plain HTTP (derper on a custom port without
  ``-certmode manual``, derper.go:190);
* ``/``, ``/robots.txt``, ``/derp/probe`` and ``/derp/latency-check`` (GET/HEAD 200 + CORS,
  405 otherwise: derp/derpserver/handler.go:75-83), ``/generate_204`` with the
  ``X-Tailscale-Challenge`` echo (handler.go:86-105), 426 for ``/derp`` without ``Upgrade``
  (handler.go:30-37); connections are kept alive like Go's net/http server;
* the upgrade: 101 + ``Derp-Version: 2`` + ``Derp-Public-Key`` (handler.go:55-63), FrameServerKey
  in the same flush, then FrameClientInfo decrypted with PyNaCl; with ``verify_clients`` a key
  outside ``allowed_keys`` gets the connection closed (derpserver.go:1028-1030), otherwise
  FrameServerInfo (nonce || box). Each rejection is written to ``log`` as derper logs it when
  its tailscaled answers that it does not know the key: ``derp: <addr>: client nodekey:<hex>
  rejected: peer nodekey:<hex> not authorized (not found in local tailscaled)`` (the error of
  ``accept``, derpserver.go:1028-1029, logged by derpserver.go:676; the reason :1593), so the
  checker can read derper's own verdict (``components.netcheck.admission``) here too.

``fault`` turns it into a broken relay: ``strip_upgrade`` (a proxy ate the Upgrade header → 426),
``web_server`` (some other web server: 404 everywhere), ``bad_magic``, ``key_mismatch`` (header
key ≠ frame key), ``no_challenge_echo``, ``no_server_key`` (101, then the connection closes),
``not_http`` (a TLS service that is not HTTP: it greets like OpenSSH and hangs up on a request).
Two variants are not faults but servers that do not keep connections alive, as Go's net/http
server does with keep-alives off (``close_after_response``: ``Connection: close`` on every
response, then the close, go1.26.8 src/net/http/server.go:1343-1345, 1512-1518) or when it shuts
an idle connection without saying so (``idle_close``: server.go:2085-2091).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from nacl.public import Box, PrivateKey, PublicKey

from components.netcheck import derp_codec
from components.netcheck.admission import wait_for_evidence
from components.netcheck.derp import Admission, AdmissionEvidence, EvidenceSource
from components.netcheck.errors import DerpError

FAULTS = (
    "strip_upgrade",
    "web_server",
    "bad_magic",
    "key_mismatch",
    "no_challenge_echo",
    "no_server_key",
    "not_http",
    "close_after_response",
    "idle_close",
)
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
CHALLENGE_RE = re.compile(r"^[a-zA-Z0-9._:-]{1,64}$")
GO_HTTP_ON_TLS = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
HOME = b"<html><body>\n<h1>DERP</h1>\n<p>This is a Tailscale DERP server.</p>\n</body></html>\n"


@dataclass
class DerpServerState:
    """What the server saw, for assertions."""

    client_infos: list[dict[str, Any]] = field(default_factory=list)
    admitted: list[bytes] = field(default_factory=list)
    rejected: list[bytes] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    """derper's log lines about clients (see the module docstring)."""


def server_ssl_context(
    cert_file: str, key_file: str, hostname: str, sni_check: bool
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert_file, key_file)

    def refuse_other_names(obj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
        # derper manual mode: "cert mismatch with hostname" → the handshake fails (cert.go:174)
        if name is not None and name != hostname and not _is_ip(hostname):
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    if sni_check:
        ctx.sni_callback = refuse_other_names
    return ctx


class _HeadWriter:
    """Drops the body of a response to HEAD (headers, including Content-Length, stay)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        self._writer.write(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")

    async def drain(self) -> None:
        await self._writer.drain()


def _addr_port(writer: Any) -> str:
    """The client's address as Go's netip.AddrPort prints it: ``1.2.3.4:5``, ``[::1]:5``."""
    peer = writer.get_extra_info("peername") if hasattr(writer, "get_extra_info") else None
    if not peer:
        return "unknown"
    host, port = str(peer[0]), int(peer[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class DerpServer:
    def __init__(
        self,
        *,
        hostname: str = "derp.test",
        private_key: PrivateKey | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        verify_clients: bool = False,
        allowed_keys: tuple[bytes, ...] = (),
        sni_check: bool = True,
        fault: str | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        self.hostname = hostname
        self.private_key = private_key or PrivateKey.generate()
        self.public_key = bytes(self.private_key.public_key)
        self.verify_clients = verify_clients
        self.allowed_keys = set(allowed_keys)
        self.fault = fault
        self.state = DerpServerState()
        self.ssl = (
            server_ssl_context(cert_file, key_file, hostname, sni_check)
            if cert_file and key_file
            else None
        )
        self._servers: list[asyncio.Server] = []
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def evidence(self, wait: float = 2.0) -> EvidenceSource:
        """derper's own verdict on the probe's key, read from :attr:`DerpServerState.log` with the
        product's reader (``admission.wait_for_evidence``), as ``--docker-host`` reads a
        container's log: admission proven, not guessed."""

        async def source(_address: str, admission: Admission) -> AdmissionEvidence | None:
            if admission.admitted:
                return None
            log = self.state.log
            return await wait_for_evidence(lambda: "\n".join(log), admission.client_key, wait=wait)

        return source

    async def start(self, socks: list[socket.socket]) -> None:
        if self.ssl is None:
            for s in socks:
                self._servers.append(await asyncio.start_server(self._handle, sock=s))
            return
        for s in socks:
            s.setblocking(False)
            self._tasks.add(asyncio.create_task(self._accept_loop(s)))

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._listeners.append(lsock)
        while True:
            conn, _ = await loop.sock_accept(lsock)
            task = asyncio.create_task(self._tls_conn(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _tls_conn(self, conn: socket.socket) -> None:
        """TLS like Go's crypto/tls: a refused SNI gets a real alert record before the close.

        (asyncio's own TLS server closes without flushing the alert, so the ClientHello is
        first replayed into an in-memory SSLObject to learn the verdict.)
        """
        assert self.ssl is not None
        loop = asyncio.get_running_loop()
        try:
            alert = await self._rejected_hello(conn)
            if alert is not None:
                conn.setblocking(True)
                conn.sendall(alert)
                conn.shutdown(socket.SHUT_WR)
                await asyncio.sleep(0.05)
                conn.close()
                return
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.ssl, ssl_handshake_timeout=5
            )
        except (OSError, ssl.SSLError, TimeoutError):
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._handle(reader, writer)

    async def _rejected_hello(self, conn: socket.socket) -> bytes | None:
        """Peek the ClientHello; the alert bytes OpenSSL produced if the handshake fails."""
        assert self.ssl is not None
        loop = asyncio.get_running_loop()
        data = b""
        for _ in range(500):
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(conn.fileno(), _set_once, ready)
            try:
                await asyncio.wait_for(ready, 5)
            finally:
                loop.remove_reader(conn.fileno())
            data = conn.recv(65536, socket.MSG_PEEK)
            if data[:1] not in (b"", b"\x16"):
                # Go's crypto/tls answers a plain HTTP request with this 400 (net/http server.go)
                looks_http = data[:4].isalpha()
                return GO_HTTP_ON_TLS if looks_http else b""
            if not data or (len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5])):
                break
            await asyncio.sleep(0.002)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        probe = self.ssl.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(data)
        try:
            probe.do_handshake()
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLError:
            return outgoing.read() or b""
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for lsock in self._listeners:
            lsock.close()
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.fault == "not_http":
            await self._not_http(reader, writer)
            return
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    await self._respond(writer, 400, b"Bad Request", close=True)
                    return
                method, path = parts[0], parts[1].split("?")[0]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                self.state.requests.append(f"{method} {path}")
                if (
                    path == "/derp"
                    and headers.get("upgrade", "").lower() == "derp"
                    and (self.fault not in ("strip_upgrade", "web_server"))
                ):
                    await self._derp_session(reader, writer)
                    return
                await self._route(
                    _HeadWriter(writer) if method == "HEAD" else writer, method, path, headers
                )
                if headers.get("connection", "").lower() == "close":
                    return
                if self.fault in ("close_after_response", "idle_close"):
                    return
        except (ConnectionError, ssl.SSLError, OSError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """OpenSSH's way: banner first, and on a non-SSH line a complaint and the close."""
        try:
            writer.write(SSH_BANNER)
            await writer.drain()
            await asyncio.wait_for(reader.readline(), 10)
            writer.write(b"Invalid SSH identification string.\r\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _route(self, writer: Any, method: str, path: str, headers: dict[str, str]) -> None:
        if self.fault == "web_server":
            body = b"<h1>It works!</h1>" if path == "/" else b"not found"
            await self._respond(writer, 200 if path == "/" else 404, body)
        elif path == "/":
            await self._respond(writer, 200, HOME, {"Content-Type": "text/html; charset=utf-8"})
        elif path == "/robots.txt":
            await self._respond(writer, 200, b"User-agent: *\nDisallow: /\n")
        elif path in ("/derp/probe", "/derp/latency-check"):
            if method in ("GET", "HEAD"):
                await self._respond(writer, 200, b"", {"Access-Control-Allow-Origin": "*"})
            else:
                await self._respond(writer, 405, b"bogus probe method\n")
        elif path == "/generate_204":
            extra = {}
            challenge = headers.get("x-tailscale-challenge", "")
            if CHALLENGE_RE.match(challenge) and self.fault != "no_challenge_echo":
                extra["X-Tailscale-Response"] = f"response {challenge}"
            await self._respond(writer, 204, b"", extra)
        elif path == "/derp":
            await self._respond(writer, 426, b"DERP requires connection upgrade")
        else:
            await self._respond(writer, 404, b"404 page not found\n")

    async def _respond(
        self,
        writer: Any,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        reasons = {
            200: "OK",
            204: "No Content",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            426: "Upgrade Required",
        }
        lines = [f"HTTP/1.1 {status} {reasons.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if status != 204:
            lines.append(f"Content-Length: {len(body)}")
        if close or self.fault == "close_after_response":
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if status == 204 else body))
        await writer.drain()

    async def _derp_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        header_key = self.public_key.hex()
        if self.fault == "key_mismatch":
            header_key = bytes(PrivateKey.generate().public_key).hex()
        magic_key = derp_codec.server_key_payload(self.public_key)
        if self.fault == "bad_magic":
            magic_key = b"DERP\x00\x00\x00\x00" + self.public_key
        # 101 head and FrameServerKey in one write: the server speaks first (handler.go:55-63,
        # then derpserver.go:1018)
        frame = derp_codec.encode_frame(derp_codec.FRAME_SERVER_KEY, magic_key)
        if self.fault == "no_server_key":
            frame = b""
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
                f"Derp-Version: {derp_codec.PROTOCOL_VERSION}\r\n"
                f"Derp-Public-Key: {header_key}\r\n\r\n"
            ).encode()
            + frame
        )
        await writer.drain()
        if self.fault == "no_server_key":
            return
        try:
            ftype, payload = await asyncio.wait_for(derp_codec.read_frame(reader), 10)
        except (asyncio.IncompleteReadError, TimeoutError, DerpError):
            return
        if ftype != derp_codec.FRAME_CLIENT_INFO or len(payload) < 32 + 24 + 16:
            return
        client_key, sealed = payload[:32], payload[32:]
        box = Box(self.private_key, PublicKey(client_key))
        try:
            info = json.loads(box.decrypt(sealed))  # sealed = 24-byte nonce || ciphertext
        except Exception:
            return
        self.state.client_infos.append(info)
        if self.verify_clients and client_key not in self.allowed_keys:
            # derper asks tailscaled (WhoIsNodeKey); unknown keys are disconnected
            self.state.rejected.append(client_key)
            node = f"nodekey:{client_key.hex()}"
            self.state.log.append(
                f"derp: {_addr_port(writer)}: client {node} rejected: peer {node} not authorized "
                "(not found in local tailscaled)"
            )
            return
        self.state.admitted.append(client_key)
        reply = box.encrypt(json.dumps({"version": derp_codec.PROTOCOL_VERSION}).encode())
        writer.write(derp_codec.encode_frame(derp_codec.FRAME_SERVER_INFO, bytes(reply)))
        await writer.drain()
        while True:  # stay connected like derper until the client leaves
            try:
                ftype, payload = await derp_codec.read_frame(reader)
            except (asyncio.IncompleteReadError, DerpError):
                return
            if ftype == derp_codec.FRAME_PING:
                writer.write(derp_codec.encode_frame(derp_codec.FRAME_PONG, payload))
