"""The `silence` and `test-notify` commands as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from pgcluster import PgCronCluster
from receivers import HttpReceiver

Conn = psycopg.Connection[Any]

RULES = """
[channels.hook]
urls = ["{hook}"]

[channels.spare]
urls = ["{spare}"]

[[rules]]
name = "job failing"
kind = "failure_ratio"
notify = ["hook"]
window = "1h"
threshold = 0.5
min_runs = 1
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog.cli", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )


@pytest.fixture
def env(tmp_path: Path, http_receiver: HttpReceiver, pg_cluster: PgCronCluster) -> dict[str, str]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.format(hook=http_receiver.json_url("/alerts"),
                                  spare=http_receiver.json_url("/spare")))
    return {
        "WATCHDOG_DATABASE_URL": pg_cluster.dsn,
        "WATCHDOG_RULES_FILE": str(rules),
        "WATCHDOG_STATE_PATH": str(tmp_path / "state.sqlite3"),
    }


def test_silence_add_list_remove(env: dict[str, str]) -> None:
    added = cli("silence", "add", "--rule", "job failing", "--job", "sync-*", "--for", "2h",
                "--reason", "deploy of sync", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("silence 1 added: rule job failing, jobs sync-* until ")

    listed = cli("silence", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "rule job failing, jobs sync-*" in listed.stdout
    assert "deploy of sync" in listed.stdout

    removed = cli("silence", "remove", "1", env=env)
    assert removed.returncode == 0, removed.stderr
    assert cli("silence", "list", env=env).stdout.startswith("no active silences for ")
    assert "deploy of sync" in cli("silence", "list", "--all", env=env).stdout


def test_silence_rejects_bad_input(env: dict[str, str]) -> None:
    unknown = cli("silence", "add", "--rule", "no such", "--for", "1h", "--reason", "x",
                  env=env)
    assert unknown.returncode == 2
    assert "--rule 'no such': rule not found" in unknown.stderr
    assert "'job failing'" in unknown.stderr

    bad_duration = cli("silence", "add", "--for", "2 hours", "--reason", "x", env=env)
    assert bad_duration.returncode == 2
    assert "--for '2 hours': expected a number with a unit" in bad_duration.stderr

    missing = cli("silence", "remove", "7", env=env)
    assert missing.returncode == 2
    assert "silence 7 not found" in missing.stderr


@pytest.mark.parametrize("command", [
    ("actions",), ("silence", "list"), ("silence", "remove", "1"), ("restore", "sync-orders"),
])
def test_read_command_needs_existing_state(command: tuple[str, ...], env: dict[str, str],
                                           tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "state.sqlite3"

    result = cli(*command, env={**env, "WATCHDOG_STATE_PATH": str(missing)})

    assert result.returncode == 2, result.stdout
    assert f"state file {missing} does not exist" in result.stderr
    assert "WATCHDOG_STATE_PATH" in result.stderr
    assert not missing.parent.exists()


def test_silence_without_selectors_warns(env: dict[str, str]) -> None:
    result = cli("silence", "add", "--for", "1h", "--reason", "maintenance", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("silence 1 added: rule *, jobs * until ")
    assert "warning: silence 1 mutes every alert of every rule" in result.stderr


def test_silenced_alert_is_announced_after_removal(
    pg: Conn, env: dict[str, str], http_receiver: HttpReceiver
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    add_run(pg, jobid, "failed", db_now(pg) - timedelta(minutes=1), message="ERROR:  x")
    assert cli("silence", "add", "--job", "sync-*", "--for", "1h", "--reason", "deploy",
               env=env).returncode == 0

    muted = cli("once", env=env)
    assert muted.returncode == 1, muted.stderr
    assert "1 alert firing" in muted.stdout
    assert "notifications: 0 sent" in muted.stdout
    assert http_receiver.requests == []

    assert cli("silence", "remove", "1", env=env).returncode == 0
    announced = cli("once", env=env)
    assert "notifications: 1 sent" in announced.stdout
    [request] = http_receiver.wait_for(1)
    assert request.json["title"] == "[WARNING] sync-orders: job failing"
    assert "Firing for" in request.json["message"]


def test_test_notify_reports_each_url(env: dict[str, str], http_receiver: HttpReceiver) -> None:
    result = cli("test-notify", env=env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("channel hook: json://")
    assert lines[0].endswith(": ok")
    assert lines[1].startswith("channel spare: json://")
    paths = sorted(request.path for request in http_receiver.wait_for(2))
    assert paths == ["/alerts", "/spare"]


def test_test_notify_one_channel_failing(
    env: dict[str, str], http_receiver: HttpReceiver
) -> None:
    http_receiver.status = 500
    result = cli("test-notify", "spare", env=env)

    assert result.returncode == 2
    [line] = result.stdout.splitlines()
    assert line.startswith("channel spare: json://127.0.0.1:")
    assert ": failed: " in line
    assert "500" in line
    assert [request.path for request in http_receiver.wait_for(1)] == ["/spare"]


def test_test_notify_unknown_channel(env: dict[str, str]) -> None:
    result = cli("test-notify", "pager", env=env)
    assert result.returncode == 2
    assert "channel 'pager' not found" in result.stderr
    assert "channels: hook, spare" in result.stderr


def test_validate_warns_about_silence_of_removed_rule(env: dict[str, str]) -> None:
    assert cli("silence", "add", "--rule", "job failing", "--for", "1h", "--reason", "x",
               env=env).returncode == 0
    rules = Path(env["WATCHDOG_RULES_FILE"])
    rules.write_text(rules.read_text().replace('name = "job failing"', 'name = "job broken"'))

    result = cli("validate", env=env)

    assert result.returncode == 0, result.stderr
    assert "0 maintenance windows" in result.stdout
    assert "warning: silence 1 names rule 'job failing'" in result.stderr
    assert "silence remove 1" in result.stderr
