# ruff: noqa: RUF001  # expected Russian texts are Cyrillic on purpose
"""The purge action of run_history_size rules: validation, messages, gates and the real cluster."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import factories
import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from factories import NOW
from pgcluster import PgCronCluster
from receivers import HttpReceiver
from test_remediate import cycle, run_cli, stored_actions

from watchdog.errors import ConfigError
from watchdog.messages import render, render_cap
from watchdog.models import (
    SCHEDULER_JOBID,
    ActionResult,
    AlertEvent,
    PurgeSummary,
    Severity,
    Snapshot,
    Verdict,
)
from watchdog.remediate import remediate_events
from watchdog.rules import Remediate, RuleSet, parse_rules
from watchdog.source import PgSource
from watchdog.state import AlertRecord, StateStore

Conn = psycopg.Connection[Any]

HISTORY_RULE = """
[[rules]]
name = "{name}"
kind = "run_history_size"
notify = ["hook"]
max_rows = 2
keep = "{keep}"
remediate = {{ action = "purge" }}
"""


def purge_rules(http: HttpReceiver, remediation: str, keep: str = "7d",
                names: tuple[str, ...] = ("history too large",)) -> RuleSet:
    text = f'[channels.hook]\nurls = ["{http.json_url("/alerts")}"]\n\n{remediation}\n'
    for name in names:
        text += HISTORY_RULE.format(name=name, keep=keep)
    return parse_rules(text, "rules.toml", {})


def runids(conn: Conn) -> list[int]:
    return [row[0] for row in conn.execute("SELECT runid FROM cron.job_run_details ORDER BY runid")]


def analyze(conn: Conn) -> None:
    # The rule reads the row count from pg_class.reltuples, which ANALYZE sets.
    conn.execute("ANALYZE cron.job_run_details")


def old_runs(conn: Conn, jobid: int) -> list[int]:
    """Insert runs older than 7 days: finished ones and one abandoned before the server start."""
    now = db_now(conn)
    runs = [add_run(conn, jobid, "succeeded", now - timedelta(days=days)) for days in (10, 9)]
    runs.append(add_run(conn, jobid, "failed", now - timedelta(days=8), message="ERROR: boom"))
    runs.append(add_run(conn, jobid, "connecting", now - timedelta(days=8), seconds=None))
    return runs


# --- Against the real cluster --------------------------------------------------------


def test_purge_deletes_only_old_finished_runs(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
) -> None:
    row = pg.execute("SELECT now() - pg_postmaster_start_time()").fetchone()
    assert row is not None
    # The run in flight below must have started after the server did, and be older than keep.
    if row[0] < timedelta(seconds=12):
        time.sleep((timedelta(seconds=12) - row[0]).total_seconds())
    jobid = schedule_job(pg, "sync-orders")
    old = old_runs(pg, jobid)
    now = db_now(pg)
    old.append(add_run(pg, jobid, "succeeded", now - timedelta(seconds=8)))
    running = add_run(pg, jobid, "running", now - timedelta(seconds=8), seconds=None)
    recent = add_run(pg, jobid, "succeeded", now)
    analyze(pg)

    rules = purge_rules(http_receiver, '[remediation]\nmode = "on"', keep="5s")
    cycle(pg_cluster.dsn, rules, tmp_path / "state.sqlite3")

    assert runids(pg) == [running, recent]
    [record] = stored_actions(tmp_path / "state.sqlite3")
    assert (record.jobid, record.job_label, record.action) == (0, "cron.job_run_details", "purge")
    assert record.outcome == "done"
    assert record.statement == (
        f"deleted {len(old)} runs of cron.job_run_details older than 5s (keep) with runid below"
        f" {recent} in 1 batch: finished runs, and runs left in flight before the server's"
        " last start"
    )
    [request] = http_receiver.wait_for(1)
    assert (f"Remediation: deleted {len(old)} runs older than 5s (keep) from"
            f" cron.job_run_details, runid below {recent}, in 1 batch." in request.json["message"])
    assert "deleted runs cannot be restored" in request.json["message"]


def test_purge_keeps_newest_run(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    runs = old_runs(pg, jobid)
    newest = add_run(pg, jobid, "succeeded", db_now(pg) - timedelta(days=8))
    analyze(pg)

    cycle(pg_cluster.dsn, purge_rules(http_receiver, '[remediation]\nmode = "on"'),
          tmp_path / "state.sqlite3")

    assert runids(pg) == [newest]
    [record] = stored_actions(tmp_path / "state.sqlite3")
    assert record.outcome == "done"
    assert record.statement.startswith(f"deleted {len(runs)} runs")


def test_purge_dry_run_deletes_nothing(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    old = old_runs(pg, jobid)
    recent = add_run(pg, jobid, "succeeded", db_now(pg) - timedelta(days=1))
    analyze(pg)
    before = runids(pg)

    # No [remediation] table: the default mode is dry-run.
    rules = purge_rules(http_receiver, "")
    cycle(pg_cluster.dsn, rules, tmp_path / "state.sqlite3")

    assert runids(pg) == before
    [request] = http_receiver.wait_for(1)
    assert (f"Remediation (dry-run, nothing changed): would delete {len(old)} runs older than"
            f" 7d (keep) from cron.job_run_details, runid below {recent}, in 1 batch"
            in request.json["message"])
    [record] = stored_actions(tmp_path / "state.sqlite3")
    assert (record.mode, record.outcome) == ("dry-run", "dry_run")
    assert record.statement.startswith(f"would delete {len(old)} runs")


def test_purge_counts_towards_cap(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    old_runs(pg, jobid)
    recent = add_run(pg, jobid, "succeeded", db_now(pg))
    analyze(pg)
    rules = purge_rules(http_receiver, '[remediation]\nmode = "on"\nmax_actions_per_hour = 1',
                        names=("history a", "history b"))

    cycle(pg_cluster.dsn, rules, tmp_path / "state.sqlite3")

    assert runids(pg) == [recent]
    outcomes = sorted(record.outcome for record in stored_actions(tmp_path / "state.sqlite3"))
    assert outcomes == ["capped", "done"]
    requests = http_receiver.wait_for(3)
    time.sleep(0.5)
    titles = [request.json["title"] for request in http_receiver.requests]
    assert titles.count("[WARNING] pg-cron-watchdog: remediation cap reached") == 1
    [cap] = [r.json["message"] for r in requests if "remediation cap" in r.json["title"]]
    assert ("First skipped: deleting runs older than 7d (keep) from cron.job_run_details.\n"
            in cap)
    skipped = [r.json["message"] for r in requests if "cap of 1 action per hour" in
               r.json["message"]]
    assert len(skipped) == 1


def test_purge_listed_and_not_restorable(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path,
) -> None:
    jobid = schedule_job(pg, "sync-orders")
    old_runs(pg, jobid)
    add_run(pg, jobid, "succeeded", db_now(pg))
    analyze(pg)
    state = tmp_path / "state.sqlite3"
    cycle(pg_cluster.dsn, purge_rules(http_receiver, '[remediation]\nmode = "on"'), state)

    listed = run_cli("actions", state=state, dsn=pg_cluster.dsn)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert "cron.job_run_details (jobid 0)  purge [on] done  rule 'history too large':" in line
    assert line.endswith("cannot be undone: deleted runs are not kept")

    for reference in ("0", "cron.job_run_details"):
        result = run_cli("restore", reference, state=state, dsn=pg_cluster.dsn)
        assert result.returncode == 2
        assert "Deleted run history cannot be restored" in result.stderr
        assert "Nothing changed" in result.stderr


# --- Gates without a cluster ----------------------------------------------------------

# Nothing listens on port 9, so a purge that is not skipped fails to connect.
UNUSED_SOURCE = "postgresql://nobody@127.0.0.1:9/postgres"
RULES_ON = """
[remediation]
mode = "on"

[[rules]]
name = "history too large"
kind = "run_history_size"
max_rows = 2
keep = "7d"
remediate = { action = "purge" }
"""


def history_event(reminder: bool = False) -> AlertEvent:
    verdict = Verdict("history too large", "run_history_size", SCHEDULER_JOBID,
                      "cron.job_run_details", True, 10.0)
    return AlertEvent("t", "history too large", "run_history_size", Severity.WARNING,
                      SCHEDULER_JOBID, "cron.job_run_details", None, "firing", NOW, NOW,
                      verdict, reminder=reminder)


def purge_outcome(tmp_path: Path, snapshot: Snapshot, scheduler_down: bool = False,
                  reminder: bool = False) -> str | None:
    store = StateStore(tmp_path / "state.sqlite3")
    source = PgSource(UNUSED_SOURCE)
    rules = parse_rules(RULES_ON, "rules.toml", {})
    try:
        if scheduler_down:
            store.save_alert(source.target, AlertRecord(
                "scheduler", 0, "firing", NOW, None, {"kind": "scheduler_down"}))
        with store.transaction():
            [handled] = remediate_events(store, source, rules, snapshot,
                                         [history_event(reminder)])
        records = store.actions()
    finally:
        store.close()
    if handled.remediation is None:
        assert records == []
        return None
    [record] = records
    assert record.outcome == handled.remediation.outcome
    return handled.remediation.outcome


def test_purge_skipped_on_standby(tmp_path: Path) -> None:
    snapshot = replace(factories.snapshot([factories.job()], []), in_recovery=True)
    assert purge_outcome(tmp_path, snapshot) == "standby"


def test_purge_skipped_while_scheduler_down(tmp_path: Path) -> None:
    snapshot = factories.snapshot([factories.job()], [])
    assert purge_outcome(tmp_path, snapshot, scheduler_down=True) == "scheduler_down"


def test_purge_not_run_on_reminder(tmp_path: Path) -> None:
    snapshot = factories.snapshot([factories.job()], [])
    assert purge_outcome(tmp_path, snapshot, reminder=True) is None


def test_purge_that_fails_is_recorded(tmp_path: Path) -> None:
    snapshot = factories.snapshot([factories.job()], [])
    assert purge_outcome(tmp_path, snapshot) == "failed"
    store = StateStore(tmp_path / "state.sqlite3")
    try:
        [record] = store.actions()
    finally:
        store.close()
    assert record.error is not None
    assert record.error.startswith("purge of cron.job_run_details on ")
    assert record.statement == (
        "delete runs of cron.job_run_details older than 7d (keep): finished runs, and runs"
        " left in flight before the server's last start"
    )


# --- Validation -------------------------------------------------------------------


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "rules.toml", {})
    return caught.value.problems


def history_rule(remediate: str, extra: str = 'keep = "7d"\n',
                 kind: str = "run_history_size") -> str:
    limit = "max_rows = 1000\n" if kind == "run_history_size" else ""
    return (f'[[rules]]\nname = "history"\nkind = "{kind}"\n{limit}{extra}'
            f"remediate = {remediate}\n")


def test_purge_rule_parses() -> None:
    rules = parse_rules(history_rule('{ action = "purge" }'), "rules.toml", {})
    assert rules.rules[0].remediate == Remediate("purge")
    assert rules.rules[0].keep == timedelta(days=7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (history_rule('{ action = "purge" }', extra=""),
         "rules.toml: rule #1 'history', field 'remediate': action purge needs the rule's"
         " field 'keep', the age of runs to keep, such as keep = \"7d\""),
        ('[[rules]]\nname = "history"\nkind = "failure_ratio"\nthreshold = 0.5\n'
         'remediate = { action = "purge" }\n',
         "rules.toml: rule #1 'history', field 'remediate': action purge deletes old rows of"
         " cron.job_run_details and works only on kind run_history_size; for kind"
         " failure_ratio use one of pause, reschedule, unschedule, or remove remediate"),
        (history_rule('{ action = "purge", revert_on_resolve = true }'),
         "rules.toml: rule #1 'history', field 'remediate', key 'revert_on_resolve': cannot be"
         " used with purge: deleted runs cannot be brought back; remove revert_on_resolve"),
        (history_rule('{ action = "pause" }'),
         "rules.toml: rule #1 'history', field 'remediate': action pause changes one job, but"
         " kind run_history_size alerts for the whole database (jobid 0), so the action would"
         ' never run. Use action = "purge" with keep = "7d" instead, or remove remediate.'),
        (history_rule('{ action = "unschedule" }', extra="", kind="scheduler_down"),
         "rules.toml: rule #1 'history', field 'remediate': action unschedule changes one job,"
         " but kind scheduler_down alerts for the whole database (jobid 0), so the action"
         " would never run. Remove remediate."),
        (history_rule('{ action = "reschedule", schedule = "*/5 * * * *" }', extra="",
                      kind="concurrency_saturated"),
         "rules.toml: rule #1 'history', field 'remediate': action reschedule changes one job,"
         " but kind concurrency_saturated alerts for the whole database (jobid 0), so the"
         " action would never run. Remove remediate."),
    ],
)
def test_purge_and_job_actions_validated_by_kind(text: str, expected: str) -> None:
    assert problems(text) == [expected]


# --- Message lines ----------------------------------------------------------------

WEEK = 7 * 86400.0


def purge_event(result: ActionResult) -> AlertEvent:
    return replace(history_event(), remediation=result)


def last_line(result: ActionResult, locale: str) -> str:
    return render(purge_event(result), locale)[1].splitlines()[-1]


@pytest.mark.parametrize(
    ("result", "english", "russian"),
    [
        (ActionResult("purge", "done", 0, "s", purge=PurgeSummary(WEEK, 1234, 5678, 1)),
         "Remediation: deleted 1,234 runs older than 7d (keep) from cron.job_run_details,"
         " runid below 5678, in 1 batch. Finished runs and runs left in flight before the"
         " server's last start were deleted; deleted runs cannot be restored",
         "Автоматическое действие: из cron.job_run_details удалено 1\u00a0234 запуска старше"
         " 7 д (keep) с runid меньше 5678 за 1 пакет. Удалены завершённые запуски и те, что"
         " остались незавершёнными после перезапуска сервера; восстановить их нельзя"),
        (ActionResult("purge", "done", 0, "s", purge=PurgeSummary(WEEK, 21, 90, 3)),
         "Remediation: deleted 21 runs older than 7d (keep) from cron.job_run_details,"
         " runid below 90, in 3 batches.",
         "из cron.job_run_details удалён 21 запуск старше 7 д (keep) с runid меньше 90 за"
         " 3 пакета."),
        (ActionResult("purge", "dry_run", 0, "s", purge=PurgeSummary(WEEK, 1, 9, 1)),
         "Remediation (dry-run, nothing changed): would delete 1 run older than 7d (keep)"
         " from cron.job_run_details, runid below 9, in 1 batch",
         "Автоматическое действие (dry-run, ничего не изменено): из cron.job_run_details был"
         " бы удалён 1 запуск старше 7 д (keep) с runid меньше 9 за 1 пакет"),
        (ActionResult("purge", "already", 0, "s", purge=PurgeSummary(WEEK)),
         "Remediation: nothing to delete, cron.job_run_details has no finished or abandoned"
         " run older than 7d (keep) except the newest",
         "Автоматическое действие не нужно: в cron.job_run_details нет завершённых или"
         " брошенных запусков старше 7 д (keep), кроме самого нового"),
        (ActionResult("purge", "capped", 0, "s", limit=5, purge=PurgeSummary(WEEK)),
         "Remediation skipped: the cap of 5 actions per hour is reached; would have started"
         " deleting runs older than 7d (keep) from cron.job_run_details",
         "Автоматическое действие пропущено: достигнут лимит 5 в час; не выполнено удаление"
         " из cron.job_run_details запусков старше 7 д (keep)"),
        (ActionResult("purge", "standby", 0, "s", purge=PurgeSummary(WEEK)),
         "Remediation skipped: the server is a standby (pg_is_in_recovery() is true)",
         "Автоматическое действие пропущено: сервер работает как реплика"),
        (ActionResult("purge", "failed", 0, "s", detail="permission denied",
                      purge=PurgeSummary(WEEK)),
         "Remediation failed: permission denied",
         "Автоматическое действие не удалось: permission denied"),
    ],
)
def test_purge_message_line(result: ActionResult, english: str, russian: str) -> None:
    assert english in last_line(result, "en")
    assert russian in last_line(result, "ru")


def test_purge_cap_message_names_no_job() -> None:
    _, body = render_cap(3, None, "deleting runs", "en")
    assert "First skipped: deleting runs.\n" in body
    _, body = render_cap(3, None, "удаление запусков", "ru")
    assert "Первое пропущенное: удаление запусков.\n" in body
