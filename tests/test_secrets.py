"""No secret in any log line or message, across the scenarios of a working day.

One `run` process at DEBUG level goes through a firing alert, a channel that fails,
a channel that cannot be reached, a heartbeat that cannot be reached, an
invalid rules edit, a database outage long enough to alert, and the
recovery. The DSN carries a password, and every Apprise URL and the
heartbeat URL carry tokens; none of them may appear in stderr, stdout or
any message body that reached the receiver.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dbhelpers import add_run, db_now, schedule_job
from pgcluster import PgCronCluster, free_tcp_port
from receivers import HttpReceiver
from test_faults import wait_until

PASSWORD = "Pw-s3cr3t-4821"
HOOK_TOKEN = "tok-9f8e7d6c5b"
DOWN_TOKEN = "tok-down-77aa31"
SLACK_TOKEN = "T1JJ3TXSE/B1JJ3TZ7S/x8sZ1hZpQk2pBd"
HEARTBEAT_TOKEN = "0b1e8a1c-5d3f-4c8e-9a61-2f0c0ffee123"
SECRETS = (PASSWORD, HOOK_TOKEN, DOWN_TOKEN, SLACK_TOKEN, HEARTBEAT_TOKEN)

RULES = """
[channels.hook]
urls = ["json://watch:{hook_token}@127.0.0.1:{hook_port}/alerts",
        "json://watch:{down_token}@127.0.0.1:{down_port}/alerts"]

[defaults]
notify = ["hook"]

[[rules]]
name = "job failing"
kind = "failure_ratio"
window = "1h"
threshold = 0.5
min_runs = 1
"""


@pytest.fixture
def own_cluster() -> Iterator[PgCronCluster]:
    with PgCronCluster() as cluster:
        yield cluster


def test_no_secret_in_logs_or_messages(own_cluster: PgCronCluster,
                                       http_receiver: HttpReceiver, tmp_path: Path) -> None:
    dsn = own_cluster.create_role("leak_probe", PASSWORD)
    with own_cluster.connect() as conn:
        conn.execute("ALTER ROLE leak_probe SUPERUSER")
        jobid = schedule_job(conn, "sync-orders")
        add_run(conn, jobid, "failed", db_now(conn) - timedelta(minutes=1),
                message="ERROR:  boom")

    rules = tmp_path / "rules.toml"
    valid = RULES.format(hook_token=HOOK_TOKEN, hook_port=http_receiver.port,
                         down_token=DOWN_TOKEN, down_port=free_tcp_port())
    rules.write_text(valid)
    log_path = tmp_path / "run.log"
    env = {
        **os.environ,
        "WATCHDOG_DATABASE_URL": dsn,
        "WATCHDOG_RULES_FILE": str(rules),
        "WATCHDOG_STATE_PATH": str(tmp_path / "state.sqlite3"),
        "WATCHDOG_HTTP_ADDR": "",
        "WATCHDOG_HEARTBEAT_URL": f"http://127.0.0.1:{free_tcp_port()}/ping/{HEARTBEAT_TOKEN}",
        "WATCHDOG_LOG_LEVEL": "DEBUG",
        "WATCHDOG_OUTAGE_AFTER": "2",
    }
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "watchdog.cli", "run", "--poll-interval", "1"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )

        def log_has(text: str) -> bool:
            return text in log_path.read_text()

        try:
            # The job alert reaches the receiver; the second URL fails and is retried.
            http_receiver.wait_for(1, timeout=30)
            http_receiver.status = 500
            wait_until(lambda: log_has("will be retried"), 30, "a retry")
            http_receiver.status = 200

            # An invalid edit with a token in a bad URL, then the valid file again.
            broken = valid.replace("json://watch:", "bogus://watch:", 1)
            rules.write_text(broken.replace("[defaults]", f'[channels.chat]\nurls = ["slack://{SLACK_TOKEN}/#"]\n\n[defaults]'))
            wait_until(lambda: log_has("rules reload:"), 30, "the invalid rules")
            rules.write_text(valid)
            wait_until(lambda: log_has("rules reloaded"), 30, "the valid rules")

            # An outage long enough to alert, then recovery.
            own_cluster.stop_server()
            wait_until(lambda: log_has("watchdog alert database_unreadable is firing"), 60,
                       "the outage alert")
            own_cluster.start_server()
            wait_until(lambda: log_has("database_unreadable on"), 60, "the resolve")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)

    output = log_path.read_text()
    bodies = [request.body.decode() for request in http_receiver.requests]
    titles = " ".join(bodies)
    assert "cannot read pg_cron" in titles
    assert "invalid rules file" in titles
    assert len(output.splitlines()) > 20
    for secret in SECRETS:
        assert secret not in output, f"{secret} in the log"
        for body in bodies:
            assert secret not in body, f"{secret} in a message"
