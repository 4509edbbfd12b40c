"""`cron-watchdog status` and `cron-watchdog doctor` against the test cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from factories import FAILING_JOB_RULES
from pgcluster import PgCronCluster
from receivers import HttpReceiver

Conn = psycopg.Connection[Any]



def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog.cli", *args], capture_output=True, text=True,
        timeout=60, env={**os.environ, "WATCHDOG_HTTP_ADDR": "", **env},
    )


@pytest.fixture
def env(tmp_path: Path, http_receiver: HttpReceiver, pg_cluster: PgCronCluster) -> dict[str, str]:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAILING_JOB_RULES.format(hook=http_receiver.json_url("/alerts")))
    return {
        "WATCHDOG_DATABASE_URL": pg_cluster.dsn,
        "WATCHDOG_RULES_FILE": str(rules),
        "WATCHDOG_STATE_PATH": str(tmp_path / "state.sqlite3"),
    }


def test_status_json_lists_jobs(pg: Conn, env: dict[str, str]) -> None:
    failing = schedule_job(pg, "sync-orders", "*/5 * * * *")
    schedule_job(pg, "nightly-report")
    now = db_now(pg)
    add_run(pg, failing, "succeeded", now - timedelta(minutes=20), seconds=2.5)
    add_run(pg, failing, "failed", now - timedelta(minutes=2), seconds=1.5, message="ERROR:  x")
    assert cli("once", env=env).returncode == 1

    result = cli("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["jobname"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"sync-orders", "nightly-report"}
    orders = rows["sync-orders"]
    assert orders["schedule"] == "*/5 * * * *"
    assert orders["active"] is True
    assert orders["last_status"] == "failed"
    assert orders["last_duration_seconds"] == 1.5
    assert orders["failure_ratio_1h"] == 0.5
    assert orders["alerts_firing"] == ["job failing"]
    assert rows["nightly-report"]["last_run"] is None


def test_status_table_has_header_and_rows(pg: Conn, env: dict[str, str]) -> None:
    jobid = schedule_job(pg, "sync-orders")
    quick = schedule_job(pg, "queue-http")
    add_run(pg, jobid, "succeeded", db_now(pg) - timedelta(minutes=1), seconds=3)
    add_run(pg, quick, "succeeded", db_now(pg) - timedelta(minutes=1), seconds=0.004)
    result = cli("status", env=env)
    assert result.returncode == 0, result.stderr
    header, quick_row, row = result.stdout.strip().splitlines()
    assert header.split()[:3] == ["JOB", "SCHEDULE", "ACTIVE"]
    assert row.startswith("sync-orders")
    assert "succeeded" in row
    assert "  3 s  " in row
    assert "0%" in row
    # The same format as notifications: milliseconds below a second.
    assert quick_row.startswith("queue-http")
    assert "  4 ms  " in quick_row


def test_doctor_as_superuser_passes(pg: Conn, env: dict[str, str]) -> None:
    schedule_job(pg, "sync-orders")
    result = cli("doctor", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("[ok  ] pg_cron 1.4") for line in lines)
    assert "[ok  ] role postgres sees 1 job: all jobs" in lines
    assert "[ok  ] the pg_cron scheduler is running (seen in pg_stat_activity)" in lines
    assert "[ok  ] the channel URL parses" in lines
    assert "[ok  ] pg_cron 1.4-1 evaluates schedules in GMT (cron.timezone exists from pg_cron" \
        " 1.5 on)" in lines
    assert "[ok  ] cron.max_running_jobs is 32" in lines
    assert "pg_read_all_settings" not in result.stdout
    # pg_net is absent, but no rule needs it; no rule remediates either.
    assert "net._http_response" not in result.stdout
    assert "cron.alter_job" not in result.stdout


def test_doctor_checks_what_rules_need(pg: Conn, env: dict[str, str], tmp_path: Path) -> None:
    schedule_job(pg, "sync-orders")
    rules = tmp_path / "needs.toml"
    rules.write_text("""
[[rules]]
name = "http"
kind = "http_failures"

[[rules]]
name = "pause"
kind = "consecutive_failures"
remediate = { action = "pause" }
""")
    result = cli("doctor", env={**env, "WATCHDOG_RULES_FILE": str(rules)})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "[FAIL] net._http_response does not exist (pg_net is not installed)" in lines
    assert "[ok  ] cron.alter_job and cron.unschedule are permitted on every visible job" \
        in lines
    assert "channel URL" not in result.stdout


def test_doctor_wrong_role_fails_with_fix(pg: Conn, pg_cluster: PgCronCluster,
                                          env: dict[str, str]) -> None:
    schedule_job(pg, "sync-orders")
    dsn = pg_cluster.create_role("doctor_reader", "reader-pass")
    pg.execute("GRANT USAGE ON SCHEMA cron TO doctor_reader")
    pg.execute("GRANT SELECT ON cron.job, cron.job_run_details TO doctor_reader")
    try:
        result = cli("doctor", env={**env, "WATCHDOG_DATABASE_URL": dsn})
        with_fallback = cli("doctor", env={**env, "WATCHDOG_DATABASE_URL": dsn,
                                           "WATCHDOG_MAX_RUNNING_JOBS": "8"})
    finally:
        pg.execute("REVOKE ALL ON cron.job, cron.job_run_details FROM doctor_reader")
        pg.execute("REVOKE USAGE ON SCHEMA cron FROM doctor_reader")
        pg.execute("DROP ROLE doctor_reader")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "[FAIL] role doctor_reader sees no jobs in cron.job" in out
    assert "row-level security hides the others" in out
    assert "fix: connect as the role that scheduled the jobs" in out
    assert "[warn] cron.database_name is not readable by this role" in out
    assert "[warn] cron.max_running_jobs is not readable by this role; pg_cron's default of" \
        " 32 is assumed\n       fix: grant pg_read_all_settings to the role, or set" \
        " WATCHDOG_MAX_RUNNING_JOBS" in out
    assert "reader-pass" not in out + result.stderr
    assert "[ok  ] cron.max_running_jobs is not readable by this role;" \
        " WATCHDOG_MAX_RUNNING_JOBS (8) is used" in with_fallback.stdout


def test_doctor_unreachable_database_exits_1(env: dict[str, str]) -> None:
    from pgcluster import free_tcp_port

    dsn = f"postgresql://watch:hunter2@127.0.0.1:{free_tcp_port()}/postgres"
    result = cli("doctor", env={**env, "WATCHDOG_DATABASE_URL": dsn})
    assert result.returncode == 1
    assert "[FAIL] read pg_cron: cannot connect to postgresql://watch:***@" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
