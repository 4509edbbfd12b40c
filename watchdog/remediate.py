"""Remediation: change a job when its alert starts firing, and put it back.

A rule's `remediate` action runs when the rule's alert enters firing, so at
most once per firing. When that alert resolves and the rule sets
`revert_on_resolve`, the job's saved schedule and active flag are restored.
Every decision is stored in the remediation log, including dry-run decisions
and skips, and is attached to the alert event so the message says what was
done and how to undo it.

The `purge` action of run_history_size rules changes no job: it deletes old
runs of cron.job_run_details (see watchdog.purge), cannot be reverted, and
is stored under the alert's jobid 0.

No action runs on a standby, when every failed run behind the verdict is a
pg_cron infrastructure outcome (startup timeout, lost connection, restart),
or while a `scheduler_down` alert is firing. The snapshot of a cycle is read
in one transaction, so a cycle whose data could not be read raises before
any remediation runs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog import messages
from watchdog.alerts import FIRING, RESOLVED, firing_alerts
from watchdog.errors import SourceError
from watchdog.jobactions import (
    ALREADY,
    CHANGED,
    DONE,
    FAILED,
    STANDBY,
    Change,
    ChangeResult,
    JobState,
    apply_change,
)
from watchdog.models import ActionResult, AlertEvent, Job, PurgeSummary, Run, Snapshot
from watchdog.outbox import url_key
from watchdog.purge import purge_run_history
from watchdog.rules import PURGE_ACTION, Remediate, RemediationSettings, Rule, RuleSet
from watchdog.source import PgSource
from watchdog.state import ActionRecord, StateStore

log = logging.getLogger(__name__)

DRY_RUN = "dry_run"
CAPPED = "capped"
INFRASTRUCTURE = "infrastructure"
SCHEDULER_DOWN = "scheduler_down"
OUTCOMES = (DONE, DRY_RUN, ALREADY, CHANGED, "gone", FAILED, CAPPED, STANDBY, INFRASTRUCTURE,
            SCHEDULER_DOWN)

# The rule kind that reports pg_cron's scheduler itself as down.
SCHEDULER_DOWN_KIND = "scheduler_down"
CAP_PERIOD = timedelta(hours=1)
HISTORY_TABLE = "cron.job_run_details"


def undo_command(jobid: int) -> str:
    return f"cron-watchdog restore {jobid}"


@dataclass
class _Cycle:
    """The store, source, rules and snapshot that every decision of one cycle uses."""

    store: StateStore
    source: PgSource
    rules: RuleSet
    snapshot: Snapshot

    @property
    def target(self) -> str:
        return self.source.target

    @property
    def settings(self) -> RemediationSettings:
        return self.rules.remediation

    @property
    def now(self) -> datetime:
        return self.snapshot.taken_at


def remediate_events(
    store: StateStore,
    source: PgSource,
    rules: RuleSet,
    snapshot: Snapshot,
    events: list[AlertEvent],
) -> list[AlertEvent]:
    """Act on firing events and revert on resolved ones; return the events with results attached.

    Runs inside the caller's state-store transaction, so the log of each
    action is stored with the alert change and its message.
    """
    if rules.remediation.mode == "off":
        return events
    cycle = _Cycle(store, source, rules, snapshot)
    rules_by_name = {rule.name: rule for rule in rules.rules}
    handled: list[AlertEvent] = []
    for event in events:
        rule = rules_by_name.get(event.rule)
        result = _handle(cycle, rule, event) if rule is not None else None
        handled.append(dataclasses.replace(event, remediation=result) if result else event)
    return handled


def _handle(cycle: _Cycle, rule: Rule, event: AlertEvent) -> ActionResult | None:
    spec = rule.remediate
    # A reminder repeats an alert that already had its one action.
    if spec is None or event.reminder:
        return None
    if event.state == FIRING and spec.action == PURGE_ACTION:
        return _on_purge(cycle, rule, event)
    if event.state == FIRING:
        return _on_firing(cycle, rule, spec, event)
    if event.state == RESOLVED and spec.revert_on_resolve:
        return _on_resolved(cycle, rule, event)
    return None


# --- Acting when an alert starts firing ---------------------------------------


def _on_firing(
    cycle: _Cycle, rule: Rule, spec: Remediate, event: AlertEvent
) -> ActionResult | None:
    job = cycle.snapshot.jobs.get(event.jobid)
    if job is None:
        return None
    change = _change_for(spec, job)
    result = ChangeResult(ALREADY, job) if _already(change) else None

    if result is None:
        skip = _skip_reason(cycle, event)
        if skip is not None:
            result = ChangeResult(skip)
    if result is None:
        counted = DRY_RUN if cycle.settings.mode == "dry-run" else DONE
        if _cap_reached(cycle, counted):
            _announce_cap(cycle, rule, job, change)
            result = ChangeResult(CAPPED)
        elif counted == DRY_RUN:
            result = ChangeResult(DRY_RUN)
        else:
            if change.target is None:
                # Written and flushed before the change, outside the state transaction,
                # so the definition survives even a crash between the two commits. The
                # log line leaves out the command, which often carries a bearer token.
                backup = cycle.store.backup_job(job)
                log.info("unscheduling job %s; its definition is saved in %s",
                         job.label, backup or "the state file")
            result = apply_change(cycle.source, change, cycle.snapshot.role)

    after = _after(job, change) if result.outcome in (DONE, DRY_RUN) else None
    _record(cycle, rule.name, spec.action, change, result, before=job, after=after)
    return _result(cycle, spec.action, change, result)


def _change_for(spec: Remediate, job: Job) -> Change:
    expected = JobState.of(job)
    if spec.action == "pause":
        return Change(job, expected, dataclasses.replace(expected, active=False))
    if spec.action == "reschedule":
        assert spec.schedule is not None
        return Change(job, expected, dataclasses.replace(expected, schedule=spec.schedule))
    return Change(job, expected, None)


def _already(change: Change) -> bool:
    return change.target is not None and change.expected == change.target


def _after(job: Job, change: Change) -> Job | None:
    if change.target is None:
        return None
    return dataclasses.replace(job, schedule=change.target.schedule, active=change.target.active)


def _skip_reason(cycle: _Cycle, event: AlertEvent) -> str | None:
    if cycle.snapshot.in_recovery:
        return STANDBY
    if _infrastructure_only(cycle.snapshot, event.verdict.evidence):
        return INFRASTRUCTURE
    if _scheduler_down(cycle):
        return SCHEDULER_DOWN
    return None


def _infrastructure_only(snapshot: Snapshot, evidence: tuple[int, ...]) -> bool:
    """Tell whether every evidence run found in the snapshot failed for pg_cron's own reasons."""
    runs: dict[int, Run] = {}
    for job in snapshot.history.jobs.values():
        runs.update(job.others)
    found = [runs[runid] for runid in evidence if runid in runs]
    return bool(found) and all(run.infrastructure_failure for run in found)


def _scheduler_down(cycle: _Cycle) -> bool:
    return any(
        record.verdict.get("kind") == SCHEDULER_DOWN_KIND
        for record in firing_alerts(cycle.store, cycle.target)
    )


# --- The cap on actions per hour ------------------------------------------------


def _cap_reached(cycle: _Cycle, counted: str) -> bool:
    """Tell whether the hour's actions reached the cap; log when the cap starts and ends."""
    limit = cycle.settings.max_actions_per_hour
    recent = cycle.store.count_actions(cycle.target, cycle.now - CAP_PERIOD, counted)
    capped_since = cycle.store.cap_since(cycle.target)
    if recent < limit:
        if capped_since is not None:
            cycle.store.set_cap(cycle.target, None)
            log.info("remediation on %s below its cap again (%d of %d actions in the last hour)",
                     cycle.target, recent, limit)
        return False
    return True


def _announce_cap(cycle: _Cycle, rule: Rule, job: Job, change: Change) -> None:
    """Store that the cap is reached and send one message, only when it was not stored yet."""
    if cycle.store.cap_since(cycle.target) is not None:
        return
    limit = cycle.settings.max_actions_per_hour
    cycle.store.set_cap(cycle.target, cycle.now)
    log.warning(
        "remediation on %s reached its cap of %d actions per hour: skipping %s on job %s and"
        " every further action until the hour's count drops",
        cycle.target, limit, change.statement, job.label,
    )
    _send_cap(cycle, rule, lambda locale: messages.render_cap(
        limit, job.label, change.statement, locale))


def _send_cap(cycle: _Cycle, rule: Rule, render: Callable[[str], tuple[str, str]]) -> None:
    for channel_name in rule.notify:
        channel = cycle.rules.channels[channel_name]
        title, body = render(channel.locale)
        for url in channel.urls:
            cycle.store.enqueue(cycle.target, channel.name, url_key(url), "warning", title, body,
                                cycle.now)


# --- Purging run history when a run_history_size alert starts firing ---------------


def _on_purge(cycle: _Cycle, rule: Rule, event: AlertEvent) -> ActionResult:
    """Delete old runs of cron.job_run_details under the mode, the cap and the skip checks.

    The purge counts as one action towards the cap, however many batches it takes.
    """
    # Validation requires keep for purge.
    assert rule.keep is not None
    summary = PurgeSummary(rule.keep.total_seconds())
    dry_run = cycle.settings.mode == "dry-run"
    counted = DRY_RUN if dry_run else DONE
    error = None
    if cycle.snapshot.in_recovery:
        outcome = STANDBY
    elif _scheduler_down(cycle):
        outcome = SCHEDULER_DOWN
    elif _cap_reached(cycle, counted):
        _announce_purge_cap(cycle, rule)
        outcome = CAPPED
    else:
        outcome, summary, error = _run_purge(cycle, rule.keep, dry_run)

    statement = purge_statement(outcome, summary)
    record = ActionRecord(
        id=0, target=cycle.target, at=cycle.now, rule=rule.name, jobid=event.jobid,
        job_label=event.job_label, action=PURGE_ACTION, mode=cycle.settings.mode,
        outcome=outcome, statement=statement, before=None, after=None, error=error,
    )
    _log(record)
    cycle.store.record_action(record)
    return ActionResult(
        action=PURGE_ACTION, outcome=outcome, jobid=event.jobid, statement=statement,
        detail=error, limit=cycle.settings.max_actions_per_hour if outcome == CAPPED else None,
        purge=summary,
    )


def _run_purge(
    cycle: _Cycle, keep: timedelta, dry_run: bool
) -> tuple[str, PurgeSummary, str | None]:
    summary = PurgeSummary(keep.total_seconds())
    try:
        result = purge_run_history(cycle.source.dsn, keep, dry_run=dry_run)
    except SourceError as exc:
        return FAILED, summary, str(exc)
    summary = PurgeSummary(keep.total_seconds(), result.deleted, result.boundary, result.batches)
    if result.deleted == 0:
        return ALREADY, summary, None
    return (DRY_RUN if dry_run else DONE), summary, None


def purge_statement(outcome: str, summary: PurgeSummary) -> str:
    """Describe what a purge deleted, would delete, or was going to delete, for the log."""
    keep = messages.format_span(summary.keep_seconds, "en")
    runs = f"runs of {HISTORY_TABLE} older than {keep} (keep)"
    batches = "batch" if summary.batches == 1 else "batches"
    below = f"with runid below {summary.below_runid} in {summary.batches} {batches}"
    if outcome == DONE:
        return f"deleted {summary.rows} {runs} {below}: {_PURGED_RUNS}"
    if outcome == DRY_RUN:
        return f"would delete {summary.rows} {runs} {below}: {_PURGED_RUNS}"
    if outcome == ALREADY:
        return (f"nothing to delete in {HISTORY_TABLE}: no run older than {keep} (keep),"
                " except the newest run, has finished or was left in flight before the"
                " server's last start")
    return f"delete {runs}: {_PURGED_RUNS}"


_PURGED_RUNS = "finished runs, and runs left in flight before the server's last start"


def _announce_purge_cap(cycle: _Cycle, rule: Rule) -> None:
    if cycle.store.cap_since(cycle.target) is not None:
        return
    assert rule.keep is not None
    limit = cycle.settings.max_actions_per_hour
    keep_seconds = rule.keep.total_seconds()
    cycle.store.set_cap(cycle.target, cycle.now)
    log.warning(
        "remediation on %s reached its cap of %d actions per hour: skipping the purge of %s"
        " (rule %r) and every further action until the hour's count drops",
        cycle.target, limit, HISTORY_TABLE, rule.name,
    )
    _send_cap(cycle, rule, lambda locale: messages.render_cap(
        limit, None, messages.purge_plan(keep_seconds, locale), locale))


# --- Reverting when the alert resolves ------------------------------------------


def _on_resolved(cycle: _Cycle, rule: Rule, event: AlertEvent) -> ActionResult | None:
    record = cycle.store.open_action(cycle.target, event.jobid, rule.name)
    if record is None or record.before is None or record.after is None:
        return None
    change = revert_change(record)
    if record.outcome == DRY_RUN or cycle.settings.mode == "dry-run":
        result = ChangeResult(DRY_RUN)
    else:
        result = apply_change(cycle.source, change, cycle.snapshot.role)
    new_id = _record(cycle, rule.name, "resume", change, result, before=record.after,
                     after=record.before if result.outcome in (DONE, DRY_RUN) else None,
                     reverts=record.id)
    # A failed revert stays open, so `cron-watchdog restore` can still undo the action.
    if result.outcome not in (FAILED, STANDBY):
        cycle.store.mark_reverted(record.id, new_id)
    return _result(cycle, "resume", change, result)


def revert_change(record: ActionRecord) -> Change:
    """Build the change that puts back the schedule and active flag an action replaced."""
    assert record.before is not None and record.after is not None
    return Change(record.after, JobState.of(record.after), JobState.of(record.before))


# --- Recording and describing -------------------------------------------------------


def _record(
    cycle: _Cycle,
    rule: str | None,
    action: str,
    change: Change,
    result: ChangeResult,
    *,
    before: Job | None,
    after: Job | None,
    reverts: int | None = None,
) -> int:
    error = result.error
    if result.outcome == CHANGED and result.current is not None:
        error = (f"job changed since the decision: schedule {result.current.schedule!r},"
                 f" active {str(result.current.active).lower()}; left as it is")
    record = ActionRecord(
        id=0, target=cycle.target, at=result.at or cycle.now, rule=rule,
        jobid=change.job.jobid, job_label=change.job.label, action=action,
        mode=cycle.settings.mode, outcome=result.outcome, statement=change.statement,
        before=before, after=after, error=error, reverts=reverts,
    )
    _log(record)
    return cycle.store.record_action(record)


def _log(record: ActionRecord) -> None:
    subject = (f"remediation {record.action} on {_subject(record)},"
               f" rule {record.rule!r}: {record.statement}")
    if record.outcome == DONE and record.action == PURGE_ACTION:
        log.info("%s; deleted runs cannot be restored", subject)
    elif record.outcome == DONE:
        log.info("%s; undo with %s", subject, undo_command(record.jobid))
    elif record.outcome == DRY_RUN:
        log.info("%s (dry-run: nothing changed)", subject)
    elif record.outcome == FAILED:
        log.warning("%s failed: %s", subject, record.error)
    else:
        log.info("%s not run: %s%s", subject, record.outcome,
                 f" ({record.error})" if record.error else "")


def _result(cycle: _Cycle, action: str, change: Change, result: ChangeResult) -> ActionResult:
    current = None
    if result.outcome == CHANGED and result.current is not None:
        current = (result.current.schedule, result.current.active)
    undo = undo_command(change.job.jobid) if result.outcome == DONE and action != "resume" else None
    return ActionResult(
        action=action,
        outcome=result.outcome,
        jobid=change.job.jobid,
        statement=change.statement,
        undo=undo,
        detail=result.error,
        limit=cycle.settings.max_actions_per_hour if result.outcome == CAPPED else None,
        current=current,
    )


def _subject(record: ActionRecord) -> str:
    if record.action == PURGE_ACTION:
        return f"{record.job_label} (jobid {record.jobid})"
    return f"job {record.job_label} (jobid {record.jobid})"


def format_action(record: ActionRecord) -> str:
    """Format one stored action as a line of `cron-watchdog actions`."""
    at = record.at.isoformat(timespec="seconds")
    rule = record.rule if record.rule is not None else "(cli)"
    # A revert is stored as "resume" whatever it put back, such as a schedule.
    action = f"undo of #{record.reverts}" if record.reverts is not None else record.action
    line = (f"{at}  #{record.id} {record.target} {_subject(record)}"
            f"  {action} [{record.mode}] {record.outcome}  rule {rule!r}:"
            f" {record.statement}")
    if record.error:
        line += f"  error: {record.error}"
    if record.reverted_by is not None:
        line += f"  undone by #{record.reverted_by}"
    elif record.outcome == DONE and record.action == PURGE_ACTION:
        line += "  cannot be undone: deleted runs are not kept"
    elif record.outcome == DONE and record.reverts is None:
        line += f"  undo: {undo_command(record.jobid)}"
    return line
