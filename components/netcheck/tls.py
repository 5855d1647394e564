"""The tls probe: TCP + TLS to a relay address with SNI = hostname, and its verdict.

Clients fail on every one of these long before STUN shows anything: plain HTTP on a custom port
(derper serves TLS only on :443 or with ``-certmode manual``,
tailscale.com@v1.102.5/cmd/derper/derper.go:190; tailscale/tailscale#4716), an SNI other than
``-hostname`` (manual mode refuses it, cmd/derper/cert.go:172-175), an untrusted or self-signed
certificate, a name mismatch, an expired certificate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from .addresses import hostport
from .errors import TlsFailure
from .report import Check

WARN_DAYS = 14
# derper offers only http/1.1 (cmd/derper/cert.go:165-167) and TLS >= 1.2 (derper.go:360)
ALPN = "http/1.1"
PLAIN_CHECK_AFTER = 0.5

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h)
_EXPIRED = {10}
_NOT_YET_VALID = {9}
_UNTRUSTED = {2, 18, 19, 20, 21}
_NAME_MISMATCH = {62, 64}


@dataclass
class TlsSession:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    connect_ms: float
    handshake_ms: float
    version: str | None
    alpn: str | None
    cert: x509.Certificate | None
    data: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.writer.close()


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying context: system CAs, or only ``ca_file``; TLS ≥1.2; ALPN http/1.1."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ALPN])
    return ctx


def _insecure_context() -> ssl.SSLContext:
    # Only used after verification failed, to describe the certificate the server presents.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([ALPN])
    return ctx


def cert_facts(cert: x509.Certificate, now: dt.datetime | None = None) -> dict[str, Any]:
    """Structured facts for Check.data: names, issuer, not_after, days_left."""
    now = now or dt.datetime.now(dt.UTC)
    not_after = cert.not_valid_after_utc
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": _cn(cert.subject),
        "issuer": _cn(cert.issuer),
        "names": names,
        "not_after": not_after.isoformat(),
        "days_left": (not_after - now).days,
        "self_signed": cert.issuer == cert.subject,
    }


def _cn(name: x509.Name) -> str:
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        attrs = name.get_attributes_for_oid(oid)
        if attrs:
            return str(attrs[0].value)
    return name.rfc4514_string()


def _peer_cert(writer: asyncio.StreamWriter) -> x509.Certificate | None:
    obj = writer.get_extra_info("ssl_object")
    der = obj.getpeercert(binary_form=True) if obj is not None else None
    return x509.load_der_x509_certificate(der) if der else None


async def tcp_connect(
    address: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
    """TCP connect with refused/timeout/unreachable told apart."""
    start = time.perf_counter()
    where = hostport(address, port)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        raise TlsFailure(
            "timeout",
            f"TCP connect to {where} timed out after {timeout:.1f}s",
            "nothing answers: check the firewall / port forwarding for the DERP port, "
            "and that derper listens on this address family (-a [::]:PORT)",
        ) from None
    except ConnectionRefusedError:
        raise TlsFailure(
            "refused",
            f"connection refused on {where}",
            "derper is not listening on this port: check the container is running and "
            "-a / DERP_ADDR matches the DERP port",
        ) from None
    except OSError as exc:
        raise TlsFailure(
            "unreachable",
            f"cannot reach {where}: {exc.strerror or exc}",
            "no route to this address: check the host's address and routing",
        ) from None
    return reader, writer, (time.perf_counter() - start) * 1000.0


async def _speaks_plain_http(address: str, port: int, hostname: str, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
            try:
                writer.write(
                    f"HEAD / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode()
                )
                await writer.drain()
                head = await reader.read(512)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    # A Go TLS server (derper) answers plain HTTP with a 400 saying so: that port does speak TLS.
    return head.startswith(b"HTTP/") and b"HTTP request to an HTTPS server" not in head


async def _describe_cert(
    address: str, port: int, hostname: str, timeout: float
) -> x509.Certificate | None:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                address, port, ssl=_insecure_context(), server_hostname=hostname
            )
            try:
                return _peer_cert(writer)
            finally:
                writer.close()
    except (OSError, TimeoutError, ssl.SSLError):
        return None


async def tls_connect(
    address: str, port: int, hostname: str, ca_file: str | None, timeout: float
) -> TlsSession:
    """Open a verified TLS session or raise a classified TlsFailure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reader, writer, connect_ms = await tcp_connect(address, port, timeout)
    # Keep a reserve to tell "speaks plain HTTP" from "stalls": a plain HTTP server may wait
    # silently for the end of a request line that a ClientHello never sends.
    reserve = min(1.0, 0.3 * max(0.0, deadline - loop.time()))
    start = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline - reserve):
            await _handshake(writer, ca_file, address, port, hostname)
    except TlsFailure:
        writer.close()
        raise
    except ssl.SSLCertVerificationError as exc:
        writer.close()
        raise await _verify_failure(exc, address, port, hostname, ca_file, deadline) from None
    except TimeoutError:
        writer.close()
        if await _speaks_plain_http(address, port, hostname, max(0.05, deadline - loop.time())):
            raise _plain_http_failure("no TLS handshake") from None
        raise TlsFailure(
            "handshake-timeout",
            f"TCP connected but no TLS handshake within {timeout - reserve:.1f}s",
            "something accepts TCP but does not speak TLS (wrong service on the port?)",
        ) from None
    except (ssl.SSLError, OSError) as exc:
        writer.close()
        remaining = max(0.2, deadline - asyncio.get_running_loop().time())
        if await _speaks_plain_http(address, port, hostname, remaining):
            raise _plain_http_failure(_ssl_reason(exc)) from None
        reason = _ssl_reason(exc)
        if isinstance(exc, ConnectionResetError):
            reason = "connection reset during the handshake"
        if "ALERT" in reason.upper():
            raise TlsFailure(
                "alert",
                f"the server aborted the TLS handshake for SNI {hostname} ({reason})",
                f"derper refuses an SNI other than its -hostname: run it with "
                f"-hostname {hostname} and a certificate for that name",
            ) from None
        raise TlsFailure(
            "tls-error", f"TLS handshake failed: {reason}", "check the TLS setup of the relay"
        ) from None
    handshake_ms = (time.perf_counter() - start) * 1000.0
    obj = writer.get_extra_info("ssl_object")
    cert = _peer_cert(writer)
    session = TlsSession(
        reader=reader,
        writer=writer,
        connect_ms=connect_ms,
        handshake_ms=handshake_ms,
        version=obj.version() if obj is not None else None,
        alpn=obj.selected_alpn_protocol() if obj is not None else None,
        cert=cert,
    )
    if cert is not None:
        session.data.update(cert_facts(cert))
    session.data.update({"version": session.version, "alpn": session.alpn})
    return session


async def _handshake(
    writer: asyncio.StreamWriter, ca_file: str | None, address: str, port: int, hostname: str
) -> None:
    """start_tls; if it has not finished after PLAIN_CHECK_AFTER s, ask in parallel whether the
    port speaks plain HTTP (such a server waits for a request line a ClientHello never ends)."""
    task = asyncio.ensure_future(
        writer.start_tls(client_context(ca_file), server_hostname=hostname)
    )
    try:
        done, _ = await asyncio.wait({task}, timeout=PLAIN_CHECK_AFTER)
        if not done and await _speaks_plain_http(address, port, hostname, PLAIN_CHECK_AFTER):
            raise _plain_http_failure("no TLS handshake, HTTP answers")
        await task
    finally:
        task.cancel()


def _plain_http_failure(why: str) -> TlsFailure:
    return TlsFailure(
        "plain-http",
        f"the port speaks plain HTTP, not TLS ({why})",
        "derper serves TLS on a port other than 443 only with -certmode manual "
        "(DERP_CERT_MODE=manual) and a certificate in -certdir (tailscale/tailscale#4716)",
    )


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else (str(exc) or type(exc).__name__)


async def _verify_failure(
    exc: ssl.SSLCertVerificationError,
    address: str,
    port: int,
    hostname: str,
    ca_file: str | None,
    deadline: float,
) -> TlsFailure:
    remaining = max(0.2, deadline - asyncio.get_running_loop().time())
    cert = await _describe_cert(address, port, hostname, remaining)
    facts = cert_facts(cert) if cert is not None else {}
    code = exc.verify_code
    names = ", ".join(facts.get("names") or [facts.get("subject", "?")])
    trust = f"the CA file {ca_file}" if ca_file else "the system CAs"
    if code in _EXPIRED:
        days = -int(facts.get("days_left", 0))
        return TlsFailure(
            "expired",
            f"certificate expired {facts.get('not_after', '?')} ({days} days ago)",
            "renew the certificate (pulumi up renews it) and restart derper: "
            "manual-mode certificates are read only at start",
            facts,
        )
    if code in _NOT_YET_VALID:
        return TlsFailure(
            "not-yet-valid",
            "certificate is not valid yet",
            "check the clock of the relay host and of this machine",
            facts,
        )
    if code in _NAME_MISMATCH:
        return TlsFailure(
            "name-mismatch",
            f"certificate is for {names}, not {hostname}",
            f"issue the certificate for {hostname} (derper looks for <certdir>/{hostname}.crt)",
            facts,
        )
    if code in _UNTRUSTED:
        what = "self-signed certificate" if facts.get("self_signed") else "untrusted certificate"
        return TlsFailure(
            "untrusted",
            f"{what} ({exc.verify_message}; issuer {facts.get('issuer', '?')}), not trusted by "
            f"{trust}",
            "use a certificate from a public CA (ACME DNS-01) with its full chain in .crt; "
            "images that write a self-signed cert when none is mounted produce exactly this",
            facts,
        )
    return TlsFailure(
        "verify-failed",
        f"certificate verification failed: {exc.verify_message} (code {code})",
        "check the certificate chain served by derper",
        facts,
    )


# --- the verdict ---------------------------------------------------------------------------------


def tls_verdict(address: str, session: TlsSession) -> Check:
    """The tls check of an established session: ALPN, expiry, and the certificate's facts."""
    facts = session.data
    ms = session.connect_ms + session.handshake_ms
    days = facts.get("days_left")
    names = ", ".join(facts.get("names") or []) or facts.get("subject", "?")
    detail = (
        f"{facts.get('version')}, ALPN {session.alpn or 'none'}, cert {names} "
        f"from {facts.get('issuer')}, expires {str(facts.get('not_after'))[:10]} "
        f"({days} days)"
    )
    if session.alpn not in (None, ALPN):
        return Check(
            "tls",
            address,
            False,
            detail + f"; server chose ALPN {session.alpn}",
            "derper speaks http/1.1 only: something else terminates TLS here",
            ms,
            data=facts,
        )
    if isinstance(days, int) and days < WARN_DAYS:
        return Check(
            "tls",
            address,
            True,
            detail,
            f"the certificate expires in {days} days: renew it (pulumi up) and restart derper",
            ms,
            warning=True,
            data=facts,
        )
    return Check("tls", address, True, detail, None, ms, data=facts)


def tls_failure(address: str, exc: TlsFailure) -> Check:
    return Check("tls", address, False, exc.detail, exc.hint, data={"kind": exc.kind, **exc.data})
