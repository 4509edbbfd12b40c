"""Reading pg_cron: jobs, new runs by runid, and the scheduler's context.

`cron.job_run_details` has no index but its primary key on `runid` and grows
without bound, so every query here is bounded by runid: new rows after a
cursor, re-reads of runs still in flight by their ids, and a binary search
for the start of the window on the first poll. Nothing filters on
`start_time` alone, which would scan the whole table.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from watchdog.config import mask_dsn, redact_dsn
from watchdog.errors import ReconnectPending, SourceError, VisibilityError
from watchdog.history import Bucket
from watchdog.models import Job, Run

log = logging.getLogger(__name__)

# Rows fetched per query while catching up; keeps memory flat on a first poll
# of a long history.
BATCH_SIZE = 5000
STATEMENT_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 10.0
# Reconnect backoff: doubles from the first delay up to the cap, each delay
# scaled by a random factor so several watchdogs do not reconnect in step.
RECONNECT_FIRST_DELAY_S = 1.0
RECONNECT_MAX_DELAY_S = 60.0
LOCK_TIMEOUT_MS = 10_000


def _plausible(column: str) -> str:
    """Return a select-list entry that reads a timestamp, or NULL when it is absurd.

    Python's datetime cannot hold PostgreSQL's 'infinity' or years after 9999,
    and psycopg raises DataError on such a value, which would make every poll
    fail on one hand-edited row. Years outside 1900-8999 also leave room for
    the watchdog's own arithmetic of up to ten years either way.
    """
    return (f"CASE WHEN {column} >= '1900-01-01 00:00+00' AND {column} < '9000-01-01 00:00+00'"
            f" THEN {column} END AS {column}")


_RUN_COLUMNS = (
    f"runid, jobid, status, return_message, {_plausible('start_time')}, {_plausible('end_time')}"
)


@dataclass(frozen=True)
class Context:
    """Facts about the watched server read once per poll."""

    now: datetime
    role: str
    postmaster_start: datetime | None
    cron_timezone: str | None
    pg_cron_version: str
    in_recovery: bool


def target_name(dsn: str) -> str:
    """Return a stable, secret-free key for the watched database: `host:port/dbname`."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = redact_dsn(_first_line(exc), dsn)
        raise SourceError(f"invalid database URL {mask_dsn(dsn)}: {reason}") from exc
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "postgres")
    return f"{host}:{port}/{dbname}"


class PgSource:
    """One connection to the watched database, opened lazily and reopened after a loss."""

    def __init__(
        self,
        dsn: str,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        statement_timeout: float = STATEMENT_TIMEOUT_S,
        *,
        retries: bool = True,
    ) -> None:
        """With retries=False (one-shot commands), a failed connect is raised and not logged."""
        if not dsn:
            raise SourceError(
                "no database URL: set WATCHDOG_DATABASE_URL or --database-url, for example"
                " postgresql://postgres:PASSWORD@localhost:5432/postgres"
            )
        self.dsn = dsn
        self.target = target_name(dsn)
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        # Failed connection attempts in a row, and when the next one may start (monotonic).
        self.failed_attempts = 0
        self._next_attempt = 0.0
        self._last_error = ""
        self.retries = retries

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        target = mask_dsn(self.dsn)
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise ReconnectPending(
                f"cannot connect to {target}: {self._last_error}"
                f" (attempt {self.failed_attempts + 1} in {wait:.0f}s)"
            )
        try:
            # prepare_threshold=None: no server-side prepared statements, which
            # transaction-mode poolers (PgBouncer, Supavisor) cannot keep.
            self._conn = psycopg.connect(
                self.dsn,
                row_factory=dict_row,
                connect_timeout=max(1, round(self.connect_timeout)),
                application_name="cron-watchdog",
                prepare_threshold=None,
            )
        except psycopg.Error as exc:
            self._schedule_retry(self._reason(exc))
            raise SourceError(f"cannot connect to {target}: {self._last_error}") from exc
        if self.failed_attempts:
            log.info("connected to %s after %d failed attempts", target, self.failed_attempts)
        self.failed_attempts = 0
        self._next_attempt = 0.0
        return self._conn

    def _reason(self, exc: BaseException) -> str:
        """Return the first line of a psycopg error with the DSN's password removed."""
        return redact_dsn(_first_line(exc), self.dsn)

    def _schedule_retry(self, error: str) -> None:
        self.failed_attempts += 1
        self._last_error = error
        delay = min(RECONNECT_FIRST_DELAY_S * 2 ** (self.failed_attempts - 1),
                    RECONNECT_MAX_DELAY_S)
        delay *= random.uniform(0.5, 1.0)
        self._next_attempt = time.monotonic() + delay
        if not self.retries:
            return
        log.warning(
            "cannot connect to %s (attempt %d): %s; next attempt in %.1fs at the earliest",
            mask_dsn(self.dsn), self.failed_attempts, error, delay,
        )

    @contextmanager
    def read_transaction(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """Open a read-only transaction with a statement timeout; translate errors."""
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                timeout_ms = round(self.statement_timeout * 1000)
                cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))
                yield cur
        except psycopg.errors.UndefinedTable as exc:
            raise SourceError(
                f"{mask_dsn(self.dsn)} has no pg_cron tables ({self._reason(exc)}): connect to"
                " the database named by cron.database_name, where CREATE EXTENSION pg_cron ran"
            ) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SourceError(
                f"the role cannot read pg_cron tables on {mask_dsn(self.dsn)}"
                f" ({self._reason(exc)}): GRANT USAGE ON SCHEMA cron and SELECT on cron.job"
                " and cron.job_run_details, or connect as the role that owns the jobs"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            # The transaction was rolled back; the connection itself stays usable.
            raise SourceError(
                f"query on {mask_dsn(self.dsn)} timed out after {self.statement_timeout:g}s"
                f" (WATCHDOG_STATEMENT_TIMEOUT): {self._reason(exc)}. A lock or an overloaded"
                " server held it up; the next poll tries again"
            ) from exc
        except psycopg.OperationalError as exc:
            self.close()
            raise SourceError(f"lost {mask_dsn(self.dsn)}: {self._reason(exc)}") from exc
        except psycopg.Error as exc:
            raise SourceError(f"query failed on {mask_dsn(self.dsn)}: {self._reason(exc)}") from exc

    @contextmanager
    def write_transaction(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """Open a short read-write transaction for remediation, with statement and lock timeouts.

        psycopg errors are raised for the caller, which describes them with the
        job it acted on. A lost connection is also closed, so the next use reconnects.
        """
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                timeout_ms = round(self.statement_timeout * 1000)
                cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))
                # Waiting on a row lock that a hung session holds must not stall the cycle.
                cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(LOCK_TIMEOUT_MS))
                yield cur
        except psycopg.OperationalError:
            self.close()
            raise

    def read_context(self, cur: psycopg.Cursor[dict[str, Any]]) -> Context:
        cur.execute(
            "SELECT now() AS now, current_user AS role, pg_postmaster_start_time() AS started,"
            " pg_is_in_recovery() AS in_recovery,"
            " (SELECT extversion FROM pg_extension WHERE extname = 'pg_cron') AS version,"
            # pg_settings omits superuser-only settings the role may not read, so a
            # missing row means "not readable" on pg_cron 1.5+ and "no such setting" before.
            " (SELECT setting FROM pg_settings WHERE name = 'cron.timezone') AS timezone"
        )
        row = cur.fetchone()
        assert row is not None
        if row["version"] is None:
            raise SourceError(
                f"pg_cron is not installed in {mask_dsn(self.dsn)}: connect to the database"
                " named by cron.database_name, where CREATE EXTENSION pg_cron ran"
            )
        return Context(
            now=row["now"],
            role=row["role"],
            postmaster_start=row["started"],
            cron_timezone=row["timezone"],
            pg_cron_version=row["version"],
            in_recovery=row["in_recovery"],
        )

    def read_jobs(self, cur: psycopg.Cursor[dict[str, Any]], role: str) -> dict[int, Job]:
        cur.execute(
            "SELECT jobid, jobname, schedule, command, database, username, active FROM cron.job"
        )
        jobs = {
            row["jobid"]: Job(
                jobid=row["jobid"],
                jobname=row["jobname"],
                schedule=row["schedule"] or "",
                command=row["command"] or "",
                database=row["database"] or "",
                username=row["username"] or "",
                active=bool(row["active"]) if row["active"] is not None else True,
            )
            for row in cur.fetchall()
        }
        if not jobs:
            raise VisibilityError(
                f"role {role!r} sees no jobs in cron.job on {mask_dsn(self.dsn)}. pg_cron's"
                " row-level security shows each role only the jobs it owns, so either no job"
                " is scheduled or the watchdog connects as the wrong role: connect as the"
                " role that scheduled the jobs (on Supabase usually postgres)"
            )
        return jobs

    def runid_bounds(self, cur: psycopg.Cursor[dict[str, Any]]) -> tuple[int, int] | None:
        # Two single-row primary-key lookups; min()/max() over both at once may not use the index.
        cur.execute("SELECT runid FROM cron.job_run_details ORDER BY runid LIMIT 1")
        low = cur.fetchone()
        cur.execute("SELECT runid FROM cron.job_run_details ORDER BY runid DESC LIMIT 1")
        high = cur.fetchone()
        if low is None or high is None:
            return None
        return int(low["runid"]), int(high["runid"])

    def read_new_runs(
        self, cur: psycopg.Cursor[dict[str, Any]], after_runid: int, seen_at: datetime
    ) -> Iterator[list[Run]]:
        """Yield batches of runs with runid above the cursor, in runid order.

        pg_cron sets jobid on every row it inserts, so a row without one was
        added by hand. It is skipped, because the state store requires a jobid.
        """
        cursor = after_runid
        while True:
            cur.execute(
                f"SELECT {_RUN_COLUMNS} FROM cron.job_run_details"
                " WHERE runid > %s AND jobid IS NOT NULL ORDER BY runid LIMIT %s",
                (cursor, BATCH_SIZE),
            )
            batch = [_run(row, seen_at) for row in cur.fetchall()]
            if not batch:
                return
            yield batch
            cursor = batch[-1].runid
            if len(batch) < BATCH_SIZE:
                return

    def reread_runs(
        self, cur: psycopg.Cursor[dict[str, Any]], runids: list[int], seen_at: datetime
    ) -> list[Run]:
        """Re-read runs that were in flight; a run that vanished (purged) is not returned."""
        if not runids:
            return []
        cur.execute(
            f"SELECT {_RUN_COLUMNS} FROM cron.job_run_details WHERE runid = ANY(%s)",
            (runids,),
        )
        return [_run(row, seen_at) for row in cur.fetchall()]


@dataclass(frozen=True)
class OlderRuns:
    """The first poll's summary of runs older than the columns' window, read in one pass.

    `newest` is each job's newest run in the range, `last_starts` each job's
    latest start_time there, and `open_runs` the runs still in flight there.
    """

    newest: list[Run]
    last_starts: dict[int, datetime]
    open_runs: list[Run]


# Grouping a week of a large fleet by job and hour makes about 170,000 groups. The
# summary forbids sorting (a sort of the whole range is what the watchdog avoids) and
# gives the hash aggregate room so that it does not spill to disk.
# It runs once per state file and reads every row of the span, so it gets more time
# than a poll's statements.
SUMMARY_SETTINGS = (
    "SET LOCAL work_mem = '64MB'",
    "SET LOCAL enable_sort = off",
    "SET LOCAL statement_timeout = '10min'",
)


def read_older_runs(
    cur: psycopg.Cursor[dict[str, Any]], low: int, high: int, seen_at: datetime,
    add_bucket: Callable[[Bucket], None],
) -> OlderRuns:
    """Summarize runs with runid in [low, high) in one range scan of the primary key.

    Runs once, on the first poll, for baselines longer than the window of
    runs kept one by one. Hourly sums of succeeded runs go to `add_bucket`
    as they arrive. Durations are summed in microseconds as exact
    numerics, as the incremental path sums them.
    """
    # RESET would return to the session's values and drop the poll's own SET LOCAL
    # statement_timeout, so the values in effect are saved and set back afterwards.
    names = [setting.split()[2] for setting in SUMMARY_SETTINGS]
    cur.execute("SELECT name, current_setting(name) AS value FROM unnest(%s::text[]) AS name",
                (names,))
    saved = [(row["name"], row["value"]) for row in cur.fetchall()]
    for setting in SUMMARY_SETTINGS:
        cur.execute(setting)
    # Streamed row by row: a week of a large fleet is some 170,000 groups, which as one
    # result would take tens of megabytes.
    rows = cur.stream(
        f"WITH runs AS (SELECT runid, jobid, status, {_plausible('start_time')},"
        f" {_plausible('end_time')} FROM cron.job_run_details"
        " WHERE runid >= %s AND runid < %s AND jobid IS NOT NULL)"
        " SELECT jobid, floor(extract(epoch FROM start_time) / 3600)::bigint AS hour,"
        " count(*) FILTER (WHERE status = 'succeeded' AND start_time IS NOT NULL"
        "  AND end_time IS NOT NULL) AS runs,"
        " coalesce((sum(extract(epoch FROM end_time - start_time)) FILTER ("
        "  WHERE status = 'succeeded') * 1000000)::bigint, 0) AS total_us,"
        " max(runid) AS newest, max(start_time) AS last_start,"
        " array_agg(runid) FILTER (WHERE status IS NULL"
        "  OR status NOT IN ('succeeded', 'failed')) AS open"
        " FROM runs GROUP BY 1, 2",
        (low, high),
    )
    newest: dict[int, int] = {}
    last_starts: dict[int, datetime] = {}
    to_fetch: set[int] = set()
    for row in rows:
        jobid = int(row["jobid"])
        if row["hour"] is not None and row["runs"]:
            add_bucket(Bucket(jobid, int(row["hour"]), int(row["runs"]),
                              int(row["total_us"])))
        newest[jobid] = max(newest.get(jobid, 0), int(row["newest"]))
        started = row["last_start"]
        if started is not None:
            last_starts[jobid] = max(started, last_starts.get(jobid, started))
        to_fetch.update(row["open"] or ())
    for name, value in saved:
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))
    to_fetch.update(newest.values())
    runs: list[Run] = []
    if to_fetch:
        cur.execute(
            f"SELECT {_RUN_COLUMNS} FROM cron.job_run_details WHERE runid = ANY(%s)",
            (sorted(to_fetch),),
        )
        runs = [_run(row, seen_at) for row in cur.fetchall()]
    newest_ids = set(newest.values())
    return OlderRuns(
        newest=[run for run in runs if run.runid in newest_ids],
        last_starts=last_starts,
        open_runs=[run for run in runs if not run.finished],
    )


def first_runid_since(
    cur: psycopg.Cursor[dict[str, Any]], since: datetime, low: int, high: int
) -> int:
    """Return the lowest runid in [low, high] whose run started at or after `since`.

    runid comes from a sequence, so start times rise with it; a binary
    search costs about log2(N) single-row primary-key probes. A row with a
    NULL start_time counts as recent, so the search errs towards reading more.
    """
    while low < high:
        middle = (low + high) // 2
        cur.execute(
            f"SELECT runid, {_plausible('start_time')} FROM cron.job_run_details WHERE runid >= %s"
            " ORDER BY runid LIMIT 1",
            (middle,),
        )
        row = cur.fetchone()
        if row is None:
            return high
        if row["start_time"] is None or row["start_time"] >= since:
            high = middle
        else:
            low = int(row["runid"]) + 1
    return low


def _run(row: dict[str, Any], seen_at: datetime) -> Run:
    return Run(
        runid=row["runid"],
        jobid=row["jobid"],
        status=row["status"] or "unknown",
        return_message=row["return_message"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        seen_at=seen_at,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
