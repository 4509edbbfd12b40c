"""The `cron-watchdog` command as users run it: exit codes, messages, signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from factories import FAILING_JOB_RULES
from pgcluster import PgCronCluster, free_tcp_port
from receivers import HttpReceiver

Conn = psycopg.Connection[Any]



def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


@pytest.fixture
def rules_file(tmp_path: Path, http_receiver: HttpReceiver) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(FAILING_JOB_RULES.format(hook=http_receiver.json_url("/alerts")))
    return path


def test_validate_accepts_good_file(rules_file: Path) -> None:
    result = cli("validate", "--rules-file", str(rules_file))
    assert result.returncode == 0, result.stderr
    assert "valid, 1 rule, 1 channel, 0 maintenance windows" in result.stdout


def test_validate_lists_problems_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nname = "a"\nkind = "failure_ratio"\nthreshold = 2\nwindw = "1h"\n')
    result = cli("validate", "--rules-file", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "Traceback" not in result.stderr
    assert any("field 'threshold'" in line for line in lines)
    assert any("'windw'" in line for line in lines)


def test_validate_reports_toml_position(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nname = "a"\nkind = = 1\n')
    result = cli("validate", "--rules-file", str(path))
    assert result.returncode == 2
    assert "line 3, column" in result.stderr


def test_once_exit_codes_follow_alerts(pg: Conn, pg_cluster: PgCronCluster, rules_file: Path,
                                       http_receiver: HttpReceiver, tmp_path: Path) -> None:
    env = {"WATCHDOG_DATABASE_URL": pg_cluster.dsn,
           "WATCHDOG_STATE_PATH": str(tmp_path / "state.sqlite3"),
           "WATCHDOG_RULES_FILE": str(rules_file)}
    jobid = schedule_job(pg, "nightly-report")
    add_run(pg, jobid, "succeeded", db_now(pg) - timedelta(minutes=2))

    quiet = cli("once", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "0 alerts firing" in quiet.stdout

    add_run(pg, jobid, "failed", db_now(pg) - timedelta(minutes=1), message="ERROR:  boom")
    add_run(pg, jobid, "failed", db_now(pg), message="ERROR:  boom")
    firing = cli("once", env=env)
    assert firing.returncode == 1, firing.stderr
    assert "FIRING" in firing.stdout
    assert "nightly-report: job failing" in firing.stdout
    # Times read as in notifications, not as ISO 8601.
    assert re.search(r"firing since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: nightly-report",
                     firing.stdout)
    assert http_receiver.wait_for(1)[0].json["type"] == "warning"


def test_once_unreachable_database_exits_2_masked(rules_file: Path, tmp_path: Path) -> None:
    dsn = f"postgresql://watch:hunter2@127.0.0.1:{free_tcp_port()}/postgres"
    result = cli("once", "--database-url", dsn, "--rules-file", str(rules_file),
                 "--state-path", str(tmp_path / "state.sqlite3"))
    assert result.returncode == 2
    assert "cannot connect to postgresql://watch:***@" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    # `once` tries one connection, so it must not promise another attempt.
    assert "next attempt" not in result.stderr
    assert result.stderr.count("cannot connect") == 1


def test_once_without_database_url_names_setting(rules_file: Path, tmp_path: Path) -> None:
    result = cli("once", "--rules-file", str(rules_file),
                 "--state-path", str(tmp_path / "state.sqlite3"),
                 env={"WATCHDOG_DATABASE_URL": ""})
    assert result.returncode == 2
    assert "WATCHDOG_DATABASE_URL" in result.stderr


def test_bad_poll_interval_is_rejected(rules_file: Path) -> None:
    result = cli("validate", "--rules-file", str(rules_file), "--poll-interval", "soon")
    assert result.returncode == 2
    assert "WATCHDOG_POLL_INTERVAL" in result.stderr
    assert '"90s"' in result.stderr


def test_run_survives_unreachable_database_and_stops_on_sigterm(
    rules_file: Path, tmp_path: Path
) -> None:
    dsn = f"postgresql://watch:hunter2@127.0.0.1:{free_tcp_port()}/postgres"
    process = subprocess.Popen(
        [sys.executable, "-m", "watchdog.cli", "run", "--database-url", dsn,
         "--rules-file", str(rules_file), "--state-path", str(tmp_path / "s.sqlite3"),
         "--poll-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "WATCHDOG_HTTP_ADDR": ""},
    )
    time.sleep(3.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert stderr.count("poll failed (") >= 2
    assert "cannot connect to postgresql://watch:***@" in stderr
    assert "hunter2" not in stderr
    assert "watchdog stopped" in stderr


@pytest.mark.e2e
def test_pg_cron_failing_job_reaches_receiver(
    pg: Conn, pg_cluster: PgCronCluster, rules_file: Path, http_receiver: HttpReceiver,
    tmp_path: Path,
) -> None:
    """pg_cron itself runs a failing job; `run` delivers the alert, then stops on SIGTERM."""
    schedule_job(pg, "e2e-divide", "* * * * *", "SELECT 1/0")
    process = subprocess.Popen(
        [sys.executable, "-m", "watchdog.cli", "run", "--database-url", pg_cluster.dsn,
         "--rules-file", str(rules_file), "--state-path", str(tmp_path / "s.sqlite3"),
         "--poll-interval", "2s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "WATCHDOG_HTTP_ADDR": ""},
    )
    try:
        [request] = http_receiver.wait_for(1, timeout=150)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "e2e-divide" in request.json["title"]
    assert "division by zero" in request.json["message"]
    assert request.json["type"] == "warning"


def test_validate_warns_about_rule_without_channel(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nname = "quiet"\nkind = "missing_run"\n')
    result = cli("validate", "--rules-file", str(path))
    assert result.returncode == 0
    assert "rule 'quiet' notifies no channel" in result.stderr


def test_count_uses_singular_for_one() -> None:
    from watchdog.counts import count

    assert count(1, "rule") == "1 rule"
    assert count(0, "rule") == "0 rules"
    assert count(2, "maintenance window") == "2 maintenance windows"
    assert count(3, "entry", "entries") == "3 entries"


def test_validate_warns_about_file_without_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('locale = "en"\n')
    result = cli("validate", "--rules-file", str(rules))
    assert result.returncode == 0, result.stderr
    assert "valid, 0 rules" in result.stdout
    assert f"{rules}: warning: no [[rules]] defined" in result.stderr
