"""The checker's results: one named Check per fact, a Report that renders as text or JSON.

The JSON shape is documented in docs/guide/netcheck.md; fields may be
added, never renamed (``skipped`` and ``unconfirmed`` on checks, ``measured`` on regions and the
report's ``verdict`` were added later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .usage import UsageReading


@dataclass(frozen=True)
class RelayTarget:
    """What to validate. ``addresses`` skips DNS (like a derpMap IPv4/IPv6 pin); SNI stays
    ``hostname``. ``resolvers`` are ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``."""

    hostname: str
    derp_port: int = 443
    stun_port: int = 3478
    addresses: tuple[str, ...] = ()
    expected_addresses: tuple[str, ...] = ()
    resolvers: tuple[str, ...] = ()
    ca_file: str | None = None
    expect_verify_clients: bool | None = None


@dataclass(frozen=True)
class Check:
    """One verdict. ``warning`` marks an ok check that needs attention soon (e.g. expiry).

    ``skipped`` marks a check that could not run because the one it builds on failed (https,
    derp and verify_clients need TLS; verify_clients needs the DERP handshake): not passed
    (``ok`` is False) but not a failure of its own either (see Report.failed).

    ``unconfirmed`` marks a check whose outcome could not be proven and that nobody asked to be
    proven (admission without derper's own log line and without ``--expect-verify-clients``):
    not passed (``ok`` is False), not a failure either; the report's verdict says so.
    """

    name: str
    address: str | None
    ok: bool
    detail: str
    hint: str | None = None
    latency_ms: float | None = None
    warning: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    skipped: bool = False
    unconfirmed: bool = False

    @classmethod
    def skip(cls, name: str, address: str | None, because: str, reason: str) -> Check:
        """``name`` did not run because check ``because`` failed (``reason``: "TLS failed")."""
        return cls(
            name,
            address,
            False,
            f"skipped ({reason})",
            data={"skipped_because": because},
            skipped=True,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "ok": self.ok,
            "detail": self.detail,
            "hint": self.hint,
            "latency_ms": _ms(self.latency_ms),
            "warning": self.warning,
            "data": dict(self.data),
            "skipped": self.skipped,
            "unconfirmed": self.unconfirmed,
        }


Verdict = Literal["ok", "unconfirmed", "failed"]


@dataclass(frozen=True)
class RegionLatency:
    """STUN latency of one DERP region (None: no node answered in time, or not measured).

    ``measured`` is False for a ``NoMeasureNoHome`` region: clients never measure it nor pick
    it as home (tailscale.com@v1.102.5/tailcfg/derpmap.go:118-126), so neither does the checker.
    """

    id: int
    code: str
    latency_ms: float | None
    name: str = ""
    address: str | None = None
    measured: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "latency_ms": _ms(self.latency_ms),
            "address": self.address,
            "measured": self.measured,
        }


@dataclass
class Report:
    hostname: str
    checks: list[Check] = field(default_factory=list)
    server_public_key: str | None = None
    regions: list[RegionLatency] = field(default_factory=list)
    nearest: RegionLatency | None = None
    relay_latency_ms: float | None = None
    relay_rank: int | None = None
    relay_rank_of: int | None = None  # regions that answered + this relay
    duration_ms: float | None = None
    comparison_skipped: str | None = None
    """Why the DERP map comparison was not made (the map could not be fetched), or None."""
    usage: UsageReading | None = None
    """derper's own counters, when they were read (``--usage-from``; usage.py)."""

    @property
    def ok(self) -> bool:
        """Every check passed: nothing failed, nothing skipped, nothing left unconfirmed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def verdict(self) -> Verdict:
        """``ok``; ``unconfirmed`` when nothing failed but a check could not be proven; else
        ``failed`` (also for a report without checks)."""
        if self.ok:
            return "ok"
        if self.checks and all(c.ok or c.unconfirmed for c in self.checks):
            return "unconfirmed"
        return "failed"

    def failed(self) -> list[Check]:
        """Checks that failed on their own (skipped ones are the consequence of another;
        unconfirmed ones did not fail)."""
        return [c for c in self.checks if not c.ok and not c.skipped and not c.unconfirmed]

    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.skipped]

    def unconfirmed(self) -> list[Check]:
        return [c for c in self.checks if c.unconfirmed]

    def check(self, name: str, address: str | None = None) -> Check:
        """The first check with this name (and address, when given); KeyError otherwise."""
        for c in self.checks:
            if c.name == name and (address is None or c.address == address):
                return c
        raise KeyError(f"no check {name!r} for {address!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "ok": self.ok,
            "verdict": self.verdict,
            "checks": [c.to_json() for c in self.checks],
            "server_public_key": self.server_public_key,
            "regions": [r.to_json() for r in self.regions],
            "nearest": self.nearest.to_json() if self.nearest else None,
            "relay_latency_ms": _ms(self.relay_latency_ms),
            "relay_rank": self.relay_rank,
            "relay_rank_of": self.relay_rank_of,
            "duration_ms": _ms(self.duration_ms),
            "comparison_skipped": self.comparison_skipped,
            "usage": self.usage.to_json() if self.usage else None,
        }

    def format_text(self) -> str:
        return format_text(self)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def status_line(report: Report) -> str:
    """``Report for HOST: OK (5/5 checks passed)``, ``OK except 1 unconfirmed (…)`` or
    ``FAILED (…)``: never OK for what was not proven."""
    passed = sum(c.ok for c in report.checks)
    unconfirmed, skipped = len(report.unconfirmed()), len(report.skipped())
    verdict = {
        "ok": "OK",
        "unconfirmed": f"OK except {unconfirmed} unconfirmed",
        "failed": "FAILED",
    }[report.verdict]
    tail = "".join(
        f", {n} {what}" for n, what in ((unconfirmed, "unconfirmed"), (skipped, "skipped")) if n
    )
    return (
        f"Report for {report.hostname}: {verdict} "
        f"({passed}/{len(report.checks)} checks passed{tail})"
    )


def result_word(check: Check) -> str:
    """The RESULT column: ok, warn, unconfirmed, skip or FAIL."""
    if check.ok:
        return "warn" if check.warning else "ok"
    if check.unconfirmed:
        return "unconfirmed"
    return "skip" if check.skipped else "FAIL"


def format_text(report: Report) -> str:
    """An aligned table in the spirit of ``tailscale netcheck``, hints under failures."""
    lines = [status_line(report)]
    rows = [("CHECK", "ADDRESS", "RESULT", "LATENCY", "DETAIL")]
    for c in report.checks:
        result = result_word(c)
        rows.append((c.name, c.address or "-", result, _fmt_ms(c.latency_ms), c.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2])]
        cells.append(row[3].rjust(widths[3]))
        lines.append("  " + "  ".join(cells) + "  " + row[4])
        check = report.checks[i - 1] if i else None
        if check is not None and check.hint and (not check.ok or check.warning):
            lines.append("  " + " " * (sum(widths) + 8) + "hint: " + check.hint)
    if report.server_public_key:
        lines.append(f"  * Server public key: {report.server_public_key}")
    if report.regions:
        lines += ranked_lines(report)
    if report.nearest:
        lines.append(
            f"  * Nearest DERP: {report.nearest.code} ({report.nearest.id}), "
            f"{_fmt_ms(report.nearest.latency_ms)}"
        )
    if report.relay_rank is not None:
        lines.append(
            f"  * This relay: {_fmt_ms(report.relay_latency_ms)}, rank {report.relay_rank} "
            f"of {report.relay_rank_of}"
        )
    if (headline := comparison_headline(report)) is not None:
        lines.append(f"  * {headline}")
    if report.comparison_skipped:
        lines.append(f"  * Comparison skipped: {report.comparison_skipped}")
    if report.usage is not None:
        from .usage import format_usage

        lines += format_usage(report.usage)
    return "\n".join(lines)


#: Rows of the ranked table shown in text (JSON has every region); width of the longest bar.
RANKED_ROWS = 12
BAR_WIDTH = 28
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, high: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``value`` on a scale where ``high`` fills ``width`` cells (eighths
    of a cell with the Unicode block elements)."""
    if high <= 0 or value <= 0:
        return ""
    eighths = max(1, round(min(value, high) / high * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _this_relay(report: Report) -> set[int]:
    """Region ids of the map that are this relay (excluded from the ranking, regions.py)."""
    for c in report.checks:
        if c.name == "regions":
            return {int(i) for i in c.data.get("this_relay", ())}
    return set()


def ranked_rows(report: Report) -> list[tuple[str, str, float | None, bool]]:
    """(code, name, latency, is this relay) nearest first: the relay among the map's measured
    regions, then the regions that did not answer (latency None)."""
    ours = _this_relay(report)
    rows: list[tuple[str, str, float | None, bool]] = [
        (r.code, r.name, r.latency_ms, False)
        for r in report.regions
        if r.measured and r.id not in ours
    ]
    if report.relay_latency_ms is not None:
        rows.append((report.hostname, "this relay", report.relay_latency_ms, True))
    return sorted(rows, key=lambda row: (row[2] is None, row[2] or 0.0, not row[3], row[0]))


def ranked_lines(report: Report) -> list[str]:
    """The relay ranked among the map's regions by STUN latency, with bars (the seed's
    ``tailscale netcheck`` comparison, Tokyo 71.6 ms → home 47.3 ms, as one table)."""
    rows = ranked_rows(report)
    answered = [r for r in rows if r[2] is not None]
    shown = answered[:RANKED_ROWS]
    if any(r[3] for r in answered[RANKED_ROWS:]):
        shown.append(next(r for r in answered if r[3]))
    high = max((r[2] or 0.0 for r in shown), default=0.0)
    code_w = max([len(r[0]) for r in shown] + [4])
    name_w = max([len(r[1]) for r in shown] + [4])
    lines = ["  * Ranked by STUN latency from here (nearest first):"]
    for row in shown:
        code, name, ms, mine = row
        rank = answered.index(row) + 1
        mark = "▶" if mine else " "
        lines.append(
            f"    {mark}{rank:>3}. {code.ljust(code_w)}  {name.ljust(name_w)}  "
            f"{_fmt_ms(ms).rjust(8)}  {bar(ms or 0.0, high)}"
        )
    hidden = len(answered) - len(shown)
    silent = [r for r in rows if r[2] is None]
    if hidden > 0:
        lines.append(f"      … {hidden} farther regions (--json lists them all)")
    if silent:
        codes = ", ".join(r[0] for r in silent)
        lines.append(f"      no STUN answer: {codes}")
    unmeasured = sorted(r.code for r in report.regions if not r.measured)
    if unmeasured:
        lines.append(f"      not measured (NoMeasureNoHome): {', '.join(unmeasured)}")
    return lines


def comparison_headline(report: Report) -> str | None:
    """``Tokyo 71.6 ms → derp.example.com 47.3 ms: 24.3 ms nearer`` (or what is nearer)."""
    near, ours = report.nearest, report.relay_latency_ms
    if near is None or near.latency_ms is None or ours is None:
        return None
    theirs = f"{near.name or near.code} {near.latency_ms:.1f} ms"
    mine = f"{report.hostname} {ours:.1f} ms"
    if ours < near.latency_ms:
        return f"{theirs} → {mine}: this relay is {near.latency_ms - ours:.1f} ms nearer"
    return (
        f"{mine} is {ours - near.latency_ms:.1f} ms slower than {theirs}: from here, "
        f"{near.code} stays the nearer region"
    )
