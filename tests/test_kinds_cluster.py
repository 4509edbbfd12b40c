"""The new rule kinds against the real pg_cron cluster."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from pgcluster import PgCronCluster

from watchdog import cluster as cluster_module
from watchdog.kinds import scheduler as scheduler_kinds
from watchdog.loop import CycleResult, Worker
from watchdog.models import SCHEDULER_JOBID
from watchdog.purge import purge_run_history
from watchdog.rules import RuleSet, parse_rules
from watchdog.snapshot import ClusterReads, take_snapshot
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]

# pg_net cannot be installed in the test cluster, so the tests create a table with
# the column names and types of pg_net's own net._http_response instead.
PG_NET_TABLE = """
CREATE SCHEMA net;
CREATE UNLOGGED TABLE net._http_response (
    id bigint, status_code integer, content_type text, headers jsonb, content text,
    timed_out bool, error_msg text, created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON net._http_response (created);
"""


def rules(text: str) -> RuleSet:
    return parse_rules(text, "rules.toml", {})


def cycle(dsn: str, ruleset: RuleSet, state: Path) -> CycleResult:
    store = StateStore(state)
    source = PgSource(dsn)
    try:
        return Worker(ruleset, store, source).cycle()
    finally:
        source.close()
        store.close()


def firing(result: CycleResult) -> dict[tuple[str, int], Any]:
    return {(record.rule, record.jobid): record for record in result.firing}


def verdict_of(result: CycleResult, rule: str) -> dict[str, Any]:
    [record] = [r for r in result.firing if r.rule == rule]
    return record.verdict


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let every test see the warnings that are logged once per process."""
    monkeypatch.setattr(cluster_module, "_warned_settings", set())
    monkeypatch.setattr(scheduler_kinds, "_warned_no_pg_net", set())


def test_run_history_size_from_catalog(pg: Conn, pg_cluster: PgCronCluster,
                                       tmp_path: Path) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    for minute in range(5):
        add_run(pg, jobid, started=now - timedelta(minutes=minute + 1))
    ruleset = rules('[[rules]]\nname = "history"\nkind = "run_history_size"\nmax_rows = 3\n')

    # Never analyzed: reltuples is -1, so the runid range is used instead.
    first = cycle(pg_cluster.dsn, ruleset, tmp_path / "a.sqlite3")
    facts = verdict_of(first, "history")["facts"]
    assert facts["rows_source"] == "runid_span"
    assert facts["rows"] == 5
    assert facts["bytes"] > 0

    pg.execute("ANALYZE cron.job_run_details")
    second = cycle(pg_cluster.dsn, ruleset, tmp_path / "b.sqlite3")
    facts = verdict_of(second, "history")["facts"]
    assert facts["rows_source"] == "reltuples"
    assert facts["rows"] == 5

    near_miss = rules('[[rules]]\nname = "history"\nkind = "run_history_size"\nmax_rows = 5\n')
    assert cycle(pg_cluster.dsn, near_miss, tmp_path / "c.sqlite3").firing == []


def test_scheduler_seen_by_role_without_privileges(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # pg_stat_activity hides backend_type of other roles' sessions, but not
    # application_name; pg_settings hides every cron.* setting from this role.
    dsn = pg_cluster.create_role("cron_reader", "reader-password")
    try:
        pg.execute("GRANT USAGE ON SCHEMA cron TO cron_reader")
        with psycopg.connect(dsn, autocommit=True) as own:
            own.execute("SELECT cron.schedule('reader-job', '0 0 1 1 *', 'SELECT 1')")
        ruleset = rules('[[rules]]\nname = "down"\nkind = "scheduler_down"\n'
                        '[[rules]]\nname = "full"\nkind = "concurrency_saturated"\n')
        store = StateStore(tmp_path / "state.sqlite3")
        source = PgSource(dsn)
        with caplog.at_level(logging.WARNING):
            snap = take_snapshot(source, store, timedelta(hours=1), None,
                                 ClusterReads.for_rules(ruleset, 16))
            take_snapshot(source, store, timedelta(hours=1), None,
                          ClusterReads.for_rules(ruleset, 16))
        source.close()
        store.close()
    finally:
        pg.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE username = 'cron_reader'")
        pg.execute("REVOKE USAGE ON SCHEMA cron FROM cron_reader")
        pg.execute("DROP ROLE cron_reader")

    assert snap.scheduler is not None
    assert snap.scheduler.processes == 1
    assert snap.scheduler.max_running_jobs == 16
    assert snap.scheduler.max_running_jobs_configured
    warnings = [r.getMessage() for r in caplog.records if "cron.max_running_jobs" in r.getMessage()]
    assert len(warnings) == 1
    assert "pg_read_all_settings" in warnings[0]
    assert "WATCHDOG_MAX_RUNNING_JOBS" in warnings[0]


def test_superuser_reads_max_running_jobs(pg: Conn, pg_cluster: PgCronCluster,
                                          tmp_path: Path) -> None:
    schedule_job(pg, "sync-orders")
    ruleset = rules('[[rules]]\nname = "down"\nkind = "scheduler_down"\n')
    store = StateStore(tmp_path / "state.sqlite3")
    source = PgSource(pg_cluster.dsn)
    try:
        snap = take_snapshot(source, store, timedelta(hours=1), None,
                             ClusterReads.for_rules(ruleset))
    finally:
        source.close()
        store.close()
    assert snap.scheduler is not None
    assert snap.scheduler.max_running_jobs == 32
    assert not snap.scheduler.max_running_jobs_configured


@pytest.fixture
def pg_net_table(pg: Conn) -> Iterator[None]:
    pg.execute(PG_NET_TABLE)
    try:
        yield
    finally:
        pg.execute("DROP SCHEMA net CASCADE")


HTTP_RULES = """
[[rules]]
name = "edge calls"
kind = "http_failures"
window = "1h"
min_count = 2
"""


def test_http_failures_read_from_net_http_response(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path, pg_net_table: None
) -> None:
    schedule_job(pg, "call-sync")
    pg.execute(
        "INSERT INTO net._http_response (id, status_code, content, timed_out, error_msg, created)"
        " VALUES (310, 200, 'ok', false, NULL, now() - interval '3 minutes'),"
        " (311, NULL, NULL, true, 'Timeout was reached', now() - interval '2 minutes'),"
        " (312, 401, '{\"msg\":\"Invalid JWT\"}', false, NULL, now() - interval '1 minute'),"
        " (200, 500, 'old', false, NULL, now() - interval '2 hours')"
    )
    state = tmp_path / "state.sqlite3"
    result = cycle(pg_cluster.dsn, rules(HTTP_RULES), state)
    facts = verdict_of(result, "edge calls")["facts"]
    assert facts["failed"] == 2
    assert facts["total"] == 3
    assert facts["last_status"] == 401
    assert facts["last_body"] == '{"msg":"Invalid JWT"}'
    assert result.firing[0].jobid == SCHEDULER_JOBID

    pg.execute("DELETE FROM net._http_response WHERE id = 312")
    resolved = cycle(pg_cluster.dsn, rules(HTTP_RULES), state)
    assert [event.state for event in resolved.events] == ["resolved"]


def test_http_failures_skipped_without_pg_net(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    schedule_job(pg, "call-sync")
    state = tmp_path / "state.sqlite3"
    with caplog.at_level(logging.WARNING):
        first = cycle(pg_cluster.dsn, rules(HTTP_RULES), state)
        cycle(pg_cluster.dsn, rules(HTTP_RULES), state)
    assert first.firing == []
    warnings = [r for r in caplog.records if "pg_net is not installed" in r.getMessage()]
    assert len(warnings) == 1


DRIFT_RULES = '[[rules]]\nname = "drift"\nkind = "job_drift"\njobs = ["nightly-*"]\n'


def test_job_drift_on_real_alter_and_unschedule(pg: Conn, pg_cluster: PgCronCluster,
                                                tmp_path: Path) -> None:
    jobid = schedule_job(pg, "nightly-export", "0 3 * * *")
    schedule_job(pg, "nightly-vacuum", "0 4 * * *")
    state = tmp_path / "state.sqlite3"
    assert cycle(pg_cluster.dsn, rules(DRIFT_RULES), state).firing == []

    pg.execute("SELECT cron.alter_job(%s, schedule := '*/5 * * * *', active := false)", (jobid,))
    pg.execute("SELECT cron.unschedule('nightly-vacuum')")
    drifted = cycle(pg_cluster.dsn, rules(DRIFT_RULES), state)
    changes = sorted(record.verdict["facts"]["changes"] for record in drifted.firing)
    assert changes == ["schedule,active", "unscheduled"]

    pg.execute("SELECT cron.alter_job(%s, schedule := '0 3 * * *', active := true)", (jobid,))
    restored = cycle(pg_cluster.dsn, rules(DRIFT_RULES), state)
    assert [(e.job_label, e.state) for e in restored.events] == [("nightly-export", "resolved")]
    assert [record.verdict["job_label"] for record in restored.firing] == ["nightly-vacuum"]


def test_purge_removes_only_old_rows(pg: Conn, pg_cluster: PgCronCluster) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    old = [add_run(pg, jobid, "succeeded", now - timedelta(days=days)) for days in (10, 9, 8)]
    old.append(add_run(pg, jobid, "failed", now - timedelta(days=8), message="server restarted"))
    # Left in flight before the server started: abandoned, so old enough to purge.
    old.append(add_run(pg, jobid, "connecting", now - timedelta(days=8), seconds=None))
    recent = [add_run(pg, jobid, "succeeded", now - timedelta(days=days)) for days in (6, 1, 0)]

    preview = purge_run_history(pg_cluster.dsn, timedelta(days=7), dry_run=True)
    assert preview.deleted == len(old)
    assert pg.execute("SELECT count(*) FROM cron.job_run_details").fetchone() == (8,)

    result = purge_run_history(pg_cluster.dsn, timedelta(days=7), batch_rows=2)
    assert result.deleted == len(old)
    assert result.batches == 3
    assert result.boundary == recent[0]
    left = [row[0] for row in pg.execute("SELECT runid FROM cron.job_run_details ORDER BY runid")]
    assert left == recent


def test_purge_keeps_run_in_flight_since_start(pg: Conn, pg_cluster: PgCronCluster) -> None:
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    row = pg.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    uptime = now - row[0]
    # Both runs are older than `keep`, but the running one started after the server did.
    running = add_run(pg, jobid, "running", now - uptime / 2, seconds=None)
    done = add_run(pg, jobid, "succeeded", now - uptime / 2)
    newest = add_run(pg, jobid, "succeeded", now)
    result = purge_run_history(pg_cluster.dsn, uptime / 4)
    assert result.deleted == 1
    left = [row[0] for row in pg.execute("SELECT runid FROM cron.job_run_details ORDER BY runid")]
    assert left == [running, newest]
    assert done not in left


def test_scheduler_down_without_pg_cron_preloaded(tmp_path: Path) -> None:
    """A cluster restarted without pg_cron in shared_preload_libraries keeps the cron
    schema but has no scheduler: scheduler_down fires and missing_run is suppressed."""
    with PgCronCluster() as cluster, cluster.connect() as conn:
        # The slot minute lies 5 minutes back, so pg_cron does not run the jobs meanwhile.
        minute = (db_now(conn).minute - 5) % 60
        jobs = [schedule_job(conn, name, f"{minute} * * * *") for name in ("sync-a", "sync-b")]
        for jobid in jobs:
            add_run(conn, jobid, started=db_now(conn) - timedelta(hours=2))
        ruleset = rules(
            '[[rules]]\nname = "down"\nkind = "scheduler_down"\n'
            '[[rules]]\nname = "missing"\nkind = "missing_run"\ngrace = "1m"\n'
        )

        running = cycle(cluster.dsn, ruleset, tmp_path / "up.sqlite3")
        assert sorted(firing(running)) == [("missing", jobs[0]), ("missing", jobs[1])]

        # A later line of postgresql.conf overrides the earlier one.
        with (cluster.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("shared_preload_libraries = ''\n")
        cluster.restart()

        down = cycle(cluster.dsn, ruleset, tmp_path / "down.sqlite3")
        assert sorted(firing(down)) == [("down", SCHEDULER_JOBID)]
        facts = verdict_of(down, "down")["facts"]
        assert facts["reason"] == "no_process"
        assert facts["suppressed"] == 2
        assert facts["suppressed_jobs"] == "sync-a, sync-b"


def sleeping_run(conn: Conn, jobid: int, timeout: float = 75.0) -> tuple[int, int]:
    """Wait until pg_cron starts the job; return its (runid, job_pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT runid, job_pid FROM cron.job_run_details WHERE jobid = %s"
            " AND status = 'running'", (jobid,),
        ).fetchone()
        if row is not None:
            return int(row[0]), int(row[1])
        time.sleep(0.5)
    raise AssertionError(f"pg_cron did not start job {jobid} within {timeout}s")


@pytest.mark.e2e
def test_stuck_run_reports_real_pg_sleep(pg: Conn, pg_cluster: PgCronCluster,
                                         tmp_path: Path) -> None:
    jobid = schedule_job(pg, "slow-report", "* * * * *", "SELECT pg_sleep(600)")
    ruleset = rules('[[rules]]\nname = "stuck"\nkind = "stuck_run"\nmax_runtime = "3s"\n')
    state = tmp_path / "state.sqlite3"
    runid, pid = sleeping_run(pg, jobid)
    try:
        # The job stays active: deactivating it would make pg_cron cancel the run.
        # pg_cron never overlaps a job with itself, so no second run starts meanwhile.
        time.sleep(4)
        result = cycle(pg_cluster.dsn, ruleset, state)
        verdict = verdict_of(result, "stuck")
        assert verdict["facts"]["runid"] == runid
        assert verdict["facts"]["status"] == "running"
        assert verdict["facts"]["runtime_seconds"] > 3
        assert verdict["evidence"] == [runid]
    finally:
        pg.execute("SELECT pg_terminate_backend(%s)", (pid,))


ALL_KINDS = """
[[rules]]
name = "ratio{n}"
kind = "failure_ratio"
threshold = 0.5
[[rules]]
name = "streak{n}"
kind = "consecutive_failures"
[[rules]]
name = "stuck{n}"
kind = "stuck_run"
max_runtime = "10m"
[[rules]]
name = "match{n}"
kind = "error_match"
pattern = "deadlock"
[[rules]]
name = "slower{n}"
kind = "duration_regression"
[[rules]]
name = "drift{n}"
kind = "job_drift"
[[rules]]
name = "infra{n}"
kind = "infrastructure_failures"
[[rules]]
name = "down{n}"
kind = "scheduler_down"
[[rules]]
name = "full{n}"
kind = "concurrency_saturated"
[[rules]]
name = "history{n}"
kind = "run_history_size"
max_rows = 1000000
[[rules]]
name = "http{n}"
kind = "http_failures"
window = "{n}h"
"""


def count_queries(dsn: str, ruleset: RuleSet, state: Path,
                  monkeypatch: pytest.MonkeyPatch) -> int:
    executed: list[str] = []
    original = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        executed.append(str(query))
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    try:
        cycle(dsn, ruleset, state)
    finally:
        monkeypatch.setattr(psycopg.Cursor, "execute", original)
    return len(executed)


def test_queries_per_cycle_do_not_grow_with_rules(
    pg: Conn, pg_cluster: PgCronCluster, tmp_path: Path, pg_net_table: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    add_run(pg, jobid, started=db_now(pg) - timedelta(minutes=1))
    base = rules('[[rules]]\nname = "ratio"\nkind = "failure_ratio"\nthreshold = 0.5\n')
    one_each = rules(ALL_KINDS.format(n=1))
    three_each = rules("".join(ALL_KINDS.format(n=n) for n in (1, 2, 3)))

    # A first cycle per state file finds the window start; compare second cycles.
    counts = []
    for name, ruleset in (("base", base), ("one", one_each), ("three", three_each)):
        state = tmp_path / f"{name}.sqlite3"
        cycle(pg_cluster.dsn, ruleset, state)
        counts.append(count_queries(pg_cluster.dsn, ruleset, state, monkeypatch))
    base_count, one_count, three_count = counts
    # One query for the scheduler and catalog facts, one for net._http_response.
    assert one_count == base_count + 2
    assert three_count == one_count
