"""Keep the stored window of runs in step with the database and build a Snapshot."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from watchdog.cluster import ClusterFacts, read_cluster, read_http_responses
from watchdog.models import HttpResponses, Run, Snapshot
from watchdog.rules import SCHEDULER_KINDS, RuleSet
from watchdog.source import Context, PgSource, first_runid_since
from watchdog.state import StateStore

log = logging.getLogger(__name__)

# History kept at least this far back, so daily jobs have a known last run
# after the first poll even when no rule window is that long.
MIN_LOOKBACK = timedelta(days=1)
# Finished runs are kept this much longer than the longest window before trimming.
TRIM_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class ClusterReads:
    """The scheduler-wide facts that a poll reads, derived from the rule kinds in use.

    `http_window` is the longest http_failures window, or None when no rule
    needs pg_net responses.
    """

    cluster: bool = False
    http_window: timedelta | None = None
    fallback_max_running_jobs: int | None = None

    @classmethod
    def for_rules(cls, rules: RuleSet, fallback_max_running_jobs: int | None = None
                  ) -> ClusterReads:
        kinds = {rule.kind for rule in rules.rules}
        windows = [rule.window for rule in rules.rules if rule.kind == "http_failures"]
        return cls(
            # missing_run reads them too, to tell capacity-starved misses apart.
            cluster=bool(kinds & SCHEDULER_KINDS) or "missing_run" in kinds,
            http_window=max(windows) if windows else None,
            fallback_max_running_jobs=fallback_max_running_jobs,
        )


def take_snapshot(
    source: PgSource,
    store: StateStore,
    lookback: timedelta,
    fallback_timezone: str | None = None,
    reads: ClusterReads | None = None,
    own_changes: frozenset[tuple[int, str]] = frozenset(),
) -> Snapshot:
    """Read what changed since the last poll, store it, and return the current snapshot.

    Steps: read the server context and jobs; on the first poll (or after the
    cursor went backwards) find where the window starts by runid; read runs
    above the cursor; re-read the runs stored as in flight; trim runs that
    left the window; read the scheduler-wide facts that `reads` requests.
    All reads happen in one read-only transaction, and all writes to the
    state store in one SQLite transaction. `own_changes` lists the (jobid,
    field) changes the watchdog's remediation made, which job_drift ignores.
    """
    target = source.target
    reads = reads or ClusterReads()
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
                first_runid_since(cur, horizon, bounds[0], bounds[1]) - 1
                if bounds is not None
                else 0
            )

        new_runs: list[Run] = []
        for batch in source.read_new_runs(cur, cursor, now):
            new_runs.extend(batch)
        reread = source.reread_runs(cur, store.open_runids(target), now)
        cluster = (
            read_cluster(cur, bounds, context.role, reads.fallback_max_running_jobs)
            if reads.cluster or reads.http_window is not None
            else None
        )
        http = _read_http(cur, cluster, reads.http_window)

    with store.transaction():
        store.note_jobs(target, jobs, now)
        store.note_job_definitions(target, jobs.values(), now)
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
        in_recovery=context.in_recovery,
        watchdog_cancels=store.cancel_times(target),
        rows_read=len(jobs) + len(new_runs) + len(reread),
        scheduler=cluster.scheduler if cluster else None,
        history_size=cluster.history_size if cluster else None,
        http=http,
        known_jobs=store.job_definitions(target),
        own_changes=own_changes | store.own_changes(target),
    )


def _read_http(
    cur: psycopg.Cursor[dict[str, Any]], cluster: ClusterFacts | None, window: timedelta | None
) -> HttpResponses | None:
    if window is None or cluster is None:
        return None
    if not cluster.pg_net:
        return HttpResponses(installed=False)
    if not cluster.pg_net_readable:
        return HttpResponses(installed=True, readable=False)
    return read_http_responses(cur, window)


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
    if version_tuple(context.pg_cron_version) < (1, 5):
        return "GMT"
    if not _warned_timezone:
        _warned_timezone = True
        log.warning(
            "role %r cannot read cron.timezone; assuming %s. Grant pg_read_all_settings to"
            " the role or set WATCHDOG_CRON_TIMEZONE",
            context.role, fallback or "GMT",
        )
    return fallback or "GMT"


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.replace("-", ".").split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)
