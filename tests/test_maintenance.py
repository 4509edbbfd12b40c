"""Maintenance windows: validation and start times across daylight saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watchdog.errors import ConfigError
from watchdog.maintenance import MaintenanceWindow, in_maintenance, parse_maintenance
from watchdog.rules import parse_rules


def window(start: str, duration: str = "2h", timezone: str = "Europe/Berlin",
           jobs: list[str] | None = None) -> MaintenanceWindow:
    problems: list[str] = []
    [parsed] = parse_maintenance(
        [{"name": "w", "start": start, "duration": duration, "timezone": timezone,
          "jobs": jobs or ["billing-*"]}],
        lambda where, message: problems.append(f"{where}: {message}"),
    )
    assert problems == []
    return parsed


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_window_follows_local_clock_across_autumn_change() -> None:
    # Sundays 04:00 Berlin time: 02:00 UTC in summer (CEST), 03:00 UTC in winter (CET).
    sunday = window("0 4 * * 0")

    assert sunday.active_at(utc(2024, 10, 20, 2, 0))
    assert not sunday.active_at(utc(2024, 10, 20, 1, 59))
    assert not sunday.active_at(utc(2024, 10, 20, 4, 0))
    # 2024-10-27 is the day clocks go back: the window opens an hour later in UTC.
    assert not sunday.active_at(utc(2024, 10, 27, 2, 30))
    assert sunday.active_at(utc(2024, 10, 27, 3, 0))
    assert sunday.active_at(utc(2024, 10, 27, 4, 59))
    assert not sunday.active_at(utc(2024, 10, 27, 5, 0))


def test_window_across_spring_change_lasts_its_duration() -> None:
    # 01:30 Berlin on 2024-03-31 is 00:30 UTC; clocks jump from 02:00 to 03:00 during
    # the window, and it still lasts 2 hours of elapsed time.
    night = window("30 1 * * 0")

    assert night.active_at(utc(2024, 3, 31, 0, 30))
    assert night.active_at(utc(2024, 3, 31, 2, 29))
    assert not night.active_at(utc(2024, 3, 31, 2, 30))
    # A week later, in summer time, 01:30 Berlin is 23:30 UTC on Saturday.
    assert night.active_at(utc(2024, 4, 6, 23, 30))
    assert not night.active_at(utc(2024, 4, 6, 23, 29))


def test_start_in_skipped_hour_moves_later() -> None:
    # 02:30 does not exist in Berlin on 2024-03-31; the window opens at 03:00 CEST.
    skipped = window("30 2 * * 0", duration="30m")

    assert skipped.active_at(utc(2024, 3, 31, 1, 0))
    assert not skipped.active_at(utc(2024, 3, 31, 0, 59))


def test_in_maintenance_matches_job_globs() -> None:
    windows = (window("0 4 * * 0"),)
    during = utc(2024, 10, 20, 2, 30)

    assert in_maintenance(windows, "billing-invoices", during) is windows[0]
    assert in_maintenance(windows, "sync-orders", during) is None
    assert in_maintenance(windows, "billing-invoices", during + timedelta(hours=3)) is None


def test_rules_file_validates_maintenance() -> None:
    text = """
[[maintenance]]
name = "nightly"
start = "0 25 * * *"
duration = "-1h"
timezone = "Mars/Olympus"
jobs = []

[[maintenance]]
start = "0 2 * * 0"
"""
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "rules.toml", {})
    problems = caught.value.problems
    assert any("maintenance #1 'nightly', field 'start'" in p and "0 25" in p for p in problems)
    assert any("field 'duration'" in p and "'-1h'" in p for p in problems)
    assert any("field 'timezone'" in p and "Mars/Olympus" in p for p in problems)
    assert any("field 'jobs'" in p and "billing-*" in p for p in problems)
    assert any("maintenance #2, field 'duration'" in p and "required" in p for p in problems)
    assert any("maintenance #2, field 'jobs'" in p for p in problems)


def test_interval_schedule_is_not_a_window_start() -> None:
    problems: list[str] = []
    parse_maintenance([{"start": "30 seconds", "duration": "1h", "jobs": ["*"]}],
                      lambda where, message: problems.append(message))
    assert len(problems) == 1
    assert "5-field cron" in problems[0]
