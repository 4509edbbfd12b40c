"""Per-job kinds added to the first three, on hand-made runs at a fixed time."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from factories import NOW, job, run, snapshot

from watchdog.evaluate import evaluate
from watchdog.models import Run, Snapshot, Verdict
from watchdog.rules import Rule, RuleSet

MINUTE = timedelta(minutes=1)
ERROR = "ERROR:  deadlock detected"


def judge(rule: Rule, runs: list[Run], snap: Snapshot | None = None) -> Verdict:
    snap = snap or snapshot([job()], runs)
    [verdict] = evaluate(RuleSet((rule,)), snap, NOW)
    return verdict


def streak_rule(**changes: object) -> Rule:
    base = Rule(name="streak", kind="consecutive_failures", count=3, window=timedelta(days=1))
    return replace(base, **changes)  # type: ignore[arg-type]


def failed(runid: int, minutes: int, message: str = ERROR) -> Run:
    return run(runid, status="failed", ago=MINUTE * minutes, message=message)


# consecutive_failures


def test_consecutive_failures_fires_on_streak() -> None:
    runs = [run(1, ago=MINUTE * 10), failed(2, 3), failed(3, 2), failed(4, 1)]
    verdict = judge(streak_rule(), runs)
    assert verdict.firing
    assert verdict.facts["streak"] == 3
    # Run ids are listed newest first, as failure_ratio lists them.
    assert verdict.evidence == (4, 3, 2)
    assert verdict.last_error == ERROR


def test_consecutive_failures_near_miss() -> None:
    runs = [failed(1, 10), run(2, ago=MINUTE * 3), failed(3, 2), failed(4, 1)]
    verdict = judge(streak_rule(), runs)
    assert not verdict.firing
    assert verdict.facts["streak"] == 2


def test_consecutive_failures_resolves_on_success() -> None:
    runs = [failed(1, 4), failed(2, 3), failed(3, 2), run(4, ago=MINUTE)]
    verdict = judge(streak_rule(), runs)
    assert not verdict.firing
    assert verdict.facts["streak"] == 0


def test_consecutive_failures_skips_infrastructure() -> None:
    # A restart in the middle neither breaks nor extends the streak.
    runs = [
        failed(1, 5), failed(2, 4, "server restarted"), failed(3, 3),
        failed(4, 2, "job startup timeout"), failed(5, 1, "job startup timeout"),
    ]
    verdict = judge(streak_rule(), runs)
    assert not verdict.firing
    assert verdict.facts["streak"] == 2
    assert verdict.facts["infrastructure"] == 3


def test_consecutive_failures_ignores_runs_in_flight() -> None:
    runs = [failed(1, 4), failed(2, 3), failed(3, 2), run(4, status="running", ago=MINUTE)]
    assert judge(streak_rule(), runs).firing


# stuck_run


def stuck_rule(limit: timedelta = timedelta(minutes=10)) -> Rule:
    return Rule(name="stuck", kind="stuck_run", max_runtime=limit)


def test_stuck_run_fires_past_max_runtime() -> None:
    verdict = judge(stuck_rule(), [run(7, status="running", ago=MINUTE * 11, message=None)])
    assert verdict.firing
    assert verdict.facts["runid"] == 7
    assert verdict.facts["status"] == "running"
    assert verdict.facts["waiting"] == 0
    assert verdict.evidence == (7,)


def test_stuck_run_near_miss() -> None:
    verdict = judge(stuck_rule(), [run(7, status="running", ago=MINUTE * 9, message=None)])
    assert not verdict.firing


def test_stuck_run_resolves_when_run_ends() -> None:
    verdict = judge(stuck_rule(), [run(7, status="succeeded", ago=MINUTE * 11, duration=700)])
    assert not verdict.firing
    assert verdict.facts["runid"] is None


def test_stuck_run_names_waiting_status() -> None:
    verdict = judge(stuck_rule(), [run(7, status="connecting", ago=MINUTE * 30, message=None)])
    assert verdict.firing
    assert verdict.facts["status"] == "connecting"
    assert verdict.facts["waiting"] == 1


def test_stuck_run_leaves_abandoned_runs_alone() -> None:
    # A `connecting` row from before the restart, and one with a newer run after it.
    before_restart = run(5, status="connecting", ago=timedelta(hours=3), message=None)
    superseded = run(6, status="sending", ago=timedelta(hours=1), message=None)
    newer = run(8, ago=MINUTE * 20)
    snap = snapshot([job()], [before_restart, superseded, newer],
                    postmaster_start=NOW - timedelta(hours=2))
    verdict = judge(stuck_rule(), [], snap)
    assert not verdict.firing
    assert verdict.evidence == ()


def test_server_restarted_row_is_not_stuck() -> None:
    # pg_cron rewrites in-flight rows to failed with a NULL end_time after a restart.
    restarted = Run(runid=9, jobid=1, status="failed", return_message="server restarted",
                    start_time=NOW - timedelta(hours=1), end_time=None, seen_at=NOW)
    assert not judge(stuck_rule(), [restarted]).firing


# error_match


def match_rule(**changes: object) -> Rule:
    base = Rule(name="deadlocks", kind="error_match", pattern="deadlock", min_count=2,
                window=timedelta(hours=1))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_error_match_fires_on_min_count() -> None:
    runs = [failed(1, 5), failed(2, 3, "ERROR:  division by zero"), failed(3, 1)]
    verdict = judge(match_rule(), runs)
    assert verdict.firing
    assert verdict.facts["matches"] == 2
    assert verdict.evidence == (3, 1)


def test_error_match_near_miss() -> None:
    runs = [failed(1, 5), failed(2, 90)]
    assert not judge(match_rule(), runs).firing


def test_error_match_resolves_when_window_passes() -> None:
    runs = [failed(1, 65), failed(2, 70)]
    verdict = judge(match_rule(), runs)
    assert not verdict.firing
    assert verdict.facts["matches"] == 0


def test_error_match_skips_infrastructure_and_successes() -> None:
    runs = [
        failed(1, 5, "connection lost"), run(2, ago=MINUTE * 4, message="deadlock ok"),
        failed(3, 3),
    ]
    verdict = judge(match_rule(pattern="deadlock|connection", min_count=1), runs)
    assert verdict.facts["matches"] == 1
    assert verdict.facts["infrastructure"] == 1


# duration_regression


def regression_rule(**changes: object) -> Rule:
    base = Rule(name="slower", kind="duration_regression", window=timedelta(hours=1),
                baseline=timedelta(days=1), factor=2.0, min_runs=3)
    return replace(base, **changes)  # type: ignore[arg-type]


def timed_runs(first_runid: int, start_ago: timedelta, seconds: float, count: int) -> list[Run]:
    return [run(first_runid + i, ago=start_ago + MINUTE * i, duration=seconds)
            for i in range(count)]


def test_duration_regression_fires_above_factor() -> None:
    runs = timed_runs(1, timedelta(hours=5), 10, 5) + timed_runs(100, MINUTE, 25, 3)
    verdict = judge(regression_rule(), runs)
    assert verdict.firing
    assert verdict.facts["baseline_mean_seconds"] == 10
    assert verdict.facts["recent_mean_seconds"] == 25
    assert verdict.facts["ratio"] == 2.5


def test_duration_regression_near_miss() -> None:
    runs = timed_runs(1, timedelta(hours=5), 10, 5) + timed_runs(100, MINUTE, 19, 3)
    assert not judge(regression_rule(), runs).firing


def test_duration_regression_needs_runs_in_both() -> None:
    runs = timed_runs(1, timedelta(hours=5), 10, 2) + timed_runs(100, MINUTE, 50, 3)
    verdict = judge(regression_rule(), runs)
    assert not verdict.firing
    assert verdict.facts["baseline_runs"] == 2


def test_duration_regression_ignores_runs_before_baseline() -> None:
    # Fast runs from two days ago are outside the 1-day baseline.
    runs = (timed_runs(1, timedelta(days=2), 1, 5) + timed_runs(50, timedelta(hours=5), 20, 3)
            + timed_runs(100, MINUTE, 25, 3))
    verdict = judge(regression_rule(), runs)
    assert verdict.facts["baseline_mean_seconds"] == 20
    assert not verdict.firing


# slow_average statistic and min_duration


def slow_rule(**changes: object) -> Rule:
    base = Rule(name="slow", kind="slow_average", window=timedelta(hours=1),
                max_duration=timedelta(seconds=10), min_runs=1)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_slow_average_p95_and_max() -> None:
    # 19 fast runs and one slow: the mean stays low, p95 and max catch it.
    runs = [run(i, ago=MINUTE * i, duration=1) for i in range(1, 20)]
    runs.append(run(20, ago=MINUTE * 20, duration=60))
    assert not judge(slow_rule(), runs).firing
    assert not judge(slow_rule(statistic="p95"), runs).firing
    verdict = judge(slow_rule(statistic="max"), runs)
    assert verdict.firing
    assert verdict.value == 60
    assert verdict.evidence[0] == 20


def test_slow_average_p95_fires_on_tail() -> None:
    runs = [run(i, ago=MINUTE * i, duration=1) for i in range(1, 19)]
    runs += [run(19, ago=MINUTE * 19, duration=30), run(20, ago=MINUTE * 20, duration=40)]
    verdict = judge(slow_rule(statistic="p95"), runs)
    assert verdict.firing
    assert verdict.value == 30


def test_slow_average_too_fast() -> None:
    rule = slow_rule(max_duration=timedelta(0), min_duration=timedelta(seconds=1), min_runs=3)
    fast = [run(i, ago=MINUTE * i, duration=0.005) for i in range(1, 4)]
    verdict = judge(rule, fast)
    assert verdict.firing
    assert verdict.facts["direction"] == "fast"
    normal = [run(i, ago=MINUTE * i, duration=2) for i in range(1, 4)]
    assert not judge(rule, normal).firing
    # Too few runs to judge.
    assert not judge(rule, fast[:2]).firing
