"""An OLD tailscaled's LocalAPI (v1.68.0) on a unix socket: what a stale relay host answers.

derper's ``-verify-clients`` asks the host's tailscaled ``GET
/localapi/v0/whois?addr=nodekey:<hex>`` (tailscale.com@v1.102.5/client/local/local.go:384-394,
``WhoIsNodeKey``). tailscaled learned to look up node keys in v1.70.0 (tailscale/tailscale@v1.70.0
ipn/localapi/localapi.go:467-473); up to v1.68.0 ``addr`` had to be an IP or IP:port, so a node key
is answered ``400 invalid 'addr' parameter`` (tailscale/tailscale@v1.68.0
ipn/localapi/localapi.go:454-478). derper's client turns any non-200 into an error carrying the
body, ``400 Bad Request: invalid 'addr' parameter`` (v1.102.5
client/local/local.go:228-234,290-293), and derper recognises exactly that text and rejects the
client with ``tailscaled version is too old (out of sync with derper binary)``
(tailscale.com@v1.102.5/derp/derpserver/derpserver.go:1590-1601, issue #12617): every client is
rejected while derper and tailscaled are out of sync.

No old tailscaled binary can be built here (no network for its module versions), so this is that
release's LocalAPI, faithful to its source for everything derper can observe:

* ``ServeHTTP`` (v1.68.0 ipn/localapi/localapi.go:196-228): a request with a Referer or Origin,
  or a Host other than empty / ``local-tailscaled.sock``, is ``403 invalid localapi request``;
  every answer carries ``Tailscale-Version`` (``version.Long()``: ``1.68.0-t<commit>`` for a
  build_dist.sh build at the v1.68.0 tag, 52ddf0d01), ``Tailscale-Cap: 97``
  (v1.68.0 tailcfg/tailcfg.go:141) and the security headers; unknown paths are
  ``http.NotFound`` ("404 page not found"); ``/`` is "tailscaled\\n" (localapi.go:288-290);
* ``whois`` (localapi.go:454-478): any unix-socket client may read (ipn/ipnserver/server.go:
  309-323, ``PermitRead`` for every local uid); ``addr`` missing → 400 ``missing 'addr'
  parameter``; not an IP and not an IP:port (a node key) → 400 ``invalid 'addr' parameter``;
  an IP this tailscaled knows no node for → 404 ``no match for IP:port`` (this one has no netmap);
* errors are Go's ``http.Error``: ``text/plain; charset=utf-8``, ``X-Content-Type-Options:
  nosniff``, the message plus a newline (go1.26.8 src/net/http/server.go:2301-2319);
* the socket is mode 0666 in a 0755 directory, as tailscaled makes it on Linux (v1.68.0
  safesocket/unixsocket.go:61-73,89-95), so derper running as uid 65532 may connect.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import os
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

VERSION = "1.68.0"
VERSION_LONG = "1.68.0-t52ddf0d01"  # version.Long() of a build_dist.sh build at the v1.68.0 tag
CAPABILITY_VERSION = 97
LOCALAPI_HOST = "local-tailscaled.sock"  # apitype.LocalAPIHost
CSP = (
    "default-src 'none'; frame-ancestors 'none'; script-src 'none'; script-src-elem 'none'; "
    "script-src-attr 'none'"
)


@dataclass
class OldLocalApi:
    socket: Path
    version: str = VERSION
    requests: list[str] = field(default_factory=list)  # request targets, in order


def whois_answer(addr: str | None) -> tuple[int, str]:
    """(status, body) of v1.68.0's ``serveWhoIsWithBackend`` for ``addr``, with no netmap."""
    if not addr:
        return 400, "missing 'addr' parameter\n"
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        if not _is_addr_port(addr):
            return 400, "invalid 'addr' parameter\n"
    return 404, "no match for IP:port\n"


def _is_addr_port(text: str) -> bool:
    """netip.ParseAddrPort: ``ip:port`` or ``[ipv6]:port``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return False
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return ipaddress.ip_address(host).version == 6
        except ValueError:
            return False
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        return False


def _handler(api: OldLocalApi) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def address_string(self) -> str:
            return "unix"  # a unix socket has no peer address for http.server's log

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            api.requests.append(self.path)
            host = self.headers.get("Host", "")
            if (
                self.headers.get("Referer")
                or self.headers.get("Origin")
                or host
                not in (
                    "",
                    LOCALAPI_HOST,
                )
            ):
                self._error(403, "invalid localapi request")
                return
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/":
                self._send(200, "tailscaled\n", "text/plain; charset=utf-8")
            elif url.path == "/localapi/v0/whois":
                addr = urllib.parse.parse_qs(url.query).get("addr", [None])[0]
                status, body = whois_answer(addr)
                self._error(status, body.rstrip("\n"))
            else:
                self._error(404, "404 page not found")

        def _error(self, status: int, message: str) -> None:
            self._send(status, message + "\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Tailscale-Version", VERSION_LONG)
            self.send_header("Tailscale-Cap", str(CAPABILITY_VERSION))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextlib.contextmanager
def old_localapi(directory: Path, name: str = "tailscaled.sock") -> Iterator[OldLocalApi]:
    """The v1.68.0 LocalAPI listening on ``directory/name`` until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    path = directory / name
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    api = OldLocalApi(path)
    server = _UnixServer(str(path), _handler(api))
    os.chmod(path, 0o666)
    thread = threading.Thread(target=server.serve_forever, name="localapi-1.68", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def ask(path: Path, target: str) -> tuple[int, dict[str, str], str]:
    """One raw HTTP/1.1 GET over the unix socket (what Go's LocalAPI client sends)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {LOCALAPI_HOST}\r\nConnection: close\r\n\r\n".encode()
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body
