"""Alert lifecycle: one alert per (rule, job), changed only by recorded transitions.

States: ok -> pending (condition true, `for` not yet elapsed) -> firing ->
resolved. An ok or resolved alert has no stored record. While firing, an
alert whose condition clears stays firing for `keep_firing_for`; a still
firing alert is announced again every `repeat_interval`.

Messages are stored for transitions and reminders, never for a state, so a
restart or a second `once` does not repeat them, because the stored state
records "firing" and when the last message went out. A muted alert (silence or
maintenance window) changes state as usual but stores no message; if it is
still firing when the muting ends, it is announced then.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from watchdog.models import AlertEvent, Job, Severity, Snapshot, Verdict
from watchdog.rules import Rule, RuleSet
from watchdog.silences import Muting
from watchdog.state import AlertRecord, StateStore

log = logging.getLogger(__name__)

OK = "ok"
PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"

# Fact added to a resolved missing_run event: the runs missed while it fired.
MISSED_WHILE_FIRING = "missed_while_firing"
# Fact set on a resolve whose rule stopped judging the job, so its values are stale.
NOT_JUDGED = "not_judged"


@dataclass(frozen=True)
class _Cycle:
    """Shared context of one update: store, target, snapshot, time and muting."""

    store: StateStore
    target: str
    snapshot: Snapshot
    now: datetime
    muting: Muting

    def muted(self, rule: Rule, verdict: Verdict) -> str | None:
        job = self.snapshot.jobs.get(verdict.jobid)
        jobname = job.jobname if job else None
        return self.muting.reason(rule.name, jobname, verdict.job_label)

    def transition(self, rule: str, jobid: int, old: str, new: str, value: float | None) -> None:
        self.store.record_transition(self.target, rule, jobid, self.now, old, new, value)


def update_alerts(
    store: StateStore,
    target: str,
    rules: RuleSet,
    snapshot: Snapshot,
    verdicts: list[Verdict],
    now: datetime,
    muting: Muting | None = None,
) -> list[AlertEvent]:
    """Apply this cycle's verdicts to the stored alerts; return the events to announce.

    An alert whose rule or job no longer exists is closed quietly, because a
    "resolved" message for a job unscheduled on purpose only adds noise.
    """
    cycle = _Cycle(store, target, snapshot, now, muting or Muting(now))
    stored = store.alerts(target)
    rules_by_name = {rule.name: rule for rule in rules.rules}
    events: list[AlertEvent] = []
    judged: set[tuple[str, int]] = set()

    for verdict in verdicts:
        key = (verdict.rule, verdict.jobid)
        judged.add(key)
        event = _apply(cycle, rules_by_name[verdict.rule], verdict, stored.get(key))
        if event is not None:
            events.append(event)

    for key, record in stored.items():
        if key in judged:
            continue
        event = _unjudged(cycle, rules_by_name.get(record.rule), record)
        if event is not None:
            events.append(event)
    return events


def _unjudged(cycle: _Cycle, rule: Rule | None, record: AlertRecord) -> AlertEvent | None:
    """Handle a stored alert that no verdict judged this cycle."""
    job = cycle.snapshot.jobs.get(record.jobid)
    if rule is None or job is None or not rule.selects(job):
        # A job renamed out of the rule's globs is as good as gone for the rule:
        # its condition may still hold, so "resolved" would be false.
        if rule is None:
            reason = "its rule no longer exists"
        elif job is None:
            reason = "its job no longer exists"
        else:
            reason = f"job {job.label!r} no longer matches the rule's jobs"
        log.info("alert %r on jobid %d closed quietly: %s", record.rule, record.jobid, reason)
        new_state = RESOLVED if record.state == FIRING else OK
        cycle.transition(record.rule, record.jobid, record.state, new_state, None)
        cycle.store.delete_alert(cycle.target, record.rule, record.jobid)
        return None
    # The rule no longer judges the job (it was paused, say): the condition is gone.
    return _apply(cycle, rule, _cleared_verdict(record), record)


def _apply(
    cycle: _Cycle, rule: Rule, verdict: Verdict, previous: AlertRecord | None
) -> AlertEvent | None:
    state = previous.state if previous else OK
    if verdict.firing:
        if previous is None or state not in (PENDING, FIRING):
            if rule.for_duration > timedelta(0):
                _start_pending(cycle, rule, verdict)
                return None
            return _fire(cycle, rule, verdict, state)
        if state == PENDING:
            if cycle.now - previous.since >= rule.for_duration:
                return _fire(cycle, rule, verdict, PENDING)
            _save(cycle, dataclasses.replace(previous, value=verdict.value,
                                             verdict=dataclasses.asdict(verdict)))
            return None
        return _still_firing(cycle, rule, verdict, previous)

    if previous is None:
        return None
    if state == PENDING:
        cycle.transition(rule.name, verdict.jobid, PENDING, OK, verdict.value)
        cycle.store.delete_alert(cycle.target, rule.name, verdict.jobid)
        log.info("alert %r on job %s cleared while pending; nothing was sent", rule.name,
                 verdict.job_label)
        return None
    return _condition_cleared(cycle, rule, verdict, previous)


def _start_pending(cycle: _Cycle, rule: Rule, verdict: Verdict) -> None:
    record = AlertRecord(rule.name, verdict.jobid, PENDING, cycle.now, verdict.value,
                         dataclasses.asdict(verdict))
    _save(cycle, record)
    cycle.transition(rule.name, verdict.jobid, OK, PENDING, verdict.value)
    log.info("alert %r on job %s is pending: fires if the condition stays true for %s",
             rule.name, verdict.job_label, rule.for_duration)


def _fire(cycle: _Cycle, rule: Rule, verdict: Verdict, old_state: str) -> AlertEvent | None:
    muted = cycle.muted(rule, verdict)
    record = AlertRecord(
        rule.name, verdict.jobid, FIRING, cycle.now, verdict.value, dataclasses.asdict(verdict),
        fired_at=cycle.now, last_sent=None if muted else cycle.now, announced=muted is None,
    )
    _save(cycle, record)
    cycle.transition(rule.name, verdict.jobid, old_state, FIRING, verdict.value)
    if muted:
        log.info("alert %r on job %s is firing, muted by %s: value %.4g", rule.name,
                 verdict.job_label, muted, _loggable(verdict.value))
        return None
    log.info("alert %r on job %s is firing: value %.4g", rule.name, verdict.job_label,
             _loggable(verdict.value))
    return _event(cycle, rule, verdict, FIRING, cycle.now)


def _still_firing(
    cycle: _Cycle, rule: Rule, verdict: Verdict, previous: AlertRecord
) -> AlertEvent | None:
    fired_at = previous.fired_at or previous.since
    record = dataclasses.replace(previous, value=verdict.value,
                                 verdict=dataclasses.asdict(verdict), cleared_at=None)
    event = None
    if cycle.muted(rule, verdict) is None:
        if not previous.announced:
            log.info("alert %r on job %s is no longer muted and still firing; announcing it",
                     rule.name, verdict.job_label)
            event = _event(cycle, rule, verdict, FIRING, fired_at, announced_late=True)
        elif _reminder_due(rule, previous, cycle.now):
            event = _event(cycle, rule, verdict, FIRING, fired_at, reminder=True)
    if event is not None:
        record = dataclasses.replace(record, announced=True, last_sent=cycle.now)
    _save(cycle, record)
    return event


def _reminder_due(rule: Rule, record: AlertRecord, now: datetime) -> bool:
    if rule.repeat_interval <= timedelta(0):
        return False
    last = record.last_sent or record.fired_at or record.since
    return now - last >= rule.repeat_interval


def _condition_cleared(
    cycle: _Cycle, rule: Rule, verdict: Verdict, previous: AlertRecord
) -> AlertEvent | None:
    cleared_at = previous.cleared_at or cycle.now
    if cycle.now - cleared_at < rule.keep_firing_for:
        if previous.cleared_at is None:
            log.info("alert %r on job %s: condition cleared, kept firing for %s",
                     rule.name, verdict.job_label, rule.keep_firing_for)
        _save(cycle, dataclasses.replace(previous, cleared_at=cleared_at))
        return None

    cycle.store.delete_alert(cycle.target, rule.name, verdict.jobid)
    cycle.transition(rule.name, verdict.jobid, FIRING, RESOLVED, verdict.value)
    fired_at = previous.fired_at or previous.since
    log.info("alert %r on job %s resolved after firing since %s", rule.name,
             verdict.job_label, fired_at.isoformat())
    if not rule.send_resolved or not previous.announced:
        return None
    muted = cycle.muted(rule, verdict)
    if muted:
        log.info("resolve message for alert %r on job %s not sent: muted by %s", rule.name,
                 verdict.job_label, muted)
        return None
    return _event(cycle, rule, _with_missed(verdict, previous), RESOLVED, fired_at)


def _with_missed(verdict: Verdict, previous: AlertRecord) -> Verdict:
    """Carry the count of missed runs from the last firing verdict into the resolve."""
    if verdict.kind != "missing_run":
        return verdict
    facts = previous.verdict.get("facts")
    missed = facts.get("missed") if isinstance(facts, dict) else None
    if not isinstance(missed, int | float):
        return verdict
    return dataclasses.replace(verdict, facts={**verdict.facts, MISSED_WHILE_FIRING: missed})


def _save(cycle: _Cycle, record: AlertRecord) -> None:
    cycle.store.save_alert(cycle.target, record)


def _cleared_verdict(record: AlertRecord) -> Verdict:
    fields: dict[str, Any] = dict(record.verdict)
    fields["firing"] = False
    fields["evidence"] = tuple(fields.get("evidence") or ())
    fields["facts"] = {**(fields.get("facts") or {}), NOT_JUDGED: True}
    return Verdict(**fields)


def _event(
    cycle: _Cycle, rule: Rule, verdict: Verdict, state: str, since: datetime,
    reminder: bool = False,
    announced_late: bool = False,
) -> AlertEvent:
    job: Job | None = cycle.snapshot.jobs.get(verdict.jobid)
    last_run = cycle.snapshot.history.job(verdict.jobid).newest
    duration = last_run.duration if last_run else None
    return AlertEvent(
        target=cycle.target,
        rule=rule.name,
        kind=rule.kind,
        severity=Severity(rule.severity),
        jobid=verdict.jobid,
        job_label=verdict.job_label,
        database=job.database if job else None,
        state=state,
        at=cycle.now,
        since=since,
        verdict=verdict,
        reminder=reminder,
        announced_late=announced_late,
        schedule=job.schedule if job else None,
        last_run_at=last_run.started if last_run else None,
        last_run_seconds=duration.total_seconds() if duration is not None else None,
    )


def firing_alerts(store: StateStore, target: str) -> list[AlertRecord]:
    """Return the alerts stored as firing, oldest first."""
    records = [record for record in store.alerts(target).values() if record.state == FIRING]
    return sorted(records, key=lambda record: record.since)


def _loggable(value: float | None) -> float:
    """Return the value for a `%.4g` log field; NaN stands for a verdict without one."""
    return float("nan") if value is None else value
