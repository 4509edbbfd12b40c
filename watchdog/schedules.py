"""pg_cron schedules: 5-field cron, macros, `'N seconds'` and `$`.

pg_cron accepts forms that Python cron parsers reject: `'30 seconds'`
(pg_cron 1.5+) and `$` for the last day of the month (pg_cron 1.6+). They are
recognised here before anything reaches cronsim.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from watchdog.cronsyntax import CronSyntaxError, parse_fields

# pg_cron's interval form: 1 to 59 seconds, singular or plural, any case.
_INTERVAL = re.compile(r"^\s*(\d+)\s+seconds?\s*$", re.IGNORECASE)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_REBOOT_MACROS = ("@reboot", "@restart")

# Slots counted when saying how many runs were missed; beyond it the count is "at least".
MAX_COUNTED_SLOTS = 10_000


_UTC_ZONES = frozenset({"UTC", "GMT", "Etc/UTC", "Etc/GMT", "Z"})
_NUMBER = re.compile(r"^\d{1,2}$")


def _fixed_step(expression: str) -> tuple[int, int] | None:
    """Return (period, phase) in seconds for schedules that fire at a fixed step, else None.

    Day-of-month, month and day-of-week must be `*`. Handled: `* * * * *`,
    `*/N * * * *` with N dividing 60, `M * * * *`, `M */H * * *` with H
    dividing 24, and `M H * * *`.
    """
    minute, hour, day, month, weekday = expression.split()
    if (day, month, weekday) != ("*", "*", "*"):
        return None
    if hour == "*":
        if minute == "*":
            return 60, 0
        if minute.startswith("*/") and minute[2:].isdigit() and 60 % int(minute[2:]) == 0:
            return 60 * int(minute[2:]), 0
        if _NUMBER.match(minute) and int(minute) < 60:
            return 3600, int(minute) * 60
        return None
    if not (_NUMBER.match(minute) and int(minute) < 60):
        return None
    if hour.startswith("*/") and hour[2:].isdigit() and 24 % int(hour[2:]) == 0:
        return 3600 * int(hour[2:]), int(minute) * 60
    if _NUMBER.match(hour) and int(hour) < 24:
        return 86400, int(hour) * 3600 + int(minute) * 60
    return None


class ScheduleError(ValueError):
    """A schedule string that pg_cron would reject or the watchdog cannot evaluate."""


# One evaluation calls this for every job with the same schedule and deadline. Most
# fleets share a handful of schedules, so a cache skips nearly every cronsim call.
@functools.lru_cache(maxsize=4096)
def _latest_due(expression: str, at_or_before: datetime, tz: ZoneInfo) -> datetime:
    # cronsim's reverse iteration excludes its start, so start one second later.
    start = at_or_before.astimezone(tz).replace(microsecond=0) + timedelta(seconds=1)
    return next(CronSim(expression, start, reverse=True)).astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _next_due(expression: str, after: datetime, tz: ZoneInfo) -> datetime:
    return next(CronSim(expression, after.astimezone(tz))).astimezone(UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A 5-field cron expression, already translated for cronsim."""

    text: str
    expression: str

    def latest_due(self, at_or_before: datetime, tz: ZoneInfo) -> datetime:
        """Return the latest slot at or before the given time, in UTC."""
        return _latest_due(self.expression, at_or_before, tz)

    def next_due(self, after: datetime, tz: ZoneInfo) -> datetime:
        """Return the first slot after the given time, in UTC."""
        return _next_due(self.expression, after, tz)

    def slots_between(self, after: datetime, until: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """Yield slots in (after, until], in UTC, at most MAX_COUNTED_SLOTS of them."""
        iterator = CronSim(self.expression, after.astimezone(tz))
        for count, slot in enumerate(iterator):
            if slot > until or count >= MAX_COUNTED_SLOTS:
                return
            yield slot.astimezone(UTC)

    def count_slots(self, after: datetime, until: datetime, tz: ZoneInfo) -> int:
        """Count slots in (after, until], at most MAX_COUNTED_SLOTS unless computed directly.

        Fixed-step schedules in UTC (every N minutes, hourly, daily at a time) are
        counted by arithmetic: iterating over a day of minute slots for each of a
        thousand jobs was most of an evaluation's CPU time.
        """
        step = _fixed_step(self.expression) if tz.key in _UTC_ZONES else None
        if step is None:
            return sum(1 for _ in self.slots_between(after, until, tz))
        period, phase = step
        last = (int(until.timestamp()) - phase) // period
        first = (int(after.timestamp()) - phase) // period
        return max(0, last - first)


@dataclass(frozen=True)
class IntervalSchedule:
    """pg_cron's `'N seconds'`: the next run starts N seconds after the last one started."""

    text: str
    seconds: int


@dataclass(frozen=True)
class RebootSchedule:
    """`@reboot`: runs once when the scheduler starts, so there is no slot to miss."""

    text: str


@dataclass(frozen=True)
class UnevaluableSchedule:
    """A schedule pg_cron accepts but the watchdog cannot compute slots for."""

    text: str
    reason: str


Schedule = CronSchedule | IntervalSchedule | RebootSchedule | UnevaluableSchedule


# Every rule re-reads every job's schedule each poll; the strings rarely change.
@functools.lru_cache(maxsize=4096)
def parse_schedule(text: str) -> Schedule:
    """Parse a schedule as pg_cron accepts it; raise ScheduleError naming the problem."""
    stripped = text.strip()
    interval = _INTERVAL.match(stripped)
    if interval:
        seconds = int(interval.group(1))
        if not 1 <= seconds <= 59:
            raise ScheduleError(f"schedule {text!r}: an interval must be 1 to 59 seconds")
        return IntervalSchedule(text, seconds)

    if stripped.startswith("@"):
        return _parse_macro(text, stripped)
    return _parse_fields(text, stripped)


def _parse_macro(text: str, stripped: str) -> Schedule:
    # pg_cron reads the macro up to the first blank and ignores the rest; it is case-sensitive.
    word = stripped.split(maxsplit=1)[0]
    if word in _REBOOT_MACROS:
        return RebootSchedule(text)
    if word not in _MACROS:
        allowed = ", ".join([*_MACROS, *_REBOOT_MACROS])
        raise ScheduleError(f"schedule {text!r}: unknown macro, expected one of {allowed}")
    return CronSchedule(text, _MACROS[word])


def _parse_fields(text: str, stripped: str) -> Schedule:
    # pg_cron 1.6+ writes the last day of the month as `$`; cronsim calls it `L`.
    tokens = stripped.split()
    last_day = len(tokens) >= 3 and tokens[2] == "$"
    if last_day:
        tokens[2] = "1"
    try:
        fields = parse_fields(" ".join(tokens))
    except CronSyntaxError as exc:
        raise ScheduleError(f"schedule {text!r}: {exc}") from exc
    if not all(field.exact for field in fields):
        return UnevaluableSchedule(text, "it has a reversed range such as 5-1")

    parts = [field.token for field in fields]
    if last_day:
        parts[2] = "L"
    expression = " ".join(parts)
    if not _cronsim_accepts(expression):
        # Steps beyond the range (*/61) and other forms cronsim rejects: list the values.
        parts = [
            part if _cronsim_accepts(part, position) else ",".join(map(str, sorted(field.values)))
            for position, (part, field) in enumerate(zip(parts, fields, strict=True))
        ]
        expression = " ".join(parts)
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        # pg_cron accepts a date that never comes, such as 30 February.
        return UnevaluableSchedule(text, str(exc))
    return CronSchedule(text, expression)


def _cronsim_accepts(expression: str, position: int | None = None) -> bool:
    if position is not None:
        fields = ["*"] * 5
        fields[position] = expression
        expression = " ".join(fields)
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True


@functools.lru_cache(maxsize=64)
def cron_zone(name: str) -> ZoneInfo:
    """Return the zone for pg_cron's `cron.timezone`; raise ScheduleError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown cron.timezone {name!r}: expected an IANA zone") from exc
