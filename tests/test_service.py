"""The long-running service: outage alerts, rule reloads, statement timeouts, health."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from factories import FAILING_JOB_DEFAULT_RULES
from pgcluster import PgCronCluster, free_tcp_port
from prometheus_client import generate_latest
from receivers import HttpReceiver

from watchdog import selfalerts
from watchdog.errors import SourceError
from watchdog.health import Health, HealthServer, Heartbeat, Metrics
from watchdog.loop import Worker, hold_unread_slots
from watchdog.models import Verdict
from watchdog.rules import load_rules
from watchdog.service import Service
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]



def make_service(dsn: str, rules_path: Path, state_path: Path, *, outage_after: int = 3,
                 statement_timeout: float = 15.0) -> Service:
    source = PgSource(dsn, connect_timeout=2, statement_timeout=statement_timeout)
    worker = Worker(load_rules(rules_path), StateStore(state_path), source)
    return Service(worker, rules_path, outage_after, Health(1.0), Metrics())


def close(service: Service) -> None:
    service.worker.source.close()
    service.store.close()


@pytest.fixture
def rules_path(tmp_path: Path, http_receiver: HttpReceiver) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(FAILING_JOB_DEFAULT_RULES.format(hook=http_receiver.json_url("/alerts")))
    return path


@pytest.fixture
def own_cluster() -> Iterator[PgCronCluster]:
    """A cluster of the test's own, which the test may stop and start."""
    with PgCronCluster() as cluster:
        yield cluster


def fail_job(conn: Conn, name: str) -> int:
    jobid = schedule_job(conn, name)
    add_run(conn, jobid, "failed", db_now(conn) - timedelta(minutes=1), message="ERROR:  boom")
    return jobid


def tick_until(service: Service, done: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        service.tick()
        time.sleep(0.3)


def test_outage_alert_once_then_resolve(own_cluster: PgCronCluster, rules_path: Path,
                                        http_receiver: HttpReceiver, tmp_path: Path) -> None:
    with own_cluster.connect() as conn:
        fail_job(conn, "sync-orders")
    service = make_service(own_cluster.dsn, rules_path, tmp_path / "s.sqlite3")
    try:
        service.tick()
        [job_alert] = http_receiver.wait_for(1)
        assert job_alert.json["type"] == "warning"

        own_cluster.stop_server()
        tick_until(service, lambda: service.failed_polls >= 5)
        requests = http_receiver.wait_for(2)
        outage = requests[1].json
        assert outage["type"] == "failure"
        assert f"cannot read pg_cron on 127.0.0.1:{own_cluster.port}/postgres" in outage["title"]
        assert "cannot connect" in outage["message"]
        assert service.metrics.database_errors._value.get() == 5
        assert len(http_receiver.requests) == 2

        own_cluster.start_server()
        tick_until(service, lambda: len(http_receiver.requests) >= 3)
        for _ in range(2):
            service.tick()
        time.sleep(0.5)
        requests = http_receiver.requests
        firing = [record.rule for record in service.store.alerts(service.worker.target).values()]
    finally:
        close(service)
    assert len(requests) == 3
    assert requests[2].json["type"] == "success"
    assert "reads pg_cron" in requests[2].json["title"]
    # The job alert kept firing through the outage: no resolve, no repeat.
    assert firing == ["job failing"]


def test_short_outage_sends_nothing(own_cluster: PgCronCluster, rules_path: Path,
                                    http_receiver: HttpReceiver, tmp_path: Path) -> None:
    service = make_service(own_cluster.dsn, rules_path, tmp_path / "s.sqlite3")
    with own_cluster.connect() as conn:
        schedule_job(conn, "sync-orders")
    try:
        service.tick()
        own_cluster.stop_server()
        tick_until(service, lambda: service.failed_polls == 2)
        own_cluster.start_server()
        tick_until(service, lambda: service.failed_polls == 0)
    finally:
        close(service)
    assert http_receiver.requests == []


def test_backoff_logs_attempts_masked(caplog: pytest.LogCaptureFixture) -> None:
    dsn = f"postgresql://watch:hunter2@127.0.0.1:{free_tcp_port()}/postgres"
    source = PgSource(dsn, connect_timeout=2)
    with caplog.at_level(logging.WARNING, logger="watchdog.source"):
        for _ in range(3):
            with pytest.raises(SourceError), source.read_transaction():
                pass
            time.sleep(source._next_attempt - time.monotonic() + 0.01)
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split("(attempt ")[1][0] for line in lines] == ["1", "2", "3"]
    assert all("postgresql://watch:***@127.0.0.1" in line for line in lines)
    assert not any("hunter2" in line for line in lines)


def test_backoff_delay_doubles_with_jitter() -> None:
    source = PgSource(f"postgresql://watch@127.0.0.1:{free_tcp_port()}/postgres")
    delays = []
    for _ in range(8):
        before = time.monotonic()
        source._schedule_retry("connection refused")
        delays.append(source._next_attempt - before)
    for attempt, delay in enumerate(delays, start=1):
        cap = min(2 ** (attempt - 1), 60)
        assert cap * 0.5 <= delay <= cap + 0.01


def test_statement_timeout_under_lock(pg: Conn, pg_cluster: PgCronCluster, rules_path: Path,
                                      tmp_path: Path) -> None:
    fail_job(pg, "sync-orders")
    service = make_service(pg_cluster.dsn, rules_path, tmp_path / "s.sqlite3",
                           statement_timeout=1)
    locker = pg_cluster.connect()
    try:
        locker.autocommit = False
        locker.execute("LOCK TABLE cron.job IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(SourceError, match="timed out after 1s"):
            service.worker.cycle()
        assert time.monotonic() - started < 5
        locker.rollback()
        result = service.worker.cycle()
    finally:
        locker.close()
        close(service)
    assert [job.jobname for job in result.snapshot.jobs.values()] == ["sync-orders"]


def test_invalid_rules_keep_last_valid_and_alert_once(
    pg: Conn, pg_cluster: PgCronCluster, rules_path: Path, http_receiver: HttpReceiver,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    fail_job(pg, "sync-orders")
    service = make_service(pg_cluster.dsn, rules_path, tmp_path / "s.sqlite3")
    valid = rules_path.read_text()
    try:
        service.tick()
        http_receiver.wait_for(1)
        original = service.worker.rules

        rules_path.write_text(valid.replace("threshold = 0.5", "threshold = 2\nwindw = 1"))
        with caplog.at_level(logging.ERROR, logger="watchdog.service"):
            service.tick()
            service.tick()
        assert service.worker.rules is original
        problems = [r.getMessage() for r in caplog.records if "rules reload:" in r.getMessage()]
        assert len(problems) == 2
        [_, invalid] = http_receiver.wait_for(2)
        assert invalid.json["title"] == "cron-watchdog: invalid rules file"
        assert "unknown key 'windw'" in invalid.json["message"]
        assert str(rules_path) in invalid.json["message"]

        # A valid file without the rule: its alert resolves quietly.
        rules_path.write_text(valid.split("[[rules]]")[0])
        service.tick()
        [*_, fixed] = http_receiver.wait_for(3)
        time.sleep(0.5)
        count = len(http_receiver.requests)
        alerts = service.store.alerts(service.worker.target)
    finally:
        close(service)
    assert fixed.json["title"] == "cron-watchdog: rules file is valid again"
    assert fixed.json["type"] == "success"
    assert count == 3
    assert alerts == {}


def test_reload_on_request_with_same_content(pg: Conn, pg_cluster: PgCronCluster,
                                            rules_path: Path, tmp_path: Path) -> None:
    schedule_job(pg, "sync-orders")
    service = make_service(pg_cluster.dsn, rules_path, tmp_path / "s.sqlite3")
    try:
        before = service.worker.rules
        service.tick()
        assert service.worker.rules is before
        service.reload_requested.set()
        service.tick()
        after = service.worker.rules
    finally:
        close(service)
    assert after is not before
    assert after == before


def test_invalid_rules_alert_resolves_after_restart(
    pg: Conn, pg_cluster: PgCronCluster, rules_path: Path, http_receiver: HttpReceiver,
    tmp_path: Path,
) -> None:
    schedule_job(pg, "sync-orders")
    state = tmp_path / "s.sqlite3"
    service = make_service(pg_cluster.dsn, rules_path, state)
    selfalerts.fire(service.store, service.worker.target, service.worker.rules,
                    selfalerts.RULES_INVALID, "rules.toml: invalid TOML", datetime.now(UTC))
    close(service)

    restarted = make_service(pg_cluster.dsn, rules_path, state)
    try:
        restarted.tick()
        restarted.tick()
        firing = selfalerts.firing_self_alerts(restarted.store, restarted.worker.target)
    finally:
        close(restarted)
    # The firing message queued by the earlier process goes out first, then the resolve.
    [queued, request] = http_receiver.wait_for(2)
    assert queued.json["title"] == "cron-watchdog: invalid rules file"
    assert request.json["title"] == "cron-watchdog: rules file is valid again"
    assert firing == []


def test_hold_unread_slots_only_new_missing_runs() -> None:
    start = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    end = start + timedelta(minutes=30)

    def verdict(rule: str, jobid: int, expected: datetime, kind: str = "missing_run") -> Verdict:
        return Verdict(rule, kind, jobid, f"job {jobid}", True, 1.0,
                       {"expected_at": expected.isoformat()})

    verdicts = [
        verdict("stopped", 1, start + timedelta(minutes=10)),
        verdict("stopped", 2, start + timedelta(minutes=10)),
        verdict("stopped", 3, end + timedelta(minutes=1)),
        verdict("failing", 4, start + timedelta(minutes=10), kind="failure_ratio"),
    ]
    held = hold_unread_slots(verdicts, (start, end), {("stopped", 2)})
    assert [v.firing for v in held] == [False, True, True, True]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_server_reports_cycles_and_metrics(
    pg: Conn, pg_cluster: PgCronCluster, rules_path: Path, http_receiver: HttpReceiver,
    tmp_path: Path,
) -> None:
    fail_job(pg, "sync-orders")
    service = make_service(pg_cluster.dsn, rules_path, tmp_path / "s.sqlite3")
    address = f"127.0.0.1:{free_tcp_port()}"
    server = HealthServer(address, service.health, service.metrics).start()
    try:
        status, body = get(f"http://{address}/healthz")
        assert status == 503
        assert json.loads(body)["status"] == "starting"

        service.tick()
        http_receiver.wait_for(1)
        status, body = get(f"http://{address}/healthz")
        assert status == 200
        assert json.loads(body)["status"] == "ok"

        status, metrics = get(f"http://{address}/metrics")
        text = metrics.decode()
        service.health.poll_interval = 0.01
        time.sleep(0.1)
        stale, _ = get(f"http://{address}/healthz")
    finally:
        server.stop()
        close(service)
    assert status == 200
    assert 'cron_watchdog_notifications_total{channel="hook",outcome="sent"} 1.0' in text
    assert ('cron_watchdog_alerts{rule="job failing",severity="warning",state="firing"} 1.0'
            in text)
    assert "cron_watchdog_cycle_duration_seconds_count" in text
    assert "cron_watchdog_rows_read_total 2.0" in text
    assert str(http_receiver.port) not in text
    assert stale == 503


def test_heartbeat_pings_and_rate_limits_failures(
    http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    heartbeat = Heartbeat(http_receiver.url("/ping/5e1d4c2b-secret"))
    heartbeat.ping()
    heartbeat.join(5)
    assert http_receiver.wait_for(1)[0].path == "/ping/5e1d4c2b-secret"

    http_receiver.status = 500
    with caplog.at_level(logging.WARNING, logger="watchdog.health"):
        for _ in range(3):
            heartbeat.ping()
            heartbeat.join(5)
    http_receiver.wait_for(4)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1
    assert "HTTP 500" in lines[0]
    assert "secret" not in lines[0]


def test_heartbeat_never_delays_caller() -> None:
    # A socket that accepts connections but never responds.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    heartbeat = Heartbeat(f"http://127.0.0.1:{silent.getsockname()[1]}/ping", timeout=3)
    try:
        started = time.monotonic()
        heartbeat.ping()
        heartbeat.ping()
        elapsed = time.monotonic() - started
    finally:
        heartbeat.join(5)
        silent.close()
    assert elapsed < 0.5


def test_self_alert_texts_in_russian() -> None:
    since = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    title, body = selfalerts.render(
        selfalerts.DATABASE_UNREADABLE, "ru", firing=False, target="db:5432/postgres",
        detail="x", since=since, now=since + timedelta(minutes=5),
    )
    assert title == "cron-watchdog снова читает pg_cron на db:5432/postgres"
    assert "5" in body


def test_metrics_count_pending_alerts_and_remediation(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAILING_JOB_DEFAULT_RULES.format(hook=http_receiver.json_url("/alerts")) + """
remediate = { action = "pause" }

[[rules]]
name = "job failing for long"
kind = "failure_ratio"
window = "1h"
threshold = 0.5
min_runs = 1
for = "1h"
""")
    fail_job(pg, "sync-orders")
    service = make_service(pg_cluster.dsn, rules, tmp_path / "s.sqlite3")
    try:
        service.tick()
        text = generate_latest(service.metrics.registry).decode()
    finally:
        close(service)
    # Remediation mode defaults to dry-run: the decision is counted, nothing changes.
    assert 'cron_watchdog_remediation_actions_total{outcome="dry_run"} 1.0' in text
    assert ('cron_watchdog_alerts{rule="job failing for long",severity="warning",'
            'state="pending"} 1.0' in text)


def test_outage_counted_from_first_failed_poll(
    rules_path: Path, tmp_path: Path, http_receiver: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service(f"postgresql://watch@127.0.0.1:{free_tcp_port()}/postgres",
                           rules_path, tmp_path / "s.sqlite3")

    def unreadable() -> Any:
        raise SourceError("cannot connect to 127.0.0.1: connection refused")

    service.worker.cycle = unreadable  # type: ignore[method-assign]
    try:
        first_poll = datetime.now(UTC)
        service.tick()
        time.sleep(1.2)
        service.tick()
        time.sleep(1.2)
        with caplog.at_level(logging.INFO, logger="watchdog.service"):
            service.tick()
        [alert] = selfalerts.firing_self_alerts(service.store, service.worker.target)
    finally:
        close(service)
    assert first_poll <= alert.since < first_poll + timedelta(seconds=1)
    [outage] = http_receiver.wait_for(1)
    assert f"Failing since {alert.since:%Y-%m-%d %H:%M:%S} UTC." in outage.json["message"]
    sent = [r.getMessage() for r in caplog.records if "outside the poll cycle" in r.getMessage()]
    assert sent == ["messages delivered outside the poll cycle: 1 sent, 0 failed, 0 waiting"]


def test_self_alert_times_use_display_timezone() -> None:
    since = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    _, body = selfalerts.render(
        selfalerts.DATABASE_UNREADABLE, "en", firing=True, target="db:5432/postgres",
        detail="x", since=since, now=since + timedelta(minutes=5),
        timezone="Europe/Berlin",
    )
    assert "Failing since 2026-01-01 04:00:00 CET." in body
