"""Every query a poll sends stays on job_run_details_pkey, even under a generic plan."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from dbhelpers import add_run, db_now
from pgcluster import PgCronCluster

from benchmarks.plans import (
    RecordingSource,
    SentQuery,
    check_generic_plan,
    distinct_run_queries,
)
from benchmarks.seed import seed
from watchdog.snapshot import take_snapshot
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]
SEEDED_RUNS = 200_000


def test_poll_queries_keep_primary_key_plans(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path
) -> None:
    seeded = seed(pg, jobs=100, runs=SEEDED_RUNS, days=3)
    store = StateStore(tmp_path / "state.sqlite3")
    source = RecordingSource(pg_cluster.dsn)
    try:
        # The first poll finds the window by binary search and reads it by runid range.
        take_snapshot(source, store, timedelta(hours=1))
        # The second reads one new run and re-reads the runs that were in flight.
        add_run(pg, seeded.jobs[0].jobid, "succeeded", db_now(pg))
        take_snapshot(source, store, timedelta(hours=1))
    finally:
        source.close()
        store.close()

    queries = distinct_run_queries(source.sent)
    texts = "\n".join(query.text for query in queries)
    assert "runid >= %s" in texts, "the binary search was not exercised"
    assert "runid > %s" in texts, "no new runs were read"
    assert "ANY(%s)" in texts, "no in-flight runs were re-read"
    assert "DESC" in texts, "the runid bounds were not read"

    for query in queries:
        check = check_generic_plan(pg, query)
        assert check.generic, f"not a generic plan:\n{query.text}"
        assert check.problems == [], f"{query.text}\n{check.plan_text}"


def test_plan_check_rejects_table_walks(pg: Conn) -> None:
    seed(pg, jobs=20, runs=50_000, days=1)
    either = SentQuery(
        "SELECT runid, status FROM cron.job_run_details WHERE runid > %s OR runid = ANY(%s)"
        " ORDER BY runid LIMIT 5000",
        (49_990, [5, 6]),
    )
    last_hour = SentQuery(
        "SELECT jobid, count(*) FROM cron.job_run_details"
        " WHERE start_time > now() - interval '1 hour' GROUP BY jobid",
        None,
    )
    newest_per_job = SentQuery(
        "SELECT DISTINCT ON (jobid) jobid, start_time FROM cron.job_run_details"
        " ORDER BY jobid, start_time DESC NULLS LAST",
        None,
    )

    assert check_generic_plan(pg, either).problems == [
        "walk of the whole primary key of cron.job_run_details"
    ]
    assert "sequential scan of cron.job_run_details" in check_generic_plan(pg, last_hour).problems
    assert "sort over cron.job_run_details" in check_generic_plan(pg, newest_per_job).problems
