"""Helpers that put jobs and runs into the test cluster with chosen timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

# A schedule that will not fire while a test runs, so pg_cron adds no rows of its own.
QUIET_SCHEDULE = "0 0 1 1 *"


def schedule_job(conn: psycopg.Connection[Any], name: str, schedule: str = QUIET_SCHEDULE,
                 command: str = "SELECT 1") -> int:
    row = conn.execute("SELECT cron.schedule(%s, %s, %s)", (name, schedule, command)).fetchone()
    assert row is not None
    return int(row[0])


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def add_run(conn: psycopg.Connection[Any], jobid: int, status: str = "succeeded",
            started: datetime | None = None, seconds: float | None = 0.1,
            message: str | None = "1 row") -> int:
    """Insert a run; `seconds` None leaves end_time NULL."""
    end = started + timedelta(seconds=seconds) if started and seconds is not None else None
    row = conn.execute(
        "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, status,"
        " return_message, start_time, end_time) VALUES (%s, 4242, 'postgres', 'postgres',"
        " 'SELECT 1', %s, %s, %s, %s) RETURNING runid",
        (jobid, status, message, started, end),
    ).fetchone()
    assert row is not None
    return int(row[0])
