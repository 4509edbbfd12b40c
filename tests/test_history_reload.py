"""Rules reloaded with longer windows, against a real pg_cron cluster.

The first poll trims the stored history to the windows of the rules it was
given. When a reload lengthens a window, the next poll must still give the
verdicts of evaluating every row in the table.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from dbhelpers import add_run, db_now, schedule_job
from pgcluster import PgCronCluster

from watchdog.evaluate import evaluate
from watchdog.history import RunHistory
from watchdog.models import Run, Snapshot, Verdict
from watchdog.rules import RuleSet, parse_rules
from watchdog.snapshot import take_snapshot
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]

SHORT = """
[[rules]]
name = "failing"
kind = "failure_ratio"
window = "1h"
threshold = 0.3
min_runs = 1
"""

LONG = SHORT.replace('window = "1h"', 'window = "4h"')

SHORT_BASELINE = """
[[rules]]
name = "slower"
kind = "duration_regression"
window = "1h"
baseline = "1d"
factor = 1.5
min_runs = 1
"""

LONG_BASELINE = SHORT_BASELINE.replace('baseline = "1d"', 'baseline = "3d"')


def poll(cluster: PgCronCluster, store: StateStore, rules: RuleSet) -> Snapshot:
    source = PgSource(cluster.dsn)
    try:
        return take_snapshot(source, store, rules.lookback,
                             baseline_lookback=rules.baseline_lookback)
    finally:
        source.close()


def full_snapshot(conn: Conn, polled: Snapshot) -> Snapshot:
    """Build a snapshot from every row in the table, as a plain evaluation would."""
    rows = conn.execute(
        "SELECT runid, jobid, status, return_message, start_time, end_time"
        " FROM cron.job_run_details ORDER BY runid"
    ).fetchall()
    runs = [Run(runid, jobid, status, message, start, end, start or polled.taken_at)
            for runid, jobid, status, message, start, end in rows]
    return Snapshot(
        taken_at=polled.taken_at,
        jobs=polled.jobs,
        runs=runs,
        horizon=polled.horizon,
        stored_history=RunHistory.from_runs(runs),
    )


def reload_longer(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path, short_text: str, long_text: str
) -> tuple[Verdict, list[Verdict]]:
    """Poll with the short rules, then the long ones; return the full and polled verdicts."""
    store = StateStore(tmp_path / "state.sqlite3")
    short: RuleSet = parse_rules(short_text, "rules.toml", {})
    long: RuleSet = parse_rules(long_text, "rules.toml", {})
    try:
        poll(pg_cluster, store, short)
        polled = poll(pg_cluster, store, long)
    finally:
        store.close()
    [expected] = evaluate(long, full_snapshot(pg, polled), polled.taken_at)
    return expected, evaluate(long, polled, polled.taken_at)


def test_longer_window_after_reload_counts_old_failures(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    for minutes in range(150, 160, 2):
        add_run(pg, jobid, "failed", now - timedelta(minutes=minutes), message="ERROR:  boom")
    for minutes in range(5, 55, 5):
        add_run(pg, jobid, "succeeded", now - timedelta(minutes=minutes))
    expected, verdicts = reload_longer(pg, pg_cluster, tmp_path, SHORT, LONG)

    assert expected.facts["failed"] == 5
    assert expected.firing
    assert verdicts == [expected]


def test_longer_baseline_after_reload_counts_old_hours(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    # Two days ago the job took 10 s, yesterday and now it takes 2 s.
    for hours in range(44, 50):
        add_run(pg, jobid, "succeeded", now - timedelta(hours=hours), seconds=10.0)
    for hours in range(3, 9):
        add_run(pg, jobid, "succeeded", now - timedelta(hours=hours), seconds=2.0)
    add_run(pg, jobid, "succeeded", now - timedelta(minutes=10), seconds=2.0)
    expected, verdicts = reload_longer(pg, pg_cluster, tmp_path, SHORT_BASELINE, LONG_BASELINE)

    assert expected.facts["baseline_runs"] == 12
    assert verdicts == [expected]
