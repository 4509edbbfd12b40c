"""Rule evaluation: pure functions from a snapshot and `now` to verdicts.

No I/O and no clock reads happen here, so every rule kind can be tested with
hand-made runs at a chosen time.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog.history import HOUR_US, MICROSECOND, JobRuns, micros
from watchdog.kinds import JOB_EVALUATORS, SNAPSHOT_EVALUATORS, adjust_missing_runs
from watchdog.kinds.common import EVIDENCE_RUNS, job_verdict, newest_message, statistic
from watchdog.kinds.jobs import baseline_hours, duration_regression
from watchdog.models import Job, Run, Snapshot, Verdict
from watchdog.rules import Rule, RuleSet, selects_name
from watchdog.schedules import (
    IntervalSchedule,
    RebootSchedule,
    ScheduleError,
    UnevaluableSchedule,
    cron_zone,
    parse_schedule,
)

log = logging.getLogger(__name__)

Evaluator = Callable[[Rule, Job, JobRuns, Snapshot, datetime], Verdict | None]


def evaluate(rules: RuleSet, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Evaluate every rule on every job it selects; return one verdict per (rule, job).

    A rule that cannot judge a job (an unparsable schedule, say) yields no
    verdict for it and logs why; the other jobs are still evaluated. Verdicts
    of the window kinds are reused from the previous cycle while their inputs
    are unchanged (see `_Reusable`).
    """
    history = snapshot.history
    reusable: dict[tuple[str, int], _Reusable] = {}
    names = frozenset(job.jobname or "" for job in snapshot.jobs.values())

    verdicts: list[Verdict] = []
    for rule in rules.rules:
        whole = SNAPSHOT_EVALUATORS.get(rule.kind)
        if whole is not None:
            verdicts.extend(whole(rule, snapshot, now))
            continue
        evaluator = EVALUATORS[rule.kind]
        reuse = REUSABLE.get(rule.kind)
        for job in _selected(rule, snapshot.jobs, names):
            runs = history.job(job.jobid)
            if reuse is not None:
                verdict = _reuse_or_evaluate(reuse, rule, job, runs, snapshot, now, reusable)
            else:
                verdict = evaluator(rule, job, runs, snapshot, now)
            if verdict is not None:
                verdicts.append(verdict)
    history.verdicts = reusable
    return adjust_missing_runs(verdicts, snapshot)


def _selected(rule: Rule, jobs: dict[int, Job], names: frozenset[str]) -> list[Job]:
    """Return the jobs the rule selects; the globs are matched once per set of jobnames."""
    chosen = _chosen_names(rule.jobs, rule.exclude, names)
    return [job for job in jobs.values() if (job.jobname or "") in chosen]


@functools.lru_cache(maxsize=256)
def _chosen_names(
    include: tuple[str, ...], exclude: tuple[str, ...], names: frozenset[str]
) -> frozenset[str]:
    return frozenset(name for name in names if selects_name(include, exclude, name))


@dataclass(slots=True)
class _Reusable:
    """A verdict and what it was computed from; it stays valid while all of that is unchanged.

    Between `since` and `until` (microseconds since the epoch) no run enters
    or leaves the window, no baseline hour changes and no schedule slot falls
    due, so the same runs and `context` give the same verdict.
    """

    rule: Rule
    label: str
    runs: JobRuns
    version: int
    context: object
    since: int
    until: int
    verdict: Verdict


# A judge returns a verdict and the moment (microseconds) until which it is valid.
Judge = Callable[[Rule, Job, JobRuns, Snapshot, datetime], tuple[Verdict | None, int]]
# What, besides the job's runs and the clock, a verdict depends on.
Context = Callable[[Job, Snapshot], object]


@dataclass(frozen=True)
class Reuse:
    """The reuse rule of one kind: the judge that dates its verdicts, and their context."""

    judge: Judge
    context: Context


def _reuse_or_evaluate(
    reuse: Reuse, rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot,
    now: datetime, reusable: dict[tuple[str, int], _Reusable],
) -> Verdict | None:
    key = (rule.name, job.jobid)
    at = micros(now)
    context = reuse.context(job, snapshot)
    entry = snapshot.history.verdicts.get(key)
    if not (entry is not None and entry.rule is rule and entry.runs is runs
            and entry.version == runs.version and entry.context == context
            and entry.label == job.label and entry.since <= at < entry.until):
        verdict, until = reuse.judge(rule, job, runs, snapshot, now)
        if verdict is None:
            return None
        entry = _Reusable(rule, job.label, runs, runs.version, context, at, until, verdict)
    reusable[key] = entry
    return entry.verdict


def _canceled_context(job: Job, snapshot: Snapshot) -> object:
    """Return when the watchdog last canceled the job, the one fact window kinds read."""
    return snapshot.watchdog_cancels.get(job.jobid)


def _missing_run_context(job: Job, snapshot: Snapshot) -> object:
    """Return the job and snapshot facts a missing_run verdict depends on."""
    return (job.schedule, job.active, snapshot.last_start.get(job.jobid),
            snapshot.first_seen.get(job.jobid), snapshot.cron_timezone,
            snapshot.postmaster_start)


ValidUntil = Callable[[Rule, JobRuns, datetime], int]


def _windowed(evaluator: Evaluator, valid_until: ValidUntil) -> Judge:
    """Return a judge that pairs a kind's verdict with the moment `valid_until` gives."""
    def judge(
        rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
    ) -> tuple[Verdict | None, int]:
        return evaluator(rule, job, runs, snapshot, now), valid_until(rule, runs, now)

    return judge


def _window_valid_until(rule: Rule, runs: JobRuns, now: datetime) -> int:
    """Return when (microseconds) a run next enters or leaves the rule's window."""
    return runs.window_changes_at(now - rule.window, now, rule.window)


def _baseline_valid_until(rule: Rule, runs: JobRuns, now: datetime) -> int:
    """Return when (microseconds) the window's runs or the baseline's whole hours change."""
    window_us = rule.window // MICROSECOND
    first, end = baseline_hours(now - rule.window, rule.baseline)
    return min(
        _window_valid_until(rule, runs, now),
        (end + 1) * HOUR_US + window_us,
        first * HOUR_US + rule.baseline // MICROSECOND + window_us + 1,
    )


def failure_ratio(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when failed / finished runs in the window reach the threshold.

    Runs still in flight are neither failures nor successes (pg_cron has six
    statuses, not two), so only finished runs are counted. Infrastructure
    outcomes are left out of both counts and reported as `infrastructure`. A
    run that pg_cron canceled because the watchdog paused or unscheduled its
    job is not counted at all.
    """
    start = now - rule.window
    lo, hi = runs.span(start, now)
    window = [
        run for run in runs.others_in(start, now) if not snapshot.canceled_by_watchdog(run)
    ]
    infrastructure = [run for run in window if run.infrastructure_failure]
    finished_others = [run for run in window if run.finished and not run.infrastructure_failure]
    failed = [run for run in finished_others if run.failed]
    finished = hi - lo + len(finished_others)
    ratio = len(failed) / finished if finished else 0.0
    firing = finished >= rule.min_runs and ratio >= rule.threshold
    return job_verdict(
        rule,
        job,
        firing=firing,
        value=ratio,
        facts={
            "failed": len(failed),
            "finished": finished,
            "ratio": ratio,
            "threshold": rule.threshold,
            "min_runs": rule.min_runs,
            "infrastructure": len(infrastructure),
            "window_seconds": rule.window.total_seconds(),
        },
        last_error=newest_message(failed),
        # Newest first: the message lists only the first few.
        evidence=tuple(sorted((run.runid for run in failed), reverse=True)),
    )


def slow_average(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> Verdict:
    """Fire when a statistic of succeeded runs' durations in the window is out of bounds.

    The statistic (mean, p95 or max) above max_duration means too slow;
    below min_duration means too fast, which usually means the job did nothing.
    The slowest (or fastest) runs are named only while the verdict fires.
    """
    start = now - rule.window
    lo, hi = runs.span(start, now)
    count = hi - lo
    observed = statistic(runs, lo, hi, rule.statistic)
    limit = rule.max_duration.total_seconds()
    floor = rule.min_duration.total_seconds()
    enough = count >= rule.min_runs
    too_slow = enough and limit > 0 and observed > limit
    too_fast = enough and floor > 0 and observed < floor
    firing = too_slow or too_fast
    ranked = runs.ranked(lo, hi, EVIDENCE_RUNS, slowest=not too_fast) if firing else []
    return job_verdict(
        rule,
        job,
        firing=firing,
        value=observed,
        facts={
            "mean_seconds": observed,
            "statistic": rule.statistic,
            "direction": "fast" if too_fast else "slow",
            "max_seconds": limit,
            "min_seconds": floor,
            "runs": count,
            "window_seconds": rule.window.total_seconds(),
        },
        last_error=newest_message(runs.others_in(start, now)),
        evidence=tuple(runid for runid, _ in ranked),
    )


def missing_run(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> Verdict | None:
    """Fire when the job's own schedule had a run due and none started.

    The expected slot T is the latest one with T + grace in the past. The
    alert fires when no run started at or after T. A job with no known run is
    judged only for slots after the watchdog first saw it, and a job whose
    newest run is still in flight is left to the stuck-run check.
    """
    return _judge_missing_run(rule, job, runs, snapshot, now)[0]


def _judge_missing_run(
    rule: Rule, job: Job, runs: JobRuns, snapshot: Snapshot, now: datetime
) -> tuple[Verdict | None, int]:
    """Return missing_run's verdict and the moment (microseconds) until which it is valid."""
    never = micros(now)
    if not job.active:
        return None, never
    try:
        schedule = parse_schedule(job.schedule)
        zone = cron_zone(snapshot.cron_timezone)
    except ScheduleError as exc:
        log.warning("rule %r cannot evaluate job %s: %s", rule.name, job.label, exc)
        return None, never
    if isinstance(schedule, RebootSchedule | UnevaluableSchedule):
        return None, never

    last_start = snapshot.last_start.get(job.jobid)
    latest = runs.latest_start()
    if latest is not None and (last_start is None or latest > last_start):
        last_start = latest
    newest = runs.newest
    if _is_open(newest, snapshot):
        return None, never

    deadline = now - rule.grace
    if isinstance(schedule, IntervalSchedule):
        expected = _interval_expected(schedule, newest, last_start, snapshot, job)
        if expected is None:
            return None, never
        firing = expected <= deadline and (last_start is None or last_start < expected)
        missed = int((now - expected).total_seconds() // schedule.seconds) + 1 if firing else 0
        # Firing, the count of missed slots grows every N seconds; not firing, the
        # verdict flips once the expected start plus grace has passed.
        if firing:
            until = micros(expected) + missed * schedule.seconds * 1_000_000
        elif deadline < expected:
            until = micros(expected + rule.grace)
        else:
            until = sys.maxsize
    else:
        expected = schedule.latest_due(deadline, zone)
        # The next slot moves the expected time and the count of missed slots.
        until = micros(schedule.next_due(expected, zone) + rule.grace)
        firing = last_start is None or last_start < expected
        missed = 0
        if firing:
            since = last_start if last_start is not None else snapshot.first_seen.get(job.jobid)
            if last_start is None and since is not None and expected < since:
                # Never seen a run, and the slot predates the watchdog knowing the job.
                firing = False
            if firing and since is not None:
                missed = schedule.count_slots(since, deadline, zone)

    verdict = job_verdict(
        rule,
        job,
        firing=firing,
        value=float(missed),
        facts={
            "schedule": job.schedule,
            "expected_at": _isoformat(expected),
            "grace_seconds": rule.grace.total_seconds(),
            "last_start": _isoformat(last_start) if last_start else None,
            "cron_timezone": snapshot.cron_timezone,
            "missed": missed,
        },
        last_error=newest.return_message if newest is not None and newest.failed else None,
    )
    return verdict, until


# missing_run formats the same slot for every job on a schedule, and the same last
# start cycle after cycle.
_isoformat = functools.lru_cache(maxsize=8192)(datetime.isoformat)


def _is_open(newest: Run | None, snapshot: Snapshot) -> bool:
    """Tell whether the job's newest run is still in flight and not abandoned.

    A run left in flight from before the server's last start is abandoned:
    pg_cron never finishes `connecting` or `sending` rows after a restart.
    """
    if newest is None or not newest.in_flight:
        return False
    started = newest.start_time
    return snapshot.postmaster_start is None or started is None or (
        started >= snapshot.postmaster_start
    )


def _interval_expected(
    schedule: IntervalSchedule,
    newest: Run | None,
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
    duration = newest.duration if newest is not None and newest.started == last_start else None
    return last_start + interval + max(interval, duration or timedelta(0))


EVALUATORS: dict[str, Evaluator] = {
    "failure_ratio": failure_ratio,
    "missing_run": missing_run,
    "slow_average": slow_average,
    **JOB_EVALUATORS,
}

# Kinds whose verdict depends only on the job's runs, the clock and a few facts of
# the snapshot, so each verdict comes with the moment it expires and is reused until then.
REUSABLE: dict[str, Reuse] = {
    "failure_ratio": Reuse(_windowed(failure_ratio, _window_valid_until), _canceled_context),
    "slow_average": Reuse(_windowed(slow_average, _window_valid_until), _canceled_context),
    "duration_regression": Reuse(
        _windowed(duration_regression, _baseline_valid_until), _canceled_context),
    "missing_run": Reuse(_judge_missing_run, _missing_run_context),
}
