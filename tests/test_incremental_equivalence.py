"""Polling a history slice by slice gives the verdicts of evaluating all of it at once.

Runs go into the real pg_cron cluster in runid order, as pg_cron writes them,
some still in flight and finished in a later slice. After each slice the
watchdog polls (take_snapshot, reading by cursor and re-reading in-flight
runs), and its verdicts must equal those of evaluate() over a snapshot
built from every row in the table. The poll keeps only the longest window's
runs one by one, older ones as hourly sums, and drops what no rule reaches.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from dbhelpers import db_now, schedule_job
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgcluster import PgCronCluster
from psycopg.rows import dict_row

from watchdog.evaluate import evaluate
from watchdog.models import Run, Snapshot
from watchdog.rules import RuleSet, parse_rules
from watchdog.snapshot import MIN_LOOKBACK, TRIM_MARGIN, take_snapshot
from watchdog.source import PgSource, first_runid_since
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]

RULES = """
[[rules]]
name = "failing"
kind = "failure_ratio"
window = "1h"
threshold = 0.3
min_runs = 1

[[rules]]
name = "slow"
kind = "slow_average"
window = "2h"
max_duration = "30s"
min_runs = 1

[[rules]]
name = "slow p95"
kind = "slow_average"
window = "30m"
statistic = "p95"
max_duration = "60s"
min_runs = 1

[[rules]]
name = "not running"
kind = "missing_run"
grace = "1m"

[[rules]]
name = "streak"
kind = "consecutive_failures"
window = "1h"
count = 2

[[rules]]
name = "stuck"
kind = "stuck_run"
max_runtime = "10m"

[[rules]]
name = "division"
kind = "error_match"
window = "90m"
pattern = "division"

[[rules]]
name = "slower than yesterday"
kind = "duration_regression"
window = "1h"
baseline = "1d"
factor = 1.5
min_runs = 1

[[rules]]
name = "infrastructure"
kind = "infrastructure_failures"
window = "1h"
"""

# The first poll reads runs older than the longest window (2 h) as hourly sums, back to
# the baseline's start (25 h). It does not read older runs at all.
run_specs = st.lists(
    st.tuples(
        st.integers(0, 2),  # which job
        st.floats(0, 30 * 60),  # minutes before the first insert
        st.sampled_from(["succeeded", "failed", "infrastructure", "running", "starting"]),
        st.floats(0, 120),  # duration in seconds
        st.integers(0, 3),  # for an in-flight run: slices until it ends, 0 = never
    ),
    max_size=40,
)
slice_sizes = st.lists(st.integers(1, 15), min_size=1, max_size=6)


def first_read_runid(conn: Conn, now: datetime, rules: RuleSet) -> int:
    """Return the lowest runid the first poll read, by the same two binary searches.

    Rows below it lie before every window and baseline, so neither side reads them.
    """
    runs_from = now - rules.lookback - TRIM_MARGIN
    sums_from = now - max(rules.baseline_lookback, MIN_LOOKBACK)
    with conn.cursor(row_factory=dict_row) as cur:
        bounds = cur.execute("SELECT min(runid) AS low, max(runid) AS high"
                             " FROM cron.job_run_details").fetchone()
        assert bounds is not None
        if bounds["low"] is None:
            return 0
        runs_runid = first_runid_since(cur, runs_from, bounds["low"], bounds["high"])
        return first_runid_since(cur, sums_from, bounds["low"], runs_runid)


def full_snapshot(
    conn: Conn, polled: Snapshot, seen_at: dict[int, datetime], first_known: int
) -> Snapshot:
    """Build the snapshot that a full recomputation reads from every row it may know."""
    rows = conn.execute(
        "SELECT runid, jobid, status, return_message, start_time, end_time"
        " FROM cron.job_run_details WHERE runid >= %s ORDER BY runid", (first_known,)
    ).fetchall()
    # Runs the poll never held as objects were placed by start_time, never by seen_at.
    runs = [Run(runid, jobid, status, message, start, end,
                seen_at.get(runid, start or polled.taken_at))
            for runid, jobid, status, message, start, end in rows]
    last_start: dict[int, datetime] = {}
    for run in runs:
        if run.start_time is not None:
            last_start[run.jobid] = max(run.start_time, last_start.get(run.jobid, run.start_time))
    return Snapshot(
        taken_at=polled.taken_at,
        jobs=polled.jobs,
        runs=runs,
        horizon=polled.horizon,
        last_start=last_start,
        first_seen=polled.first_seen,
        cron_timezone=polled.cron_timezone,
        postmaster_start=polled.postmaster_start,
        role=polled.role,
    )


def insert_run(conn: Conn, jobid: int, kind: str, started: datetime, seconds: float) -> int:
    status = "failed" if kind == "infrastructure" else kind
    start = None if status == "starting" else started
    end = started + timedelta(seconds=seconds) if status in ("succeeded", "failed") else None
    message = {"failed": "ERROR:  division by zero",
               "infrastructure": "job startup timeout"}.get(kind)
    row = conn.execute(
        "INSERT INTO cron.job_run_details (jobid, status, return_message, start_time, end_time)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING runid",
        (jobid, status, message, start, end),
    ).fetchone()
    assert row is not None
    return int(row[0])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(specs=run_specs, sizes=slice_sizes)
def test_sliced_polls_match_full_evaluation(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path_factory: Any,
    specs: list[tuple[int, float, str, float, int]], sizes: list[int],
) -> None:
    pg.execute("SELECT cron.unschedule(jobid) FROM cron.job")
    pg.execute("TRUNCATE cron.job_run_details")
    jobids = [schedule_job(pg, f"sync-{index}") for index in range(3)]
    rules: RuleSet = parse_rules(RULES, "rules.toml", {})
    store = StateStore(Path(tmp_path_factory.mktemp("state")) / "state.sqlite3")
    source = PgSource(pg_cluster.dsn)
    now = db_now(pg)
    # pg_cron fills start_time within seconds, so a run without one is recent. An old
    # one is a crash leftover. The first poll keeps it while it is in flight, but places
    # it after the summarized runs around it, whose runids it does not keep.
    specs = [(job, min(minutes, 100.0) if status == "starting" else minutes, status, *rest)
             for job, minutes, status, *rest in specs]
    ordered = sorted(specs, key=lambda spec: -spec[1])
    seen_at: dict[int, datetime] = {}
    # runid -> slices left until the in-flight run ends
    open_runs: dict[int, int] = {}
    first_known: int | None = None
    try:
        position = 0
        for size in [*sizes, len(ordered)]:
            for runid in [runid for runid, left in open_runs.items() if left == 1]:
                pg.execute("UPDATE cron.job_run_details SET status = 'succeeded',"
                           " end_time = COALESCE(start_time, now()) + interval '5 seconds'"
                           " WHERE runid = %s", (runid,))
            open_runs = {runid: left - 1 for runid, left in open_runs.items() if left != 1}
            for job, minutes, status, seconds, ends_after in ordered[position:position + size]:
                runid = insert_run(pg, jobids[job], status, now - timedelta(minutes=minutes),
                                   seconds)
                if status in ("running", "starting") and ends_after:
                    open_runs[runid] = ends_after
            position += size

            polled = take_snapshot(source, store, rules.lookback,
                                   baseline_lookback=rules.baseline_lookback)
            if first_known is None:
                first_known = first_read_runid(pg, polled.taken_at, rules)
            for job_runs in polled.history.jobs.values():
                for run in job_runs.others.values():
                    seen_at.setdefault(run.runid, run.seen_at)
            full = full_snapshot(pg, polled, seen_at, first_known)

            assert polled.last_start == full.last_start
            assert evaluate(rules, polled, polled.taken_at) == evaluate(
                rules, full, polled.taken_at
            )
    finally:
        source.close()
        store.close()
