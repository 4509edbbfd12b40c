"""Fault tests of `cron-watchdog run` as a real process against the test cluster."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from factories import FAILING_JOB_DEFAULT_RULES
from pgcluster import PgCronCluster, free_tcp_port
from receivers import HttpReceiver

from watchdog.state import StateStore

Conn = psycopg.Connection[Any]



class RunProcess:
    """`cron-watchdog run` in a subprocess, with its stderr collected to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.http_addr = f"127.0.0.1:{free_tcp_port()}"
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "watchdog.cli", "run", "--poll-interval", "1"],
            stdout=subprocess.DEVNULL, stderr=self._log, text=True,
            env={**os.environ, "WATCHDOG_HTTP_ADDR": self.http_addr, **env},
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 30) -> None:
        wait_until(lambda: self.log.count(text) >= count, timeout, f"{text!r} in the log")

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_addr}/healthz", timeout=5) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def env(tmp_path: Path, http_receiver: HttpReceiver, pg_cluster: PgCronCluster) -> dict[str, str]:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAILING_JOB_DEFAULT_RULES.format(hook=http_receiver.json_url("/alerts")))
    return {
        "WATCHDOG_DATABASE_URL": pg_cluster.dsn,
        "WATCHDOG_RULES_FILE": str(rules),
        "WATCHDOG_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "WATCHDOG_STATEMENT_TIMEOUT": "5s",
    }


def fail_job(conn: Conn, name: str) -> None:
    jobid = schedule_job(conn, name)
    add_run(conn, jobid, "failed", db_now(conn) - timedelta(minutes=1), message="ERROR:  boom")


def test_restart_during_run_keeps_alerts(pg: Conn, pg_cluster: PgCronCluster,
                                         env: dict[str, str], http_receiver: HttpReceiver,
                                         tmp_path: Path) -> None:
    fail_job(pg, "sync-orders")
    run = RunProcess(env, tmp_path / "run.log")
    try:
        http_receiver.wait_for(1)
        pg_cluster.restart()
        run.wait_for_log("poll failed (1 of 3")
        run.wait_for_log("readable again after 1 failed polls")
        run.wait_for_log("cycle on", count=run.log.count("cycle on") + 2)
        health = run.healthz()
    finally:
        code = run.stop()
    assert code == 0, run.log
    assert health == 200
    assert "Traceback" not in run.log
    # The job alert was sent once and kept its state: no outage alert, no resolve, no repeat.
    assert len(http_receiver.requests) == 1


def test_rules_replaced_invalid_then_valid(pg: Conn, env: dict[str, str],
                                           http_receiver: HttpReceiver, tmp_path: Path) -> None:
    schedule_job(pg, "sync-orders")
    rules = Path(env["WATCHDOG_RULES_FILE"])
    valid = rules.read_text()
    run = RunProcess(env, tmp_path / "run.log")
    try:
        run.wait_for_log("cycle on")
        rules.write_text(valid + "\n[[rules]\nname = \n")
        [invalid] = http_receiver.wait_for(1)
        run.wait_for_log("cycle on", count=run.log.count("cycle on") + 2)
        assert len(http_receiver.requests) == 1

        rules.write_text(valid.replace("0.5", "0.9"))
        [_, fixed] = http_receiver.wait_for(2)
        run.wait_for_log("rules reloaded")
    finally:
        code = run.stop()
    assert code == 0, run.log
    assert invalid.json["title"] == "cron-watchdog: invalid rules file"
    assert "invalid TOML" in invalid.json["message"]
    assert fixed.json["type"] == "success"
    assert "rules reload:" in run.log
    assert "Traceback" not in run.log


def test_sighup_rereads_rules(pg: Conn, env: dict[str, str], tmp_path: Path) -> None:
    schedule_job(pg, "sync-orders")
    run = RunProcess(env, tmp_path / "run.log")
    try:
        run.wait_for_log("cycle on")
        run.process.send_signal(signal.SIGHUP)
        run.wait_for_log("rules reloaded")
    finally:
        code = run.stop()
    assert code == 0, run.log
    assert "SIGHUP received" in run.log


def test_sigterm_during_slow_cycle(pg: Conn, pg_cluster: PgCronCluster, env: dict[str, str],
                                   tmp_path: Path) -> None:
    fail_job(pg, "sync-orders")
    run = RunProcess(env, tmp_path / "run.log")
    locker = pg_cluster.connect()
    try:
        run.wait_for_log("cycle on")
        locker.autocommit = False
        locker.execute("LOCK TABLE cron.job IN ACCESS EXCLUSIVE MODE")
        time.sleep(1.5)
        run.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = run.stop(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        locker.rollback()
        locker.close()
    assert code == 0, run.log
    # Bounded by WATCHDOG_STATEMENT_TIMEOUT (5s) plus shutdown.
    assert elapsed < 8, run.log
    assert "watchdog stopped" in run.log
    store = StateStore(Path(env["WATCHDOG_STATE_PATH"]))
    try:
        alerts = store.alerts(store_target(pg_cluster))
    finally:
        store.close()
    assert list(alerts) == [("job failing", alerts_jobid(alerts))]


def store_target(cluster: PgCronCluster) -> str:
    return f"127.0.0.1:{cluster.port}/postgres"


def alerts_jobid(alerts: dict[tuple[str, int], Any]) -> int:
    [(_, jobid)] = alerts
    return jobid


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog.cli", *args], capture_output=True, text=True,
        timeout=60, env={**os.environ, "WATCHDOG_HTTP_ADDR": "", **env},
    )


def test_corrupt_state_file_exits_2_and_keeps_it(env: dict[str, str]) -> None:
    state = Path(env["WATCHDOG_STATE_PATH"])
    garbage = b"this is not SQLite\n" * 200
    state.write_bytes(garbage)
    result = cli("once", env=env)
    assert result.returncode == 2
    assert "not a readable watchdog state database" in result.stderr
    assert "left unchanged" in result.stderr
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == garbage


def test_newer_state_file_exits_2_and_keeps_it(env: dict[str, str]) -> None:
    state = Path(env["WATCHDOG_STATE_PATH"])
    StateStore(state).close()
    with sqlite3.connect(state) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    before = state.read_bytes()
    result = cli("once", env=env)
    assert result.returncode == 2
    assert "schema version 99 is newer" in result.stderr
    assert "upgrade pg-cron-watchdog" in result.stderr
    assert state.read_bytes() == before


def test_busy_http_addr_exits_2(env: dict[str, str]) -> None:
    run = RunProcess(env, Path(env["WATCHDOG_STATE_PATH"]).with_name("first.log"))
    try:
        run.wait_for_log("serving /healthz")
        result = cli("run", env={**env, "WATCHDOG_HTTP_ADDR": run.http_addr,
                                 "WATCHDOG_STATE_PATH": env["WATCHDOG_STATE_PATH"] + ".2"})
    finally:
        run.stop()
    assert result.returncode == 2
    assert f"cannot listen on {run.http_addr}" in result.stderr
    assert "WATCHDOG_HTTP_ADDR" in result.stderr


def test_json_log_lines(pg: Conn, env: dict[str, str]) -> None:
    schedule_job(pg, "sync-orders")
    result = cli("once", env={**env, "WATCHDOG_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(entry["message"].startswith("cycle on") for entry in entries)
    assert {entry["level"] for entry in entries} <= {"INFO", "WARNING"}
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
