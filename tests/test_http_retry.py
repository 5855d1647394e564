"""components/http_retry.py: the pure rules (what is retried, how long to wait, when to stop).

The loop itself runs against the API peers in tests/test_tailscale_api.py,
tests/test_cloudflare_api.py and, through the real provider process, tests/test_tailnet.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.http_retry import RetryPolicy, backoff, retry_after, retryable_status

NOW = dt.datetime(2026, 12, 6, 12, 0, 0, tzinfo=dt.UTC)


# 429 and every 5xx are transient; other statuses are answers.
@pytest.mark.parametrize(
    ("status", "transient"),
    [(429, True), (500, True), (502, True), (503, True), (504, True), (599, True),
     (200, False), (400, False), (401, False), (403, False), (404, False), (412, False)],
)  # fmt: skip
def test_retryable_status(status: int, transient: bool) -> None:
    assert retryable_status(status) is transient


# Retry-After in both RFC 9110 forms; garbage and absence ask for nothing; the past is now.
@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("0.5", 0.5),
        ("Sun, 06 Dec 2026 12:00:30 GMT", 30.0),
        ("Sun, 06 Dec 2026 11:00:00 GMT", 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, NOW) == seconds


# Backoff doubles from base, never passes the cap, and jitter only ever shortens it (by ≤ 25%).
@given(retry=st.integers(1, 30), jitter=st.floats(0, 1))
def test_backoff_is_capped_and_jitter_only_shortens(retry: int, jitter: float) -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    full = min(8.0, 2.0 ** (retry - 1))
    assert 0.75 * full <= backoff(retry, policy, jitter) <= full


# Without jitter: 1, 2, 4, 8, 8 …
def test_backoff_sequence() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    assert [backoff(n, policy, 0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 8.0]
