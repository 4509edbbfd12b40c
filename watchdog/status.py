"""`cron-watchdog status`: one row per job with its last run and firing alerts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from watchdog.alerts import firing_alerts
from watchdog.messages import format_seconds
from watchdog.models import Snapshot
from watchdog.rules import RuleSet
from watchdog.snapshot import take_snapshot
from watchdog.source import PgSource
from watchdog.state import AlertRecord, StateStore

# The failure ratio column covers runs started in this span before the database's now().
RATIO_WINDOW = timedelta(hours=1)

_HEADERS = ("JOB", "SCHEDULE", "ACTIVE", "LAST RUN", "STATUS", "DURATION", "FAILED 1H",
            "ALERTS FIRING")


@dataclass(frozen=True)
class JobStatus:
    """One row of `status`: a job, its last run and the alerts firing on it."""

    jobid: int
    jobname: str
    schedule: str
    active: bool
    last_run: str | None
    last_status: str | None
    last_duration_seconds: float | None
    failure_ratio_1h: float | None
    alerts_firing: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_status(
    rules: RuleSet, store: StateStore, source: PgSource, fallback_timezone: str | None
) -> list[JobStatus]:
    """Read the database once (advancing the stored window) and build one row per job."""
    snapshot = take_snapshot(source, store, max(rules.lookback, RATIO_WINDOW), fallback_timezone,
                             baseline_lookback=rules.baseline_lookback)
    return build_rows(snapshot, firing_alerts(store, source.target))


def build_rows(snapshot: Snapshot, firing: list[AlertRecord]) -> list[JobStatus]:
    rows = []
    since = snapshot.taken_at - RATIO_WINDOW
    for job in sorted(snapshot.jobs.values(), key=lambda job: (job.label, job.jobid)):
        runs = snapshot.history.job(job.jobid)
        last = runs.newest
        lo, hi = runs.span(since, snapshot.taken_at)
        finished = [run for run in runs.others_in(since, snapshot.taken_at) if run.finished]
        total = hi - lo + len(finished)
        ratio = sum(run.failed for run in finished) / total if total else None
        duration = last.duration if last is not None else None
        rows.append(JobStatus(
            jobid=job.jobid,
            jobname=job.label,
            schedule=job.schedule,
            active=job.active,
            last_run=last.started.isoformat(timespec="seconds") if last else None,
            last_status=last.status if last else None,
            last_duration_seconds=duration.total_seconds() if duration is not None else None,
            failure_ratio_1h=round(ratio, 3) if ratio is not None else None,
            alerts_firing=sorted(record.rule for record in firing
                                 if record.jobid == job.jobid),
        ))
    return rows


def _duration_cell(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_seconds(seconds, "en")


def format_table(rows: list[JobStatus]) -> str:
    """Lay the rows out as a plain-text table with a header line."""
    cells = [list(_HEADERS)]
    for row in rows:
        cells.append([
            row.jobname,
            row.schedule,
            "yes" if row.active else "no",
            row.last_run or "-",
            row.last_status or "-",
            _duration_cell(row.last_duration_seconds),
            f"{row.failure_ratio_1h:.0%}" if row.failure_ratio_1h is not None else "-",
            ", ".join(row.alerts_firing) or "-",
        ])
    widths = [max(len(line[column]) for line in cells) for column in range(len(_HEADERS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )
