"""Per-job kinds beyond the first three: failure streaks, stuck runs, error patterns,
duration regressions.

Infrastructure outcomes (failures that pg_cron wrote itself, such as `job
startup timeout` or `server restarted`) are never counted as the job's own
failures here. Each kind reports how many it set aside in the `infrastructure`
fact; the infrastructure_failures kind alerts on them.
"""

from __future__ import annotations

import re
from datetime import datetime

from watchdog.kinds.common import (
    abandoned_runs,
    in_window,
    infrastructure_failures,
    job_verdict,
    own_failures,
    succeeded_durations,
)
from watchdog.models import Job, Run, Snapshot, Verdict
from watchdog.rules import Rule

# Statuses in which a stuck run points at connection limits or
# cron.max_running_jobs rather than at a slow command.
WAITING_STATUSES = frozenset({"starting", "connecting"})


def consecutive_failures(
    rule: Rule, job: Job, runs: list[Run], snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when the last `count` finished runs in the window all failed.

    Infrastructure outcomes neither extend nor break the streak: they are
    skipped, and the number skipped is the `infrastructure` fact.
    """
    window = in_window(runs, now - rule.window, now)
    finished = sorted((run for run in window if run.finished), key=lambda run: -run.runid)
    judged = [run for run in finished if not run.infrastructure_failure]
    streak: list[Run] = []
    for run in judged:
        if not run.failed:
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
    rule: Rule, job: Job, runs: list[Run], snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when a run is still in flight longer than max_runtime after it started.

    Abandoned runs (left in flight by a restart, or older than a newer run of
    the same job) are not stuck: pg_cron will never finish them, and the
    infrastructure_failures kind reports them once.
    """
    abandoned = abandoned_runs(runs, snapshot)
    open_runs = [run for run in runs if run.in_flight and run.runid not in abandoned]
    limit = rule.max_runtime.total_seconds()
    stuck = sorted(
        (run for run in open_runs if (now - run.started).total_seconds() > limit),
        key=lambda run: run.started,
    )
    longest = stuck[0] if stuck else (min(open_runs, key=lambda run: run.started)
                                       if open_runs else None)
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
    rule: Rule, job: Job, runs: list[Run], snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when at least min_count failed runs in the window have a matching return_message.

    Only the job's own failures are matched; infrastructure outcomes are
    counted in the `infrastructure` fact instead.
    """
    window = in_window(runs, now - rule.window, now)
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
    rule: Rule, job: Job, runs: list[Run], snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when the mean duration in the window exceeds factor x the baseline's mean.

    The baseline is the `baseline` period right before the window. Only
    succeeded runs count, so failures and infrastructure outcomes (which end
    early or have no end_time) do not distort either mean.
    """
    window_start = now - rule.window
    recent = succeeded_durations(in_window(runs, window_start, now))
    earlier = [
        run for run in in_window(runs, window_start - rule.baseline, window_start)
        if run.started < window_start
    ]
    baseline = succeeded_durations(earlier)
    recent_mean = _mean(recent)
    baseline_mean = _mean(baseline)
    enough = len(recent) >= rule.min_runs and len(baseline) >= rule.min_runs
    ratio = recent_mean / baseline_mean if baseline_mean > 0 else 0.0
    firing = enough and baseline_mean > 0 and recent_mean > rule.factor * baseline_mean
    slowest = sorted(recent, key=lambda item: item[1], reverse=True)[:5]
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
            "recent_runs": len(recent),
            "baseline_runs": len(baseline),
            "min_runs": rule.min_runs,
            "window_seconds": rule.window.total_seconds(),
            "baseline_seconds": rule.baseline.total_seconds(),
        },
        evidence=[runid for runid, _ in slowest],
    )


def _mean(durations: list[tuple[int, float]]) -> float:
    return sum(seconds for _, seconds in durations) / len(durations) if durations else 0.0
