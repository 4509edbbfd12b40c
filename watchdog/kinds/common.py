"""Helpers shared by the rule kinds: windows, verdict building, run classification."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from watchdog.models import Fact, Job, Run, Snapshot, Verdict
from watchdog.rules import Rule


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


def abandoned_runs(runs: list[Run], snapshot: Snapshot) -> dict[int, datetime]:
    """Map the runid of every abandoned run among one job's runs to when it was abandoned."""
    ordered = sorted(runs, key=lambda run: run.runid)
    result: dict[int, datetime] = {}
    for position, run in enumerate(ordered):
        newer = ordered[position + 1].started if position + 1 < len(ordered) else None
        moment = abandoned_at(run, newer, snapshot)
        if moment is not None:
            result[run.runid] = moment
    return result


def succeeded_durations(runs: Iterable[Run]) -> list[tuple[int, float]]:
    """Return (runid, seconds) of succeeded runs with both timestamps set."""
    return [
        (run.runid, duration.total_seconds())
        for run in runs
        if run.status == "succeeded" and (duration := run.duration) is not None
    ]


def statistic(values: list[float], name: str) -> float:
    """Return the mean, 95th percentile (nearest rank) or max of non-empty values."""
    if name == "max":
        return max(values)
    if name == "p95":
        ordered = sorted(values)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return sum(values) / len(values)


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
