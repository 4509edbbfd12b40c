"""Checks that the test cluster and the notification receivers work as the other tests expect."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import apprise
import psycopg
import pytest
from pgcluster import PgCronCluster
from psycopg.rows import TupleRow
from receivers import HttpReceiver, SmtpReceiver

Connection = psycopg.Connection[TupleRow]

# pg_cron 1.4 schedules at minute granularity, so a '* * * * *' job runs within 60 s.
CRON_RUN_TIMEOUT_SECONDS = 75


def test_cluster_has_pg_cron(pg: Connection) -> None:
    row = pg.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'").fetchone()

    assert row is not None, "pg_cron extension is missing from database postgres"
    assert str(row[0]).startswith("1.")


def test_cluster_runs_cron_scheduler(pg: Connection) -> None:
    row = pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'"
    ).fetchone()

    assert row == (1,)


def test_cluster_cron_settings(pg: Connection) -> None:
    rows = pg.execute(
        "SELECT name, setting FROM pg_settings"
        " WHERE name IN ('cron.host', 'cron.database_name', 'cron.use_background_workers')"
    ).fetchall()
    settings = {str(name): str(setting) for name, setting in rows}

    assert settings["cron.host"] == "127.0.0.1"
    assert settings["cron.database_name"] == "postgres"
    assert settings["cron.use_background_workers"] == "off"


def test_run_details_accept_chosen_timestamps(pg: Connection) -> None:
    start = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    rows = [
        (9001, 12, 4242, "postgres", "postgres", "SELECT 1", "succeeded", "1 row", start,
         start + timedelta(seconds=2)),
        (9002, 12, 4243, "postgres", "postgres", "SELECT 1/0", "failed",
         "ERROR:  division by zero", start + timedelta(minutes=1), None),
    ]  # fmt: skip

    with pg.cursor() as cur:
        cur.executemany(
            "INSERT INTO cron.job_run_details (runid, jobid, job_pid, database, username,"
            " command, status, return_message, start_time, end_time)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    stored = pg.execute(
        "SELECT runid, jobid, job_pid, database, username, command, status, return_message,"
        " start_time, end_time FROM cron.job_run_details ORDER BY runid"
    ).fetchall()

    assert stored == rows


def test_pg_schedules_job(pg: Connection) -> None:
    row = pg.execute("SELECT cron.schedule('infra-check', '*/5 * * * *', 'SELECT 1')").fetchone()
    assert row is not None

    job = pg.execute(
        "SELECT jobname, schedule, command, active FROM cron.job WHERE jobid = %s", (row[0],)
    ).fetchone()

    assert job == ("infra-check", "*/5 * * * *", "SELECT 1", True)


def test_pg_starts_without_jobs(pg: Connection) -> None:
    # The `pg` fixture of the test above removes the job it scheduled.
    jobs = pg.execute("SELECT count(*) FROM cron.job").fetchone()
    runs = pg.execute("SELECT count(*) FROM cron.job_run_details").fetchone()

    assert jobs == (0,)
    assert runs == (0,)


def test_create_role_returns_working_dsn(pg_cluster: PgCronCluster) -> None:
    name = f"watchdog_{uuid.uuid4().hex[:8]}"

    dsn = pg_cluster.create_role(name, "secret:/@pass")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_user, rolsuper FROM pg_roles"
                           " WHERE rolname = current_user").fetchone()  # fmt: skip

    assert row == (name, False)


def test_restart_changes_postmaster_start_time(pg: Connection, pg_cluster: PgCronCluster) -> None:
    before = pg.execute("SELECT pg_postmaster_start_time()").fetchone()

    pg_cluster.restart()
    with pg_cluster.connect() as conn:
        after = conn.execute("SELECT pg_postmaster_start_time()").fetchone()

    assert before is not None
    assert after is not None
    assert after[0] > before[0]


def test_apprise_json_reaches_http_receiver(http_receiver: HttpReceiver) -> None:
    notifier = apprise.Apprise()
    assert notifier.add(http_receiver.json_url("/hook"))

    sent = notifier.notify(
        title="pg_cron alert", body="job 7 failed", body_format=apprise.NotifyFormat.TEXT
    )
    [request] = http_receiver.wait_for(1)

    # apprise 2.3.0 returns an AppriseResult that is truthy only on success, not a bool.
    assert sent
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json["title"] == "pg_cron alert"
    assert request.json["message"] == "job 7 failed"


def test_http_receiver_error_status_fails_send(http_receiver: HttpReceiver) -> None:
    http_receiver.status = 500
    notifier = apprise.Apprise()
    assert notifier.add(http_receiver.json_url())

    sent = notifier.notify(title="t", body="b")

    assert not sent
    assert len(http_receiver.wait_for(1)) >= 1


def test_apprise_email_reaches_smtp_receiver(smtp_receiver: SmtpReceiver) -> None:
    notifier = apprise.Apprise()
    assert notifier.add(smtp_receiver.apprise_url("ops@example.com"))

    sent = notifier.notify(
        title="pg_cron alert: nightly-vacuum",
        body="Job nightly-vacuum failed: ERROR:  canceling statement due to statement timeout",
        body_format=apprise.NotifyFormat.TEXT,
    )
    [received] = smtp_receiver.wait_for(1)

    assert sent
    assert received.envelope_from == "watchdog@example.com"
    assert received.envelope_to == ["ops@example.com"]
    assert "ops@example.com" in received.to_header
    assert received.subject == "pg_cron alert: nightly-vacuum"
    assert received.text is not None
    assert "ERROR:  canceling statement due to statement timeout" in received.text


@pytest.mark.e2e
def test_pg_cron_runs_scheduled_jobs(pg: Connection) -> None:
    pg.execute("SELECT cron.schedule('infra-ok', '* * * * *', 'SELECT 1')")
    pg.execute("SELECT cron.schedule('infra-fail', '* * * * *', 'SELECT 1/0')")

    deadline = time.monotonic() + CRON_RUN_TIMEOUT_SECONDS
    finished: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        rows = pg.execute(
            "SELECT j.jobname, d.status, d.return_message FROM cron.job_run_details d"
            " JOIN cron.job j USING (jobid) WHERE d.status IN ('succeeded', 'failed')"
        ).fetchall()
        finished = {name: (status, message) for name, status, message in rows}
        if len(finished) == 2:
            break
        time.sleep(1)

    assert finished.get("infra-ok") == ("succeeded", "1 row")
    assert finished.get("infra-fail", ("", ""))[0] == "failed"
    assert "division by zero" in finished["infra-fail"][1]
