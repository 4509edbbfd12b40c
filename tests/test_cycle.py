"""Whole poll cycles against the real cluster, delivering to real local receivers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from pgcluster import PgCronCluster
from receivers import HttpReceiver, SmtpReceiver

from watchdog import outbox
from watchdog.loop import Worker
from watchdog.rules import RuleSet, parse_rules
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]

RULES = """
[channels.hook]
urls = ["{hook}"]

[channels.mail]
urls = ["{mail}"]
locale = "ru"

[[rules]]
name = "sync failing"
kind = "failure_ratio"
jobs = ["sync-*"]
severity = "critical"
notify = ["hook", "mail"]
window = "1h"
threshold = 0.5
min_runs = 3
"""


def make_rules(http: HttpReceiver, smtp: SmtpReceiver) -> RuleSet:
    text = RULES.format(hook=http.json_url("/alerts"), mail=smtp.apprise_url("oncall@example.com"))
    return parse_rules(text, "rules.toml", {})


def cycle(cluster: PgCronCluster, rules: RuleSet, state: Path):  # type: ignore[no-untyped-def]
    """Run one cycle with a fresh worker, as `cron-watchdog once` does."""
    store = StateStore(state)
    source = PgSource(cluster.dsn)
    try:
        return Worker(rules, store, source).cycle()
    finally:
        source.close()
        store.close()


def fail_runs(
    conn: Conn, jobid: int, count: int, message: str = "ERROR:  division by zero"
) -> None:
    now = db_now(conn)
    for minute in range(count):
        add_run(conn, jobid, "failed", now - timedelta(minutes=minute + 1), message=message)


def test_failing_job_alerts_once_then_resolves(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver, tmp_path: Path,
) -> None:
    rules = make_rules(http_receiver, smtp_receiver)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid, 4)

    first = cycle(pg_cluster, rules, state)
    assert [event.state for event in first.events] == ["firing"]
    assert first.delivery.sent == 2
    [request] = http_receiver.wait_for(1)
    assert request.json["type"] == "failure"
    assert "sync-orders" in request.json["title"]
    assert "sync failing" in request.json["title"]
    assert "4/4" in request.json["message"]
    assert "division by zero" in request.json["message"]
    [email] = smtp_receiver.wait_for(1)
    assert "sync-orders" in email.subject
    assert "запуск" in (email.text or "")

    # A second cycle, as after a restart, repeats nothing.
    second = cycle(pg_cluster, rules, state)
    assert second.events == []
    assert len(second.firing) == 1
    assert len(http_receiver.requests) == 1

    now = db_now(pg)
    pg.execute("DELETE FROM cron.job_run_details")
    for minute in range(6):
        add_run(pg, jobid, "succeeded", now - timedelta(seconds=minute))
    third = cycle(pg_cluster, rules, state)
    assert [event.state for event in third.events] == ["resolved"]
    assert third.firing == []
    resolved = http_receiver.wait_for(2)[1]
    assert resolved.json["type"] == "success"


def test_failing_channel_keeps_message_until_delivered(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "FIRST_RETRY", timedelta(0))
    rules = make_rules(http_receiver, smtp_receiver)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid, 3)
    http_receiver.status = 500

    first = cycle(pg_cluster, rules, state)
    # The webhook failed, the email went out regardless.
    assert first.delivery.failed == 1
    assert first.delivery.sent == 1
    assert first.delivery.waiting == 1
    smtp_receiver.wait_for(1)

    http_receiver.status = 200
    second = cycle(pg_cluster, rules, state)
    assert second.delivery.sent == 1
    assert second.delivery.waiting == 0
    delivered = http_receiver.wait_for(2)
    assert delivered[0].json["title"] == delivered[1].json["title"]
    assert len(smtp_receiver.messages) == 1


def test_unscheduled_job_resolves_quietly(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver, tmp_path: Path,
) -> None:
    rules = make_rules(http_receiver, smtp_receiver)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    schedule_job(pg, "sync-other")
    fail_runs(pg, jobid, 3)
    assert len(cycle(pg_cluster, rules, state).firing) == 1

    pg.execute("SELECT cron.unschedule(%s)", (jobid,))
    result = cycle(pg_cluster, rules, state)
    assert result.firing == []
    assert result.events == []
    assert len(http_receiver.wait_for(1)) == 1
