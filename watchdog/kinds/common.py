"""Helpers shared by the rule kinds: windows, verdict building, run classification."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from watchdog.history import JobRuns
from watchdog.models import Fact, Job, Run, Snapshot, Verdict
from watchdog.rules import Rule

# Runs named as evidence in a slow_average or duration_regression message.
EVIDENCE_RUNS = 5


def in_window(runs: Iterable[Run], start: datetime, end: datetime) -> list[Run]:
    """Return the runs placed (by start time, else first sight) at or after start, up to end."""
    return [run for run in runs if start <= run.started <= end]


def own_failures(runs: Iterable[Run]) -> list[Run]:
    """Return failed runs whose failure the job's own SQL caused."""
    return [run for run in runs if run.failed and not run.infrastructure_failure]


def infrastructure_failures(runs: Iterable[Run]) -> list[Run]:
    """Return failed runs whose message pg_cron itself wrote (startup timeout, restart...)."""
    return [run for run in runs if run.infrastructure_failure]


def abandoned_at(run: Run, newer_start: datetime | None, snapshot: Snapshot) -> datetime | None:
    """Return when an in-flight run became abandoned, or None while it may still finish.

    pg_cron rewrites only `starting` and `running` rows after a restart, so a
    row left in `connecting` or `sending` never ends. Such a run is abandoned
    from the server's start when it started before it, or from the start of
    a newer run of the same job (pg_cron never overlaps a job with itself).
    """
    if not run.in_flight:
        return None
    started = snapshot.postmaster_start
    if started is not None and run.start_time is not None and run.start_time < started:
        return started
    return newer_start


def abandoned_runs(runs: JobRuns, snapshot: Snapshot) -> dict[int, datetime]:
    """Map the runid of every abandoned run among one job's runs to when it was abandoned."""
    result: dict[int, datetime] = {}
    for run in runs.other_runs():
        if not run.in_flight:
            continue
        moment = abandoned_at(run, runs.next_start_after(run.runid), snapshot)
        if moment is not None:
            result[run.runid] = moment
    return result


def open_runs(runs: JobRuns, snapshot: Snapshot) -> list[Run]:
    """Return one job's runs in flight now, leaving out abandoned ones."""
    in_flight = [run for run in runs.other_runs() if run.in_flight]
    if not in_flight:
        return []
    abandoned = abandoned_runs(runs, snapshot)
    return [run for run in in_flight if run.runid not in abandoned]


def mean_seconds(runs: JobRuns, lo: int, hi: int) -> float:
    """Return the mean duration of columns [lo, hi) in seconds, or 0 for none."""
    return runs.total_us(lo, hi) / (hi - lo) / 1e6 if hi > lo else 0.0


def newest_message(runs: Iterable[Run]) -> str | None:
    """Return the return_message of the failed run with the highest runid, if any."""
    newest: Run | None = None
    for run in runs:
        if run.status == "failed" and (newest is None or run.runid > newest.runid):
            newest = run
    return newest.return_message if newest is not None else None


def statistic(runs: JobRuns, lo: int, hi: int, name: str) -> float:
    """Return the mean, 95th percentile (nearest rank) or max of columns [lo, hi), in seconds."""
    if hi <= lo:
        return 0.0
    if name == "max":
        return max(runs.durations[lo:hi]) / 1e6
    if name == "p95":
        ordered = sorted(runs.durations[lo:hi])
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] / 1e6
    return mean_seconds(runs, lo, hi)


def job_verdict(
    rule: Rule,
    job: Job,
    *,
    firing: bool,
    value: float | None,
    facts: dict[str, Fact],
    last_error: str | None = None,
    evidence: Iterable[int] = (),
    infrastructure: bool = False,
) -> Verdict:
    return Verdict(
        rule=rule.name,
        kind=rule.kind,
        jobid=job.jobid,
        job_label=job.label,
        firing=firing,
        value=value,
        facts=facts,
        last_error=last_error,
        evidence=tuple(evidence),
        infrastructure=infrastructure,
    )
