"""The polling loop: errors stay inside one cycle, the connection comes back."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schedule
from dbhelpers import schedule_job
from pgcluster import PgCronCluster

from watchdog.errors import SourceError
from watchdog.loop import StopFlag, Worker, guarded, run_forever
from watchdog.rules import parse_rules
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]

RULES = '[[rules]]\nname = "stopped"\nkind = "missing_run"\n'


def test_raising_job_does_not_starve_the_next(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = schedule.Scheduler()
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    scheduler.every(1).seconds.do(guarded(broken, "poll cycle"))
    scheduler.every(1).seconds.do(guarded(lambda: calls.append("flush"), "flush"))
    with caplog.at_level(logging.ERROR, logger="watchdog.loop"):
        for _ in range(3):
            scheduler.run_all()
    assert calls.count("broken") == 3
    assert calls.count("flush") == 3
    assert sum("poll cycle failed" in r.getMessage() for r in caplog.records) == 3


def test_run_forever_stops_when_flag_set() -> None:
    stop = StopFlag()
    cycles: list[int] = []

    def cycle() -> None:
        cycles.append(1)
        if len(cycles) == 3:
            stop.event.set()

    thread = threading.Thread(target=run_forever, args=(cycle, 0.05, stop))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(cycles) == 3


def test_repeated_cycles_on_one_connection(pg: Conn, pg_cluster: PgCronCluster,
                                           tmp_path: Path) -> None:
    # psycopg prepares a statement after 5 executions, which breaks behind
    # transaction poolers; the worker's queries must keep working past that.
    schedule_job(pg, "sync-orders")
    source = PgSource(pg_cluster.dsn)
    store = StateStore(tmp_path / "state.sqlite3")
    worker = Worker(parse_rules(RULES, "rules.toml", {}), store, source)
    try:
        for _ in range(8):
            worker.cycle()
        backend = source._connect().execute("SELECT count(*) FROM pg_prepared_statements")
        row = backend.fetchone()
    finally:
        source.close()
        store.close()
    assert row is not None
    assert list(row.values()) == [0]


def test_worker_reconnects_after_server_restart(pg: Conn, pg_cluster: PgCronCluster,
                                               tmp_path: Path) -> None:
    schedule_job(pg, "sync-orders")
    source = PgSource(pg_cluster.dsn)
    store = StateStore(tmp_path / "state.sqlite3")
    worker = Worker(parse_rules(RULES, "rules.toml", {}), store, source)
    try:
        worker.cycle()
        pg_cluster.restart()
        with pytest.raises(SourceError, match="lost"):
            worker.cycle()
        result = worker.cycle()
    finally:
        source.close()
        store.close()
    assert [job.jobname for job in result.snapshot.jobs.values()] == ["sync-orders"]
