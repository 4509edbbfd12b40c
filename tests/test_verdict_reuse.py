"""Verdicts reused from an earlier cycle equal verdicts computed afresh."""

from __future__ import annotations

from datetime import timedelta

from factories import NOW, job, run
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.evaluate import evaluate
from watchdog.history import RunHistory
from watchdog.models import Snapshot
from watchdog.rules import parse_rules

RULES = parse_rules("""
[[rules]]
name = "failing"
kind = "failure_ratio"
window = "10m"
threshold = 0.5
min_runs = 1

[[rules]]
name = "slow"
kind = "slow_average"
window = "15m"
max_duration = "20s"
min_runs = 1

[[rules]]
name = "slower"
kind = "duration_regression"
window = "5m"
baseline = "2h"
factor = 1.5
min_runs = 1

[[rules]]
name = "late"
kind = "missing_run"
grace = "1m"
""", "rules.toml", {})

JOBS = [job(1, "sync-a"), job(2, "sync-b", "*/5 * * * *"), job(3, "sync-c", "30 seconds")]

run_specs = st.lists(
    st.tuples(st.integers(1, 3), st.integers(0, 150 * 60), st.integers(0, 40),
              st.sampled_from(["succeeded", "succeeded", "failed", "running"])),
    max_size=40,
)
# Each step moves the clock on by this many seconds, and may add the next few runs.
steps = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3)), min_size=1, max_size=12)


def _snapshot(history: RunHistory, minutes: float) -> Snapshot:
    return Snapshot(
        taken_at=NOW + timedelta(minutes=minutes), jobs={item.jobid: item for item in JOBS},
        runs=[], stored_history=history, horizon=NOW - timedelta(days=1),
        first_seen={item.jobid: NOW - timedelta(hours=3) for item in JOBS},
    )


@settings(max_examples=150, deadline=None)
@given(run_specs, steps)
def test_reused_verdicts_match_fresh_ones(
    specs: list[tuple[int, int, int, str]], moves: list[tuple[int, int]]
) -> None:
    runs = [
        run(runid, jobid, status, ago=timedelta(seconds=seconds_ago), duration=float(duration))
        for runid, (jobid, seconds_ago, duration, status) in enumerate(specs, start=1)
    ]
    kept = RunHistory()
    elapsed = 0.0
    added = 0
    for seconds, count in moves:
        elapsed += seconds / 60
        kept.upsert(runs[added:added + count])
        added += count
        at = NOW + timedelta(minutes=elapsed)
        reused = evaluate(RULES, _snapshot(kept, elapsed), at)
        fresh = evaluate(RULES, _snapshot(RunHistory.from_runs(runs[:added]), elapsed), at)
        assert reused == fresh


def test_unchanged_job_reuses_its_verdict_until_a_run_leaves_the_window() -> None:
    history = RunHistory.from_runs([run(1, 1, "failed", ago=timedelta(minutes=9))])
    first = evaluate(RULES, _snapshot(history, 0), NOW)
    soon = evaluate(RULES, _snapshot(history, 0.5), NOW + timedelta(minutes=0.5))
    later = evaluate(RULES, _snapshot(history, 1.5), NOW + timedelta(minutes=1.5))

    def failing(verdicts: list) -> object:  # type: ignore[type-arg]
        return next(v for v in verdicts if v.rule == "failing" and v.jobid == 1)

    assert failing(soon) is failing(first)
    assert failing(first).firing
    # The failed run left the 10-minute window.
    assert not failing(later).firing
