"""Keep the stored window of runs in step with the database and build a Snapshot."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from watchdog.cluster import ClusterFacts, read_cluster, read_http_responses
from watchdog.history import RunHistory
from watchdog.models import HttpResponses, Run, Snapshot
from watchdog.rules import SCHEDULER_KINDS, RuleSet
from watchdog.source import Context, PgSource, first_runid_since, read_older_runs
from watchdog.state import StateStore

log = logging.getLogger(__name__)

# The first poll reads at least this far back (as hourly sums), so daily jobs have
# a known last run even when no rule window is that long.
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
    baseline_lookback: timedelta = timedelta(0),
) -> Snapshot:
    """Read what changed since the last poll, update the run history, and return a snapshot.

    First it reads the server context and jobs. On the first poll, or after the
    cursor went backwards, it finds where the windows start by runid and reads
    the older part as hourly sums. Then it reads runs above the cursor,
    re-reads the runs kept as in flight, trims runs that left every window and
    reads the scheduler-wide facts that `reads` requests. All reads happen in
    one read-only transaction.

    `lookback` is the longest window of runs kept one by one, and
    `baseline_lookback` the longest span of hourly sums. `own_changes` lists the
    (jobid, field) changes the watchdog's remediation made, which job_drift
    ignores.
    """
    target = source.target
    reads = reads or ClusterReads()
    history = store.history(target)

    with source.read_transaction() as cur:
        context = source.read_context(cur)
        jobs = source.read_jobs(cur, context.role)
        now = context.now
        sums_span = max(baseline_lookback, MIN_LOOKBACK)
        runs_from = now - lookback - TRIM_MARGIN
        sums_from = now - sums_span
        bounds = source.runid_bounds(cur)

        # A cursor of 0 means no run was read yet, so an empty table is no sign of truncation.
        newest = bounds[1] if bounds is not None else 0
        if history.cursor is not None and newest < history.cursor:
            log.warning(
                "run history on %s went backwards (newest runid %s, cursor %s): the table"
                " was truncated or its sequence reset; rebuilding the stored window",
                target, bounds[1] if bounds else "none", history.cursor,
            )
            history = store.reset_history(target)
        if history.cursor is not None and (
                lookback > history.runs_span or sums_span > history.sums_span):
            log.info(
                "the rules now need %s of runs and %s of hourly sums on %s, more than the"
                " %s and %s held; reading the history again",
                lookback, sums_span, target, history.runs_span, history.sums_span,
            )
            history = store.reset_history(target)
        # Each job's latest start_time among the runs this poll reads.
        starts: dict[int, datetime] = {}
        if history.cursor is None:
            history.cursor, starts = _read_older(
                cur, history, bounds, runs_from, sums_from, now)
        open_runids = history.open_runids(context.postmaster_start)
        # Each batch goes into the history as it arrives, so a first poll of a long
        # window never keeps more than one batch of rows as objects.
        new_count = 0
        for batch in source.read_new_runs(cur, history.cursor, now):
            history.upsert(batch)
            history.cursor = batch[-1].runid
            new_count += len(batch)
            _merge_last_starts(starts, batch)
        reread = source.reread_runs(cur, open_runids, now)
        cluster = (
            read_cluster(cur, bounds, context.role, reads.fallback_max_running_jobs)
            if reads.cluster or reads.http_window is not None
            else None
        )
        http = _read_http(cur, cluster, reads.http_window)

    history.upsert(reread)
    _merge_last_starts(starts, reread)
    # A run in flight that is gone was purged; it would otherwise count as running forever.
    history.forget(set(open_runids) - {run.runid for run in reread})
    history.trim(runs_from, sums_from, context.postmaster_start)
    history.runs_span, history.sums_span = lookback, sums_span
    with store.transaction():
        store.note_jobs(target, jobs, now)
        store.note_job_definitions(target, jobs.values(), now)
        store.note_last_starts(target, starts)
    store.save_history(target, now)

    first_seen, last_start = store.jobs_seen(target)
    if new_count:
        log.debug("read %d new runs on %s, cursor now %d", new_count, target, history.cursor)
    return Snapshot(
        taken_at=now,
        jobs=jobs,
        runs=[],
        stored_history=history,
        horizon=runs_from + TRIM_MARGIN,
        last_start=last_start,
        first_seen=first_seen,
        cron_timezone=resolve_timezone(context, fallback_timezone),
        postmaster_start=context.postmaster_start,
        role=context.role,
        in_recovery=context.in_recovery,
        watchdog_cancels=store.cancel_times(target),
        rows_read=len(jobs) + new_count + len(reread),
        scheduler=cluster.scheduler if cluster else None,
        history_size=cluster.history_size if cluster else None,
        http=http,
        known_jobs=store.job_definitions(target),
        own_changes=own_changes | store.own_changes(target),
    )


def _read_older(
    cur: psycopg.Cursor[dict[str, Any]],
    history: RunHistory,
    bounds: tuple[int, int] | None,
    runs_from: datetime,
    sums_from: datetime,
    now: datetime,
) -> tuple[int, dict[int, datetime]]:
    """Fill an empty history with what lies before the window of runs kept one by one.

    Two binary searches over the primary key find the first runid of each span.
    The runs between them are read as hourly sums, each job's newest run and
    the runs still in flight. Return the cursor from which runs are read one by
    one, and each job's latest start before it.
    """
    if bounds is None:
        return 0, {}
    low, high = bounds
    runs_runid = first_runid_since(cur, runs_from, low, high)
    sums_runid = first_runid_since(cur, sums_from, low, runs_runid) if (
        sums_from < runs_from) else runs_runid
    if sums_runid >= runs_runid:
        return runs_runid - 1, {}
    older = read_older_runs(cur, sums_runid, runs_runid, now, history.add_bucket)
    history.upsert(older.open_runs)
    history.note_newest(older.newest)
    return runs_runid - 1, older.last_starts


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


def _merge_last_starts(starts: dict[int, datetime], runs: list[Run]) -> None:
    """Raise each job's entry in `starts` to the latest start_time among `runs`."""
    for run in runs:
        if run.start_time is None:
            continue
        if run.jobid not in starts or run.start_time > starts[run.jobid]:
            starts[run.jobid] = run.start_time


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
