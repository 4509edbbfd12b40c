"""Undo a stored remediation action: `cron-watchdog restore JOB`.

A paused or rescheduled job gets its saved schedule and active flag back,
unless someone changed it by hand after the action. An unscheduled job is
re-created from its saved definition: with `cron.schedule` when it belongs
to the connected role and database, else with `cron.schedule_in_database`,
which needs a superuser. pg_cron gives a re-created job a new jobid. A
purge of cron.job_run_details cannot be undone, and `restore` reports that.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import psycopg

from watchdog.errors import RemediationError, WatchdogError
from watchdog.jobactions import (
    ALREADY,
    CHANGED,
    DONE,
    GONE,
    STANDBY,
    apply_change,
    describe_failure,
    in_recovery,
    job_from_row,
    lock_and_read,
    quote,
)
from watchdog.models import Job
from watchdog.remediate import revert_change
from watchdog.rules import PURGE_ACTION
from watchdog.source import PgSource
from watchdog.state import ActionRecord, StateStore

RESTORE_MODE = "restore"


def find_action(store: StateStore, target: str, job_ref: str) -> ActionRecord:
    """Return the newest action that changed the job, found by jobid or jobname."""
    for record in store.actions(target, limit=10_000):
        if record.outcome != DONE or record.reverts is not None:
            continue
        if record.action == PURGE_ACTION and job_ref in (str(record.jobid), record.job_label):
            raise RemediationError(
                f"action #{record.id} deleted rows of {record.job_label} on {target}"
                f" ({record.statement}). Deleted run history cannot be restored: the watchdog"
                " keeps no copy of the rows, so only a database backup has them. Nothing changed"
            )
        if record.action not in ("pause", "reschedule", "unschedule"):
            continue
        name = record.before.jobname if record.before else None
        if job_ref == str(record.jobid) or job_ref == name:
            return record
    raise RemediationError(
        f"no remediation action to undo for job {job_ref!r} on {target}: run"
        " `cron-watchdog actions` to list what the watchdog did, and pass its jobid or jobname"
    )


def restore(store: StateStore, source: PgSource, job_ref: str, dry_run: bool) -> str:
    """Undo the newest action on the job; return a sentence saying what was done.

    An action that was undone already is left alone, and the sentence reports that.
    With `dry_run`, nothing changes and the sentence gives the SQL call that would run.
    """
    record = find_action(store, source.target, job_ref)
    if record.reverted_by is not None:
        return _handled_before(store, record, record.reverted_by)
    if record.action != "unschedule":
        return _resume(store, source, record, dry_run)
    try:
        return _recreate(store, source, record, dry_run)
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise RemediationError(
            f"restoring job {record.job_label} (jobid {record.jobid}) failed: {first_line}"
        ) from exc


def _handled_before(store: StateStore, record: ActionRecord, by_id: int) -> str:
    subject = f"the {record.action} of job {record.job_label} (jobid {record.jobid}, #{record.id})"
    later = store.action(by_id)
    if later is not None and later.outcome == CHANGED:
        return (f"{subject} was not undone: action #{by_id} found the job changed by hand"
                f" afterwards and left it ({later.error}); nothing changed")
    return f"{subject} was already undone by action #{by_id}; nothing changed"


def _resume(store: StateStore, source: PgSource, record: ActionRecord, dry_run: bool) -> str:
    change = revert_change(record)
    label = f"job {record.job_label} (jobid {record.jobid})"
    if dry_run:
        return f"would run on {label}: {change.statement}"

    role = _current_role(source)
    result = apply_change(source, change, role)
    if result.outcome == CHANGED and result.current is not None:
        raise RemediationError(
            f"{label} was changed by hand after the watchdog's {record.action}: it now has"
            f" schedule {result.current.schedule!r}, active {str(result.current.active).lower()}"
            f"; the watchdog set schedule {change.expected.schedule!r}, active"
            f" {str(change.expected.active).lower()}. Not overwriting; use cron.alter_job by hand"
        )
    if result.outcome == GONE:
        raise RemediationError(f"cannot restore {label}: no job with jobid {record.jobid}"
                               " exists any more")
    if result.outcome == STANDBY:
        raise RemediationError(f"cannot restore {label}: the server is a standby"
                               " (pg_is_in_recovery()); connect to the primary")
    if result.outcome not in (DONE, ALREADY):
        raise RemediationError(result.error or f"cannot restore {label}: {result.outcome}")

    _store(store, source.target, record, "resume", change.statement, result.outcome,
           result.at, after=record.before)
    if result.outcome == ALREADY:
        return f"{label} already has its saved schedule and active flag; nothing changed"
    return f"restored {label}: {change.statement}"


def _recreate(store: StateStore, source: PgSource, record: ActionRecord, dry_run: bool) -> str:
    saved = record.before
    if saved is None:
        raise RemediationError(f"action {record.id} stored no job definition to re-create")
    with source.write_transaction() as cur:
        cur.execute("SELECT current_user AS role, current_database() AS db")
        row = cur.fetchone()
        assert row is not None
        own = saved.username == row["role"] and saved.database == row["db"]
        query, params, statement = _schedule_call(saved, own)
        if dry_run:
            return f"would run: {statement}"
        try:
            created = _schedule_saved(cur, saved, own, query, params)
        except psycopg.Error as exc:
            raise RemediationError(
                describe_failure(exc, saved, str(row["role"]), statement)
            ) from exc

    _store(store, source.target, record, "restore", statement, DONE, None, after=created)
    return (f"re-created job {created.label} as jobid {created.jobid} (was jobid {saved.jobid}):"
            f" {statement}")


def _schedule_saved(
    cur: psycopg.Cursor[dict[str, Any]], saved: Job, own: bool, query: str,
    params: tuple[object, ...],
) -> Job:
    """Schedule the saved job again unless it exists; return the new job."""
    if in_recovery(cur):
        raise RemediationError("the server is a standby (pg_is_in_recovery()); connect to the"
                               " primary to restore a job")
    _refuse_existing(cur, saved)
    cur.execute(query, params)
    created = cur.fetchone()
    assert created is not None
    jobid = int(created["jobid"])
    # cron.schedule creates an active job; the saved one may have been paused.
    if own and not saved.active:
        cur.execute("SELECT cron.alter_job(job_id := %s, active := false)", (jobid,))
    job = lock_and_read(cur, jobid)
    assert job is not None
    return job


def _schedule_call(saved: Job, own: bool) -> tuple[str, tuple[object, ...], str]:
    """Return the query, its parameters and the statement as displayed."""
    if own and saved.jobname is not None:
        return (
            "SELECT cron.schedule(job_name := %s, schedule := %s, command := %s) AS jobid",
            (saved.jobname, saved.schedule, saved.command),
            f"SELECT cron.schedule(job_name := {quote(saved.jobname)},"
            f" schedule := {quote(saved.schedule)}, command := {quote(saved.command)})",
        )
    if own:
        return (
            "SELECT cron.schedule(schedule := %s, command := %s) AS jobid",
            (saved.schedule, saved.command),
            f"SELECT cron.schedule(schedule := {quote(saved.schedule)},"
            f" command := {quote(saved.command)})",
        )
    # NOTE: pg_cron 1.4 requires a job_name here, so an unnamed job of another
    # role or database cannot be re-created this way, and pg_cron raises an error.
    name = saved.jobname or ""
    return (
        "SELECT cron.schedule_in_database(job_name := %s, schedule := %s, command := %s,"
        " database := %s, username := %s, active := %s) AS jobid",
        (saved.jobname, saved.schedule, saved.command, saved.database, saved.username,
         saved.active),
        f"SELECT cron.schedule_in_database(job_name := {quote(name)},"
        f" schedule := {quote(saved.schedule)}, command := {quote(saved.command)},"
        f" database := {quote(saved.database)}, username := {quote(saved.username)},"
        f" active := {str(saved.active).lower()})",
    )


def _refuse_existing(cur: psycopg.Cursor[dict[str, Any]], saved: Job) -> None:
    """Raise when the job is back already: cron.schedule would overwrite a job of the same name."""
    found = lock_and_read(cur, saved.jobid)
    if found is None and saved.jobname is not None:
        cur.execute(
            "SELECT jobid, jobname, schedule, command, database, username, active"
            " FROM cron.job WHERE jobname = %s AND username = %s",
            (saved.jobname, saved.username),
        )
        row = cur.fetchone()
        found = job_from_row(row) if row else None
    if found is not None:
        raise RemediationError(
            f"job {found.label} exists already as jobid {found.jobid} (schedule"
            f" {found.schedule!r}); nothing restored, so it is not overwritten"
        )


def _current_role(source: PgSource) -> str:
    try:
        with source.read_transaction() as cur:
            cur.execute("SELECT current_user AS role")
            row = cur.fetchone()
    except WatchdogError:
        return "unknown"
    return str(row["role"]) if row else "unknown"


def _store(
    store: StateStore,
    target: str,
    record: ActionRecord,
    action: str,
    statement: str,
    outcome: str,
    at: datetime | None,
    after: Job | None,
) -> None:
    with store.transaction():
        new_id = store.record_action(dataclasses.replace(
            record, id=0, at=at or datetime.now(UTC), rule=None, action=action,
            mode=RESTORE_MODE, outcome=outcome, statement=statement, before=record.after,
            after=after, error=None, reverts=record.id, reverted_by=None,
        ))
        store.mark_reverted(record.id, new_id)

