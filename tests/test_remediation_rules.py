"""Remediation without a cluster: rules validation, message lines, safety gates, evaluation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import factories
import pytest
from factories import NOW

from watchdog.errors import ConfigError
from watchdog.evaluate import evaluate
from watchdog.messages import render, render_cap
from watchdog.models import ActionResult, AlertEvent, Severity, Snapshot, Verdict
from watchdog.remediate import remediate_events
from watchdog.rules import Remediate, RemediationSettings, RuleSet, parse_rules
from watchdog.source import PgSource
from watchdog.state import AlertRecord, StateStore

RULE = """
[[rules]]
name = "provisioner failing"
kind = "failure_ratio"
threshold = 0.5
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "rules.toml", {})
    return caught.value.problems


def test_remediation_defaults_to_dry_run() -> None:
    rules = parse_rules(RULE, "rules.toml", {})
    assert rules.remediation == RemediationSettings("dry-run", 5)
    assert rules.rules[0].remediate is None


def test_remediate_table_parses() -> None:
    text = '[remediation]\nmode = "on"\nmax_actions_per_hour = 2\n' + RULE + (
        'remediate = { action = "reschedule", schedule = "*/5 * * * *",'
        " revert_on_resolve = true }\n"
    )
    rules = parse_rules(text, "rules.toml", {})
    assert rules.remediation == RemediationSettings("on", 2)
    assert rules.rules[0].remediate == Remediate("reschedule", "*/5 * * * *", True)


@pytest.mark.parametrize("schedule", ["30 seconds", "@hourly", "0 4 $ * *", "@reboot"])
def test_reschedule_accepts_pg_cron_forms(schedule: str) -> None:
    text = RULE + f'remediate = {{ action = "reschedule", schedule = "{schedule}" }}\n'
    remediate = parse_rules(text, "rules.toml", {}).rules[0].remediate
    assert remediate is not None
    assert remediate.schedule == schedule


@pytest.mark.parametrize(
    ("remediate", "expected"),
    [
        ('{ action = "delete" }',
         "field 'remediate', key 'action': 'delete' is not one of pause, reschedule,"
         " unschedule"),
        ('{ action = "reschedule" }',
         "field 'remediate', key 'schedule': required for reschedule"),
        ('{ action = "reschedule", schedule = "61 seconds" }',
         "schedule '61 seconds': an interval must be 1 to 59 seconds"),
        ('{ action = "reschedule", schedule = "* * *" }', "schedule '* * *': month field"),
        ('{ action = "pause", schedule = "* * * * *" }',
         "only action reschedule takes a schedule; remove it for pause"),
        ('{ action = "unschedule", revert_on_resolve = true }',
         "cannot be used with unschedule; re-create the job with `cron-watchdog restore"),
        ('{ action = "pause", revert_on_resolve = "yes" }', "'yes' must be true or false"),
        ('{ action = "pause", when = "now" }', "unknown key 'when'"),
        ('"pause"', 'must be a table such as { action = "pause" }'),
    ],
)
def test_remediate_problems_name_value_and_fix(remediate: str, expected: str) -> None:
    found = problems(RULE + f"remediate = {remediate}\n")
    assert len(found) == 1, found
    assert "rule #1 'provisioner failing'" in found[0]
    assert expected in found[0]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('mode = "yes"', "remediation, field 'mode': 'yes' is not one of off, dry-run, on"),
        ("max_actions_per_hour = 0",
         "field 'max_actions_per_hour': 0 must be a whole number of at least 1"),
        ("cap = 3", "unknown key 'cap'; allowed: max_actions_per_hour, mode"),
    ],
)
def test_remediation_table_problems(table: str, expected: str) -> None:
    found = problems(f"[remediation]\n{table}\n" + RULE)
    assert len(found) == 1, found
    assert expected in found[0]


# --- Message lines ---------------------------------------------------------------


def event(result: ActionResult | None, state: str = "firing") -> AlertEvent:
    verdict = Verdict("provisioner failing", "failure_ratio", 7, "sync-orders", True, 0.75,
                      {"failed": 3, "finished": 4, "ratio": 0.75, "threshold": 0.5,
                       "min_runs": 3, "window_seconds": 3600.0})
    return AlertEvent("t", "provisioner failing", "failure_ratio", Severity.WARNING, 7,
                      "sync-orders", None, state, NOW, NOW - timedelta(minutes=5), verdict,
                      result)


PAUSE = "SELECT cron.alter_job(job_id := 7, active := false)"


@pytest.mark.parametrize(
    ("result", "english", "russian"),
    [
        (ActionResult("pause", "done", 7, PAUSE, undo="cron-watchdog restore 7"),
         f"Remediation: paused the job with {PAUSE}. Undo: cron-watchdog restore 7",
         f"Автоматическое действие: job поставлен на паузу: {PAUSE}."
         " Отменить: cron-watchdog restore 7"),
        (ActionResult("pause", "dry_run", 7, PAUSE),
         f"Remediation (dry-run, nothing changed): would run {PAUSE}",
         f"Автоматическое действие (dry-run, ничего не изменено): выполнился бы {PAUSE}"),
        (ActionResult("pause", "capped", 7, PAUSE, limit=5),
         f"Remediation skipped: the cap of 5 actions per hour is reached; would have run {PAUSE}",
         "Автоматическое действие пропущено: достигнут лимит 5 в час;"),
        (ActionResult("pause", "failed", 7, PAUSE, detail="permission denied"),
         "Remediation failed: permission denied",
         "Автоматическое действие не удалось: permission denied"),
        (ActionResult("pause", "standby", 7, PAUSE),
         "Remediation skipped: the server is a standby (pg_is_in_recovery() is true)",
         "сервер работает как реплика"),
        (ActionResult("resume", "changed", 7, PAUSE, current=("0 4 * * *", False)),
         "Remediation: revert skipped, the job was changed by hand after the watchdog's"
         " action (now schedule '0 4 * * *', active false); left as it is",
         "Откат пропущен: job изменили вручную после действия watchdog"),
    ],
)
def test_message_says_what_remediation_did(
    result: ActionResult, english: str, russian: str
) -> None:
    assert english in render(event(result), "en")[1].splitlines()[-1]
    assert russian in render(event(result), "ru")[1].splitlines()[-1]


def test_resolved_message_carries_revert() -> None:
    result = ActionResult("resume", "done", 7,
                          "SELECT cron.alter_job(job_id := 7, active := true)")
    body = render(event(result, "resolved"), "en")[1]
    assert body.splitlines()[-1] == (
        "Remediation: restored the saved schedule and active flag with"
        " SELECT cron.alter_job(job_id := 7, active := true)"
    )


def test_message_without_remediation_has_no_line() -> None:
    assert "Remediation" not in render(event(None), "en")[1]


def test_cap_message_in_both_locales() -> None:
    title, body = render_cap(5, "sync-orders", PAUSE, "en")
    assert title == "[WARNING] pg-cron-watchdog: remediation cap reached"
    assert "made 5 actions in the last hour" in body
    assert f"First skipped: {PAUSE} on job sync-orders." in body
    title, body = render_cap(5, "sync-orders", PAUSE, "ru")
    assert title == "[ПРЕДУПРЕЖДЕНИЕ] pg-cron-watchdog: достигнут лимит автоматических действий"
    assert "выполнил 5 действий" in body


# --- Safety gates ------------------------------------------------------------------


def on_rules() -> RuleSet:
    text = '[remediation]\nmode = "on"\n' + RULE + 'remediate = { action = "pause" }\n'
    return parse_rules(text, "rules.toml", {})


def firing_event(snapshot: Snapshot, evidence: tuple[int, ...]) -> AlertEvent:
    verdict = Verdict("provisioner failing", "failure_ratio", 1, "sync-orders", True, 1.0,
                      evidence=evidence)
    return AlertEvent("t", "provisioner failing", "failure_ratio", Severity.WARNING, 1,
                      "sync-orders", "postgres", "firing", NOW, NOW, verdict)


# The source is never used by a skipped action; nothing listens on port 9.
UNUSED_SOURCE = "postgresql://nobody@127.0.0.1:9/postgres"


def gate_outcome(tmp_path: Path, snapshot: Snapshot, evidence: tuple[int, ...],
                 scheduler_down: bool = False) -> str:
    store = StateStore(tmp_path / "state.sqlite3")
    source = PgSource(UNUSED_SOURCE)
    try:
        if scheduler_down:
            store.save_alert(source.target, AlertRecord(
                "scheduler", 0, "firing", NOW, None, {"kind": "scheduler_down"}))
        with store.transaction():
            [handled] = remediate_events(store, source, on_rules(), snapshot,
                                         [firing_event(snapshot, evidence)])
        [record] = store.actions()
    finally:
        store.close()
    assert handled.remediation is not None
    assert record.outcome == handled.remediation.outcome
    return handled.remediation.outcome


def test_no_action_on_standby(tmp_path: Path) -> None:
    runs = [factories.run(1, status="failed", message="ERROR: boom")]
    snapshot = replace(factories.snapshot([factories.job()], runs), in_recovery=True)
    assert gate_outcome(tmp_path, snapshot, (1,)) == "standby"


def test_no_action_on_infrastructure_failures(tmp_path: Path) -> None:
    runs = [factories.run(1, status="failed", message="job startup timeout"),
            factories.run(2, status="failed", message="connection failed")]
    snapshot = factories.snapshot([factories.job()], runs)
    assert gate_outcome(tmp_path, snapshot, (1, 2)) == "infrastructure"


def test_no_action_while_scheduler_down(tmp_path: Path) -> None:
    runs = [factories.run(1, status="failed", message="ERROR: boom")]
    snapshot = factories.snapshot([factories.job()], runs)
    assert gate_outcome(tmp_path, snapshot, (1,), scheduler_down=True) == "scheduler_down"


def test_mode_off_records_nothing(tmp_path: Path) -> None:
    rules = replace(on_rules(), remediation=RemediationSettings("off", 5))
    snapshot = factories.snapshot([factories.job()], [])
    store = StateStore(tmp_path / "state.sqlite3")
    try:
        events = [firing_event(snapshot, ())]
        assert remediate_events(store, PgSource(UNUSED_SOURCE), rules, snapshot, events) == events
        assert store.actions() == []
    finally:
        store.close()


# --- Runs canceled by the watchdog ---------------------------------------------------


def test_failure_ratio_skips_runs_canceled_by_watchdog() -> None:
    rules = parse_rules(RULE, "rules.toml", {})
    runs = [
        factories.run(1, status="succeeded", ago=timedelta(minutes=20)),
        factories.run(2, status="failed", ago=timedelta(minutes=10), message="ERROR: boom"),
        factories.run(3, status="failed", ago=timedelta(minutes=5), message="job canceled"),
    ]
    snapshot = factories.snapshot([factories.job()], runs)
    # "job canceled" is an infrastructure outcome: never a failure of the job.
    [counted] = evaluate(rules, snapshot, NOW)
    assert (counted.facts["failed"], counted.facts["finished"]) == (1, 2)
    assert counted.facts["infrastructure"] == 1

    # Canceled by the watchdog's own pause: not even an infrastructure outcome.
    paused = replace(snapshot, watchdog_cancels={1: NOW - timedelta(minutes=4)})
    [skipped] = evaluate(rules, paused, NOW)
    assert (skipped.facts["failed"], skipped.facts["finished"]) == (1, 2)
    assert skipped.facts["infrastructure"] == 0
    assert skipped.evidence == (2,)


def test_canceled_run_long_after_action_still_counts() -> None:
    runs = [factories.run(3, status="failed", ago=timedelta(minutes=5), message="job canceled")]
    snapshot = replace(factories.snapshot([factories.job()], runs),
                       watchdog_cancels={1: NOW - timedelta(hours=1)})
    assert not snapshot.canceled_by_watchdog(runs[0])
