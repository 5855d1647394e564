"""A read-only Go module proxy on loopback, serving this machine's module cache.

The Go module cache's download directory (``$GOMODCACHE/cache/download``) has exactly the layout
of the GOPROXY protocol — ``<module>/@v/list``, ``<module>/@v/<version>.info|.mod|.zip`` with
upper-case letters as ``!lower`` — so serving it over HTTP is a real proxy for every module this
machine has fetched before (https://go.dev/ref/mod#goproxy-protocol, "the module cache ... can be
served directly"; ``GOPROXY=file://$GOMODCACHE/cache/download`` is the documented offline use).

The checksum database is proxied too, so ``GOSUMDB`` stays at its default ``sum.golang.org`` and
the go command in a build verifies the modules it downloads against the real, signed records:
a proxy answering ``<proxy>/sumdb/sum.golang.org/supported`` with 200 makes the go command fetch
``lookup/`` and ``tile/`` through it (https://go.dev/ref/mod#checksum-database, "proxying a
checksum database"). The records and tiles are the ones the go command cached in
``cache/download/sumdb/sum.golang.org/`` when it first verified them; ``latest`` (the newest
signed tree head it saw) is in ``$GOPATH/pkg/sumdb/sum.golang.org/latest``. The go command checks
each record's signature with the key compiled into it, so a tampered cache fails the build.

A partial tile the cache lacks is cut from a wider copy of the same tile: a partial tile
``tile/H/L/N.p/W`` "lists W consecutive hashes ... starting at offset N*(2**H)" (32 bytes each), so
it is the first ``W`` hashes of every wider copy of tile ``N`` (golang.org/x/mod/sumdb/tlog/
tile.go:13-23, vendored in go1.26.8 as src/cmd/vendor/golang.org/x/mod/sumdb/tlog/tile.go). Which
partial widths a cache holds depends on the tree sizes its go command saw, so a fresh go command may
ask for a width this cache never fetched; the bytes it gets are still the log's own hashes, checked
against the signed tree head.

Everything else is a 404 (the go command then reports the module missing; no fallback to the
network: the build has no ``direct``). Every request is recorded for the tests' assertions.
The server can listen inside a network namespace (its socket is made there), so a ``docker build
--network host`` in a dockerd in that namespace reaches it on that namespace's loopback.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import posixpath
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUMDB = "sum.golang.org"


def go_env(name: str) -> str:
    """``go env NAME`` of this machine's Go (the toolchain tests/tools/install uses)."""
    try:
        done = subprocess.run(["go", "env", name], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise AssertionError(
            "go is not installed: install Go >= 1.26.6 (https://go.dev/dl/) and run "
            "`bash tests/tools/install`"
        ) from None
    return done.stdout.strip()


@dataclass
class GoProxy:
    url: str
    download_dir: Path
    sumdb_latest: Path
    requests: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def fetched(self, suffix: str) -> bool:
        """Whether some request path ended with ``suffix`` and was answered."""
        return any(r.endswith(suffix) for r in self.requests if r not in self.misses)


def resolve(download_dir: Path, sumdb_latest: Path, path: str) -> Path | None:
    """The file answering ``path`` (URL path, no query), or None for a 404."""
    clean = posixpath.normpath(path)
    if clean != path or ".." in path.split("/"):
        return None
    rel = path.lstrip("/")
    prefix = f"sumdb/{SUMDB}/"
    if rel.startswith(prefix):
        rest = rel[len(prefix) :]
        if rest == "latest":
            return sumdb_latest if sumdb_latest.is_file() else None
        if not rest.startswith(("lookup/", "tile/")):
            return None
    elif rel.startswith("sumdb/"):
        return None  # only sum.golang.org is proxied
    target = download_dir / rel
    return target if target.is_file() else None


TILE_HASH = 32  # bytes per hash in a hash tile (tlog.HashSize)


def partial_tile(download_dir: Path, path: str) -> bytes | None:
    """``tile/H/L/N.p/W`` (L a level, not ``data``) cut from a wider cached copy, or None."""
    parts = path.lstrip("/").split("/")
    prefix = ["sumdb", SUMDB, "tile"]
    if parts[:3] != prefix or len(parts) < 7 or parts[-2] == "" or not parts[-1].isdigit():
        return None
    height, level, *index, width = parts[3:]
    if level == "data" or not index or not index[-1].endswith(".p"):
        return None
    wanted = int(width)
    tile_dir = download_dir.joinpath(*prefix, height, level, *index[:-1])
    stem = index[-1].removesuffix(".p")
    candidates = [tile_dir / stem]  # the full tile
    wider = tile_dir / f"{stem}.p"
    if wider.is_dir():
        candidates += [w for w in wider.iterdir() if w.name.isdigit() and int(w.name) > wanted]
    for candidate in candidates:
        if candidate.is_file():
            data = candidate.read_bytes()
            if len(data) >= wanted * TILE_HASH:
                return data[: wanted * TILE_HASH]
    return None


def _handler(proxy: GoProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            proxy.requests.append(path)
            if path == f"/sumdb/{SUMDB}/supported":
                self._send(200, b"")
                return
            found = resolve(proxy.download_dir, proxy.sumdb_latest, path)
            body = found.read_bytes() if found is not None else None
            if body is None:
                body = partial_tile(proxy.download_dir, path)
            if body is None:
                proxy.misses.append(path)
                self._send(404, b"not found\n")
                return
            self._send(200, body)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """The go command drops connections it no longer needs: not an error of the proxy."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def go_proxy(
    *,
    download_dir: Path | None = None,
    sumdb_latest: Path | None = None,
    in_netns: Callable[[Callable[[], socket.socket]], socket.socket] | None = None,
) -> Iterator[GoProxy]:
    """The proxy on ``127.0.0.1:<free port>``; ``in_netns`` makes its socket in a namespace."""
    if download_dir is None:
        download_dir = Path(go_env("GOMODCACHE")) / "cache" / "download"
    if sumdb_latest is None:
        sumdb_latest = Path(go_env("GOPATH").split(os.pathsep)[0]) / "pkg" / "sumdb" / SUMDB
        sumdb_latest = sumdb_latest / "latest"
    if not download_dir.is_dir():
        raise AssertionError(
            f"no Go module cache at {download_dir}: run `bash tests/tools/install` (it fills it)"
        )

    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        return sock

    sock = in_netns(listen) if in_netns is not None else listen()
    port = sock.getsockname()[1]
    proxy = GoProxy(f"http://127.0.0.1:{port}", download_dir, sumdb_latest)
    server = _Server(("127.0.0.1", port), _handler(proxy), bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="goproxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
