"""The worker through PgBouncer in transaction mode, the way Supabase's pooler on 6543 works.

In transaction mode each transaction may run on a different server
connection, so the worker must keep no session state between statements
and use no server-side prepared statements.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from pgcluster import SERVER_OS_USER, PgCronCluster, free_tcp_port

from watchdog.loop import Worker
from watchdog.rules import parse_rules
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
RULES = """
[[rules]]
name = "job failing"
kind = "failure_ratio"
window = "1h"
threshold = 0.5
min_runs = 1
"""
# One server connection for every client, so two clients' transactions interleave on it.
CONFIG = """
[databases]
postgres = host=127.0.0.1 port={server_port} dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 1
max_client_conn = 20
logfile = {base}/pgbouncer.log
pidfile = {base}/pgbouncer.pid
"""


@pytest.fixture
def pgbouncer(pg_cluster: PgCronCluster) -> Iterator[str]:
    """Start PgBouncer on a free loopback port in front of the test cluster; yield its DSN."""
    base = Path(tempfile.mkdtemp(prefix="pgbouncer-test-"))
    port = free_tcp_port()
    config = base / "pgbouncer.ini"
    config.write_text(CONFIG.format(server_port=pg_cluster.port, port=port, base=base))
    command = [PGBOUNCER, str(config)]
    # PgBouncer refuses to run as root, like the PostgreSQL server.
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_OS_USER)
        for path in (base, config):
            os.chown(path, user.pw_uid, user.pw_gid)
        command = ["runuser", "-u", SERVER_OS_USER, "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        _wait_for_pooler(dsn, process, base)
        yield dsn
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_pooler(dsn: str, process: subprocess.Popen[bytes], base: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            log = base / "pgbouncer.log"
            if process.poll() is not None or time.monotonic() > deadline:
                detail = log.read_text() if log.exists() else "(no log)"
                raise RuntimeError(f"PgBouncer did not start:\n{detail}") from None
            time.sleep(0.2)


def test_cycles_through_transaction_pooler(pg: Conn, pgbouncer: str, tmp_path: Path) -> None:
    jobid = schedule_job(pg, "sync-orders")
    rules = parse_rules(RULES, "rules.toml", {})
    first = Worker(rules, StateStore(tmp_path / "a.sqlite3"), PgSource(pgbouncer))
    second = Worker(rules, StateStore(tmp_path / "b.sqlite3"), PgSource(pgbouncer))
    try:
        for number in range(10):
            add_run(pg, jobid, "failed" if number % 2 else "succeeded", db_now(pg))
            first.cycle()
            result = second.cycle()
    finally:
        for worker in (first, second):
            worker.source.close()
            worker.store.close()
    assert len(result.snapshot.history) == 10
    assert [record.rule for record in result.firing] == ["job failing"]


def test_application_name_in_pg_stat_activity(pg: Conn, pg_cluster: PgCronCluster) -> None:
    source = PgSource(pg_cluster.dsn)
    try:
        with source.read_transaction() as cur:
            cur.execute("SELECT 1")
        row = pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cron-watchdog'"
        ).fetchone()
    finally:
        source.close()
    assert row == (1,)
