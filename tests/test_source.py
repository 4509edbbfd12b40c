"""Reading a real pg_cron database: cursor, in-flight re-reads, errors."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from pgcluster import PgCronCluster

from watchdog.errors import SourceError, VisibilityError
from watchdog.history import from_micros
from watchdog.snapshot import take_snapshot
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.sqlite3")


def snap(cluster: PgCronCluster, store: StateStore, lookback: timedelta = timedelta(hours=1)):  # type: ignore[no-untyped-def]
    source = PgSource(cluster.dsn)
    try:
        return take_snapshot(source, store, lookback)
    finally:
        source.close()


def test_reads_jobs_and_runs_with_nulls(pg: Conn, pg_cluster: PgCronCluster,
                                        store: StateStore) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    done = add_run(pg, jobid, "failed", now - timedelta(minutes=3), message=None)
    running = add_run(pg, jobid, "running", now - timedelta(minutes=1), seconds=None, message=None)
    add_run(pg, 9999, "failed", now - timedelta(minutes=2))  # a job unscheduled since

    snapshot = snap(pg_cluster, store)

    assert snapshot.jobs[jobid].jobname == "sync-orders"
    runs = snapshot.history.job(jobid).others
    assert runs[done].return_message is None
    assert runs[running].end_time is None
    assert runs[running].in_flight
    assert snapshot.role == "postgres"
    assert snapshot.cron_timezone == "GMT"


def test_second_poll_reads_new_rows_and_finished_in_flight(
    pg: Conn, pg_cluster: PgCronCluster, store: StateStore
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    running = add_run(pg, jobid, "running", now - timedelta(minutes=1), seconds=None)
    snap(pg_cluster, store)

    pg.execute("UPDATE cron.job_run_details SET status='failed', return_message='ERROR:  boom',"
               " end_time=now() WHERE runid=%s", (running,))
    newer = add_run(pg, jobid, "succeeded", now)
    snapshot = snap(pg_cluster, store)

    job = snapshot.history.job(jobid)
    assert job.others[running].status == "failed"
    assert job.others[running].return_message == "ERROR:  boom"
    assert list(job.runids) == [newer]
    assert store.history(snapshot_target(pg_cluster)).cursor == newer


def snapshot_target(cluster: PgCronCluster) -> str:
    return PgSource(cluster.dsn).target


def test_first_poll_starts_at_window_by_runid(pg: Conn, pg_cluster: PgCronCluster,
                                              store: StateStore) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    # Three days of history every 10 minutes. The first poll reads the 1 h window (plus
    # the trim margin) run by run and the rest of one day as hourly sums.
    pg.execute(
        "INSERT INTO cron.job_run_details (jobid, status, return_message, start_time, end_time)"
        " SELECT %s, 'succeeded', '1 row', t, t + interval '1 second'"
        " FROM generate_series(%s::timestamptz - interval '3 days', %s, interval '10 minutes') t",
        (jobid, now, now),
    )
    snapshot = snap(pg_cluster, store)
    job = snapshot.history.job(jobid)
    oldest = from_micros(job.starts[0])
    assert now - timedelta(minutes=70) <= oldest <= now - timedelta(minutes=60)
    assert len(job.runids) in (7, 8)
    runs, total_us = job.bucket_sums(job.hour_base, job.hour_base + len(job.hour_runs))
    # One day and a few minutes of runs, in hours that may begin before the day did.
    assert 144 <= runs <= 151
    assert total_us == runs * 1_000_000
    assert snapshot.last_start[jobid] == from_micros(job.starts[-1])


def test_truncated_history_rebuilds_window(pg: Conn, pg_cluster: PgCronCluster,
                                           store: StateStore,
                                           caplog: pytest.LogCaptureFixture) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    for minutes in range(5):
        add_run(pg, jobid, "failed", now - timedelta(minutes=minutes))
    snap(pg_cluster, store)

    pg.execute("TRUNCATE cron.job_run_details")
    pg.execute("SELECT setval('cron.runid_seq', 1, false)")
    fresh = add_run(pg, jobid, "succeeded", now)
    with caplog.at_level(logging.WARNING, logger="watchdog.snapshot"):
        snapshot = snap(pg_cluster, store)

    assert list(snapshot.history.job(jobid).runids) == [fresh]
    assert snapshot.history.job(jobid).others == {}
    assert sum("went backwards" in record.message for record in caplog.records) == 1


def test_empty_history_is_not_reported_as_truncated(
    pg: Conn, pg_cluster: PgCronCluster, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    schedule_job(pg, "sync-orders")
    with caplog.at_level(logging.WARNING, logger="watchdog.snapshot"):
        snap(pg_cluster, store)
        snap(pg_cluster, store)

    assert [record.message for record in caplog.records] == []


def test_role_without_jobs_gets_rls_explanation(pg: Conn, pg_cluster: PgCronCluster,
                                                store: StateStore) -> None:
    schedule_job(pg, "owned-by-postgres")
    dsn = pg_cluster.create_role("cron_reader", "s3cret-pass")
    pg.execute("GRANT USAGE ON SCHEMA cron TO cron_reader")
    pg.execute("GRANT SELECT ON cron.job, cron.job_run_details TO cron_reader")
    source = PgSource(dsn)
    try:
        with pytest.raises(VisibilityError) as caught:
            take_snapshot(source, store, timedelta(hours=1))
    finally:
        source.close()
        pg.execute("DROP OWNED BY cron_reader")
        pg.execute("DROP ROLE cron_reader")
    message = str(caught.value)
    assert "'cron_reader' sees no jobs" in message
    assert "row-level security" in message
    assert "s3cret-pass" not in message


def test_database_without_pg_cron_names_the_fix(pg: Conn, pg_cluster: PgCronCluster,
                                                store: StateStore) -> None:
    pg.execute("DROP DATABASE IF EXISTS app")
    pg.execute("CREATE DATABASE app")
    source = PgSource(pg_cluster.dsn.rsplit("/", 1)[0] + "/app")
    try:
        with pytest.raises(SourceError) as caught:
            take_snapshot(source, store, timedelta(hours=1))
    finally:
        source.close()
    assert "cron.database_name" in str(caught.value)


def test_unreachable_database_masks_password(store: StateStore) -> None:
    from pgcluster import free_tcp_port

    source = PgSource(f"postgresql://watch:hunter2@127.0.0.1:{free_tcp_port()}/postgres")
    with pytest.raises(SourceError) as caught:
        take_snapshot(source, store, timedelta(hours=1))
    message = str(caught.value)
    assert "cannot connect to postgresql://watch:***@127.0.0.1" in message
    assert "hunter2" not in message


def test_longer_window_after_reload_reads_the_history_again(
    pg: Conn, pg_cluster: PgCronCluster, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    old = add_run(pg, jobid, "failed", now - timedelta(hours=3))
    recent = add_run(pg, jobid, "succeeded", now - timedelta(minutes=5))
    first = snap(pg_cluster, store, timedelta(hours=1))
    assert old not in first.history.job(jobid).others

    with caplog.at_level(logging.INFO, logger="watchdog.snapshot"):
        second = snap(pg_cluster, store, timedelta(hours=4))

    assert old in second.history.job(jobid).others
    assert list(second.history.job(jobid).runids) == [recent]
    assert sum("reading the history again" in record.message for record in caplog.records) == 1
    # The same window again reads on from the cursor.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="watchdog.snapshot"):
        snap(pg_cluster, store, timedelta(hours=4))
    assert not any("reading the history again" in record.message for record in caplog.records)
