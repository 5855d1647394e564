"""The doctor's result model: one :class:`Check` per row, a :class:`Report` for the run (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

Status = Literal["pass", "fail", "not_checked"]
STATUSES: Final[tuple[Status, ...]] = ("pass", "fail", "not_checked")


@dataclass(frozen=True)
class Check:
    """One row of the checklist; ``id`` is stable (see the package docstring for the list)."""

    id: str
    status: Status
    summary: str
    detail: str | None = None
    """More lines: what was seen (candidates, containers, records)."""
    fix: str | None = None
    """What to do; set on every ``fail``."""

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "summary": self.summary,
            "detail": self.detail,
            "fix": self.fix,
        }


def passed(check_id: str, summary: str, detail: str | None = None) -> Check:
    return Check(check_id, "pass", summary, detail)


def failed(check_id: str, summary: str, fix: str, detail: str | None = None) -> Check:
    return Check(check_id, "fail", summary, detail, fix)


def not_checked(check_id: str, why: str, fix: str | None = None) -> Check:
    """A row the doctor could not judge; ``fix`` says how to let it (e.g. export a token)."""
    return Check(check_id, "not_checked", f"not checked: {why}", None, fix)


def blocked(check_id: str, by: Check) -> Check:
    """A row that depends on ``by``, which did not pass."""
    what = "failed" if by.status == "fail" else "was not checked"
    return not_checked(check_id, f"{by.id} {what}")


@dataclass(frozen=True)
class Report:
    """Everything one run found, in checklist order."""

    stack: str
    project: str
    stack_file: str
    docker_host: str | None
    checks: tuple[Check, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when nothing failed (rows that could not be checked do not fail the run)."""
        return all(c.status != "fail" for c in self.checks)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "project": self.project,
            "stack_file": self.stack_file,
            "docker_host": self.docker_host,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
            "warnings": list(self.warnings),
        }

    def redacted(self, secrets: Iterable[str]) -> Report:
        """The same report with every secret value replaced by ``***`` (defence in depth)."""
        values = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        if not values:
            return self

        def clean(text: str | None) -> str | None:
            if text is None:
                return None
            for value in values:
                text = text.replace(value, "***")
            return text

        checks = tuple(
            replace(
                c,
                summary=clean(c.summary) or "",
                detail=clean(c.detail),
                fix=clean(c.fix),
            )
            for c in self.checks
        )
        warnings = tuple(clean(w) or "" for w in self.warnings)
        return replace(self, checks=checks, warnings=warnings)


def lines(items: Sequence[str]) -> str | None:
    """Detail text of one item per line (None when there are none)."""
    return "\n".join(items) if items else None
