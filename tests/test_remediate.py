"""Remediation against the real pg_cron cluster: actions, reverts, safety checks and restore."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import QUIET_SCHEDULE, add_run, db_now, schedule_job
from pgcluster import PgCronCluster
from receivers import HttpReceiver

from watchdog.errors import RemediationError
from watchdog.jobactions import lock_key
from watchdog.loop import CycleResult, Worker
from watchdog.restore import restore
from watchdog.rules import RuleSet, parse_rules
from watchdog.source import PgSource
from watchdog.state import ActionRecord, StateStore

Conn = psycopg.Connection[Any]

RULES = """
[channels.hook]
urls = ["{hook}"]

{remediation}

[[rules]]
name = "sync failing"
kind = "failure_ratio"
jobs = ["sync-*"]
notify = ["hook"]
window = "1h"
threshold = 0.5
min_runs = 3
remediate = {remediate}
"""

ON = '[remediation]\nmode = "on"'
PAUSE = '{ action = "pause", revert_on_resolve = true }'
RESCHEDULE = '{ action = "reschedule", schedule = "*/5 * * * *", revert_on_resolve = true }'
UNSCHEDULE = '{ action = "unschedule" }'


def make_rules(http: HttpReceiver, remediate: str = PAUSE, remediation: str = ON) -> RuleSet:
    text = RULES.format(hook=http.json_url("/alerts"), remediation=remediation,
                        remediate=remediate)
    return parse_rules(text, "rules.toml", {})


def cycle(dsn: str, rules: RuleSet, state: Path) -> CycleResult:
    """Run one cycle with a fresh worker, as `cron-watchdog once` does."""
    store = StateStore(state)
    source = PgSource(dsn)
    try:
        return Worker(rules, store, source).cycle()
    finally:
        source.close()
        store.close()


def stored_actions(state: Path) -> list[ActionRecord]:
    store = StateStore(state)
    try:
        return store.actions()
    finally:
        store.close()


def job_row(conn: Conn, jobid: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT jobname, schedule, command, database, username, active FROM cron.job"
        " WHERE jobid = %s", (jobid,),
    ).fetchone()


def fail_runs(conn: Conn, jobid: int, count: int = 3) -> None:
    now = db_now(conn)
    for minute in range(count):
        add_run(conn, jobid, "failed", now - timedelta(minutes=minute + 1),
                message="ERROR:  division by zero")


def recover(conn: Conn, jobid: int) -> None:
    """Replace the job's runs by successes, so its failure alert resolves."""
    conn.execute("DELETE FROM cron.job_run_details WHERE jobid = %s", (jobid,))
    now = db_now(conn)
    for second in range(4):
        add_run(conn, jobid, "succeeded", now - timedelta(seconds=second + 1))


@pytest.fixture
def bystander(pg: Conn) -> int:
    """A job that no rule selects, so the role always has at least one visible job."""
    return schedule_job(pg, "keep-me")


def test_pause_and_revert_on_resolve(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)

    first = cycle(pg_cluster.dsn, rules, state)
    assert job_row(pg, jobid) == ("sync-orders", QUIET_SCHEDULE, "SELECT 1", "postgres",
                                  "postgres", False)
    [event] = first.events
    assert event.remediation is not None
    assert event.remediation.outcome == "done"
    [request] = http_receiver.wait_for(1)
    statement = f"SELECT cron.alter_job(job_id := {jobid}, active := false)"
    assert f"Remediation: paused the job with {statement}" in request.json["message"]
    assert f"Undo: cron-watchdog restore {jobid}" in request.json["message"]

    recover(pg, jobid)
    second = cycle(pg_cluster.dsn, rules, state)
    assert [event.state for event in second.events] == ["resolved"]
    assert job_row(pg, jobid) == ("sync-orders", QUIET_SCHEDULE, "SELECT 1", "postgres",
                                  "postgres", True)
    resolved = http_receiver.wait_for(2)[1]
    assert f"SELECT cron.alter_job(job_id := {jobid}, active := true)" in resolved.json["message"]

    resume, pause = stored_actions(state)
    assert (resume.action, resume.outcome, resume.reverts) == ("resume", "done", pause.id)
    assert (pause.action, pause.outcome, pause.reverted_by) == ("pause", "done", resume.id)
    assert pause.before is not None and pause.before.active
    assert pause.after is not None and not pause.after.active


def test_reschedule_and_revert_on_resolve(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, RESCHEDULE)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)

    cycle(pg_cluster.dsn, rules, state)
    row = job_row(pg, jobid)
    assert row is not None
    assert (row[1], row[5]) == ("*/5 * * * *", True)

    recover(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    row = job_row(pg, jobid)
    assert row is not None
    assert (row[1], row[5]) == (QUIET_SCHEDULE, True)
    messages = [request.json["message"] for request in http_receiver.wait_for(2)]
    assert "schedule := '*/5 * * * *'" in messages[0]
    assert f"SELECT cron.alter_job(job_id := {jobid}, schedule := '{QUIET_SCHEDULE}')" in (
        messages[1]
    )


def test_unschedule_then_restore_gives_identical_job(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int, caplog: pytest.LogCaptureFixture,
) -> None:
    rules = make_rules(http_receiver, UNSCHEDULE)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders", command="SELECT 'it''s back'")
    pg.execute("SELECT cron.alter_job(job_id := %s, active := false)", (jobid,))
    pg.execute("SELECT cron.alter_job(job_id := %s, active := true)", (jobid,))
    before = job_row(pg, jobid)
    fail_runs(pg, jobid)

    with caplog.at_level(logging.INFO, logger="watchdog.remediate"):
        cycle(pg_cluster.dsn, rules, state)
    assert job_row(pg, jobid) is None
    [request] = http_receiver.wait_for(1)
    assert f"SELECT cron.unschedule(job_id := {jobid})" in request.json["message"]
    # The definition is flushed to disk before the change; the log keeps the command out.
    [saved] = [json.loads(line) for line in
               Path(f"{state}.unscheduled.jsonl").read_text().splitlines()]
    assert (saved["jobid"], saved["command"]) == (jobid, "SELECT 'it''s back'")
    assert not any("it''s back" in record.getMessage() for record in caplog.records)

    store = StateStore(state)
    source = PgSource(pg_cluster.dsn)
    try:
        preview = restore(store, source, str(jobid), dry_run=True)
        assert "cron.schedule(job_name := 'sync-orders'" in preview
        assert pg.execute("SELECT count(*) FROM cron.job WHERE jobname = 'sync-orders'"
                          ).fetchone() == (0,)

        said = restore(store, source, "sync-orders", dry_run=False)
        again = restore(store, source, "sync-orders", dry_run=False)
    finally:
        source.close()
        store.close()

    row = pg.execute("SELECT jobid FROM cron.job WHERE jobname = 'sync-orders'").fetchone()
    assert row is not None
    new_jobid = row[0]
    assert new_jobid != jobid
    assert job_row(pg, new_jobid) == before
    assert f"as jobid {new_jobid} (was jobid {jobid})" in said
    assert "already undone" in again


def test_restore_does_not_overwrite_recreated_job(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, UNSCHEDULE)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    schedule_job(pg, "sync-orders", "0 3 * * *", "SELECT 2")

    store = StateStore(state)
    source = PgSource(pg_cluster.dsn)
    try:
        with pytest.raises(RemediationError, match="exists already"):
            restore(store, source, str(jobid), dry_run=False)
    finally:
        source.close()
        store.close()
    assert pg.execute("SELECT schedule, command FROM cron.job WHERE jobname = 'sync-orders'"
                      ).fetchone() == ("0 3 * * *", "SELECT 2")


def test_dry_run_changes_nothing(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    # No [remediation] table: the default mode is dry-run.
    rules = make_rules(http_receiver, remediation="")
    assert rules.remediation.mode == "dry-run"
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)

    cycle(pg_cluster.dsn, rules, state)
    row = job_row(pg, jobid)
    assert row is not None and row[5] is True
    [request] = http_receiver.wait_for(1)
    assert ("Remediation (dry-run, nothing changed): would run"
            f" SELECT cron.alter_job(job_id := {jobid}, active := false)"
            in request.json["message"])

    recover(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    row = job_row(pg, jobid)
    assert row is not None and row[5] is True
    outcomes = [(record.action, record.outcome) for record in stored_actions(state)]
    assert outcomes == [("resume", "dry_run"), ("pause", "dry_run")]


def test_cap_skips_actions_with_one_message(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, remediation=ON + "\nmax_actions_per_hour = 1")
    state = tmp_path / "state.sqlite3"
    first_job = schedule_job(pg, "sync-a")
    second_job = schedule_job(pg, "sync-b")
    fail_runs(pg, first_job)
    fail_runs(pg, second_job)

    cycle(pg_cluster.dsn, rules, state)
    actives = pg.execute(
        "SELECT active FROM cron.job WHERE jobname LIKE 'sync-%' ORDER BY jobid"
    ).fetchall()
    assert actives == [(False,), (True,)]

    third_job = schedule_job(pg, "sync-c")
    fail_runs(pg, third_job)
    cycle(pg_cluster.dsn, rules, state)
    assert job_row(pg, third_job) is not None
    row = job_row(pg, third_job)
    assert row is not None and row[5] is True

    requests = http_receiver.wait_for(4)
    time.sleep(0.5)
    titles = [request.json["title"] for request in http_receiver.requests]
    assert titles.count("[WARNING] pg-cron-watchdog: remediation cap reached") == 1
    capped = [r.json["message"] for r in requests if "cap of 1 action per hour" in
              r.json["message"]]
    assert len(capped) == 2
    outcomes = sorted(record.outcome for record in stored_actions(state))
    assert outcomes == ["capped", "capped", "done"]


def test_pausing_paused_job_says_already(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    pg.execute("SELECT cron.alter_job(job_id := %s, active := false)", (jobid,))
    fail_runs(pg, jobid)

    cycle(pg_cluster.dsn, rules, state)
    [request] = http_receiver.wait_for(1)
    assert "Remediation: nothing to do, the job is already as" in request.json["message"]
    [record] = stored_actions(state)
    assert record.outcome == "already"


def wait_for_lock_waiters(conn: Conn, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND wait_event = 'advisory'"
        ).fetchone()
        if row is not None and row[0] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} sessions waited on the job's advisory lock")


def test_hand_edit_before_action_wins(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    results: list[CycleResult] = []

    with pg_cluster.connect() as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(jobid),))
        worker = threading.Thread(
            target=lambda: results.append(cycle(pg_cluster.dsn, rules, state))
        )
        worker.start()
        # The watchdog has decided and now waits for the lock; change the job meanwhile.
        wait_for_lock_waiters(pg, 1)
        pg.execute("SELECT cron.alter_job(job_id := %s, schedule := '0 4 * * *')", (jobid,))
    worker.join(timeout=30)

    assert job_row(pg, jobid) == ("sync-orders", "0 4 * * *", "SELECT 1", "postgres",
                                  "postgres", True)
    [result] = results
    [event] = result.events
    assert event.remediation is not None
    assert event.remediation.outcome == "changed"
    [request] = http_receiver.wait_for(1)
    assert ("Remediation skipped: the job changed after the decision (now schedule"
            " '0 4 * * *', active true); left as it is" in request.json["message"])


def test_revert_skips_job_edited_after_action(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    pg.execute("SELECT cron.alter_job(job_id := %s, schedule := '0 4 * * *')", (jobid,))

    recover(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    assert job_row(pg, jobid) == ("sync-orders", "0 4 * * *", "SELECT 1", "postgres",
                                  "postgres", False)
    resolved = http_receiver.wait_for(2)[1]
    assert "revert skipped, the job was changed by hand" in resolved.json["message"]

    store = StateStore(state)
    source = PgSource(pg_cluster.dsn)
    try:
        said = restore(store, source, str(jobid), dry_run=False)
    finally:
        source.close()
        store.close()
    assert "was not undone" in said
    row = job_row(pg, jobid)
    assert row is not None and row[5] is False


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watchdog.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )


def test_two_watchdogs_racing_act_once(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES.format(hook=http_receiver.json_url("/alerts"), remediation=ON,
                                       remediate=PAUSE))
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    states = [tmp_path / "one.sqlite3", tmp_path / "two.sqlite3"]

    with pg_cluster.connect() as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(jobid),))
        processes = [
            cli("once", env={"WATCHDOG_DATABASE_URL": pg_cluster.dsn,
                             "WATCHDOG_RULES_FILE": str(rules_file),
                             "WATCHDOG_STATE_PATH": str(state)})
            for state in states
        ]
        wait_for_lock_waiters(pg, 2)
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 1, stderr

    outcomes = sorted(record.outcome for state in states for record in stored_actions(state))
    assert outcomes == ["already", "done"]
    row = job_row(pg, jobid)
    assert row is not None and row[5] is False


def test_role_without_rights_fails_clearly(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    dsn = pg_cluster.create_role("remediate_viewer", "secret-pw")
    # The role reads every job but owns none, like a monitoring role with BYPASSRLS.
    pg.execute("ALTER ROLE remediate_viewer BYPASSRLS")
    pg.execute("GRANT USAGE ON SCHEMA cron TO remediate_viewer")
    pg.execute("GRANT EXECUTE ON FUNCTION cron.alter_job TO remediate_viewer")
    try:
        rules = make_rules(http_receiver)
        jobid = schedule_job(pg, "sync-orders")
        fail_runs(pg, jobid)

        result = cycle(dsn, rules, tmp_path / "state.sqlite3")
    finally:
        pg.execute("REVOKE ALL ON SCHEMA cron FROM remediate_viewer")
        pg.execute("REVOKE EXECUTE ON FUNCTION cron.alter_job FROM remediate_viewer")
        pg.execute("DROP ROLE remediate_viewer")

    row = job_row(pg, jobid)
    assert row is not None and row[5] is True
    [event] = result.events
    assert event.remediation is not None
    assert event.remediation.outcome == "failed"
    detail = event.remediation.detail or ""
    assert "job sync-orders" in detail
    assert f"jobid {jobid}" in detail
    assert "owned by postgres" in detail
    assert "role 'remediate_viewer'" in detail
    assert "superuser" in detail
    # The alert itself still goes out, with the failure in it.
    [request] = http_receiver.wait_for(1)
    assert "Remediation failed: " in request.json["message"]
    assert "secret-pw" not in request.json["message"]


def test_canceled_run_after_pause_is_not_a_failure(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, remediate='{ action = "pause" }')
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    now = db_now(pg)
    for second in range(3):
        add_run(pg, jobid, "succeeded", now - timedelta(minutes=10, seconds=second))
    fail_runs(pg, jobid)
    first = cycle(pg_cluster.dsn, rules, state)
    [firing] = first.events
    assert firing.verdict.facts["failed"] == 3

    # pg_cron cancels the run that was in flight when the job was paused.
    add_run(pg, jobid, "failed", db_now(pg) - timedelta(seconds=5), message="job canceled")
    second = cycle(pg_cluster.dsn, rules, state)
    assert second.events == []
    store = StateStore(state)
    try:
        verdict = store.alerts(PgSource(pg_cluster.dsn).target)[("sync failing", jobid)].verdict
    finally:
        store.close()
    facts: dict[str, Any] = verdict["facts"]  # type: ignore[assignment]
    assert (facts["failed"], facts["finished"]) == (3, 6)


@pytest.mark.e2e
def test_restored_job_runs_again(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, UNSCHEDULE)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-every-minute", "* * * * *", "SELECT 42")
    before = job_row(pg, jobid)
    fail_runs(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    assert job_row(pg, jobid) is None

    result = subprocess.run(
        [sys.executable, "-m", "watchdog.cli", "restore", "sync-every-minute"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "WATCHDOG_DATABASE_URL": pg_cluster.dsn,
             "WATCHDOG_STATE_PATH": str(state)},
    )
    assert result.returncode == 0, result.stderr
    row = pg.execute("SELECT jobid FROM cron.job WHERE jobname = 'sync-every-minute'").fetchone()
    assert row is not None
    new_jobid = row[0]
    assert job_row(pg, new_jobid) == before

    deadline = time.monotonic() + 75
    finished = None
    while time.monotonic() < deadline and finished is None:
        finished = pg.execute(
            "SELECT status, return_message FROM cron.job_run_details WHERE jobid = %s"
            " AND status IN ('succeeded', 'failed')", (new_jobid,),
        ).fetchone()
        time.sleep(1)
    assert finished == ("succeeded", "1 row")



def run_cli(*args: str, state: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog.cli", *args], capture_output=True, text=True,
        timeout=60, env={**os.environ, "WATCHDOG_DATABASE_URL": dsn,
                         "WATCHDOG_STATE_PATH": str(state)},
    )


def test_actions_and_restore_commands(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, '{ action = "pause" }')
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)

    listed = run_cli("actions", state=state, dsn=pg_cluster.dsn)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert f"job sync-orders (jobid {jobid})  pause [on] done" in line
    assert line.endswith(f"undo: cron-watchdog restore {jobid}")

    preview = run_cli("restore", str(jobid), "--dry-run", state=state, dsn=pg_cluster.dsn)
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.strip() == (
        f"would run on job sync-orders (jobid {jobid}):"
        f" SELECT cron.alter_job(job_id := {jobid}, active := true)"
    )
    row = job_row(pg, jobid)
    assert row is not None and row[5] is False

    restored = run_cli("restore", "sync-orders", state=state, dsn=pg_cluster.dsn)
    assert restored.returncode == 0, restored.stderr
    row = job_row(pg, jobid)
    assert row is not None and row[5] is True

    again = run_cli("restore", "sync-orders", state=state, dsn=pg_cluster.dsn)
    assert again.returncode == 0, again.stderr
    assert "was already undone by action #2; nothing changed" in again.stdout

    listed = run_cli("actions", state=state, dsn=pg_cluster.dsn)
    newest, oldest = listed.stdout.splitlines()
    # The undo names the action it reverted, since "resume" misreads a restored reschedule.
    assert "undo of #1 [restore] done  rule '(cli)'" in newest
    assert oldest.endswith("undone by #2")


def test_restore_unknown_job_exits_with_error(pg_cluster: PgCronCluster, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    StateStore(state).close()
    result = run_cli("restore", "nosuch", state=state, dsn=pg_cluster.dsn)
    assert result.returncode == 2
    assert "no remediation action to undo for job 'nosuch'" in result.stderr
    assert "cron-watchdog actions" in result.stderr


def test_restore_of_other_roles_job_needs_superuser(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, UNSCHEDULE)
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)

    dsn = pg_cluster.create_role("restore_helper", "secret-pw")
    pg.execute("GRANT USAGE ON SCHEMA cron TO restore_helper")
    pg.execute("GRANT EXECUTE ON FUNCTION cron.schedule_in_database TO restore_helper")
    try:
        result = run_cli("restore", str(jobid), state=state, dsn=dsn)
    finally:
        pg.execute("REVOKE ALL ON SCHEMA cron FROM restore_helper")
        pg.execute("REVOKE EXECUTE ON FUNCTION cron.schedule_in_database FROM restore_helper")
        pg.execute("DROP ROLE restore_helper")

    assert result.returncode == 2
    assert "cron.schedule_in_database(job_name := 'sync-orders'" in result.stderr
    assert "owned by postgres" in result.stderr
    assert "must be superuser to create a job for another role" in result.stderr
    assert "run the restore as a superuser" in result.stderr
    assert "secret-pw" not in result.stderr
    assert pg.execute("SELECT count(*) FROM cron.job WHERE jobname = 'sync-orders'"
                      ).fetchone() == (0,)


def test_restore_of_vanished_job_fails_clearly(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    rules = make_rules(http_receiver, '{ action = "pause" }')
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    pg.execute("SELECT cron.unschedule(%s)", (jobid,))

    result = run_cli("restore", str(jobid), state=state, dsn=pg_cluster.dsn)
    assert result.returncode == 2
    assert f"no job with jobid {jobid} exists any more" in result.stderr


def test_reminder_does_not_act_again(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
    bystander: int,
) -> None:
    text = RULES.format(hook=http_receiver.json_url("/alerts"), remediation=ON,
                        remediate=PAUSE) + 'repeat_interval = "1s"\n'
    rules = parse_rules(text, "rules.toml", {})
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    fail_runs(pg, jobid)
    cycle(pg_cluster.dsn, rules, state)
    # The on-call engineer resumes the job by hand while the alert still fires.
    pg.execute("SELECT cron.alter_job(job_id := %s, active := true)", (jobid,))

    time.sleep(1.5)
    second = cycle(pg_cluster.dsn, rules, state)
    [reminder] = second.events
    assert reminder.reminder
    assert reminder.remediation is None
    assert job_row(pg, jobid) is not None
    assert job_row(pg, jobid)[-1] is True  # type: ignore[index]
    assert len(stored_actions(state)) == 1
