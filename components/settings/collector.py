"""Typed reads of the raw config strings, every problem kept instead of stopping at the first.

Defaults come from the key table (``components/settings/keys.py``): a rule names the key, never
its default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TypeVar

from components.settings import keys
from components.settings.checks import parse_bool, parse_int
from components.settings.model import Problem

T = TypeVar("T", bound=str)


class Collector:
    """Reads raw strings (as Pulumi stores config) and records every problem and warning."""

    def __init__(self, raw: Mapping[str, str | None]) -> None:
        self.raw = raw
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.warning_keys: list[tuple[str, str]] = []
        self.notes: list[str] = []

    # -- what the rules conclude

    def fail(self, key: str, value: object, why: str, fix: str | None = None) -> None:
        """``key``'s ``value`` (None: not set) cannot be used: ``why``, and how to ``fix`` it."""
        self.problems.append(Problem(key, value, why, fix))

    def fail_on_host(self, key: str, value: object, why: str, fix: str | None = None) -> None:
        """``key``'s value is valid, but what the relay host says makes it unusable."""
        self.problems.append(Problem(key, value, why, fix, on_host=True))

    def problem(self, text: str, *, credential: str | None = None) -> None:
        """A problem that is not about one ``home-derp:`` key (credentials, runner);
        ``credential`` names the provider whose credential is missing."""
        self.problems.append(Problem(None, None, text, credential=credential))

    def warn(self, text: str, *, key: str | None = None) -> None:
        """A legal but risky choice; ``key`` when it is about that key's value as the relay host
        sees it (Verdict.warning_keys)."""
        self.warnings.append(text)
        if key is not None:
            self.warning_keys.append((text, key))

    def note(self, text: str) -> None:
        """Something the rules chose for the user (logged as info by the program)."""
        self.notes.append(text)

    def failed(self, key: str) -> bool:
        return any(p.key == key for p in self.problems)

    def checked(self, key: str, value: str, why: str | None) -> bool:
        """Record ``why`` for ``key`` if there is one; True when the value is fine."""
        if why:
            self.fail(key, value, why)
        return why is None

    # -- typed reads (an unset or blank key is its default from the key table)

    def is_set(self, key: str) -> bool:
        value = self.raw.get(key)
        return value is not None and value.strip() != ""

    def optional(self, key: str) -> str | None:
        value = self.raw.get(key)
        return value.strip() if value is not None and value.strip() else None

    def text(self, key: str) -> str:
        return self.optional(key) or keys.default_text(key)

    def boolean(self, key: str) -> bool:
        default = bool(keys.default(key))
        value = self.optional(key)
        if value is None:
            return default
        parsed = parse_bool(value)
        if parsed is None:
            self.fail(key, value, "must be true or false")
            return default
        return parsed

    def integer(self, key: str, low: int, high: int, why: str) -> int:
        default = keys.default_int(key)
        value = self.optional(key)
        if value is None:
            return default
        parsed = parse_int(value)
        if parsed is None or not low <= parsed <= high:
            self.fail(key, value, why)
            return default
        return parsed

    def choice(self, key: str, choices: Sequence[T]) -> T:
        value = self.text(key)
        for choice in choices:
            if value == choice:
                return choice
        self.fail(key, value, "must be one of " + ", ".join(choices))
        fallback = keys.default_text(key)
        return next(c for c in choices if c == fallback)

    def strings(self, key: str) -> tuple[str, ...]:
        """A list value (Pulumi hands structured config over as JSON text)."""
        value = self.optional(key)
        if value is None:
            return ()
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = [part.strip() for part in value.split(",")]
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            self.fail(key, value, 'must be a list of strings (e.g. ["tag:laptop"])')
            return ()
        return tuple(v.strip() for v in parsed)
