"""Per-job kinds beyond the first three: failure streaks, stuck runs, error patterns,
duration regressions.

Infrastructure outcomes (failures that pg_cron wrote itself, such as `job
startup timeout` or `server restarted`) are never counted as the job's own
failures here. Each kind reports how many it set aside in the `infrastructure`
fact; the infrastructure_failures kind alerts on them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from watchdog.history import HOUR_US, JobRuns, micros
from watchdog.kinds.common import (
    EVIDENCE_RUNS,
    infrastructure_failures,
    job_verdict,
    mean_seconds,
    open_runs,
    own_failures,
)
from watchdog.models import Job, Run, Snapshot, Verdict
from watchdog.rules import Rule

# Statuses in which a stuck run points at connection limits or
# cron.max_running_jobs rather than at a slow command.
WAITING_STATUSES = frozenset({"starting", "connecting"})


def consecutive_failures(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when the last `count` finished runs in the window all failed.

    Infrastructure outcomes neither extend nor break the streak: they are
    skipped, and the number skipped is the `infrastructure` fact.
    """
    start = now - rule.window
    lo, hi = runs.span(start, now)
    # The newest succeeded run in the window ends any streak of older runs.
    breaker = max(runs.runids[lo:hi]) if hi > lo else -1
    finished = sorted(
        (run for run in runs.others_in(start, now) if run.finished), key=lambda run: -run.runid
    )
    streak: list[Run] = []
    for run in finished:
        if run.infrastructure_failure:
            continue
        if run.runid < breaker or not run.failed:
            break
        streak.append(run)
    firing = len(streak) >= rule.count
    oldest = streak[-1].runid if streak else None
    skipped = [
        run for run in finished
        if run.infrastructure_failure and (oldest is None or run.runid >= oldest)
    ]
    return job_verdict(
        rule,
        job,
        firing=firing,
        value=float(len(streak)),
        facts={
            "streak": len(streak),
            "count": rule.count,
            "infrastructure": len(skipped),
            "window_seconds": rule.window.total_seconds(),
        },
        last_error=streak[0].return_message if streak else None,
        evidence=sorted((run.runid for run in streak), reverse=True),
    )


def stuck_run(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when a run is still in flight longer than max_runtime after it started.

    Abandoned runs (left in flight by a restart, or older than a newer run of
    the same job) are not stuck: pg_cron will never finish them, and the
    infrastructure_failures kind reports them once.
    """
    running = open_runs(runs, snapshot)
    limit = rule.max_runtime.total_seconds()
    stuck = sorted(
        (run for run in running if (now - run.started).total_seconds() > limit),
        key=lambda run: run.started,
    )
    longest = stuck[0] if stuck else (min(running, key=lambda run: run.started)
                                       if running else None)
    runtime = (now - longest.started).total_seconds() if longest else 0.0
    return job_verdict(
        rule,
        job,
        firing=bool(stuck),
        value=runtime,
        facts={
            "runid": longest.runid if longest else None,
            "status": longest.status if longest else None,
            "runtime_seconds": runtime,
            "max_runtime_seconds": limit,
            "stuck": len(stuck),
            "waiting": 1 if longest is not None and longest.status in WAITING_STATUSES else 0,
        },
        last_error=longest.return_message if longest else None,
        evidence=sorted((run.runid for run in stuck), reverse=True),
    )


def error_match(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when at least min_count failed runs in the window have a matching return_message.

    Only the job's own failures are matched; infrastructure outcomes are
    counted in the `infrastructure` fact instead.
    """
    window = runs.others_in(now - rule.window, now)
    pattern = re.compile(rule.pattern)
    matched = [
        run for run in own_failures(window)
        if run.return_message is not None and pattern.search(run.return_message)
    ]
    newest = max(matched, key=lambda run: run.runid, default=None)
    return job_verdict(
        rule,
        job,
        firing=len(matched) >= rule.min_count,
        value=float(len(matched)),
        facts={
            "pattern": rule.pattern,
            "matches": len(matched),
            "min_count": rule.min_count,
            "infrastructure": len(infrastructure_failures(window)),
            "window_seconds": rule.window.total_seconds(),
        },
        last_error=newest.return_message if newest else None,
        evidence=sorted((run.runid for run in matched), reverse=True),
    )


def duration_regression(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when the mean duration in the window exceeds factor x the baseline's mean.

    The baseline is counted in whole hours: the hours that end at or before
    the window's start and begin no earlier than `baseline` before it. Those
    sums are kept per job and hour, so a baseline of days needs no raw runs.
    Only succeeded runs count, so failures and infrastructure outcomes (which
    end early or have no end_time) do not distort either mean.
    """
    window_start = now - rule.window
    lo, hi = runs.span(window_start, now)
    recent_runs = hi - lo
    recent_mean = mean_seconds(runs, lo, hi)
    first_hour, end_hour = baseline_hours(window_start, rule.baseline)
    baseline_runs, baseline_us = runs.bucket_sums(first_hour, end_hour)
    baseline_mean = baseline_us / baseline_runs / 1e6 if baseline_runs else 0.0
    enough = recent_runs >= rule.min_runs and baseline_runs >= rule.min_runs
    ratio = recent_mean / baseline_mean if baseline_mean > 0 else 0.0
    firing = enough and baseline_mean > 0 and recent_mean > rule.factor * baseline_mean
    slowest = runs.ranked(lo, hi, EVIDENCE_RUNS) if firing else []
    return job_verdict(
        rule,
        job,
        firing=firing,
        value=recent_mean,
        facts={
            "recent_mean_seconds": recent_mean,
            "baseline_mean_seconds": baseline_mean,
            "ratio": ratio,
            "factor": rule.factor,
            "recent_runs": recent_runs,
            "baseline_runs": baseline_runs,
            "min_runs": rule.min_runs,
            "window_seconds": rule.window.total_seconds(),
            "baseline_seconds": rule.baseline.total_seconds(),
        },
        evidence=[runid for runid, _ in slowest],
    )


def baseline_hours(window_start: datetime, baseline: timedelta) -> tuple[int, int]:
    """Return the hours [first, end), counted from the Unix epoch, that make up a baseline."""
    first = -(-micros(window_start - baseline) // HOUR_US)
    return first, micros(window_start) // HOUR_US
