"""Delete old rows of `cron.job_run_details` in short transactions, by runid range.

pg_cron never deletes its run history. A single `DELETE ... WHERE end_time <
...` on a large table runs as one long transaction and scans the table, because
runid is its only index. Here the boundary is found by a binary search on
runid, and rows below it are deleted in batches of consecutive runids, each in
its own transaction.

This is the `purge` remediation action of run_history_size rules, which
passes the rule's `keep`. The remediation mode (off, dry-run, on) and the
hourly cap are applied by watchdog.remediate. Row-level security applies: a
role that is not a superuser deletes only the runs of its own jobs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from watchdog.config import mask_dsn, redact_dsn
from watchdog.errors import SourceError
from watchdog.source import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_S, first_runid_since

log = logging.getLogger(__name__)

# Runids per DELETE. Each batch is one short transaction.
PURGE_BATCH_ROWS = 5000

# Finished runs, and runs left in flight from before the server's last start
# (abandoned: pg_cron never ends them). A run in flight since the last start
# may still be going and is kept.
_PURGEABLE = (
    "runid >= %(low)s AND runid < %(high)s"
    " AND (status IN ('succeeded', 'failed') OR start_time < pg_postmaster_start_time())"
)
_DELETE = "DELETE FROM cron.job_run_details WHERE " + _PURGEABLE
_COUNT = "SELECT count(*) AS purgeable FROM cron.job_run_details WHERE " + _PURGEABLE


@dataclass(frozen=True)
class PurgeResult:
    """The outcome of a purge. `boundary` is the lowest runid kept by age, or None when no
    run is old enough."""

    boundary: int | None
    deleted: int
    batches: int
    dry_run: bool


def purge_run_history(
    dsn: str, keep: timedelta, *, batch_rows: int = PURGE_BATCH_ROWS, dry_run: bool = False
) -> PurgeResult:
    """Delete runs that started more than `keep` before the server's now().

    The newest run is always kept, even when older than `keep`, and so is
    every run in flight since the server's last start. With dry_run, nothing
    is deleted: `deleted` and `batches` count the rows and batches a purge
    would delete at that moment, read with the same conditions, batch by batch.
    """
    if keep <= timedelta(0) or batch_rows < 1:
        raise ValueError(f"keep ({keep}) and batch_rows ({batch_rows}) must be positive")
    try:
        # prepare_threshold=None, as in PgSource: the same DELETE runs once per
        # batch, and transaction-mode poolers cannot keep prepared statements.
        with psycopg.connect(
            dsn, autocommit=True, row_factory=dict_row, prepare_threshold=None,
            connect_timeout=round(CONNECT_TIMEOUT_S), application_name="cron-watchdog",
        ) as conn:
            return _purge(conn, keep, batch_rows, dry_run)
    except psycopg.Error as exc:
        target = mask_dsn(dsn)
        reason = redact_dsn(str(exc), dsn)
        raise SourceError(f"purge of cron.job_run_details on {target} failed: {reason}") from exc


def _purge(
    conn: psycopg.Connection[dict[str, Any]], keep: timedelta, batch_rows: int, dry_run: bool
) -> PurgeResult:
    conn.execute(sql.SQL("SET statement_timeout = {}").format(round(STATEMENT_TIMEOUT_S * 1000)))
    with conn.cursor() as cur:
        cur.execute(
            "SELECT now() - %s AS cutoff,"
            " (SELECT runid FROM cron.job_run_details ORDER BY runid LIMIT 1) AS low,"
            " (SELECT runid FROM cron.job_run_details ORDER BY runid DESC LIMIT 1) AS high",
            (keep,),
        )
        row = cur.fetchone()
        assert row is not None
        if row["low"] is None:
            return PurgeResult(None, 0, 0, dry_run)
        low, high = int(row["low"]), int(row["high"])
        boundary = first_runid_since(cur, row["cutoff"], low, high)
    if boundary <= low:
        return PurgeResult(None, 0, 0, dry_run)
    if dry_run:
        rows, batches = _count_batches(conn, low, boundary, batch_rows)
        log.info("purge dry-run: would delete %d runs older than %s from cron.job_run_details"
                 " in %d batches (runid < %d)", rows, keep, batches, boundary)
        return PurgeResult(boundary, rows, batches, dry_run=True)

    deleted = batches = 0
    for start in range(low, boundary, batch_rows):
        end = min(start + batch_rows, boundary)
        deleted += conn.execute(_DELETE, {"low": start, "high": end}).rowcount
        batches += 1
    log.info(
        "purged %d runs older than %s from cron.job_run_details in %d batches (runid < %d)",
        deleted, keep, batches, boundary,
    )
    return PurgeResult(boundary, deleted, batches, dry_run=False)


def _count_batches(
    conn: psycopg.Connection[dict[str, Any]], low: int, boundary: int, batch_rows: int
) -> tuple[int, int]:
    """Count the rows a purge would delete, and its batches, one runid range at a time."""
    rows = batches = 0
    for start in range(low, boundary, batch_rows):
        end = min(start + batch_rows, boundary)
        row = conn.execute(_COUNT, {"low": start, "high": end}).fetchone()
        rows += int(row["purgeable"]) if row else 0
        batches += 1
    return rows, batches
