"""The STUN probe: Tailscale-format binding requests over UDP, and the verdict on what came back.

The plan is netcheck's: three tries 100 ms apart (defaultInitialRetransmitTime,
tailscale.com@v1.102.5/net/netcheck/netcheck.go:86), within a 3 s STUN phase (stunProbeTimeout,
netcheck.go:65). The bytes come from stun_codec.py.

The probe uses a *connected* socket: the kernel then reports ICMP port-unreachable (nothing
listens) and drops datagrams from any other source. When an IPv6 probe gets no answer, it
listens once more on an *unconnected* socket (see ``check_stun``): derper's STUN listener is
bound to the IP of ``-a`` — none with the default ``-a :443`` (cmd/derper/derper.go:59,61,70,
178-185) — and answers with ``WriteTo`` on that socket (net/stunserver/stunserver.go:50,72,99),
so the reply leaves from whatever source the kernel prefers towards the client. On a host with
several IPv6 addresses that can be another one than the published address, typically a
temporary (privacy) address, which Linux prefers with ``use_tempaddr=2`` (RFC 6724 §5 rule 7;
https://docs.kernel.org/networking/ip-sysctl.html, use_tempaddr). A connected socket and the
stateful firewall of nearly every home router drop such a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import statistics
import struct
import time
from dataclasses import dataclass
from typing import Any

from .addresses import family, hostport
from .errors import StunError
from .report import Check
from .stun_codec import binding_request, new_txid, parse_response

TRIES = 3
SPACING = 0.1  # netcheck.go:86
# The second listen (unconnected socket) may take at most this long, and is not tried with less
# than MIN_RETRY left in the report: it must never cost the report its own deadline.
RETRY_WAIT = 1.0
MIN_RETRY = 0.2


@dataclass(frozen=True)
class StunResult:
    """What the prober saw: RTTs of answered tries, the mapped address, our own socket.

    ``reply_from`` is the source of the first answer (always the probed address on a connected
    socket; on an unconnected one, whatever the server's kernel chose).
    """

    sent: int
    rtts_ms: tuple[float, ...]
    mapped: tuple[str, int] | None
    local: tuple[str, int] | None
    error: str | None = None  # e.g. ICMP port unreachable reported by the kernel
    reply_from: tuple[str, int] | None = None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.rtts_ms) if self.rtts_ms else None


# Kernel receive timestamps: the RTT must not include the time the event loop was busy with
# other probes (TLS handshakes run at the same moment). 35 = SO_TIMESTAMPNS on Linux.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(16)


def _kernel_time_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return int(sec) * 1_000_000_000 + int(nsec)
    return None


class _Prober:
    """One UDP socket; replies matched by transaction id, stamped by the kernel."""

    def __init__(self, sock: socket.socket, server: tuple[str, int], connected: bool) -> None:
        self.sock = sock
        self.server = server
        self.connected = connected
        self.sent_at: dict[bytes, int] = {}
        self.rtts: dict[bytes, float] = {}
        self.mapped: tuple[str, int] | None = None
        self.reply_from: tuple[str, int] | None = None
        self.answered = asyncio.Event()
        self.error: OSError | None = None

    def send(self, txid: bytes) -> None:
        packet = binding_request(txid)
        self.sent_at[txid] = time.time_ns()  # same clock as SO_TIMESTAMPNS (CLOCK_REALTIME)
        try:
            if self.connected:
                self.sock.send(packet)
            else:
                self.sock.sendto(packet, self.server)
        except OSError as exc:  # e.g. ECONNREFUSED left over from a previous try's ICMP
            self.error = exc

    def readable(self) -> None:
        while True:
            try:
                data, ancillary, _, source = self.sock.recvmsg(2048, _ANCILLARY)
            except BlockingIOError:
                return
            except OSError as exc:
                self.error = exc  # ICMP port unreachable; keep waiting for other tries
                continue
            now = _kernel_time_ns(ancillary) or time.time_ns()
            try:
                txid, mapped = parse_response(data)
            except StunError:
                continue
            sent = self.sent_at.get(txid)
            if sent is None or txid in self.rtts:
                continue
            self.rtts[txid] = (now - sent) / 1e6
            self.mapped = mapped
            if self.reply_from is None:
                self.reply_from = self.server if self.connected else _source(source)
            self.answered.set()


def _source(sockaddr: Any) -> tuple[str, int]:
    ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(sockaddr[1])


def _open_socket(address: str, port: int, connected: bool) -> socket.socket:
    v6 = family(address) == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if connected:
            sock.connect((address, port))
        else:
            sock.bind(("::" if v6 else "0.0.0.0", 0))
    except OSError:
        sock.close()
        raise
    return sock


async def stun_probe(
    address: str,
    port: int,
    *,
    tries: int = TRIES,
    spacing: float = SPACING,
    timeout: float = 3.0,
    first_only: bool = False,
    connected: bool = True,
) -> StunResult:
    """Send ``tries`` requests at 0, spacing, 2*spacing s (netcheck's plan).

    Returns when every try was answered (or, with ``first_only``, on the first answer, like
    netcheck skipping probes that would not help) or when ``timeout`` expires. ``connected``
    False listens on an unconnected socket: answers from any source count.
    """
    loop = asyncio.get_running_loop()
    try:
        sock = _open_socket(address, port, connected)
    except OSError as exc:
        return StunResult(0, (), None, None, error=exc.strerror or str(exc))
    proto = _Prober(sock, (address, port), connected)
    local = sock.getsockname() if connected else None
    loop.add_reader(sock.fileno(), proto.readable)
    try:
        async with asyncio.timeout(timeout):
            for i in range(tries):
                if i and first_only:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proto.answered.wait(), spacing)
                    if proto.rtts:
                        break
                elif i:
                    await asyncio.sleep(spacing)
                proto.send(new_txid())
            while len(proto.rtts) < (1 if first_only else len(proto.sent_at)):
                proto.answered.clear()
                await proto.answered.wait()
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return StunResult(
        sent=len(proto.sent_at),
        rtts_ms=tuple(proto.rtts.values()),
        mapped=proto.mapped,
        local=(str(local[0]), int(local[1])) if local else None,
        error=(proto.error.strerror or str(proto.error)) if proto.error else None,
        reply_from=proto.reply_from,
    )


async def check_stun(
    address: str, port: int, timeout: float, *, deadline: float | None = None
) -> Check:
    """The stun check of one relay address; ``deadline`` (loop clock) bounds the second listen.

    An IPv6 probe without any answer (and without ICMP) is repeated once on an unconnected
    socket, to tell "blocked" from "answered from another address of the host".
    """
    res = await stun_probe(address, port, timeout=timeout)
    retry = None
    if not res.rtts_ms and not res.error and family(address) == 6 and deadline is not None:
        left = deadline - asyncio.get_running_loop().time()
        if left >= MIN_RETRY:
            retry = await stun_probe(address, port, timeout=min(RETRY_WAIT, left), connected=False)
    return stun_verdict(address, port, res, timeout, retry)


def _same_endpoint(a: tuple[str, int], b: tuple[str, int]) -> bool:
    return ipaddress.ip_address(a[0]) == ipaddress.ip_address(b[0]) and a[1] == b[1]


def stun_verdict(
    address: str, port: int, res: StunResult, timeout: float, retry: StunResult | None = None
) -> Check:
    """What ``res`` (and the unconnected ``retry``, if one ran) say about this STUN endpoint."""
    if not res.rtts_ms and retry is not None and retry.rtts_ms and retry.reply_from:
        if not _same_endpoint(retry.reply_from, (address, port)):
            return _other_source(address, port, res, retry)
        # The same endpoint answered the second time: the first tries were only lost.
        return _answered(address, port, retry, lost_before=res.sent)
    if not res.rtts_ms:
        return _no_answer(address, port, res, timeout, retried=retry is not None)
    return _answered(address, port, res)


def _counts(res: StunResult) -> dict[str, Any]:
    return {
        "sent": res.sent,
        "answered": len(res.rtts_ms),
        "rtts_ms": [round(x, 3) for x in res.rtts_ms],
    }


def _no_answer(address: str, port: int, res: StunResult, timeout: float, retried: bool) -> Check:
    where = hostport(address, port)
    data = _counts(res)
    if res.error:
        return Check(
            "stun",
            address,
            False,
            f"UDP {where}: {res.error} (ICMP), no STUN server",
            "nothing listens on the STUN port: derper runs with -stun=false, another "
            "-stun-port, or binds another IP (-stun binds the IP of -a)",
            data=data,
        )
    also = " (none on an unconnected socket either)" if retried else ""
    data["retried_unconnected"] = retried
    return Check(
        "stun",
        address,
        False,
        f"no answer from UDP {where} to {res.sent} Tailscale-format requests in "
        f"{timeout:.1f}s{also}",
        f"open UDP port {port} in firewall/port forwarding; derper's STUN bind failures are "
        "silent (look for 'STUN server listening' in its log); a generic STUN server that "
        "ignores SOFTWARE=tailnode would answer here",
        data=data,
    )


def _other_source(address: str, port: int, res: StunResult, retry: StunResult) -> Check:
    assert retry.reply_from is not None  # checked by stun_verdict
    where, got = hostport(address, port), hostport(*retry.reply_from)
    data = {
        **_counts(res),
        "retried_unconnected": True,
        "reply_from": got,
        "reply_rtts_ms": [round(x, 3) for x in retry.rtts_ms],
    }
    if ipaddress.ip_address(retry.reply_from[0]) == ipaddress.ip_address(address):
        hint = (
            "something in front of the STUN port rewrites the reply's source port (NAT or "
            "proxy): run derper with host networking and forward the port unchanged"
        )
    else:
        other = retry.reply_from[0]
        hint = (
            f"derper's STUN socket is not bound to an address (-a :PORT), so its replies leave "
            f"from the host's preferred source address {other}, not the published {address}; "
            f"clients' stateful firewalls drop them. Fix one of: make {address} the preferred "
            f"source (if {other} is a temporary privacy address: sysctl "
            f"net.ipv6.conf.<interface>.use_tempaddr=1); publish {other} instead if it is a "
            f"stable address (never a temporary one: it rotates); or bind derper to "
            f"-a [{address}]:PORT (STUN binds the same IP; derper then serves IPv6 only)"
        )
    return Check(
        "stun",
        address,
        False,
        f"no answer from UDP {where}, but the relay answered from {got}: the reply comes "
        "from another address than the one probed",
        hint,
        retry.median_ms,
        data=data,
    )


def _answered(address: str, port: int, res: StunResult, lost_before: int = 0) -> Check:
    mapped, med = res.mapped, res.median_ms
    assert mapped is not None and med is not None  # res has answers
    data = _counts(res)
    mapped_s = hostport(*mapped)
    data["mapped"] = mapped_s
    detail = f"median {med:.1f}ms ({len(res.rtts_ms)}/{res.sent} answered), mapped {mapped_s}"
    probe_ip = ipaddress.ip_address(address)
    mapped_ip = ipaddress.ip_address(mapped[0])
    if probe_ip.version == 6 and mapped_ip.version == 4:
        private = " private" if mapped_ip.is_private else ""
        return Check(
            "stun",
            address,
            False,
            detail + f": an IPv6 probe came back with the{private} IPv4 {mapped[0]}",
            "derper sits behind docker-proxy (bridge networking): STUN sees the Docker gateway "
            "(tailscale/tailscale#17565); use network_mode host",
            med,
            data=data,
        )
    if probe_ip.version != mapped_ip.version:
        return Check(
            "stun",
            address,
            False,
            detail + ": mapped address family differs from the probe",
            "a proxy or NAT64 sits in front of the STUN port; use host networking",
            med,
            data=data,
        )
    local = res.local[0] if res.local else None
    if probe_ip.version == 6 and local and ipaddress.ip_address(local) != mapped_ip:
        return Check(
            "stun",
            address,
            True,
            detail + f" (this machine is {local}: NAT66 or an IPv6 proxy)",
            "if the relay runs in Docker with bridge networking, use network_mode host",
            med,
            warning=True,
            data=data,
        )
    if lost_before or len(res.rtts_ms) < res.sent:
        if lost_before:
            data["lost_first"] = lost_before
            detail += f"; the first {lost_before} requests got no answer"
        return Check(
            "stun",
            address,
            True,
            detail,
            "some STUN requests were lost",
            med,
            warning=True,
            data=data,
        )
    return Check("stun", address, True, detail, None, med, data=data)
