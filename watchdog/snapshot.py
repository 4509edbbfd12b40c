"""Keep the stored window of runs in step with the database and build a Snapshot."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from watchdog.models import Run, Snapshot
from watchdog.source import Context, PgSource
from watchdog.state import StateStore

log = logging.getLogger(__name__)

# History kept at least this far back, so daily jobs have a known last run
# after the first poll even when no rule window is that long.
MIN_LOOKBACK = timedelta(days=1)
# Finished runs are kept this much longer than the longest window before trimming.
TRIM_MARGIN = timedelta(minutes=10)


def take_snapshot(
    source: PgSource,
    store: StateStore,
    lookback: timedelta,
    fallback_timezone: str | None = None,
) -> Snapshot:
    """Read what changed since the last poll, store it, and return the current snapshot.

    Steps: read the server context and jobs; on the first poll (or after the
    cursor went backwards) find where the window starts by runid; read runs
    above the cursor; re-read the runs stored as in flight; trim runs that
    left the window. All reads happen in one read-only transaction, and all
    writes to the state store in one SQLite transaction.
    """
    target = source.target
    horizon_length = max(lookback, MIN_LOOKBACK)

    with source.read_transaction() as cur:
        context = source.read_context(cur)
        jobs = source.read_jobs(cur, context.role)
        now = context.now
        horizon = now - horizon_length
        cursor = store.cursor(target)
        bounds = source.runid_bounds(cur)

        # A cursor of 0 means no run was read yet, so an empty table is no sign of truncation.
        newest = bounds[1] if bounds is not None else 0
        if cursor is not None and newest < cursor:
            log.warning(
                "run history on %s went backwards (newest runid %s, cursor %s): the table"
                " was truncated or its sequence reset; rebuilding the stored window",
                target, bounds[1] if bounds else "none", cursor,
            )
            store.reset_target(target)
            cursor = None
        if cursor is None:
            cursor = (
                source.find_first_runid(cur, horizon, bounds[0], bounds[1]) - 1
                if bounds is not None
                else 0
            )

        new_runs: list[Run] = []
        for batch in source.read_new_runs(cur, cursor, now):
            new_runs.extend(batch)
        reread = source.reread_runs(cur, store.open_runids(target), now)

    with store.transaction():
        store.note_jobs(target, jobs, now)
        store.upsert_runs(target, new_runs)
        store.upsert_runs(target, reread)
        if new_runs:
            cursor = max(cursor, new_runs[-1].runid)
        store.set_cursor(target, cursor)
        store.note_last_starts(target, _last_starts([*new_runs, *reread]))
        store.trim_runs(target, horizon - TRIM_MARGIN)

    first_seen, last_start = store.jobs_seen(target)
    runs = [run for run in store.runs(target) if run.started >= horizon or not run.finished]
    if new_runs:
        log.debug("read %d new runs on %s, cursor now %d", len(new_runs), target, cursor)
    return Snapshot(
        taken_at=now,
        jobs=jobs,
        runs=runs,
        horizon=horizon,
        last_start=last_start,
        first_seen=first_seen,
        cron_timezone=resolve_timezone(context, fallback_timezone),
        postmaster_start=context.postmaster_start,
        role=context.role,
    )


def _last_starts(runs: list[Run]) -> dict[int, datetime]:
    starts: dict[int, datetime] = {}
    for run in runs:
        if run.start_time is None:
            continue
        if run.jobid not in starts or run.start_time > starts[run.jobid]:
            starts[run.jobid] = run.start_time
    return starts


_warned_timezone = False


def resolve_timezone(context: Context, fallback: str | None) -> str:
    """Return the time zone pg_cron evaluates schedules in.

    pg_cron before 1.5 always uses GMT. From 1.5 on, cron.timezone is
    superuser-only: a role that cannot read it gets the configured fallback,
    else GMT, with one warning.
    """
    global _warned_timezone
    if context.cron_timezone:
        return context.cron_timezone
    if _version_tuple(context.pg_cron_version) < (1, 5):
        return "GMT"
    if not _warned_timezone:
        _warned_timezone = True
        log.warning(
            "role %r cannot read cron.timezone; assuming %s. Grant pg_read_all_settings to"
            " the role or set WATCHDOG_CRON_TIMEZONE",
            context.role, fallback or "GMT",
        )
    return fallback or "GMT"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.replace("-", ".").split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)
