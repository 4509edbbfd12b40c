"""Changing pg_cron jobs safely: compare-and-set under a lock, by jobid only.

Each change runs in its own short read-write transaction, separate from the
read-only transaction of the poll. The transaction first takes an advisory
lock keyed by the jobid, so two watchdogs never act on one job at the same
time. It then re-reads the job (`FOR UPDATE` when the role may lock
`cron.job` rows) and changes it only while it still has the schedule and
active flag that the decision was made on. A job someone changed by hand in
between is left alone.

`cron.alter_job` is called by jobid with the named arguments `job_id`,
`schedule` and `active` only: passing `database` or `username` needs a
superuser, and Supabase's `postgres` role is not one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from watchdog.errors import WatchdogError
from watchdog.models import Job
from watchdog.source import PgSource

log = logging.getLogger(__name__)

# "cron" in ASCII in the high 32 bits of the lock key, the jobid in the low 32.
# Two jobids that agree in their low 32 bits share a lock, which only serializes them.
_LOCK_NAMESPACE = 0x63726F6E << 32

_JOB_COLUMNS = "jobid, jobname, schedule, command, database, username, active"

DONE = "done"
ALREADY = "already"
CHANGED = "changed"
GONE = "gone"
FAILED = "failed"
STANDBY = "standby"


@dataclass(frozen=True)
class JobState:
    """The part of a job that remediation changes and compares."""

    schedule: str
    active: bool

    @classmethod
    def of(cls, job: Job) -> JobState:
        return cls(job.schedule, job.active)


@dataclass(frozen=True)
class Change:
    """A change of one job: from `expected` to `target`, or unschedule when target is None."""

    job: Job
    expected: JobState
    target: JobState | None

    @property
    def statement(self) -> str:
        """Return the SQL call as it runs, with its arguments, for logs and messages."""
        if self.target is None:
            return f"SELECT cron.unschedule(job_id := {self.job.jobid})"
        arguments = [f"job_id := {self.job.jobid}"]
        if self.target.schedule != self.expected.schedule:
            arguments.append(f"schedule := {quote(self.target.schedule)}")
        if self.target.active != self.expected.active:
            arguments.append(f"active := {str(self.target.active).lower()}")
        return f"SELECT cron.alter_job({', '.join(arguments)})"


@dataclass(frozen=True)
class ChangeResult:
    """The outcome of a change, with the job as it was found and when the change committed."""

    outcome: str
    current: Job | None = None
    at: datetime | None = None
    error: str | None = None


def quote(text: str) -> str:
    """Quote a string as an SQL literal, for display only."""
    return "'" + text.replace("'", "''") + "'"


def lock_key(jobid: int) -> int:
    return _LOCK_NAMESPACE | (jobid & 0xFFFFFFFF)


def apply_change(source: PgSource, change: Change, role: str) -> ChangeResult:
    """Apply a change if the job still has the expected definition.

    PostgreSQL and connection errors are returned as a failed outcome, not raised.

    Outcomes: done, already (the job has the target definition), changed (it
    has neither), gone (no such jobid), standby (the server is in recovery)
    and failed (the error names the job and the missing privilege).
    """
    try:
        with source.write_transaction() as cur:
            return _compare_and_set(cur, change)
    except psycopg.Error as exc:
        return ChangeResult(FAILED, error=describe_failure(exc, change.job, role, change.statement))
    except WatchdogError as exc:
        return ChangeResult(FAILED, error=str(exc))


def _compare_and_set(cur: psycopg.Cursor[dict[str, Any]], change: Change) -> ChangeResult:
    if in_recovery(cur):
        return ChangeResult(STANDBY)
    current = lock_and_read(cur, change.job.jobid)
    if current is None:
        return ChangeResult(GONE)
    state = JobState.of(current)
    if change.target is not None and state == change.target:
        return ChangeResult(ALREADY, current)
    if state != change.expected:
        return ChangeResult(CHANGED, current)

    if change.target is None:
        cur.execute("SELECT cron.unschedule(job_id := %s)", (change.job.jobid,))
    else:
        _alter(cur, change.job.jobid, change.expected, change.target)
    return ChangeResult(DONE, current, action_time(cur))


def _alter(
    cur: psycopg.Cursor[dict[str, Any]], jobid: int, expected: JobState, target: JobState
) -> None:
    # Only the arguments that change are passed; alter_job leaves NULL ones as they are.
    schedule = target.schedule if target.schedule != expected.schedule else None
    active = target.active if target.active != expected.active else None
    cur.execute(
        "SELECT cron.alter_job(job_id := %s, schedule := %s, active := %s)",
        (jobid, schedule, active),
    )


def in_recovery(cur: psycopg.Cursor[dict[str, Any]]) -> bool:
    cur.execute("SELECT pg_is_in_recovery() AS standby")
    row = cur.fetchone()
    return bool(row and row["standby"])


def lock_and_read(cur: psycopg.Cursor[dict[str, Any]], jobid: int) -> Job | None:
    """Take the job's advisory lock, then re-read it, row-locked when the role may.

    `SELECT ... FOR UPDATE` needs the UPDATE privilege on cron.job, which
    pg_cron grants to no role but the owner, so other roles rely on the
    advisory lock alone.
    """
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(jobid),))
    cur.execute("SELECT has_table_privilege('cron.job', 'UPDATE') AS may_lock")
    row = cur.fetchone()
    row_lock = " FOR UPDATE" if row and row["may_lock"] else ""
    cur.execute(f"SELECT {_JOB_COLUMNS} FROM cron.job WHERE jobid = %s{row_lock}", (jobid,))
    found = cur.fetchone()
    return job_from_row(found) if found else None


def job_from_row(row: dict[str, Any]) -> Job:
    return Job(
        jobid=int(row["jobid"]),
        jobname=row["jobname"],
        schedule=row["schedule"] or "",
        command=row["command"] or "",
        database=row["database"] or "",
        username=row["username"] or "",
        active=bool(row["active"]) if row["active"] is not None else True,
    )


def action_time(cur: psycopg.Cursor[dict[str, Any]]) -> datetime:
    cur.execute("SELECT clock_timestamp() AS at")
    row = cur.fetchone()
    assert row is not None
    at: datetime = row["at"]
    return at


def describe_failure(exc: psycopg.Error, job: Job, role: str, statement: str) -> str:
    """Describe a failed change in one line: the job, the call, the cause and the fix."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    subject = f"{statement} on job {job.label} (jobid {job.jobid}, owned by {job.username})"
    not_owner = "you don't own it" in message or "permission denied for table job" in message
    if not_owner:
        return (
            f"{subject} failed as role {role!r}: {message}. cron.alter_job and"
            " cron.unschedule change only the connected role's own jobs unless it is a"
            f" superuser: connect as {job.username!r} or as a superuser"
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return (
            f"{subject} failed as role {role!r}: {message}. Grant that privilege to"
            f" {role!r}, or connect as the job's owner {job.username!r}"
        )
    if "must be superuser" in message:
        return (
            f"{subject} failed as role {role!r}: {message}. Only a superuser may create a"
            " job for another role or database: run the restore as a superuser"
        )
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return f"{subject} failed: {message}. The server is read-only, probably a standby"
    return f"{subject} failed: {message}"
