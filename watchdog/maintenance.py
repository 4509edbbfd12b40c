"""Maintenance windows: `[[maintenance]]` tables that mute alerts of some jobs.

A window starts at each slot of a 5-field cron expression, read in the
window's IANA time zone, and lasts `duration` of elapsed time. The start
follows the local clock across daylight saving changes: "0 2 * * 0" in
Europe/Berlin starts at 02:00 local time in summer and in winter. A start
that falls into the hour skipped in spring moves to the first valid minute
after it (cronsim's rule, as in cron implementations such as cronie).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from watchdog.durations import DURATION_FORM, parse_duration
from watchdog.schedules import CronSchedule, ScheduleError, parse_schedule

_KEYS = {"name", "start", "duration", "timezone", "jobs"}
_REQUIRED = ("start", "duration", "jobs")

# Receives (where, message) for each validation problem.
ProblemSink = Callable[[str, str], None]


@dataclass(frozen=True)
class MaintenanceWindow:
    """One validated `[[maintenance]]` table."""

    name: str
    start: CronSchedule
    duration: timedelta
    timezone: str
    jobs: tuple[str, ...]

    def covers(self, jobname: str | None) -> bool:
        """Tell whether the window applies to a job, by its jobname globs."""
        name = jobname or ""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.jobs)

    def active_at(self, now: datetime) -> bool:
        """Tell whether `now` lies in [latest start, latest start + duration)."""
        latest = self.start.latest_due(now, ZoneInfo(self.timezone))
        return now < latest + self.duration


def in_maintenance(
    windows: tuple[MaintenanceWindow, ...], jobname: str | None, now: datetime
) -> MaintenanceWindow | None:
    """Return the first window that covers the job and is open at `now`, if any."""
    for window in windows:
        if window.covers(jobname) and window.active_at(now):
            return window
    return None


def parse_maintenance(raw: Any, problem: ProblemSink) -> tuple[MaintenanceWindow, ...]:
    """Validate the `[[maintenance]]` array; report each problem to `problem`."""
    if not isinstance(raw, list):
        problem("maintenance", "must be an array of [[maintenance]] tables")
        return ()
    windows = []
    for position, table in enumerate(raw, start=1):
        window = _parse_window(position, table, problem)
        if window is not None:
            windows.append(window)
    return tuple(windows)


def _parse_window(position: int, table: Any, problem: ProblemSink) -> MaintenanceWindow | None:
    if not isinstance(table, dict):
        problem(f"maintenance #{position}", "must be a [[maintenance]] table")
        return None
    name = table.get("name")
    label = f"maintenance #{position}" + (f" {name!r}" if isinstance(name, str) else "")
    for key in sorted(set(table) - _KEYS):
        problem(label, f"unknown key {key!r}; allowed: {', '.join(sorted(_KEYS))}")
    missing = [key for key in _REQUIRED if key not in table]
    for key in missing:
        problem(f"{label}, field {key!r}", "required")
    if missing:
        return None

    checks = (
        _start(table["start"]),
        _duration(table["duration"]),
        _zone(table.get("timezone", "UTC")),
        _globs(table["jobs"]),
    )
    failed = False
    for key, (_, error) in zip(("start", "duration", "timezone", "jobs"), checks, strict=True):
        if error is not None:
            problem(f"{label}, field {key!r}", error)
            failed = True
    if failed:
        return None
    start, duration, zone, jobs = (value for value, _ in checks)
    return MaintenanceWindow(
        name=name if isinstance(name, str) else f"maintenance #{position}",
        start=start, duration=duration, timezone=zone, jobs=jobs,
    )


def _start(raw: Any) -> tuple[Any, str | None]:
    expected = 'a 5-field cron expression or macro, such as "0 2 * * 0" for Sundays at 02:00'
    if not isinstance(raw, str):
        return None, f"{raw!r} is not {expected}"
    try:
        schedule = parse_schedule(raw)
    except ScheduleError as exc:
        return None, str(exc)
    if not isinstance(schedule, CronSchedule):
        return None, f"{raw!r} is not {expected}"
    return schedule, None


def _duration(raw: Any) -> tuple[Any, str | None]:
    if not isinstance(raw, str):
        return None, f"{raw!r} is not a duration: expected {DURATION_FORM}"
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        return None, str(exc)
    if value <= timedelta(0):
        return None, f"{raw!r} must be longer than zero"
    return value, None


def _zone(raw: Any) -> tuple[Any, str | None]:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None, f"{raw!r} is not an IANA time zone; use a name such as \"Europe/Berlin\""
    return raw, None


def _globs(raw: Any) -> tuple[Any, str | None]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(i, str) and i for i in raw):
        return None, 'must be a non-empty list of jobname globs, such as ["billing-*"]'
    return tuple(raw), None
