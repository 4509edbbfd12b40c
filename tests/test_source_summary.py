"""The first poll's summary of older runs, against a real pg_cron cluster."""

from __future__ import annotations

from typing import Any

import psycopg
from dbhelpers import db_now
from pgcluster import PgCronCluster

from watchdog.source import PgSource, read_older_runs

Conn = psycopg.Connection[Any]


def test_summary_restores_poll_settings(pg: Conn, pg_cluster: PgCronCluster) -> None:
    source = PgSource(pg_cluster.dsn, statement_timeout=15.0)
    try:
        with source.read_transaction() as cur:
            cur.execute("SELECT current_setting('work_mem') AS work_mem,"
                        " current_setting('enable_sort') AS enable_sort")
            before = cur.fetchone()
            read_older_runs(cur, 0, 1, db_now(pg), lambda bucket: None)
            cur.execute("SELECT current_setting('statement_timeout') AS statement_timeout,"
                        " current_setting('work_mem') AS work_mem,"
                        " current_setting('enable_sort') AS enable_sort")
            after = cur.fetchone()
    finally:
        source.close()

    assert before is not None
    assert after is not None
    # The rest of the first poll keeps the poll's own statement timeout.
    assert after["statement_timeout"] == "15s"
    assert after["work_mem"] == before["work_mem"]
    assert after["enable_sort"] == before["enable_sort"]
