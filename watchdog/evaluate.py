"""Rule evaluation: pure functions from a snapshot and `now` to verdicts.

No I/O and no clock reads happen here, so every rule kind can be tested with
hand-made runs at a chosen time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from watchdog.kinds import JOB_EVALUATORS, SNAPSHOT_EVALUATORS, adjust_missing_runs
from watchdog.kinds.common import statistic, succeeded_durations
from watchdog.models import Job, Run, Snapshot, Verdict
from watchdog.rules import Rule, RuleSet
from watchdog.schedules import (
    IntervalSchedule,
    RebootSchedule,
    ScheduleError,
    UnevaluableSchedule,
    cron_zone,
    parse_schedule,
)

log = logging.getLogger(__name__)

Evaluator = Callable[[Rule, Job, list[Run], Snapshot, datetime], Verdict | None]


def evaluate(rules: RuleSet, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Evaluate every rule on every job it selects; return one verdict per (rule, job).

    A rule that cannot judge a job (an unparsable schedule, say) yields no
    verdict for it and logs why; the other jobs are still evaluated.
    """
    runs_by_job = snapshot.runs_by_job

    verdicts: list[Verdict] = []
    for rule in rules.rules:
        whole = SNAPSHOT_EVALUATORS.get(rule.kind)
        if whole is not None:
            verdicts.extend(whole(rule, snapshot, now))
            continue
        evaluator = EVALUATORS[rule.kind]
        for job in snapshot.jobs.values():
            if not rule.selects(job):
                continue
            verdict = evaluator(rule, job, runs_by_job.get(job.jobid, []), snapshot, now)
            if verdict is not None:
                verdicts.append(verdict)
    return adjust_missing_runs(verdicts, snapshot)


def _in_window(runs: Iterable[Run], start: datetime, now: datetime) -> list[Run]:
    return [run for run in runs if start <= run.started <= now]


def _last_error(runs: Iterable[Run]) -> str | None:
    failed = [run for run in runs if run.failed]
    if not failed:
        return None
    return max(failed, key=lambda run: run.runid).return_message


def _verdict(rule: Rule, job: Job, **kwargs: object) -> Verdict:
    return Verdict(rule=rule.name, kind=rule.kind, jobid=job.jobid, job_label=job.label,
                   **kwargs)  # type: ignore[arg-type]


def failure_ratio(
    rule: Rule, job: Job, runs: list[Run], snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when failed / finished runs in the window reach the threshold.

    Runs still in flight are neither failures nor successes (pg_cron has six
    statuses, not two), so only finished runs are counted. Infrastructure
    outcomes are left out of both counts and reported as `infrastructure`. A
    run that pg_cron canceled because the watchdog paused or unscheduled its
    job is not counted at all.
    """
    window = [
        run for run in _in_window(runs, now - rule.window, now)
        if not snapshot.canceled_by_watchdog(run)
    ]
    infrastructure = [run for run in window if run.infrastructure_failure]
    finished = [run for run in window if run.finished and not run.infrastructure_failure]
    failed = [run for run in finished if run.failed]
    ratio = len(failed) / len(finished) if finished else 0.0
    firing = len(finished) >= rule.min_runs and ratio >= rule.threshold
    return _verdict(
        rule,
        job,
        firing=firing,
        value=ratio,
        facts={
            "failed": len(failed),
            "finished": len(finished),
            "ratio": ratio,
            "threshold": rule.threshold,
            "min_runs": rule.min_runs,
            "infrastructure": len(infrastructure),
            "window_seconds": rule.window.total_seconds(),
        },
        last_error=_last_error(failed),
        # Newest first: the message lists only the first few.
        evidence=tuple(sorted((run.runid for run in failed), reverse=True)),
    )


def slow_average(
    rule: Rule, job: Job, runs: list[Run], snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when a statistic of succeeded runs' durations in the window is out of bounds.

    The statistic (mean, p95 or max) above max_duration means too slow;
    below min_duration means too fast, which usually means the job did nothing.
    """
    window = _in_window(runs, now - rule.window, now)
    durations = succeeded_durations(window)
    observed = statistic([seconds for _, seconds in durations], rule.statistic) if (
        durations) else 0.0
    limit = rule.max_duration.total_seconds()
    floor = rule.min_duration.total_seconds()
    enough = len(durations) >= rule.min_runs
    too_slow = enough and limit > 0 and observed > limit
    too_fast = enough and floor > 0 and observed < floor
    ordered = sorted(durations, key=lambda item: item[1], reverse=not too_fast)[:5]
    return _verdict(
        rule,
        job,
        firing=too_slow or too_fast,
        value=observed,
        facts={
            "mean_seconds": observed,
            "statistic": rule.statistic,
            "direction": "fast" if too_fast else "slow",
            "max_seconds": limit,
            "min_seconds": floor,
            "runs": len(durations),
            "window_seconds": rule.window.total_seconds(),
        },
        last_error=_last_error(window),
        evidence=tuple(runid for runid, _ in ordered),
    )


def missing_run(
    rule: Rule, job: Job, runs: list[Run], snapshot: Snapshot, now: datetime
) -> Verdict | None:
    """Fire when the job's own schedule had a run due and none started.

    The expected slot T is the latest one with T + grace in the past. The
    alert fires when no run started at or after T. A job with no known run is
    judged only for slots after the watchdog first saw it, and a job whose
    newest run is still in flight is left to the stuck-run check.
    """
    if not job.active:
        return None
    try:
        schedule = parse_schedule(job.schedule)
        zone = cron_zone(snapshot.cron_timezone)
    except ScheduleError as exc:
        log.warning("rule %r cannot evaluate job %s: %s", rule.name, job.label, exc)
        return None
    if isinstance(schedule, RebootSchedule | UnevaluableSchedule):
        return None

    last_start = snapshot.last_start.get(job.jobid)
    known_runs = [run.started for run in runs]
    if known_runs and (last_start is None or max(known_runs) > last_start):
        last_start = max(known_runs)
    if _has_open_run(runs, snapshot):
        return None

    deadline = now - rule.grace
    if isinstance(schedule, IntervalSchedule):
        expected = _interval_expected(schedule, runs, last_start, snapshot, job)
        if expected is None:
            return None
        firing = expected <= deadline and (last_start is None or last_start < expected)
        missed = int((now - expected).total_seconds() // schedule.seconds) + 1 if firing else 0
    else:
        expected = schedule.latest_due(deadline, zone)
        firing = last_start is None or last_start < expected
        missed = 0
        if firing:
            since = last_start if last_start is not None else snapshot.first_seen.get(job.jobid)
            if last_start is None and since is not None and expected < since:
                # Never seen a run, and the slot predates the watchdog knowing the job.
                firing = False
            if firing and since is not None:
                missed = schedule.count_slots(since, deadline, zone)

    return _verdict(
        rule,
        job,
        firing=firing,
        value=float(missed),
        facts={
            "schedule": job.schedule,
            "expected_at": expected.isoformat(),
            "grace_seconds": rule.grace.total_seconds(),
            "last_start": last_start.isoformat() if last_start else None,
            "cron_timezone": snapshot.cron_timezone,
            "missed": missed,
        },
        last_error=_last_error(runs),
    )


def _has_open_run(runs: list[Run], snapshot: Snapshot) -> bool:
    """Tell whether the job's newest run is still in flight and not abandoned.

    A run left in flight from before the server's last start is abandoned:
    pg_cron never finishes `connecting` or `sending` rows after a restart.
    """
    if not runs:
        return False
    newest = max(runs, key=lambda run: run.runid)
    if not newest.in_flight:
        return False
    started = newest.start_time
    return snapshot.postmaster_start is None or started is None or (
        started >= snapshot.postmaster_start
    )


def _interval_expected(
    schedule: IntervalSchedule,
    runs: list[Run],
    last_start: datetime | None,
    snapshot: Snapshot,
    job: Job,
) -> datetime | None:
    """Return when the next run of a `'N seconds'` job was due at the latest.

    pg_cron starts the next run N seconds after the last one started, or right
    after it ends when the run took longer, so the allowance is N plus the
    larger of N and the last duration.
    """
    interval = timedelta(seconds=schedule.seconds)
    if last_start is None:
        first_seen = snapshot.first_seen.get(job.jobid)
        return first_seen + interval * 2 if first_seen else None
    durations = [run.duration for run in runs if run.started == last_start and run.duration]
    last_duration = durations[0] if durations else timedelta(0)
    return last_start + interval + max(interval, last_duration)


EVALUATORS: dict[str, Evaluator] = {
    "failure_ratio": failure_ratio,
    "missing_run": missing_run,
    "slow_average": slow_average,
    **JOB_EVALUATORS,
}
