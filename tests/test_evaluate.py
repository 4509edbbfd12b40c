"""Rule kinds on hand-made runs at a fixed time; no database involved."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from factories import NOW, job, run, snapshot

from watchdog.evaluate import evaluate
from watchdog.models import Run
from watchdog.rules import Rule, RuleSet

MINUTE = timedelta(minutes=1)


def ratio_rule(**changes: object) -> Rule:
    base = Rule(name="failing", kind="failure_ratio", threshold=0.2, min_runs=3,
                window=timedelta(hours=1))
    return replace(base, **changes)  # type: ignore[arg-type]


def judge(rule: Rule, runs: list[Run], jobs: list | None = None, **kwargs: object):  # type: ignore[type-arg]
    snap = snapshot(jobs or [job()], runs, **kwargs)  # type: ignore[arg-type]
    verdicts = evaluate(RuleSet((rule,)), snap, NOW)
    return verdicts


def test_failure_ratio_fires_at_threshold() -> None:
    runs = [run(i, status="failed" if i <= 2 else "succeeded", ago=MINUTE * i)
            for i in range(1, 11)]
    [verdict] = judge(ratio_rule(), runs)
    assert verdict.firing
    assert verdict.facts["failed"] == 2
    assert verdict.facts["finished"] == 10
    assert verdict.value == 0.2
    assert verdict.evidence == (2, 1)


def test_failure_ratio_below_threshold_is_quiet() -> None:
    runs = [run(i, status="failed" if i == 1 else "succeeded", ago=MINUTE * i)
            for i in range(1, 11)]
    [verdict] = judge(ratio_rule(), runs)
    assert not verdict.firing


def test_failure_ratio_counts_only_finished_runs() -> None:
    # One running, one succeeded, one failed: 1/2, not 1/3 or 2/3.
    runs = [
        run(7001, status="running", ago=MINUTE, message=None),
        run(7000, status="succeeded", ago=MINUTE * 2),
        run(6999, status="failed", ago=MINUTE * 3, message="ERROR:  division by zero"),
    ]
    [verdict] = judge(ratio_rule(min_runs=2, threshold=0.5), runs)
    assert verdict.facts["finished"] == 2
    assert verdict.value == 0.5
    assert verdict.firing
    assert verdict.last_error == "ERROR:  division by zero"


def test_failure_ratio_needs_min_runs() -> None:
    runs = [run(1, status="failed"), run(2, status="failed", ago=MINUTE * 2)]
    [verdict] = judge(ratio_rule(min_runs=3), runs)
    assert verdict.value == 1.0
    assert not verdict.firing


def test_failure_ratio_ignores_runs_outside_window() -> None:
    old = [run(i, status="failed", ago=timedelta(hours=2) + MINUTE * i) for i in range(1, 6)]
    recent = [run(10 + i, ago=MINUTE * i) for i in range(1, 6)]
    [verdict] = judge(ratio_rule(), old + recent)
    assert verdict.facts["finished"] == 5
    assert not verdict.firing


def test_failure_ratio_places_null_start_by_seen_at() -> None:
    # pg_cron before 1.6.3 leaves start_time NULL on runs that never started.
    never_started = [
        Run(runid=i, jobid=1, status="failed", return_message="ERROR:  permission denied",
            start_time=None, end_time=None, seen_at=NOW - MINUTE)
        for i in range(1, 4)
    ]
    [verdict] = judge(ratio_rule(), never_started)
    assert verdict.facts["finished"] == 3
    assert verdict.firing


def test_failure_ratio_counts_infrastructure_apart() -> None:
    # pg_cron writes "connection failed" itself: not the job's failure.
    runs = [
        Run(runid=i, jobid=1, status="failed", return_message="connection failed",
            start_time=None, end_time=None, seen_at=NOW - MINUTE)
        for i in range(1, 4)
    ] + [run(10, ago=MINUTE * 2)]
    [verdict] = judge(ratio_rule(min_runs=1), runs)
    assert verdict.facts["finished"] == 1
    assert verdict.facts["failed"] == 0
    assert verdict.facts["infrastructure"] == 3
    assert not verdict.firing


def test_unknown_status_is_not_success() -> None:
    runs = [run(1, status="failed"), run(2, status="failed"), run(3, status="weird")]
    [verdict] = judge(ratio_rule(min_runs=2), runs)
    assert verdict.facts["finished"] == 2
    assert verdict.value == 1.0


def test_rule_selects_jobs_by_glob_and_exclude() -> None:
    jobs = [job(1, "openrouter-a"), job(2, "openrouter-test"), job(3, "billing"), job(4, None)]
    rule = ratio_rule(jobs=("openrouter-*",), exclude=("*-test",))
    verdicts = judge(rule, [], jobs=jobs)
    assert [v.jobid for v in verdicts] == [1]


def test_runs_of_deleted_jobs_are_ignored() -> None:
    runs = [run(i, jobid=99, status="failed") for i in range(1, 6)]
    [verdict] = judge(ratio_rule(), runs)
    assert verdict.jobid == 1
    assert verdict.facts["finished"] == 0


def slow_rule(**changes: object) -> Rule:
    base = Rule(name="slow", kind="slow_average", max_duration=timedelta(seconds=10),
                min_runs=1, window=timedelta(hours=1))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_slow_average_fires_above_limit() -> None:
    runs = [run(1, duration=12.0), run(2, duration=14.0, ago=MINUTE * 2)]
    [verdict] = judge(slow_rule(), runs)
    assert verdict.firing
    assert verdict.value == 13.0
    assert verdict.evidence == (2, 1)


def test_slow_average_skips_failed_and_in_flight_runs() -> None:
    runs = [
        run(1, duration=2.0),
        run(2, status="failed", duration=500.0),
        run(3, status="running", duration=None),
        # "server restarted" rows are failed with a NULL end_time.
        run(4, status="failed", duration=None, message="server restarted"),
    ]
    [verdict] = judge(slow_rule(), runs)
    assert verdict.facts["runs"] == 1
    assert verdict.value == 2.0
    assert not verdict.firing


def test_slow_average_equal_to_limit_is_quiet() -> None:
    [verdict] = judge(slow_rule(), [run(1, duration=10.0)])
    assert not verdict.firing


def missing_rule(grace: timedelta = timedelta(minutes=2)) -> Rule:
    return Rule(name="stopped", kind="missing_run", grace=grace)


def test_missing_run_fires_when_slot_passed() -> None:
    # Every 5 minutes; latest slot with slot + 2m grace past is 11:55; last run 11:50.
    runs = [run(1, ago=timedelta(minutes=10))]
    [verdict] = judge(missing_rule(), runs, jobs=[job(schedule="*/5 * * * *")])
    assert verdict.firing
    assert verdict.facts["expected_at"] == "2025-05-05T11:55:00+00:00"
    assert verdict.facts["missed"] == 1


def test_missing_run_quiet_within_grace() -> None:
    runs = [run(1, ago=timedelta(minutes=1, seconds=30))]
    [verdict] = judge(missing_rule(), runs, jobs=[job(schedule="* * * * *")])
    assert not verdict.firing


def test_missing_run_uses_last_start_beyond_window() -> None:
    daily = job(schedule="0 3 * * *")
    snap = snapshot([daily], [])
    snap = replace(snap, last_start={1: datetime(2025, 5, 5, 3, 0, 5, tzinfo=UTC)})
    [verdict] = evaluate(RuleSet((missing_rule(),)), snap, NOW)
    assert not verdict.firing


def test_missing_run_judges_new_job_from_first_seen() -> None:
    # Created a minute ago: the 11:58 slot predates the watchdog seeing the job.
    [verdict] = judge(missing_rule(), [], jobs=[job()], first_seen=NOW - MINUTE)
    assert not verdict.firing
    [verdict] = judge(missing_rule(), [], jobs=[job()], first_seen=NOW - MINUTE * 10)
    assert verdict.firing
    assert verdict.facts["last_start"] is None


def test_missing_run_skips_inactive_and_reboot_jobs() -> None:
    jobs = [job(1, active=False), job(2, "boot", schedule="@reboot")]
    assert judge(missing_rule(), [], jobs=jobs) == []


def test_missing_run_waits_for_open_run() -> None:
    runs = [run(1, status="running", ago=timedelta(minutes=7), duration=None)]
    assert judge(missing_rule(), runs) == []


def test_missing_run_ignores_run_abandoned_by_restart() -> None:
    # A `connecting` row from before the server's start is never finished by pg_cron.
    runs = [run(1, status="connecting", ago=timedelta(minutes=30), duration=None)]
    [verdict] = judge(missing_rule(), runs, postmaster_start=NOW - timedelta(minutes=20))
    assert verdict.firing


def test_missing_run_evaluates_in_cron_timezone() -> None:
    # 11:30 in Moscow is 08:30 UTC: a run at 08:30 UTC is on time there, but in
    # GMT the 11:30 slot has passed with no run since.
    runs = [run(1, start=datetime(2025, 5, 5, 8, 30, tzinfo=UTC))]
    daily = job(schedule="30 11 * * *")
    [verdict] = judge(missing_rule(), runs, jobs=[daily], timezone="Europe/Moscow")
    assert not verdict.firing
    [verdict] = judge(missing_rule(), runs, jobs=[daily], timezone="GMT")
    assert verdict.firing


def test_missing_run_understands_last_day_of_month() -> None:
    # 2025-04-30 is the last day of April; `$` is pg_cron 1.6's last-day marker.
    runs = [run(1, start=datetime(2025, 4, 30, 12, 0, 1, tzinfo=UTC))]
    [verdict] = judge(missing_rule(), runs, jobs=[job(schedule="0 12 $ * *")])
    assert not verdict.firing
    assert verdict.facts["expected_at"] == "2025-04-30T12:00:00+00:00"


def test_missing_run_on_interval_schedule() -> None:
    every_30s = job(schedule="30 seconds")
    on_time = [run(1, ago=timedelta(seconds=40))]
    [verdict] = judge(missing_rule(timedelta(seconds=30)), on_time, jobs=[every_30s])
    assert not verdict.firing
    late = [run(1, ago=timedelta(minutes=5))]
    [verdict] = judge(missing_rule(timedelta(seconds=30)), late, jobs=[every_30s])
    assert verdict.firing


def test_missing_run_interval_allows_long_runs() -> None:
    # A 10-second job whose runs take 25 s starts the next run right after the last ends.
    every_10s = job(schedule="10 seconds")
    runs = [run(1, ago=timedelta(seconds=40), duration=25.0)]
    [verdict] = judge(missing_rule(timedelta(seconds=10)), runs, jobs=[every_10s])
    assert not verdict.firing


def test_bad_schedule_skips_only_that_job() -> None:
    jobs = [job(1, "bad", schedule="61 * * * *"), job(2, "good", schedule="* * * * *")]
    verdicts = judge(missing_rule(), [], jobs=jobs)
    assert [v.jobid for v in verdicts] == [2]


def test_slot_count_arithmetic_matches_iteration() -> None:
    import random

    from watchdog.schedules import CronSchedule, cron_zone, parse_schedule

    rng = random.Random(7)
    utc = cron_zone("UTC")
    for text in ["* * * * *", "*/5 * * * *", "*/15 * * * *", "7 * * * *", "30 */6 * * *",
                 "45 3 * * *", "0 0 * * *"]:
        schedule = parse_schedule(text)
        assert isinstance(schedule, CronSchedule)
        for _ in range(20):
            after = NOW - timedelta(seconds=rng.randrange(0, 3 * 86400))
            until = after + timedelta(seconds=rng.randrange(0, 2 * 86400))
            iterated = sum(1 for _ in schedule.slots_between(after, until, utc))
            assert schedule.count_slots(after, until, utc) == iterated, (text, after, until)
