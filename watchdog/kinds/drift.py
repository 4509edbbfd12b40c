"""job_drift: a job the watchdog has seen is unscheduled, paused, rescheduled or edited."""

from __future__ import annotations

import hashlib
from datetime import datetime

from watchdog.kinds.common import job_verdict
from watchdog.models import Job, Snapshot, Verdict
from watchdog.rules import Rule


def job_drift(rule: Rule, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Compare every selected job, current or since unscheduled, with its expected definition.

    The expected definition is the one first seen (`Snapshot.known_jobs`),
    except that `expect_schedule` and `expect_active` override it. A change
    listed in `Snapshot.own_changes` was made by the watchdog's remediation
    and is not drift.
    """
    verdicts: list[Verdict] = []
    for jobid in sorted(set(snapshot.jobs) | set(snapshot.known_jobs)):
        current = snapshot.jobs.get(jobid)
        known = snapshot.known_jobs.get(jobid) or current
        assert known is not None
        if not rule.selects(current or known):
            continue
        changes = _changes(rule, known, current, snapshot.own_changes)
        expected_schedule = rule.expect_schedule or known.schedule
        expected_active = known.active if rule.expect_active is None else rule.expect_active
        verdicts.append(job_verdict(
            rule,
            current or known,
            firing=bool(changes),
            value=float(len(changes)),
            facts={
                "changes": ",".join(changes),
                "schedule": current.schedule if current else None,
                "expected_schedule": expected_schedule,
                "active": _flag(current.active) if current else None,
                "expected_active": _flag(expected_active),
                "command_fingerprint": command_fingerprint(current.command) if current else None,
                "expected_command_fingerprint": command_fingerprint(known.command),
            },
        ))
    return verdicts


def _changes(
    rule: Rule, known: Job, current: Job | None, own: frozenset[tuple[int, str]]
) -> list[str]:
    if current is None:
        return [] if (known.jobid, "exists") in own else ["unscheduled"]
    expected_schedule = rule.expect_schedule or known.schedule
    expected_active = known.active if rule.expect_active is None else rule.expect_active
    changes = []
    if current.schedule != expected_schedule:
        changes.append("schedule")
    if current.active != expected_active:
        changes.append("active")
    if current.command != known.command:
        changes.append("command")
    return [change for change in changes if (current.jobid, change) not in own]


def command_fingerprint(command: str) -> str:
    """Return the first 8 hex digits of the command's SHA-256.

    Messages show this in place of the command, which often carries credentials
    such as the bearer token of a pg_net request.
    """
    return hashlib.sha256(command.encode()).hexdigest()[:8]


def _flag(value: bool) -> str:
    return "true" if value else "false"
