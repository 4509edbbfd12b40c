"""Scheduler-wide kinds, job drift and infrastructure outcomes, on hand-made snapshots."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from factories import NOW, job, run, snapshot

from watchdog.evaluate import evaluate
from watchdog.models import (
    SCHEDULER_JOBID,
    HistorySize,
    HttpResponse,
    HttpResponses,
    Run,
    SchedulerStatus,
    Snapshot,
    Verdict,
)
from watchdog.rules import Rule, RuleSet

MINUTE = timedelta(minutes=1)
MISSING = Rule(name="did not run", kind="missing_run", grace=timedelta(minutes=2))
DOWN = Rule(name="scheduler down", kind="scheduler_down")


def judge(rules: list[Rule], snap: Snapshot) -> list[Verdict]:
    return evaluate(RuleSet(tuple(rules)), snap, NOW)


def only(rules: list[Rule], snap: Snapshot, kind: str) -> Verdict:
    [verdict] = [v for v in judge(rules, snap) if v.kind == kind]
    return verdict


def stale_jobs() -> Snapshot:
    """Two every-minute jobs whose last runs were 10 minutes ago."""
    jobs = [job(1, "sync-a"), job(2, "sync-b")]
    runs = [run(1, 1, ago=MINUTE * 10), run(2, 2, ago=MINUTE * 10)]
    return snapshot(jobs, runs)


# scheduler_down


def test_scheduler_down_fires_and_suppresses_missing_runs() -> None:
    snap = replace(stale_jobs(), scheduler=SchedulerStatus(processes=0))
    verdicts = judge([MISSING, DOWN], snap)
    [down] = [v for v in verdicts if v.kind == "scheduler_down"]
    assert down.firing
    assert down.jobid == SCHEDULER_JOBID
    assert down.infrastructure
    assert down.facts["reason"] == "no_process"
    assert down.facts["suppressed"] == 2
    assert down.facts["suppressed_jobs"] == "sync-a, sync-b"
    missing = [v for v in verdicts if v.kind == "missing_run"]
    assert len(missing) == 2
    assert not any(v.firing for v in missing)
    assert all(v.facts["suppressed_by"] == "scheduler_down" for v in missing)


def test_scheduler_running_lets_missing_runs_fire() -> None:
    snap = replace(stale_jobs(), scheduler=SchedulerStatus(processes=1))
    verdicts = judge([MISSING, DOWN], snap)
    [down] = [v for v in verdicts if v.kind == "scheduler_down"]
    assert not down.firing
    assert all(v.firing for v in verdicts if v.kind == "missing_run")


def test_scheduler_down_without_rule_does_not_suppress() -> None:
    snap = replace(stale_jobs(), scheduler=SchedulerStatus(processes=0))
    assert all(v.firing for v in judge([MISSING], snap))


def test_scheduler_down_on_launch_off_and_standby() -> None:
    off = replace(stale_jobs(), scheduler=SchedulerStatus(processes=1, launch_active_jobs=False))
    assert only([DOWN], off, "scheduler_down").facts["reason"] == "launch_active_jobs_off"
    standby = replace(stale_jobs(), scheduler=SchedulerStatus(processes=0), in_recovery=True)
    assert only([DOWN], standby, "scheduler_down").facts["reason"] == "standby"


# concurrency_saturated


def busy_snapshot(in_flight: int, started_ago: timedelta, limit: int = 3) -> Snapshot:
    jobs = [job(i, f"job-{i}") for i in range(1, in_flight + 2)]
    runs = [run(i, i, status="running", ago=started_ago, message=None)
            for i in range(1, in_flight + 1)]
    status = SchedulerStatus(processes=1, max_running_jobs=limit)
    return replace(snapshot(jobs, runs), scheduler=status)


SATURATED = Rule(name="full", kind="concurrency_saturated", saturated_for=timedelta(minutes=5))


def test_concurrency_saturated_fires_after_for() -> None:
    verdict = only([SATURATED], busy_snapshot(3, MINUTE * 6), "concurrency_saturated")
    assert verdict.firing
    assert verdict.facts["in_flight"] == 3
    assert verdict.facts["saturated_seconds"] == 360
    assert verdict.infrastructure


def test_concurrency_saturated_near_miss() -> None:
    assert not only([SATURATED], busy_snapshot(3, MINUTE * 4), "concurrency_saturated").firing
    assert not only([SATURATED], busy_snapshot(2, MINUTE * 60), "concurrency_saturated").firing


def test_concurrency_saturation_measured_from_history() -> None:
    # Two runs for an hour, a third joined 3 minutes ago: saturated for 3 minutes only.
    snap = busy_snapshot(2, MINUTE * 60)
    late = run(3, 3, status="running", ago=MINUTE * 3, message=None)
    snap = replace(snap, runs=[*snap.runs, late])
    verdict = only([SATURATED], snap, "concurrency_saturated")
    assert verdict.facts["saturated_seconds"] == 180
    assert not verdict.firing


def test_concurrency_saturated_resolves_when_a_run_ends() -> None:
    snap = busy_snapshot(3, MINUTE * 30)
    ended = replace(snap.runs[0], status="succeeded", end_time=NOW - MINUTE)
    snap = replace(snap, runs=[ended, *snap.runs[1:]])
    assert not only([SATURATED], snap, "concurrency_saturated").firing


def test_missing_run_is_capacity_starved() -> None:
    snap = busy_snapshot(3, MINUTE * 30)
    starved = job(9, "report")
    snap = replace(snap, jobs={**snap.jobs, 9: starved},
                   first_seen={**snap.first_seen, 9: NOW - timedelta(days=2)},
                   runs=[*snap.runs, run(50, 9, ago=MINUTE * 20)])
    [missing] = [v for v in judge([MISSING], snap) if v.jobid == 9]
    assert missing.firing
    assert missing.facts["capacity_starved"] == 1
    assert missing.facts["max_running_jobs"] == 3


# run_history_size


def sized(rows: int, total_bytes: int) -> Snapshot:
    return replace(snapshot([job()], []), history_size=HistorySize(rows, total_bytes))


def test_run_history_size_fires_on_rows_or_bytes() -> None:
    by_rows = Rule(name="big", kind="run_history_size", max_rows=1_000_000)
    by_size = Rule(name="big", kind="run_history_size", max_size=1024**3)
    assert only([by_rows], sized(1_000_001, 10), "run_history_size").firing
    assert only([by_size], sized(5, 1024**3 + 1), "run_history_size").firing


def test_run_history_size_near_miss_and_resolve() -> None:
    rule = Rule(name="big", kind="run_history_size", max_rows=1_000_000, max_size=1024**3)
    verdict = only([rule], sized(1_000_000, 1024**3), "run_history_size")
    assert not verdict.firing
    assert verdict.jobid == SCHEDULER_JOBID


# http_failures


def responses(*codes: int | None, timed_out: bool = False) -> HttpResponses:
    return HttpResponses(installed=True, responses=tuple(
        HttpResponse(id=i, status_code=code, timed_out=timed_out and code is None,
                     error_msg="Timeout was reached" if timed_out and code is None else None,
                     content='{"msg":"Invalid JWT"}' if code and code >= 400 else "ok",
                     created=NOW - MINUTE * (10 - i))
        for i, code in enumerate(codes, start=1)
    ))


HTTP = Rule(name="edge calls", kind="http_failures", window=timedelta(hours=1), min_count=2)


def test_http_failures_fires_on_min_count() -> None:
    snap = replace(snapshot([job()], []), http=responses(200, 401, None, 200, timed_out=True))
    verdict = only([HTTP], snap, "http_failures")
    assert verdict.firing
    assert verdict.facts["failed"] == 2
    assert verdict.facts["total"] == 4
    assert verdict.facts["last_id"] == 3
    assert verdict.last_error == "Timeout was reached"


def test_http_failures_near_miss_and_ratio() -> None:
    snap = replace(snapshot([job()], []), http=responses(200, 200, 200, 500))
    assert not only([HTTP], snap, "http_failures").firing
    by_ratio = replace(HTTP, min_count=0, threshold=0.25, min_runs=4)
    verdict = only([by_ratio], snap, "http_failures")
    assert verdict.firing
    assert verdict.facts["last_status"] == 500
    assert verdict.facts["last_body"] == '{"msg":"Invalid JWT"}'


def test_http_failures_resolves_outside_window() -> None:
    rule = replace(HTTP, window=timedelta(minutes=5))
    snap = replace(snapshot([job()], []), http=responses(500, 500, 200, 200, 200, 200))
    assert not only([rule], snap, "http_failures").firing


def test_http_failures_skipped_without_pg_net(caplog: pytest.LogCaptureFixture) -> None:
    snap = replace(snapshot([job()], []), http=HttpResponses(installed=False))
    rule = replace(HTTP, name="no pg_net here")
    with caplog.at_level(logging.WARNING):
        assert judge([rule], snap) == []
        assert judge([rule], snap) == []
    warnings = [r for r in caplog.records if "pg_net is not installed" in r.getMessage()]
    assert len(warnings) == 1


# infrastructure_failures


INFRA = Rule(name="pg_cron trouble", kind="infrastructure_failures",
             window=timedelta(minutes=15), min_jobs=2)


def startup_timeout(runid: int, jobid: int, ago: timedelta) -> Run:
    return run(runid, jobid, status="failed", ago=ago, message="job startup timeout")


def test_infrastructure_failures_grouped_by_minute() -> None:
    jobs = [job(1, "a"), job(2, "b"), job(3, "c")]
    runs = [startup_timeout(1, 1, MINUTE * 2), startup_timeout(2, 2, MINUTE * 2),
            run(3, 3, status="failed", ago=MINUTE * 2, message="ERROR:  own bug")]
    verdict = only([INFRA], snapshot(jobs, runs), "infrastructure_failures")
    assert verdict.firing
    assert verdict.infrastructure
    assert verdict.jobid == SCHEDULER_JOBID
    assert verdict.facts["jobs"] == 2
    assert verdict.facts["groups"] == "2025-05-05T11:58:00+00:00\tjob startup timeout\ta, b"
    assert verdict.evidence == (2, 1)


def test_infrastructure_failures_near_miss_and_resolve() -> None:
    jobs = [job(1, "a"), job(2, "b")]
    one_job = [startup_timeout(1, 1, MINUTE * 2)]
    assert not only([INFRA], snapshot(jobs, one_job), "infrastructure_failures").firing
    old = [startup_timeout(1, 1, MINUTE * 20), startup_timeout(2, 2, MINUTE * 20)]
    assert not only([INFRA], snapshot(jobs, old), "infrastructure_failures").firing


def test_abandoned_run_reported_once_then_left_alone() -> None:
    # A `connecting` row from before the restart: reported while the restart is recent.
    jobs = [job(1, "a")]
    rule = replace(INFRA, min_jobs=1)
    abandoned = run(5, 1, status="connecting", ago=timedelta(hours=3), message=None)
    recent = snapshot(jobs, [abandoned], postmaster_start=NOW - MINUTE * 5)
    verdict = only([rule], recent, "infrastructure_failures")
    assert verdict.firing
    assert "abandoned:connecting" in str(verdict.facts["groups"])
    later = snapshot(jobs, [abandoned], postmaster_start=NOW - timedelta(hours=1))
    assert not only([rule], later, "infrastructure_failures").firing


# job_drift


DRIFT = Rule(name="drift", kind="job_drift")


def drift(snap: Snapshot, rule: Rule = DRIFT) -> dict[int, Verdict]:
    return {v.jobid: v for v in judge([rule], snap)}


def test_job_drift_on_schedule_active_command_and_unscheduled() -> None:
    first = [job(1, "a"), job(2, "b"), job(3, "c"), job(4, "d")]
    now = [
        replace(first[0], schedule="*/5 * * * *"),
        replace(first[1], active=False),
        replace(first[2], command="SELECT 2"),
    ]
    snap = replace(snapshot(now, []), known_jobs={j.jobid: j for j in first})
    verdicts = drift(snap)
    assert verdicts[1].facts["changes"] == "schedule"
    assert verdicts[2].facts["changes"] == "active"
    assert verdicts[3].facts["changes"] == "command"
    assert verdicts[4].facts["changes"] == "unscheduled"
    assert verdicts[4].job_label == "d"
    assert all(v.firing for v in verdicts.values())


def test_job_drift_quiet_when_unchanged_and_resolves() -> None:
    jobs = [job(1, "a")]
    snap = replace(snapshot(jobs, []), known_jobs={1: jobs[0]})
    assert not drift(snap)[1].firing


def test_job_drift_ignores_own_remediation() -> None:
    first = job(1, "a")
    snap = replace(snapshot([replace(first, active=False)], []), known_jobs={1: first},
                   own_changes=frozenset({(1, "active")}))
    assert not drift(snap)[1].firing


def test_job_drift_compares_with_declared_values() -> None:
    current = job(1, "a", schedule="*/5 * * * *", active=False)
    snap = replace(snapshot([current], []), known_jobs={1: current})
    rule = replace(DRIFT, expect_schedule="* * * * *", expect_active=True)
    verdict = drift(snap, rule)[1]
    assert verdict.facts["changes"] == "schedule,active"
    assert verdict.facts["expected_schedule"] == "* * * * *"
    assert not drift(snap, replace(DRIFT, expect_schedule="*/5 * * * *"))[1].firing
