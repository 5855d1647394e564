"""The derp and verify_clients probes: the DERP upgrade, a random client's admission, verdicts.

The server speaks first: ``101`` with ``Derp-Version`` and ``Derp-Public-Key``
(tailscale.com@v1.102.5/derp/derpserver/handler.go:55-63), then FrameServerKey
(derpserver.go:1018, ``accept``). A FrameClientInfo from a fresh random key then tells whether
``-verify-clients`` is really on: derper closes the connection for a key that fails
``verifyClient`` (derpserver.go:1028-1030) and answers FrameServerInfo otherwise. Frames are in
derp_codec.py.

**The admission seam.** A closed connection alone does not prove that verification works:
derper closes it the same way when it cannot ask tailscaled at all. Only derper's log tells the
causes apart — it logs ``derp: <addr>: client nodekey:<hex> rejected: <why>``
(derpserver.go:676 with :1029), ``<why>`` being "not authorized" (derpserver.go:1593),
"tailscaled version is too old" (:1598) or "failed to query local tailscaled" (:1600); with
``-verify-client-url`` the admission controller's answer (:1604-1640: admission.py). So the
probe's random client key is exposed (``Admission.client_key``, hex; the log writes it as
``nodekey:<hex>``, types/key/node.go:36) and lands in the verify_clients check's
``data["client_key"]``. A caller that can read derper's log passes an :data:`EvidenceSource`
to ``probes.probe_relay(evidence_source=...)``; it is called once per address after the
admission, within the report deadline, and what it returns reaches :func:`verify_verdict`,
which records ``data["cause"]`` and judges by it.

**Unconfirmed is not OK.** A rejection whose cause derper's log does not give (no evidence
source, or no line in time) is ``cause: unconfirmed``: a failure when ``--expect-verify-clients``
asked for verification to be proven, otherwise a check marked ``unconfirmed`` — never passed,
so the report's headline and exit status say so (report.py, cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from .derp_codec import (
    FRAME_CLIENT_INFO,
    FRAME_SERVER_INFO,
    PROTOCOL_VERSION,
    client_info_payload,
    encode_frame,
    parse_server_key,
    read_frame,
)
from .errors import DerpError, HttpError, TlsFailure
from .http1 import KeepAlive
from .report import Check


@dataclass(frozen=True)
class Handshake:
    version: str | None
    header_key: str | None
    frame_key: str
    handshake_ms: float


@dataclass(frozen=True)
class Admission:
    """How derper treated a fresh random client key."""

    admitted: bool
    ms: float
    client_key: str  # 64 hex: the random client's public key, as derper logs it (nodekey:<hex>)


AdmissionCause = Literal[
    "not_authorized",
    "tailscaled_unreachable",
    "version_skew",
    "denied",
    "verifier_unreachable",
    "verifier_error",
    "unconfirmed",
]


@dataclass(frozen=True)
class AdmissionEvidence:
    """What derper's own log says about ``Admission.client_key`` (see the module doc)."""

    cause: AdmissionCause
    log_line: str | None = None
    detail: str | None = None
    """Why the cause is ``unconfirmed`` (no line in time, log unreadable)."""
    source: str | None = None
    """Where the log was read (``container derper-900-home on ssh://…``)."""
    derper_version: str | None = None
    """The release derper was built from, when the caller knows it (named on version skew)."""
    tailscaled_version: str | None = None


# (relay address, admission) → evidence, or None when nothing could be read.
EvidenceSource = Callable[[str, Admission], Awaitable[AdmissionEvidence | None]]


# --- I/O -----------------------------------------------------------------------------------------


async def handshake(conn: KeepAlive, host: str) -> Handshake:
    """Upgrade to DERP and read the server key; DerpError describes what came instead."""
    try:
        head = await conn.request(
            "GET", "/derp", host, {"Upgrade": "DERP", "Connection": "Upgrade"}, head_only=True
        )
    except HttpError as exc:
        raise DerpError("not-http", f"no HTTP answer to the upgrade: {exc.detail}") from None
    if head.status == 426:
        raise DerpError(
            "upgrade-stripped", "426 Upgrade Required: the Upgrade header did not reach derper"
        )
    if head.status != 101:
        raise DerpError("no-upgrade", f"GET /derp answered {head.status} {head.reason}, not 101")
    upgrade = head.header("upgrade")
    if (upgrade or "").lower() != "derp":
        raise DerpError("no-upgrade", f"101 with Upgrade: {upgrade!r}, not DERP")
    try:
        ftype, payload = await read_frame(conn.stream.reader)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        raise DerpError("no-server-key", "connection closed before FrameServerKey") from None
    key = parse_server_key(ftype, payload)
    return Handshake(
        version=head.header("derp-version"),
        header_key=head.header("derp-public-key"),
        frame_key=key.hex(),
        handshake_ms=(time.perf_counter() - conn.sent_at) * 1000.0,
    )


async def probe_admission(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    server_key: bytes,
    client: PrivateKey | None = None,
) -> Admission:
    """Send ClientInfo from ``client`` (default: a fresh random key); a closed connection
    means rejected.

    Raises DerpError when the server answers something unexpected; the caller bounds the time.
    """
    client = client or PrivateKey.generate()
    client_key = bytes(client.public_key).hex()
    info = {"version": PROTOCOL_VERSION, "CanAckPings": True}
    start = time.perf_counter()
    writer.write(encode_frame(FRAME_CLIENT_INFO, client_info_payload(client, server_key, info)))
    await writer.drain()
    box = Box(client, PublicKey(server_key))
    while True:
        try:
            ftype, payload = await read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return Admission(False, (time.perf_counter() - start) * 1000.0, client_key)
        if ftype == FRAME_SERVER_INFO:
            try:
                json.loads(box.decrypt(payload))
            except (CryptoError, ValueError) as exc:  # ValueError: not UTF-8 / not JSON
                raise DerpError("bad-server-info", f"FrameServerInfo unreadable: {exc}") from None
            return Admission(True, (time.perf_counter() - start) * 1000.0, client_key)
        # keepalives, pings, health frames may come first; anything else keeps us waiting


async def probe_derp(
    conn: KeepAlive,
    address: str,
    host: str,
    expect: bool | None,
    out: list[Check],
    evidence_source: EvidenceSource | None = None,
    pending: dict[str, str] | None = None,
) -> None:
    """derp, then verify_clients, on their own connection; each check is appended to ``out``
    as soon as it is known (the runner's deadline may cut the rest). ``pending["client_key"]``
    is set before the ClientInfo goes out, so a caller whose deadline cuts the admission short
    still knows which key derper will log (a derper that cannot reach tailscaled retries for up
    to 5 s after its start, tailscale.com@v1.102.5/safesocket/safesocket.go:36-58)."""
    # Settle the connection first (see https.check_https), so the upgrade time is the server's,
    # like netcheck's request-only latency.
    with contextlib.suppress(HttpError, TlsFailure):
        await conn.request("HEAD", "/derp/probe", host)
    try:
        hs = await handshake(conn, host)
    except DerpError as exc:
        out += [derp_failure(address, exc), _verify_skipped(address)]
        return
    except TlsFailure as exc:  # the server closed the connection and reconnecting failed
        out += [
            Check("derp", address, False, f"reconnecting failed: {exc.detail}", exc.hint),
            _verify_skipped(address),
        ]
        return
    out.append(derp_verdict(address, hs))
    client = PrivateKey.generate()
    if pending is not None:
        pending["client_key"] = bytes(client.public_key).hex()
    s = conn.stream
    try:
        admission = await probe_admission(s.reader, s.writer, bytes.fromhex(hs.frame_key), client)
    except DerpError as exc:
        out.append(admission_failure(address, exc))
        return
    evidence = await evidence_source(address, admission) if evidence_source else None
    out.append(verify_verdict(address, admission, expect, evidence))


def _verify_skipped(address: str) -> Check:
    return Check.skip("verify_clients", address, "derp", "DERP failed")


# --- verdicts ------------------------------------------------------------------------------------


def derp_verdict(address: str, hs: Handshake) -> Check:
    data = {"derp_version": hs.version, "server_public_key": hs.frame_key}
    if hs.header_key is not None and hs.header_key.lower() != hs.frame_key:
        return Check(
            "derp",
            address,
            False,
            f"Derp-Public-Key {hs.header_key} differs from the FrameServerKey {hs.frame_key}",
            "something between client and derper rewrites the stream: remove proxies",
            hs.handshake_ms,
            data=data,
        )
    if hs.header_key is None or hs.version is None:
        return Check(
            "derp",
            address,
            True,
            f"server key {hs.frame_key} (101 without Derp-Version/Derp-Public-Key: old derper)",
            "update derper",
            hs.handshake_ms,
            warning=True,
            data=data,
        )
    return Check(
        "derp",
        address,
        True,
        f"DERP v{hs.version}, server key {hs.frame_key[:16]}…",
        None,
        hs.handshake_ms,
        data=data,
    )


_DERP_HINTS = {
    "upgrade-stripped": "derper never saw the Upgrade: a proxy (Cloudflare proxied record?) "
    "sits in front; DERP needs a direct, DNS-only record",
    "no-upgrade": "something else answers /derp (web server or proxy); DERP cannot pass an "
    "HTTP proxy",
    "not-http": "the service on this port is not derper",
    "bad-magic": "the server is not speaking DERP (or the stream is modified in transit)",
    "bad-frame": "the server is not speaking DERP (or the stream is modified in transit)",
    "no-server-key": "derper closed the connection right after the upgrade: check its log",
}


def derp_failure(address: str, exc: DerpError) -> Check:
    return Check(
        "derp", address, False, exc.detail, _DERP_HINTS.get(exc.kind), data={"kind": exc.kind}
    )


def admission_failure(address: str, exc: DerpError) -> Check:
    return Check(
        "verify_clients",
        address,
        False,
        exc.detail,
        "the server is not a faithful derper",
        data={"kind": exc.kind},
    )


def verify_verdict(
    address: str,
    admission: Admission,
    expect: bool | None,
    evidence: AdmissionEvidence | None = None,
) -> Check:
    """The verify_clients check. With ``evidence`` (derper's log about our key) a rejection is
    judged by its cause: only ``not_authorized`` proves that derper asked tailscaled."""
    admitted, ms = admission.admitted, admission.ms
    data: dict[str, object] = {"verify_clients": not admitted, "client_key": admission.client_key}
    if evidence is not None:
        data["cause"] = evidence.cause
        if evidence.log_line is not None:
            data["log_line"] = evidence.log_line
    if admitted:
        state = "OFF: a random client key was admitted (FrameServerInfo)"
        if expect is True:
            return Check(
                "verify_clients",
                address,
                False,
                state,
                "anyone can relay through this line: run derper with -verify-clients "
                "(home-derp:verifyClients true) and mount the tailscaled socket's directory",
                ms,
                data=data,
            )
        return Check("verify_clients", address, True, state, None, ms, data=data)
    if expect is False:
        return Check(
            "verify_clients",
            address,
            False,
            "ON: a random client key was rejected, but an open relay was expected",
            "turn verification off, or expect it (--expect-verify-clients)",
            ms,
            data=data,
        )
    if evidence is None:
        data["cause"] = "unconfirmed"
        return _unconfirmed(
            address,
            expect,
            "a random client key was rejected (connection closed), but derper's own verdict "
            "was not read",
            UNREAD_HINT,
            ms,
            data,
        )
    return _evidence_verdict(address, evidence, expect, ms, data)


#: What proves admission when only the closed connection was seen (docs/guide/netcheck.md).
UNREAD_HINT = (
    "derper closes the connection the same way when it cannot ask tailscaled at all (then it "
    "rejects everyone): read derper's own verdict with --docker-host and --container — on the "
    "relay host its Docker socket (unix://…), from elsewhere ssh://you@relay-host; home-derp "
    "names the container derper-<regionId>-<regionCode>"
)


def _unconfirmed(
    address: str,
    expect: bool | None,
    detail: str,
    hint: str,
    ms: float,
    data: dict[str, object],
) -> Check:
    """Admission that could not be proven: a failure when verification was expected, otherwise
    a check marked unconfirmed (not passed, not failed)."""
    if expect is True:
        return Check(
            "verify_clients",
            address,
            False,
            f"admission could not be confirmed, and client verification is expected: {detail}",
            hint,
            ms,
            data=data,
        )
    return Check(
        "verify_clients",
        address,
        False,
        f"unconfirmed: {detail}",
        hint,
        ms,
        data=data,
        unconfirmed=True,
    )


def _evidence_verdict(
    address: str,
    evidence: AdmissionEvidence,
    expect: bool | None,
    ms: float,
    data: dict[str, object],
) -> Check:
    where = f" ({evidence.source})" if evidence.source else ""
    if evidence.cause == "not_authorized":
        return Check(
            "verify_clients",
            address,
            True,
            "ON: derper asked tailscaled, which does not know the random key (not authorized)",
            None,
            ms,
            data=data,
        )
    if evidence.cause == "denied":
        return Check(
            "verify_clients",
            address,
            True,
            "ON: derper asked its admission controller (-verify-client-url), which refused the "
            "random key (not allowed)",
            None,
            ms,
            data=data,
        )
    if evidence.cause == "verifier_unreachable":
        return Check(
            "verify_clients",
            address,
            False,
            "derper cannot reach its admission controller (-verify-client-url), so it rejects "
            f"EVERY client{where}: {evidence.log_line or ''}",
            "derper POSTs each client's key to <headscale>/verify: check home-derp:headscaleUrl, "
            "that headscale runs, and that the relay host can reach that URL (DNS, firewall, "
            "TLS)",
            ms,
            data=data,
        )
    if evidence.cause == "verifier_error":
        return Check(
            "verify_clients",
            address,
            False,
            "derper's admission controller answered with an error, so derper rejects EVERY "
            f"client{where}: {evidence.log_line or ''}",
            "the URL must be headscale's own /verify (home-derp:headscaleUrl is headscale's "
            "server_url); a proxy in front of headscale must pass POST /verify through",
            ms,
            data=data,
        )
    if evidence.cause == "tailscaled_unreachable":
        return Check(
            "verify_clients",
            address,
            False,
            f"derper cannot reach tailscaled, so it rejects EVERY client{where}: "
            f"{evidence.log_line or ''}",
            "derper asks tailscaled through the socket in the mounted directory: check "
            "home-derp:tailscaleSocket, that tailscaled runs on the relay host, and, if it was "
            "restarted, that its runtime directory survived (systemd RuntimeDirectoryPreserve=yes) "
            "or restart the derper container",
            ms,
            data=data,
        )
    if evidence.cause == "version_skew":
        versions = ""
        if evidence.derper_version or evidence.tailscaled_version:
            versions = (
                f" (derper {evidence.derper_version or '?'}, "
                f"tailscaled {evidence.tailscaled_version or '?'})"
            )
        return Check(
            "verify_clients",
            address,
            False,
            f"derper and tailscaled are out of sync{versions}: derper rejects EVERY client "
            "(tailscaled version is too old, tailscale/tailscale#12617)",
            "build derper at the host tailscaled's release (home-derp:tailscaleVersion auto) "
            "or upgrade tailscaled, then `pulumi up`",
            ms,
            data=data,
        )
    return _unconfirmed(
        address,
        expect,
        "a random key was rejected but derper's log does not say why"
        + where
        + (f": {evidence.detail}" if evidence.detail else ""),
        "check that the container name and Docker host are derper's, and read its log "
        "(`docker logs <container>`) for 'rejected:' lines",
        ms,
        data,
    )
