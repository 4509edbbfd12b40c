"""Fixtures for a throwaway pg_cron cluster and local notification receivers."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pgcluster import PgCronCluster
from psycopg.rows import TupleRow
from receivers import HttpReceiver, SmtpReceiver


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCronCluster]:
    with PgCronCluster() as cluster:
        yield cluster


@pytest.fixture
def pg(pg_cluster: PgCronCluster) -> Iterator[psycopg.Connection[TupleRow]]:
    """Autocommit superuser connection. All pg_cron jobs and runs are removed after the test."""
    conn = pg_cluster.connect()
    try:
        yield conn
    finally:
        conn.close()
        # A fresh connection, because the test may have restarted the server under `conn`.
        with pg_cluster.connect() as cleanup:
            cleanup.execute("SELECT cron.unschedule(jobid) FROM cron.job")
            cleanup.execute("TRUNCATE cron.job_run_details")


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver
