"""Validation of the fields of the rule kinds added to the first three."""

from __future__ import annotations

from datetime import timedelta

import pytest

from watchdog.errors import ConfigError
from watchdog.rules import parse_rules


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_rules(f'[[rules]]\nname = "r"\n{body}', "rules.toml", {})
    return caught.value.problems


def rule_of(body: str):  # type: ignore[no-untyped-def]
    [rule] = parse_rules(f'[[rules]]\nname = "r"\n{body}', "rules.toml", {}).rules
    return rule


def test_defaults_of_each_kind() -> None:
    assert rule_of('kind = "consecutive_failures"').count == 3
    assert rule_of('kind = "consecutive_failures"').window == timedelta(days=1)
    assert rule_of('kind = "error_match"\npattern = "x"').min_count == 1
    regression = rule_of('kind = "duration_regression"')
    assert regression.window == timedelta(hours=1)
    assert regression.baseline == timedelta(days=7)
    assert regression.factor == 2.0
    assert regression.min_runs == 3
    assert regression.lookback == timedelta(hours=1)
    assert regression.baseline_lookback == timedelta(days=7, hours=1)
    assert rule_of('kind = "slow_average"\nmax_duration = "1m"').statistic == "mean"
    assert rule_of('kind = "infrastructure_failures"').window == timedelta(minutes=15)
    assert rule_of('kind = "http_failures"').min_count == 1
    assert rule_of('kind = "http_failures"\nthreshold = 0.5').min_count == 0
    assert rule_of('kind = "http_failures"').min_status == 400
    assert rule_of('kind = "scheduler_down"').lookback == timedelta(0)


def test_fields_of_each_kind_parse() -> None:
    assert rule_of('kind = "stuck_run"\nmax_runtime = "10m"').max_runtime == timedelta(minutes=10)
    assert rule_of('kind = "concurrency_saturated"\nfor = "5m"').saturated_for == timedelta(
        minutes=5)
    sized = rule_of('kind = "run_history_size"\nmax_size = "1GB"\nkeep = "7d"')
    assert sized.max_size == 1024**3
    assert sized.keep == timedelta(days=7)
    drift = rule_of('kind = "job_drift"\nexpect_schedule = "0 3 * * *"\nexpect_active = true')
    assert drift.expect_schedule == "0 3 * * *"
    assert drift.expect_active is True
    fast = rule_of('kind = "slow_average"\nmin_duration = "1s"\nstatistic = "p95"')
    assert fast.min_duration == timedelta(seconds=1)
    assert fast.statistic == "p95"


def test_invalid_regex_shows_position() -> None:
    [problem] = problems('kind = "error_match"\npattern = "deadlock (detected"')
    assert "field 'pattern'" in problem
    assert "at position 9" in problem
    assert "escape literal characters" in problem


@pytest.mark.parametrize(("body", "expected"), [
    ('kind = "stuck_run"', "field 'max_runtime': required for kind stuck_run"),
    ('kind = "error_match"', "field 'pattern': required for kind error_match"),
    ('kind = "consecutive_failures"\ncount = 0', "0 must be a whole number of at least 1"),
    ('kind = "duration_regression"\nfactor = 1', "must be a number above 1"),
    ('kind = "slow_average"\nmax_duration = "1m"\nstatistic = "median"',
     "'median' is not one of mean, p95, max"),
    ('kind = "slow_average"\nmax_duration = "1s"\nmin_duration = "2s"',
     "min_duration must be shorter than max_duration"),
    ('kind = "job_drift"\nexpect_schedule = "every day"', "invalid schedule 'every day'"),
    ('kind = "job_drift"\nexpect_active = "yes"', "'yes' must be true or false"),
    ('kind = "run_history_size"', "needs max_rows (such as 1000000), max_size"),
    ('kind = "run_history_size"\nmax_size = "1 gigabyte"', "invalid size '1 gigabyte'"),
    ('kind = "run_history_size"\nmax_rows = 1.5', "must be a whole number of rows"),
    ('kind = "http_failures"\nmin_status = 700', "HTTP status code from 100 to 599"),
    ('kind = "concurrency_saturated"\nfor = 5', "5 is not a duration"),
    ('kind = "scheduler_down"\nwindow = "1h"', "unknown key 'window' for kind scheduler_down"),
    ('kind = "stuck_run"\nmax_runtime = "10m"\nthreshold = 0.1',
     "unknown key 'threshold' for kind stuck_run"),
])
def test_invalid_fields_are_named(body: str, expected: str) -> None:
    found = problems(body)
    assert any(expected in problem for problem in found), found


def test_rule_file_combines_kinds() -> None:
    text = """
[[rules]]
name = "streak"
kind = "consecutive_failures"
window = "7d"

[[rules]]
name = "down"
kind = "scheduler_down"

[[rules]]
name = "history"
kind = "run_history_size"
max_rows = 1000000
"""
    rules = parse_rules(text, "rules.toml", {})
    assert [rule.kind for rule in rules.rules] == [
        "consecutive_failures", "scheduler_down", "run_history_size"]
    assert rules.lookback == timedelta(days=7)


def test_baseline_shorter_than_two_hours_is_rejected() -> None:
    with pytest.raises(ConfigError, match="shorter than 2h"):
        rule_of('kind = "duration_regression"\nbaseline = "90m"')
