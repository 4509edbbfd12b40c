"""Edge cases of the compact run history that must not change a verdict.

Each test builds runs by hand and compares the history, or the verdicts
evaluated on it, with what a plain evaluation over every run returns.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from factories import NOW, job, run, snapshot

from watchdog.evaluate import evaluate
from watchdog.history import HOUR_US, RunHistory, micros
from watchdog.models import SchedulerStatus, Snapshot, Verdict
from watchdog.rules import Rule, RuleSet
from watchdog.snapshot import TRIM_MARGIN
from watchdog.state import StateStore

TARGET = "127.0.0.1:5432/postgres"
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

REGRESSION = Rule(name="slower", kind="duration_regression", window=HOUR,
                  baseline=timedelta(days=1), factor=1.5, min_runs=1)
MISSING = Rule(name="did not run", kind="missing_run", grace=MINUTE)
SATURATED = Rule(name="full", kind="concurrency_saturated", saturated_for=timedelta(minutes=30))


def judge(rules: list[Rule], snap: Snapshot) -> list[Verdict]:
    return evaluate(RuleSet(tuple(rules)), snap, NOW)


def recent_hours() -> tuple[int, int]:
    """Return the hours [first, end) of the last ten hours up to NOW."""
    return micros(NOW - 10 * HOUR) // HOUR_US, micros(NOW) // HOUR_US + 1


# --- Hourly buckets and the MAX_BUCKET_HOURS cap


def test_far_past_row_first_keeps_recent_buckets() -> None:
    recent = [run(i, ago=i * HOUR, duration=2.0) for i in range(2, 6)]
    ancient = run(1, start=NOW - timedelta(days=500), duration=1.0)

    ancient_first = RunHistory.from_runs([ancient, *recent]).job(1)
    ancient_last = RunHistory.from_runs([*recent, ancient]).job(1)

    assert ancient_last.bucket_sums(*recent_hours()) == (4, 8_000_000)
    assert ancient_first.bucket_sums(*recent_hours()) == (4, 8_000_000)


def test_far_past_row_keeps_regression_baseline() -> None:
    # The hand-edited row has the lowest runid, so it is read first.
    ancient = run(1, start=NOW - timedelta(days=500), duration=1.0)
    baseline = [run(runid, ago=(runid + 1) * HOUR, duration=2.0) for runid in range(2, 8)]
    recent = run(20, ago=10 * MINUTE, duration=10.0)
    snap = snapshot([job()], [ancient, *baseline, recent])

    [verdict] = judge([REGRESSION], snap)

    assert verdict.facts["baseline_runs"] == 6
    assert verdict.firing


@pytest.mark.xfail(strict=True, reason="a bucket beyond MAX_BUCKET_HOURS ahead evicts every"
                   " real hour, so one far-future row empties the baseline")
def test_far_future_row_keeps_recent_buckets() -> None:
    recent = [run(i, ago=i * HOUR, duration=2.0) for i in range(2, 6)]
    future = run(9, start=NOW + timedelta(days=500), duration=1.0)

    history = RunHistory.from_runs([*recent, future])

    assert history.job(1).bucket_sums(*recent_hours()) == (4, 8_000_000)


# --- forget


def test_forget_newest_in_flight_lets_missing_run_fire() -> None:
    done = run(1, ago=30 * MINUTE)
    purged = run(2, status="running", ago=20 * MINUTE, duration=None, message=None)
    history = RunHistory.from_runs([done, purged])
    history.forget({purged.runid})
    polled = replace(snapshot([job()], []), stored_history=history)
    # A plain evaluation reads the table, which no longer contains the purged row.
    full = snapshot([job()], [done])

    [expected] = judge([MISSING], full)
    assert expected.firing
    assert judge([MISSING], polled) == [expected]


def test_forget_newest_falls_back_to_held_run() -> None:
    failed = run(1, status="failed", ago=30 * MINUTE, message="ERROR:  boom")
    done = run(2, ago=25 * MINUTE)
    purged = run(3, status="running", ago=20 * MINUTE, duration=None, message=None)
    history = RunHistory.from_runs([failed, done, purged])

    history.forget({purged.runid})

    newest = history.job(1).newest
    assert newest is not None
    assert newest.runid == done.runid
    assert newest.status == "succeeded"
    assert newest.start_time == done.start_time
    assert newest.end_time == done.end_time
    assert history.job(1).latest_start() == done.start_time


# --- Loading a saved history


@pytest.mark.parametrize("header", ["[]", "1", "null", '"text"'])
def test_from_records_rejects_non_object_header(header: str) -> None:
    with pytest.raises(ValueError, match="header"):
        RunHistory.from_records(header, [])


def test_corrupt_header_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = StateStore(path)
    store.history(TARGET).upsert([run(1)])
    store.close()
    store = StateStore(path)
    store._db.execute("UPDATE run_history SET header = ?", ("[]",))
    store._histories.clear()

    history = store.history(TARGET)

    assert len(history) == 0
    assert history.cursor is None


# --- Trimming


def test_trim_keeps_concurrency_saturation() -> None:
    # Limit 2: a long run from 40 minutes ago and a run from 35 minutes ago saturate
    # the scheduler from then on. A third run joined 20 minutes ago.
    runs = [
        run(1, jobid=1, ago=40 * MINUTE, duration=35 * 60.0),
        run(2, jobid=2, status="running", ago=35 * MINUTE, duration=None, message=None),
        run(3, jobid=3, status="running", ago=20 * MINUTE, duration=None, message=None),
    ]
    jobs = [job(1, "a"), job(2, "b"), job(3, "c")]
    full = replace(snapshot(jobs, runs),
                   scheduler=SchedulerStatus(processes=1, max_running_jobs=2))
    rules = RuleSet((SATURATED,))
    history = RunHistory.from_runs(runs)
    # The trim that take_snapshot makes for these rules.
    history.trim(NOW - rules.lookback - TRIM_MARGIN, NOW - timedelta(days=1))
    polled = replace(full, stored_history=history)

    [expected] = judge([SATURATED], full)
    assert expected.firing
    assert expected.facts["saturated_seconds"] == 35 * 60
    assert judge([SATURATED], polled) == [expected]
