"""The four demo jobs and an hour of made-up run history for them.

The history is inserted straight into `cron.job_run_details` with start times
relative to the database's `now()`, so the first `cron-watchdog once` already
has enough runs to judge. The rows look like the ones pg_cron 1.4 writes in
libpq mode: runs start a few milliseconds after the minute, a SELECT that
returns one row stores "1 row", and a failed run stores the server's error
message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

HISTORY = timedelta(hours=1)
# The stopped job ran every 6 hours and stopped more than this long ago.
STOPPED_FOR = timedelta(hours=12)
STOPPED_RUNS = 6
# pg_cron must not run the stopped job while the demo runs, so its slot stays
# at least this far from now.
STOPPED_SLOT_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class DemoJob:
    """A job the demo schedules, and the alert the demo expects for it."""

    name: str
    schedule: str
    command: str
    expected_rule: str | None


@dataclass(frozen=True)
class SeedRun:
    jobid: int
    command: str
    status: str
    return_message: str
    start_time: datetime
    end_time: datetime


def demo_jobs(now: datetime) -> list[DemoJob]:
    """Return the demo jobs. The stopped job's schedule depends on `now` (UTC)."""
    return [
        DemoJob("demo-healthy", "* * * * *", "SELECT 1", None),
        DemoJob("demo-failing", "* * * * *", "SELECT 1/0", "job failing"),
        DemoJob("demo-slow", "* * * * *", "SELECT pg_sleep(3)", "job slow"),
        DemoJob("demo-stopped", f"{stopped_minute(now)} */6 * * *", "ANALYZE", "job did not run"),
    ]


def stopped_minute(now: datetime) -> int:
    """Pick the minute of the 6-hourly schedule so that its next slot is not due during the demo.

    With minute 0 the slots are 00:00, 06:00, 12:00 and 18:00 UTC. When one of
    them is less than STOPPED_SLOT_MARGIN away, minute 30 is used instead.
    """
    next_slot = _latest_slot(now, 0) + timedelta(hours=6)
    return 30 if next_slot - now < STOPPED_SLOT_MARGIN else 0


def _latest_slot(moment: datetime, minute: int) -> datetime:
    """Return the latest time at or before `moment` that `{minute} */6 * * *` matches."""
    slot = moment.replace(hour=moment.hour - moment.hour % 6, minute=minute, second=0,
                          microsecond=0)
    return slot if slot <= moment else slot - timedelta(hours=6)


def schedule_and_seed(conn: psycopg.Connection[Any]) -> tuple[list[DemoJob], dict[str, int], int]:
    """Schedule the demo jobs and insert their history in one transaction.

    Returns the jobs, their jobids by name, and the highest seeded runid. pg_cron
    loads the jobs only after the commit, so every run it starts itself gets a
    higher runid than the seeded ones. Rows are inserted in start-time order,
    because the watchdog relies on runid growing with start_time.
    """
    with conn.transaction():
        now = _db_now(conn)
        jobs = demo_jobs(now)
        jobids: dict[str, int] = {}
        for job in jobs:
            row = conn.execute(
                "SELECT cron.schedule(%s, %s, %s)", (job.name, job.schedule, job.command)
            ).fetchone()
            assert row is not None
            jobids[job.name] = int(row[0])

        runs = sorted(_history(jobs, jobids, now), key=lambda run: run.start_time)
        last_runid = 0
        for run in runs:
            row = conn.execute(
                "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command,"
                " status, return_message, start_time, end_time)"
                " VALUES (%s, %s, 'postgres', 'postgres', %s, %s, %s, %s, %s) RETURNING runid",
                (run.jobid, random.randint(2000, 60000), run.command, run.status,
                 run.return_message, run.start_time, run.end_time),
            ).fetchone()
            assert row is not None
            last_runid = int(row[0])
    return jobs, jobids, last_runid


def _db_now(conn: psycopg.Connection[Any]) -> datetime:
    """Return the database's now() in UTC, the time zone pg_cron 1.4 schedules in."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value.astimezone(UTC)


def _history(jobs: list[DemoJob], jobids: dict[str, int], now: datetime) -> list[SeedRun]:
    runs: list[SeedRun] = []
    last_minute = now.replace(second=0, microsecond=0)
    minutes = [last_minute - timedelta(minutes=step)
               for step in range(int(HISTORY.total_seconds() // 60))]
    for job in jobs:
        jobid = jobids[job.name]
        if job.name == "demo-stopped":
            runs.extend(_stopped_runs(job, jobid, now))
            continue
        for minute in minutes:
            start = minute + timedelta(milliseconds=random.uniform(3, 40))
            if start <= now:
                runs.append(_minute_run(job, jobid, start))
    return runs


def _minute_run(job: DemoJob, jobid: int, start: datetime) -> SeedRun:
    if job.name == "demo-failing":
        return SeedRun(jobid, job.command, "failed", "ERROR:  division by zero\n", start,
                       start + timedelta(milliseconds=random.uniform(0.2, 2)))
    if job.name == "demo-slow":
        return SeedRun(jobid, job.command, "succeeded", "1 row", start,
                       start + timedelta(seconds=3, milliseconds=random.uniform(2, 30)))
    return SeedRun(jobid, job.command, "succeeded", "1 row", start,
                   start + timedelta(milliseconds=random.uniform(0.3, 5)))


def _stopped_runs(job: DemoJob, jobid: int, now: datetime) -> list[SeedRun]:
    """Return runs every 6 hours, the newest at the latest slot STOPPED_FOR before now."""
    minute = int(job.schedule.split()[0])
    newest = _latest_slot(now - STOPPED_FOR, minute)
    runs = []
    for step in range(STOPPED_RUNS):
        start = newest - timedelta(hours=6 * step) + timedelta(milliseconds=random.uniform(3, 40))
        end = start + timedelta(seconds=random.uniform(0.5, 2))
        runs.append(SeedRun(jobid, job.command, "succeeded", "ANALYZE", start, end))
    return runs
