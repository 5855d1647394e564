"""The https probe: derper's two plain endpoints over the TLS session, and their verdict.

``/derp/probe`` answers GET/HEAD with 200 (derpserver.ProbeHandler,
tailscale.com@v1.102.5/derp/derpserver/handler.go:75-83; routed at cmd/derper/derper.go:276);
``/generate_204`` answers 204 and echoes ``X-Tailscale-Challenge`` as
``X-Tailscale-Response: response <challenge>`` when the challenge is at most 64 characters of
``[a-zA-Z0-9._:-]`` (ServeNoContent, handler.go:86-105). A proxy that rewrites or caches
responses loses the echo.
"""

from __future__ import annotations

import secrets
import string
import time

from .errors import HttpError, TlsFailure
from .http1 import KeepAlive, Response
from .report import Check

CHALLENGE_ALPHABET = string.ascii_letters + string.digits + "._:-"  # isChallengeChar


def new_challenge() -> str:
    """A token derper echoes from /generate_204 (<= 64 characters of CHALLENGE_ALPHABET)."""
    return "netcheck-" + "".join(secrets.choice(CHALLENGE_ALPHABET) for _ in range(24))


async def check_https(conn: KeepAlive, address: str, host: str) -> Check:
    """/generate_204 with a challenge → 204 + the echo, then /derp/probe → 200 (timed).

    ``conn`` starts on the tls check's session; when the server closes it after a full
    response, KeepAlive reconnects once (http1.py) instead of this check calling the service
    "non-HTTP".
    """
    # The challenge goes first: it also absorbs TLS 1.3 session tickets that arrive right after
    # the handshake and, measured first, made loopback requests look ~40 ms slow (delayed ACK).
    challenge = new_challenge()
    try:
        gen = await conn.request("GET", "/generate_204", host, {"X-Tailscale-Challenge": challenge})
        probe = await conn.request("GET", "/derp/probe", host)
        probe_ms = (time.perf_counter() - conn.sent_at) * 1000.0
    except HttpError as exc:
        return Check(
            "https",
            address,
            False,
            f"HTTP over TLS failed: {exc.detail}",
            "a non-HTTP service answers TLS on this port",
            data={"kind": exc.kind, "reconnects": conn.reconnects},
        )
    except TlsFailure as exc:
        return Check(
            "https",
            address,
            False,
            f"the server closed the connection; reconnecting failed: {exc.detail}",
            exc.hint,
            data={"kind": exc.kind, "reconnects": conn.reconnects},
        )
    return https_verdict(address, challenge, gen, probe, probe_ms, conn.reconnects)


def https_verdict(
    address: str,
    challenge: str,
    gen: Response,
    probe: Response,
    probe_ms: float,
    reconnects: int = 0,
) -> Check:
    data = {"reconnects": reconnects}
    if probe.status != 200:
        return Check(
            "https",
            address,
            False,
            f"GET /derp/probe answered {probe.status} {probe.reason}",
            "this is not derper (another web server or proxy answers on the port)",
            probe_ms,
            data=data,
        )
    expected = f"response {challenge}"
    got = gen.header("X-Tailscale-Response")
    if gen.status != 204 or got != expected:
        return Check(
            "https",
            address,
            False,
            f"GET /generate_204 answered {gen.status}, X-Tailscale-Response {got!r}",
            "derper echoes the challenge; something in between rewrites or caches responses",
            probe_ms,
            data=data,
        )
    note = ""
    if reconnects:
        # Harmless for DERP (each client opens its own connection), but worth knowing: derper
        # itself keeps connections alive, so something in front of it closes them.
        note = " (the server closed the connection after a response; reconnected)"
    return Check(
        "https",
        address,
        True,
        "/derp/probe 200, /generate_204 echoed the challenge" + note,
        None,
        probe_ms,
        data=data,
    )
