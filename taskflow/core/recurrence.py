"""Recurrence rules: which values `recurrence` accepts, and when the next occurrence is due.

Pure Python, no I/O: a create or edit checks its value before any statement runs. Accepted, and
stored in this canonical spelling:
- `daily`, `weekly`, `monthly` (a calendar month: Jan 31 -> Feb 28);
- `every N days`, `every N weeks` (N from 1 to 999; `every 1 day` is stored as `daily`);
- an RFC 5545 RRULE, with or without its `RRULE:` prefix (`FREQ=WEEKLY;BYDAY=MO,TH`), read by
  python-dateutil, stored as `RRULE:...` in upper case. COUNT and UNTIL end the series; UNTIL is
  UTC (`...Z`); no DTSTART (the series starts at its first task's due date), no faster than
  HOURLY.
Anything else is refused naming these forms. Phase 1 stored free text; such a value imported as
it was is *legacy* (`is_legacy`): shown, kept, and never recurs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from dateutil.relativedelta import relativedelta
from dateutil.rrule import rrule, rrulestr

ACCEPTED = (
    "daily, weekly, monthly, every N days, every N weeks, or an RFC 5545 RRULE such as "
    "RRULE:FREQ=WEEKLY;BYDAY=MO,TH"
)
_SIMPLE = {
    "daily": relativedelta(days=1),
    "weekly": relativedelta(weeks=1),
    "monthly": relativedelta(months=1),
}
_EVERY = re.compile(r"^every\s+(\d{1,3})\s+(day|week)s?$")
_TOO_FAST = ("SECONDLY", "MINUTELY")
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed recurrence: a fixed step (`step`) or an RRULE (`rrule_text`)."""

    text: str
    step: relativedelta | None = None
    rrule_text: str | None = None

    def next_after(self, due: datetime, series_start: datetime | None = None) -> datetime | None:
        """The next due date after `due`; None when an RRULE's COUNT or UNTIL has run out.
        An RRULE counts from `series_start` (the series' first due date) when known."""
        if self.step is not None:
            return due + self.step
        assert self.rrule_text is not None
        rule = _rrule(self.rrule_text, series_start or due)
        return rule.after(due)


def _rrule(body: str, start: datetime) -> rrule:
    made = rrulestr(body, dtstart=start)
    assert isinstance(made, rrule)
    return made


def _refuse(value: str, why: str = "") -> ValueError:
    reason = f" ({why})" if why else ""
    return ValueError(f"recurrence {value!r} is not a rule{reason}: use {ACCEPTED}")


@lru_cache(maxsize=512)
def parse(value: str) -> Rule:
    """The rule `value` spells, or ValueError naming the accepted forms."""
    text = " ".join(value.split())
    lowered = text.lower()
    if lowered in _SIMPLE:
        return Rule(lowered, step=_SIMPLE[lowered])
    every = _EVERY.match(lowered)
    if every:
        n, unit = int(every.group(1)), every.group(2)
        if n < 1:
            raise _refuse(value, "N must be at least 1")
        if n == 1:
            canonical = "daily" if unit == "day" else "weekly"
            return Rule(canonical, step=_SIMPLE[canonical])
        step = relativedelta(days=n) if unit == "day" else relativedelta(weeks=n)
        return Rule(f"every {n} {unit}s", step=step)
    upper = text.upper().replace(" ", "")
    body = upper.removeprefix("RRULE:")
    if not body.startswith("FREQ=") and ";FREQ=" not in body:
        raise _refuse(value)
    if "DTSTART" in body or "\n" in value:
        raise _refuse(value, "one RRULE line, without DTSTART")
    if any(f"FREQ={fast}" in body for fast in _TOO_FAST):
        raise _refuse(value, "a task recurs at most hourly")
    try:
        first = _rrule(body, _PROBE).after(_PROBE)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _refuse(value, str(exc)) from None
    if first is None:
        raise _refuse(value, "it never occurs")
    return Rule(f"RRULE:{body}", rrule_text=body)


def canonical(value: str | None) -> str | None:
    """`value` checked and spelled canonically (for a command's validator); None stays None."""
    return None if value is None else parse(value).text


def rule_of(value: str | None) -> Rule | None:
    """The rule of a stored value, or None when there is none or it is legacy free text."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError:
        return None


def is_legacy(value: str | None) -> bool:
    """A stored value that is not a rule: Phase 1's free text, kept as it was."""
    return value is not None and rule_of(value) is None
