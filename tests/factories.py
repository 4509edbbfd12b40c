"""Builders for hand-made jobs, runs and snapshots in unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watchdog.models import Job, Run, Snapshot

NOW = datetime(2025, 5, 5, 12, 0, tzinfo=UTC)

# A failure_ratio rule that sends to one channel; format it with hook=<URL>.
FAILING_JOB_RULES = """
[channels.hook]
urls = ["{hook}"]

[[rules]]
name = "job failing"
kind = "failure_ratio"
notify = ["hook"]
window = "1h"
threshold = 0.5
min_runs = 1
"""

# The same rule, sending through `[defaults] notify`, which also carries the
# watchdog's own alerts.
FAILING_JOB_DEFAULT_RULES = """
[channels.hook]
urls = ["{hook}"]

[defaults]
notify = ["hook"]

[[rules]]
name = "job failing"
kind = "failure_ratio"
window = "1h"
threshold = 0.5
min_runs = 1
"""


def job(jobid: int = 1, name: str | None = "sync-orders", schedule: str = "* * * * *",
        active: bool = True) -> Job:
    return Job(jobid=jobid, jobname=name, schedule=schedule, command="SELECT 1",
               database="postgres", username="postgres", active=active)


def run(runid: int, jobid: int = 1, status: str = "succeeded", ago: timedelta | None = None,
        duration: float | None = 0.2, message: str | None = "1 row",
        start: datetime | None = None) -> Run:
    """Build a run that started `ago` before NOW and took `duration` seconds."""
    started = start if start is not None else NOW - (ago or timedelta(minutes=1))
    finished = status in ("succeeded", "failed")
    end = started + timedelta(seconds=duration) if finished and duration is not None else None
    return Run(runid=runid, jobid=jobid, status=status, return_message=message,
               start_time=started, end_time=end, seen_at=started)


def snapshot(jobs: list[Job], runs: list[Run], *, first_seen: datetime | None = None,
             timezone: str = "GMT", postmaster_start: datetime | None = None) -> Snapshot:
    seen = first_seen or NOW - timedelta(days=2)
    return Snapshot(
        taken_at=NOW,
        jobs={j.jobid: j for j in jobs},
        runs=sorted(runs, key=lambda r: r.runid),
        horizon=NOW - timedelta(days=1),
        last_start={},
        first_seen={j.jobid: seen for j in jobs},
        cron_timezone=timezone,
        postmaster_start=postmaster_start,
    )
