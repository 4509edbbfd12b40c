"""Alert lifecycle: one alert per (rule, job), changed only by recorded transitions.

Notifications are sent for transitions, never for a state, so a restart or a
second `once` does not repeat them: the stored state already says "firing".
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

from watchdog.models import AlertEvent, Severity, Snapshot, Verdict
from watchdog.rules import Rule, RuleSet
from watchdog.state import AlertRecord, StateStore

log = logging.getLogger(__name__)

FIRING = "firing"
OK = "ok"
RESOLVED = "resolved"


def update_alerts(
    store: StateStore,
    target: str,
    rules: RuleSet,
    snapshot: Snapshot,
    verdicts: list[Verdict],
    now: datetime,
) -> list[AlertEvent]:
    """Apply this cycle's verdicts to the stored alerts; return the events to announce.

    An alert whose rule or job no longer exists is resolved quietly: nobody
    needs a "resolved" message for a job that was unscheduled on purpose.
    """
    stored = store.alerts(target)
    rules_by_name = {rule.name: rule for rule in rules.rules}
    events: list[AlertEvent] = []
    judged: set[tuple[str, int]] = set()

    for verdict in verdicts:
        key = (verdict.rule, verdict.jobid)
        judged.add(key)
        previous = stored.get(key)
        event = _apply(store, target, rules_by_name[verdict.rule], snapshot, verdict,
                       previous, now)
        if event is not None:
            events.append(event)

    for key, record in stored.items():
        if key in judged or record.state != FIRING:
            continue
        rule_name, jobid = key
        current = rules_by_name.get(rule_name)
        if current is None or jobid not in snapshot.jobs:
            gone = "rule" if current is None else "job"
            log.info(
                "alert %r on jobid %d resolved quietly: its %s no longer exists",
                rule_name, jobid, gone,
            )
            store.record_transition(target, rule_name, jobid, now, FIRING, RESOLVED, None)
            store.delete_alert(target, rule_name, jobid)
            continue
        # The rule no longer judges the job (it was paused, say): the condition is gone.
        cleared = _cleared_verdict(record)
        event = _apply(store, target, current, snapshot, cleared, record, now)
        if event is not None:
            events.append(event)
    return events


def _apply(
    store: StateStore,
    target: str,
    rule: Rule,
    snapshot: Snapshot,
    verdict: Verdict,
    previous: AlertRecord | None,
    now: datetime,
) -> AlertEvent | None:
    old_state = previous.state if previous else OK
    stored_verdict = dataclasses.asdict(verdict)

    if verdict.firing and old_state != FIRING:
        store.save_alert(
            target, AlertRecord(rule.name, verdict.jobid, FIRING, now, verdict.value,
                                stored_verdict)
        )
        store.record_transition(target, rule.name, verdict.jobid, now, old_state, FIRING,
                                verdict.value)
        log.info("alert %r on job %s is firing: value %s", rule.name, verdict.job_label,
                 verdict.value)
        return _event(target, rule, snapshot, verdict, FIRING, now, now)

    if verdict.firing:
        assert previous is not None
        store.save_alert(
            target, dataclasses.replace(previous, value=verdict.value, verdict=stored_verdict)
        )
        return None

    if old_state == FIRING:
        assert previous is not None
        store.delete_alert(target, rule.name, verdict.jobid)
        store.record_transition(target, rule.name, verdict.jobid, now, FIRING, RESOLVED,
                                verdict.value)
        log.info("alert %r on job %s resolved after firing since %s", rule.name,
                 verdict.job_label, previous.since.isoformat())
        return _event(target, rule, snapshot, verdict, RESOLVED, now, previous.since)
    return None


def _cleared_verdict(record: AlertRecord) -> Verdict:
    fields: dict[str, Any] = dict(record.verdict)
    fields["firing"] = False
    fields["evidence"] = tuple(fields.get("evidence") or ())
    return Verdict(**fields)


def _event(
    target: str,
    rule: Rule,
    snapshot: Snapshot,
    verdict: Verdict,
    state: str,
    now: datetime,
    since: datetime,
) -> AlertEvent:
    job = snapshot.jobs.get(verdict.jobid)
    return AlertEvent(
        target=target,
        rule=rule.name,
        kind=rule.kind,
        severity=Severity(rule.severity),
        jobid=verdict.jobid,
        job_label=verdict.job_label,
        database=job.database if job else None,
        state=state,
        at=now,
        since=since,
        verdict=verdict,
    )


def firing_alerts(store: StateStore, target: str) -> list[AlertRecord]:
    """Return the alerts stored as firing, oldest first."""
    records = [record for record in store.alerts(target).values() if record.state == FIRING]
    return sorted(records, key=lambda record: record.since)
