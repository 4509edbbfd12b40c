"""Fill a pg_cron database with a realistic fleet of jobs and a long run history.

The seeder writes `cron.job` with triggers disabled (session_replication_role
= replica), so pg_cron's job cache is not invalidated and its scheduler does
not start running the seeded jobs; the watchdog still reads them like any
other job. Autovacuum is turned off on `cron.job` first, because the ANALYZE
it would run also invalidates that cache. Runs are written with COPY, in
runid order, so runid rises with start_time as it does under pg_cron.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

# (schedule, share of jobs, runs per minute). Interval schedules such as
# '30 seconds' need pg_cron 1.5 to run, but the watchdog reads them on any version.
SCHEDULE_MIX = (
    ("* * * * *", 0.45, 1.0),
    ("*/5 * * * *", 0.25, 0.2),
    ("0 * * * *", 0.15, 1 / 60),
    ("0 3 * * *", 0.10, 1 / 1440),
    ("30 seconds", 0.05, 2.0),
)
INACTIVE_SHARE = 0.05
FAILED_SHARE = 0.02
DELETED_JOB_SHARE = 0.02
DELETED_JOBS = 20
# Runs this recent are still in flight with this probability, as on a live server.
IN_FLIGHT_AGE = timedelta(minutes=2)
IN_FLIGHT_SHARE = 0.2
# Runs left in flight by a crash, at any age: pg_cron never finishes them.
ABANDONED_SHARE = 0.0002
RELOAD_WAIT_SECONDS = 2.5
ERRORS = (
    "ERROR:  division by zero",
    "ERROR:  canceling statement due to statement timeout",
    'ERROR:  relation "orders_staging" does not exist',
    "job startup timeout",
    "connection failed",
)
RUN_COLUMNS = (
    "runid, jobid, job_pid, database, username, command, status, return_message,"
    " start_time, end_time"
)


@dataclass(frozen=True)
class SeededJob:
    jobid: int
    schedule: str
    active: bool
    runs_per_minute: float
    mean_seconds: float


@dataclass(frozen=True)
class Seeded:
    """Seeded data: the jobs, the runid range and the database time seeding ended at."""

    jobs: list[SeededJob]
    first_runid: int
    last_runid: int
    now: datetime


def seed(
    conn: psycopg.Connection[Any], jobs: int, runs: int, days: float, seed_value: int = 5
) -> Seeded:
    """Write `jobs` jobs and `runs` runs spread evenly over the last `days` days."""
    rng = random.Random(seed_value)
    seeded_jobs = _insert_jobs(conn, rng, jobs)
    row = conn.execute(
        "SELECT now(), COALESCE(max(runid), 0) FROM cron.job_run_details"
    ).fetchone()
    assert row is not None
    now, last_runid = row[0], int(row[1])

    first = last_runid + 1
    with conn.cursor() as cur, cur.copy(
        f"COPY cron.job_run_details ({RUN_COLUMNS}) FROM STDIN"
    ) as copy:
        for values in _runs(rng, seeded_jobs, first, runs, now, timedelta(days=days)):
            copy.write_row(values)
    last = first + runs - 1
    conn.execute("SELECT setval('cron.runid_seq', %s)", (max(last, 1),))
    conn.execute("ANALYZE cron.job_run_details")
    return Seeded(seeded_jobs, first, last, now)


def _insert_jobs(conn: psycopg.Connection[Any], rng: random.Random, count: int) -> list[SeededJob]:
    _stop_autovacuum_of_jobs(conn)
    rows: list[tuple[str, str, str, bool]] = []
    shapes: list[tuple[str, float]] = []
    for index in range(count):
        schedule, rate = _pick_schedule(rng)
        active = rng.random() >= INACTIVE_SHARE
        rows.append((f"bench-{index:05d}", schedule, f"SELECT bench_task({index})", active))
        shapes.append((schedule, rate))

    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        jobids = []
        for values in rows:
            cur.execute(
                "INSERT INTO cron.job (jobname, schedule, command, active) VALUES"
                " (%s, %s, %s, %s) RETURNING jobid",
                values,
            )
            found = cur.fetchone()
            assert found is not None
            jobids.append(int(found[0]))

    return [
        SeededJob(
            jobid=jobid,
            schedule=schedule,
            active=values[3],
            runs_per_minute=rate,
            # Most jobs take well under a second; a few take minutes.
            mean_seconds=rng.lognormvariate(-1.5, 1.5),
        )
        for jobid, (schedule, rate), values in zip(jobids, shapes, rows, strict=True)
    ]


def _stop_autovacuum_of_jobs(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT reloptions FROM pg_class WHERE oid = 'cron.job'::regclass"
    ).fetchone()
    if row is not None and row[0] and "autovacuum_enabled=false" in row[0]:
        return
    conn.execute("ALTER TABLE cron.job SET (autovacuum_enabled = false)")
    # The ALTER invalidates pg_cron's job cache too. The scheduler reloads it within a
    # second of waking, and the seeded jobs must not exist yet when it does.
    time.sleep(RELOAD_WAIT_SECONDS)


def _pick_schedule(rng: random.Random) -> tuple[str, float]:
    draw = rng.random()
    for schedule, share, rate in SCHEDULE_MIX:
        if draw < share:
            return schedule, rate
        draw -= share
    schedule, _, rate = SCHEDULE_MIX[0]
    return schedule, rate


def _runs(
    rng: random.Random, jobs: list[SeededJob], first_runid: int, count: int, now: datetime,
    span: timedelta,
) -> Iterator[tuple[Any, ...]]:
    active = [job for job in jobs if job.active] or jobs
    weights = [job.runs_per_minute for job in active]
    picks = rng.choices(active, weights=weights, k=count)
    deleted_first = max(job.jobid for job in jobs) + 1000
    step = span / max(count, 1)
    start_of_history = now - span

    for index, job in enumerate(picks):
        runid = first_runid + index
        started = start_of_history + step * index
        jobid = job.jobid
        if rng.random() < DELETED_JOB_SHARE:
            jobid = deleted_first + rng.randrange(DELETED_JOBS)
        status, message, ended = _outcome(rng, job, started, now)
        yield (runid, jobid, 4000 + index % 30000, "postgres", "postgres",
               f"SELECT bench_task({jobid})", status, message, started, ended)


def _outcome(
    rng: random.Random, job: SeededJob, started: datetime, now: datetime
) -> tuple[str, str | None, datetime | None]:
    if now - started < IN_FLIGHT_AGE and rng.random() < IN_FLIGHT_SHARE:
        return "running", None, None
    if rng.random() < ABANDONED_SHARE:
        return "connecting", None, None
    ended = started + timedelta(seconds=rng.expovariate(1 / job.mean_seconds))
    if rng.random() < FAILED_SHARE:
        return "failed", rng.choice(ERRORS), ended
    return "succeeded", "SELECT 1", ended
