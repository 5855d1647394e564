"""derper's own counters: ``/debug/varz`` read over a connection that arrives from loopback.

derper counts what the user wants to know — clients connected and homed now, packets and bytes
relayed, drops — and serves it as Prometheus text at ``/debug/varz``
(docs/upstream/derper.md#usage-counters). Its debug handlers answer only requests from a loopback
or Tailscale address (docs/upstream/derper.md#debug-endpoints), and its manual certificate only
the SNI ``-hostname`` (docs/upstream/derper.md#manual-certs). So the counters are read over a
stream that ends on the relay host's own loopback:

* ``local``: this machine is the relay host (127.0.0.1, then ::1);
* ``ssh://[user@]host[:port]``: OpenSSH's stdio forwarding, ``ssh -W 127.0.0.1:<port> host``
  — the relay host needs nothing but sshd (no curl); the same ssh call as every other host
  read (``components/netcheck/ssh.py``: batch mode, bounded connect, keepalives,
  ``HOME_DERP_SSH_OPTS``);
* ``tailnet:<name or Tailscale IP>``: ``tailscale nc <name> <port>`` through this machine's
  tailscaled (tailscale.com@v1.102.5/cmd/tailscale/cli/nc.go:46-80, LocalAPI DialTCP): derper
  sees a Tailscale address (or, behind a userspace-networking tailscaled, loopback), both
  allowed.

Both commands get one end of a socket pair as their stdin and stdout, so TLS and HTTP run here
on a plain socket. TLS sends the relay's hostname as SNI and does not judge the certificate:
the channel already says which host answers, and the certificate is judged by validation's tls
check, so a certificate about to expire does not also blind the usage reading.

The Prometheus text is parsed with prometheus_client's parser (the maintained reference parser
of the format), not by hand. This module is part of the leaf ``netcheck``: no project import.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .errors import HttpError, NetcheckError
from .http1 import exchange
from .ssh import forward_argv

#: derper's metric names (Prometheus family names as the parser gives them) and what each is.
#: docs/upstream/derper.md#usage-counters cites each to its line in derp/derpserver.
CONNECTED: Final = "derp_current_connections"
HOMED: Final = "derp_current_home_connections"
BYTES_RECEIVED: Final = "derp_bytes_received"
BYTES_SENT: Final = "derp_bytes_sent"
PACKETS_RECEIVED: Final = "derp_packets_received"
PACKETS_SENT: Final = "derp_packets_sent"
PACKETS_DROPPED: Final = "derp_packets_dropped"
BYTES_DROPPED: Final = "derp_bytes_dropped"
UPTIME: Final = "uptime_sec"
STARTED: Final = "process_start_unix_time"
VERSION: Final = "version"

PATH: Final = "/debug/varz"

SourceKind = Literal["local", "ssh", "tailnet"]


class VarzError(NetcheckError):
    """derper's counters could not be read; ``kind`` is a stable token, the text says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class DerperUsage:
    """What derper counted since it started (``/debug/varz`` at one moment)."""

    connected: int
    """Client connections now (a client with two connections counts twice)."""
    homed: int
    """Of them, the ones whose client said this is its home region (NotePreferred)."""
    bytes_received: int
    """Packet bytes clients sent through derper, since it started."""
    bytes_sent: int
    """Packet bytes derper delivered to clients, since it started."""
    packets_received: int
    packets_sent: int
    packets_dropped: int
    """Packets derper could not deliver, every reason summed."""
    bytes_dropped: int
    dropped_by_reason: Mapping[str, int] = field(default_factory=dict)
    uptime_seconds: int | None = None
    started_at: int | None = None
    """Unix time derper's process started."""
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "homed": self.homed,
            "bytesReceived": self.bytes_received,
            "bytesSent": self.bytes_sent,
            "packetsReceived": self.packets_received,
            "packetsSent": self.packets_sent,
            "packetsDropped": self.packets_dropped,
            "bytesDropped": self.bytes_dropped,
            "droppedByReason": dict(self.dropped_by_reason),
            "uptimeSeconds": self.uptime_seconds,
            "startedAt": self.started_at,
            "version": self.version,
        }


# ---- parsing ----------------------------------------------------------------------------------


def _families(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return {f.name: f for f in text_string_to_metric_families(text)}
    except (ValueError, IndexError, TypeError) as exc:
        raise VarzError("not-prometheus", f"/debug/varz is not Prometheus text: {exc}") from None


def _total(families: Mapping[str, Any], name: str) -> int | None:
    """The sum of a family's samples (a counter's sample is named ``<name>_total`` by the
    parser; a labelled counter has one sample per label set)."""
    family = families.get(name)
    if family is None or not family.samples:
        return None
    return int(sum(s.value for s in family.samples if math.isfinite(s.value)))


def parse_varz(text: str) -> DerperUsage:
    """derper's ``/debug/varz`` text → its usage counters; VarzError when they are missing."""
    families = _families(text)
    missing = [n for n in (CONNECTED, HOMED, BYTES_SENT, PACKETS_SENT) if n not in families]
    if missing:
        raise VarzError(
            "not-derper",
            f"/debug/varz has no {', '.join(missing)}: this is not derper's metrics page",
        )
    by_reason: dict[str, int] = {}
    dropped = families.get(PACKETS_DROPPED)
    for sample in dropped.samples if dropped is not None else ():
        reason = sample.labels.get("reason", "?")
        by_reason[reason] = by_reason.get(reason, 0) + int(sample.value)
    version = None
    for sample in getattr(families.get(VERSION), "samples", ()):
        version = sample.labels.get("version") or version

    def count(name: str) -> int:
        return _total(families, name) or 0

    return DerperUsage(
        connected=count(CONNECTED),
        homed=count(HOMED),
        bytes_received=count(BYTES_RECEIVED),
        bytes_sent=count(BYTES_SENT),
        packets_received=count(PACKETS_RECEIVED),
        packets_sent=count(PACKETS_SENT),
        packets_dropped=count(PACKETS_DROPPED),
        bytes_dropped=count(BYTES_DROPPED),
        dropped_by_reason=dict(sorted(by_reason.items())),
        uptime_seconds=_total(families, UPTIME),
        started_at=_total(families, STARTED),
        version=version,
    )


# ---- where the stream comes from --------------------------------------------------------------


@dataclass(frozen=True)
class UsageSource:
    """How to reach derper's port on the relay host's loopback (``--usage-from``)."""

    kind: SourceKind
    target: str = ""
    """ssh: the ``ssh://`` URL; tailnet: the relay host's tailnet name or Tailscale IP."""

    def describe(self) -> str:
        if self.kind == "local":
            return "this machine's loopback"
        if self.kind == "ssh":
            return f"ssh -W to the loopback of {self.target.removeprefix('ssh://')}"
        return f"tailscale nc {self.target}"


def parse_source(text: str) -> UsageSource:
    """``local``, ``ssh://[user@]host[:port]`` or ``tailnet:<name>``; ValueError otherwise."""
    value = text.strip()
    if value == "local":
        return UsageSource("local")
    if value.startswith("ssh://"):
        ssh_forward_argv(value, 1, timeout=1)  # validates the URL
        return UsageSource("ssh", value)
    if value.startswith("tailnet:") and value.removeprefix("tailnet:").strip():
        name = value.removeprefix("tailnet:").strip()
        if name.startswith("-") or any(c.isspace() for c in name):
            raise ValueError(f"{text!r}: not a tailnet name or Tailscale IP")
        return UsageSource("tailnet", name)
    raise ValueError(
        f"{text!r} is not local, ssh://[user@]host[:port] or tailnet:<name or Tailscale IP>"
    )


def ssh_forward_argv(docker_host: str, port: int, *, timeout: float) -> list[str]:
    """``ssh … -W 127.0.0.1:<port> -- host``: stdio forwarded to the host's loopback port."""
    parts = urllib.parse.urlsplit(docker_host)
    try:
        ssh_port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {docker_host!r}: {exc}") from None
    if parts.scheme != "ssh" or not parts.hostname or parts.hostname.startswith("-"):
        raise ValueError(f"{docker_host!r} is not an ssh://[user@]host[:port] address")
    return forward_argv(parts.hostname, port, user=parts.username, port=ssh_port, timeout=timeout)


def tailnet_argv(name: str, port: int) -> list[str]:
    """``tailscale nc <name> <port>`` (nc.go:21-24: the connection on stdin/stdout)."""
    return ["tailscale", "nc", name, str(port)]


@dataclass
class Stream:
    """An open byte stream to derper's port: a socket, and the forwarding process if any."""

    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    what: str = ""

    def why_closed(self) -> str:
        """What the forwarding command said on stderr (ssh's or tailscale's own diagnosis)."""
        if self.process is None:
            return ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        err = self.process.stderr.read() if self.process.stderr else b""
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=3)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()


def connect_local(port: int, *, timeout: float) -> Stream:
    """derper's port on this machine's loopback (IPv4, then IPv6)."""
    errors = []
    for host in ("127.0.0.1", "::1"):
        try:
            return Stream(socket.create_connection((host, port), timeout=timeout), None, host)
        except OSError as exc:
            errors.append(f"{host}: {exc.strerror or exc}")
    raise VarzError(
        "unreachable",
        f"nothing answers on port {port} of this machine's loopback ({'; '.join(errors)}): "
        "is derper running here, with this derpPort?",
    )


def spawn(argv: Sequence[str]) -> Stream:
    """Run a forwarding command (``ssh -W``, ``tailscale nc``) with one end of a socket pair
    as its stdin and stdout; the other end is the returned stream's socket."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
            close_fds=True,
        )
    except FileNotFoundError:
        ours.close()
        raise VarzError("missing-command", f"{argv[0]} is not installed here") from None
    finally:
        theirs.close()
    return Stream(ours, process, shlex.join(argv))


def open_stream(source: UsageSource, port: int, *, timeout: float) -> Stream:
    if source.kind == "local":
        return connect_local(port, timeout=timeout)
    if source.kind == "ssh":
        return spawn(ssh_forward_argv(source.target, port, timeout=timeout))
    return spawn(tailnet_argv(source.target, port))


# ---- reading ----------------------------------------------------------------------------------


def _tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Not a judgement of the certificate (validation's tls check is): see the module docstring.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


async def fetch_varz(stream: Stream, hostname: str, port: int, *, timeout: float) -> str:
    """``GET /debug/varz`` over ``stream`` with SNI ``hostname``; the body as text."""
    host_header = hostname if port == 443 else f"{hostname}:{port}"
    stream.sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                sock=stream.sock, ssl=_tls_context(), server_hostname=hostname
            )
            try:
                response = await exchange(reader, writer, "GET", PATH, host_header)
            finally:
                writer.close()
    except TimeoutError:
        raise VarzError(
            "timeout", f"derper did not answer {PATH} within {timeout:.0f}s ({_via(stream)})"
        ) from None
    except (OSError, ssl.SSLError, HttpError, asyncio.IncompleteReadError) as exc:
        said = stream.why_closed()
        detail = f"{said} " if said else ""
        raise VarzError(
            "unreachable",
            f"could not read {PATH} ({_via(stream)}): {detail}({exc or type(exc).__name__})",
        ) from None
    if response.status == 403:
        raise VarzError(
            "forbidden",
            f"derper refused {PATH} (403 {response.body.decode(errors='replace').strip()}): "
            "derper serves /debug/ only to loopback and Tailscale addresses "
            "(docs/upstream/derper.md#debug-endpoints), and this request came from neither "
            "(with networkMode bridge it comes from the bridge's gateway: "
            "docs/guide/usage.md#bridge-mode)",
        )
    if response.status != 200:
        raise VarzError("status", f"{PATH} answered {response.status} {response.reason}")
    return response.body.decode("utf-8", "replace")


def _via(stream: Stream) -> str:
    return stream.what or "direct"


@dataclass(frozen=True)
class UsageReading:
    """One attempt to read derper's counters: the counters, or why they could not be read."""

    usage: DerperUsage | None
    error: str | None
    via: str
    read_at: float
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "usage": self.usage.to_json() if self.usage else None,
            "error": self.error,
            "via": self.via,
            "read_at": self.read_at,
            "duration_ms": round(self.duration_ms, 3),
        }


@contextlib.contextmanager
def _closing(stream: Stream) -> Iterator[Stream]:
    try:
        yield stream
    finally:
        stream.close()


def read_usage(
    opener: Any, hostname: str, port: int, *, timeout: float = 10.0, via: str = ""
) -> UsageReading:
    """Open a stream with ``opener()`` (a :class:`Stream`), read and parse ``/debug/varz``.

    Never raises for a relay that cannot be read: the reading carries the reason, because the
    counters are a report beside the verdict, never the verdict itself.
    """
    started = time.perf_counter()
    now = time.time()
    try:
        with _closing(opener()) as stream:
            text = asyncio.run(fetch_varz(stream, hostname, port, timeout=timeout))
        usage, error = parse_varz(text), None
    except VarzError as exc:
        usage, error = None, exc.detail
    return UsageReading(usage, error, via, now, (time.perf_counter() - started) * 1000.0)


def read_from(
    source: UsageSource, hostname: str, port: int, *, timeout: float = 10.0
) -> UsageReading:
    """The checker's reading through ``source`` (``--usage-from``)."""
    return read_usage(
        lambda: open_stream(source, port, timeout=timeout),
        hostname,
        port,
        timeout=timeout,
        via=source.describe(),
    )


def is_local_address(address: str) -> bool:
    """Whether ``address`` belongs to this machine (binding to it succeeds; nothing is sent)."""
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


# ---- rendering --------------------------------------------------------------------------------


def human_bytes(value: int) -> str:
    """1234567 → ``1.2 MB`` (decimal units, like ``tailscale status``'s tx/rx)."""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{value} B"


def human_duration(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {rest % 60}s"


def format_usage(reading: UsageReading) -> list[str]:
    """The checker's lines about usage (below the report)."""
    if reading.usage is None:
        return [f"  * Usage: not read ({reading.error})"]
    u = reading.usage
    drops = f"{u.packets_dropped} dropped"
    if u.packets_dropped:
        drops += " (" + ", ".join(f"{k} {v}" for k, v in u.dropped_by_reason.items() if v) + ")"
    return [
        f"  * Usage (derper's /debug/varz via {reading.via}):",
        f"      - clients: {u.connected} connected, {u.homed} homed here",
        f"      - relayed since start: {human_bytes(u.bytes_sent)} in {u.packets_sent} packets "
        f"delivered, {human_bytes(u.bytes_received)} received; {drops}",
        f"      - derper {u.version or '?'}, up {human_duration(u.uptime_seconds)}",
    ]
