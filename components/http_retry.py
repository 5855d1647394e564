"""One HTTP exchange over urllib, retried with capped backoff when the fault is transient.

The two API clients (``components/tailscale_api.py``, ``components/cloudflare_api.py``) send their
requests through :func:`send`, so the rule for what is retried, how long to wait and when to stop
lives here once (docs/upstream/http-retries.md#retryable-faults):

* **What is retried**: HTTP 429 and every 5xx; no answer at all (DNS, refused, reset, a timeout);
  a truncated or garbled answer (``http.client.HTTPException``: ``IncompleteRead``,
  ``RemoteDisconnected``, ``BadStatusLine`` …). The status codes are the ones Tailscale's own
  control client retries (tailscale.com@v1.102.5 control/controlclient/errors.go:40-50) and the
  ones the Cloudflare SDK retries (cloudflare/cloudflare-go@16ae7fd internal/requestconfig/
  requestconfig.go:248-273; it adds 408 and 409, which the calls here never get).
* **Unsafe requests are not resent** after a fault that may come after the server acted (a 5xx,
  no answer, a truncated answer): the caller gets :class:`TransportError` or the 5xx and decides
  (``tailnet.read_modify_write`` re-reads the policy to see whether its write landed). A 429 is
  resent for every request: the server refused it without acting (RFC 6585 §4).
* **How long to wait**: ``Retry-After`` when the server sends it, in seconds or as an HTTP date
  (RFC 9110 §10.2.3; both clients above read both forms); otherwise ``base * 2**(n-1)`` seconds,
  at most ``cap``, less up to a quarter of random jitter (requestconfig.go:365-384).
* **When to stop**: after ``attempts`` tries, or when the next wait would end past ``budget``
  seconds since the first try — a ``Retry-After`` longer than what is left ends the retries at
  once instead of sleeping into a run that would fail anyway.

Every retry is reported through ``log`` (the provider process prints it on stderr, the program
hands it to ``pulumi.log``), so a slow ``up`` says why it is slow. Nothing here knows a token: the
request carries it, messages only name the method and the URL the caller passes as ``what``.

A leaf: stdlib only, no project import.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

#: Statuses that mean "not now" rather than "no": rate limited, or the server failed.
RATE_LIMITED: Final = 429

Log = Callable[[str], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries: tries in all, backoff, and the time all of it may take."""

    attempts: int = 4
    """Tries in all, the first one included."""
    base: float = 1.0
    """Seconds before the first retry (doubled each time)."""
    cap: float = 8.0
    """The longest single wait (``Retry-After`` may ask for more, within ``budget``)."""
    budget: float = 60.0
    """Seconds from the first try after which no retry starts."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer that arrived whole (any status)."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    tries: int = 1
    """How many requests it took."""
    waited: float = 0.0
    """Seconds from the first try to this answer."""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class TransportError(Exception):
    """No whole answer: nothing arrived, the connection broke, or the answer was cut short.

    ``sent`` is True when the request may have reached the server (the fault came after the
    connection was made), so an unsafe request may have been acted on.
    """

    def __init__(self, reason: str, *, timeout: bool, sent: bool, tries: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout
        self.sent = sent
        self.tries = tries


# ---------------------------------------------------------------------------------------------
# Pure rules


def retryable_status(status: int) -> bool:
    """429 and every 5xx (see the module docstring for the sources)."""
    return status == RATE_LIMITED or 500 <= status <= 599


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds a ``Retry-After`` value asks for (RFC 9110 §10.2.3), None when absent or garbage.

    ``delay-seconds`` (a non-negative integer; a fraction is accepted as Cloudflare's SDK does) or
    an ``HTTP-date``; a date in the past means now (0).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, (when - now).total_seconds())
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, infinity
        return None
    return max(0.0, seconds)


def backoff(retry: int, policy: RetryPolicy, jitter: float) -> float:
    """Seconds before retry number ``retry`` (1 = the first): doubled each time, capped, less
    ``jitter`` (0–1) of a quarter of it, so many clients do not retry in step."""
    delay = min(policy.cap, policy.base * 2 ** (retry - 1))
    return delay - delay * 0.25 * min(max(jitter, 0.0), 1.0)


# ---------------------------------------------------------------------------------------------
# The edge


def exchange(request: urllib.request.Request, timeout: float) -> Answer:
    """One request; any status is an :class:`Answer`, a broken exchange a :class:`TransportError`.

    ``http.client.HTTPException`` (a truncated body, a garbled status line, a closed connection)
    is a transport fault like ``OSError``: callers must never see either raw.
    """
    sent = False
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                sent = True
                return Answer(resp.status, resp.read(), dict(resp.headers.items()))
        except urllib.error.HTTPError as err:
            sent = True
            try:
                return Answer(err.code, err.read(), dict(err.headers.items()))
            finally:
                err.close()
    except urllib.error.URLError as err:
        reason = err.reason
        timed_out = isinstance(reason, TimeoutError)
        raise TransportError(str(reason), timeout=timed_out, sent=False) from None
    except TimeoutError as err:
        raise TransportError(f"no answer in {timeout:g}s ({err or 'timed out'})", timeout=True,
                             sent=True) from None  # fmt: skip
    except http.client.IncompleteRead as err:
        raise TransportError(
            f"the answer was cut short after {len(err.partial)} bytes"
            + (f" of {len(err.partial) + err.expected}" if err.expected else ""),
            timeout=False,
            sent=True,
        ) from None
    except http.client.HTTPException as err:
        name = type(err).__name__
        raise TransportError(f"a broken HTTP answer ({name}: {err})", timeout=False,
                             sent=True) from None  # fmt: skip
    except OSError as err:
        raise TransportError(str(err) or type(err).__name__, timeout=False, sent=sent) from None


def stderr_log(prefix: str) -> Log:
    """A ``log`` for processes without an engine connection (the dynamic-provider process)."""

    def log(message: str) -> None:
        print(f"{prefix}: {message}", file=sys.stderr, flush=True)

    return log


def send(
    request: urllib.request.Request,
    *,
    timeout: float,
    policy: RetryPolicy,
    what: str,
    safe: bool,
    log: Log,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    jitter: Callable[[], float] = random.random,
) -> Answer:
    """``request`` until it gets a final answer, retried as the module docstring says.

    ``safe``: the request may be sent again after a fault that came after the server acted (a
    read, a validate, a conditional write the caller checks). Returns the last answer, which may
    still be a 429 or a 5xx when the retries ran out; raises :class:`TransportError` when the last
    try got no whole answer. ``what`` names the call in the log ("Tailscale API GET …/acl").
    """
    started = clock()
    tries = 0
    while True:
        tries += 1
        try:
            answer = exchange(request, timeout)
        except TransportError as err:
            err.tries = tries
            may_resend = safe or not err.sent
            delay = backoff(tries, policy, jitter())
            if not may_resend or not _may_retry(tries, delay, started, policy, clock):
                raise
            log(f"{what}: {err.reason}; retry {tries} of {policy.attempts - 1} in {delay:.1f}s")
            sleep(delay)
            continue
        answer = Answer(answer.status, answer.body, answer.headers, tries, clock() - started)
        if not retryable_status(answer.status):
            return answer
        if answer.status != RATE_LIMITED and not safe:
            return answer  # a 5xx may come after the server acted: the caller decides
        asked = retry_after(answer.header("Retry-After"), now())
        delay = asked if asked is not None else backoff(tries, policy, jitter())
        if not _may_retry(tries, delay, started, policy, clock):
            return answer
        because = f", Retry-After {asked:g}s" if asked is not None else ""
        log(
            f"{what}: HTTP {answer.status}{because}; retry {tries} of "
            f"{policy.attempts - 1} in {delay:.1f}s"
        )
        sleep(delay)


def _may_retry(
    tries: int,
    delay: float,
    started: float,
    policy: RetryPolicy,
    clock: Callable[[], float],
) -> bool:
    return tries < policy.attempts and clock() - started + delay <= policy.budget
