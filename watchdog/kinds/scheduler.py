"""Scheduler-wide kinds: one verdict per database, stored under SCHEDULER_JOBID.

The module also adjusts missing_run verdicts across kinds. While the
scheduler is down every job stops, so the per-job misses are suppressed and
counted in the scheduler_down verdict. While pg_cron runs as many jobs as
cron.max_running_jobs allows, misses are marked as capacity-starved.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from watchdog.history import from_micros, micros
from watchdog.kinds.common import abandoned_runs, open_runs
from watchdog.models import SCHEDULER_JOBID, Fact, Run, Snapshot, Verdict
from watchdog.rules import Rule

log = logging.getLogger(__name__)

SCHEDULER_LABEL = "pg_cron scheduler"
INFRASTRUCTURE_LABEL = "pg_cron"
HISTORY_LABEL = "cron.job_run_details"
HTTP_LABEL = "net._http_response"
# Response bodies and error texts shown in messages are cut to this many characters.
HTTP_TEXT_MAX_CHARS = 200
# Jobs named one by one in the scheduler_down message; the rest are counted.
SUPPRESSED_NAMED_MAX = 10

_warned_no_pg_net: set[str] = set()


def _verdict(
    rule: Rule,
    label: str,
    *,
    firing: bool,
    value: float | None,
    facts: dict[str, Fact],
    evidence: Iterable[int] = (),
    last_error: str | None = None,
    infrastructure: bool = False,
) -> Verdict:
    return Verdict(
        rule=rule.name, kind=rule.kind, jobid=SCHEDULER_JOBID, job_label=label, firing=firing,
        value=value, facts=facts, last_error=last_error, evidence=tuple(evidence),
        infrastructure=infrastructure,
    )


def scheduler_down(rule: Rule, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Fire when no pg_cron launcher runs, cron.launch_active_jobs is off, or on a standby."""
    status = snapshot.scheduler
    if status is None:
        return []
    reason = None
    if snapshot.in_recovery:
        reason = "standby"
    elif status.processes == 0:
        reason = "no_process"
    elif status.launch_active_jobs is False:
        reason = "launch_active_jobs_off"
    return [_verdict(
        rule,
        SCHEDULER_LABEL,
        firing=reason is not None,
        value=float(status.processes),
        facts={"reason": reason, "processes": status.processes, "suppressed": 0,
               "suppressed_jobs": None},
        infrastructure=True,
    )]


def all_open_runs(snapshot: Snapshot) -> list[Run]:
    """Return runs in flight now, leaving out abandoned ones that pg_cron will never end."""
    result: list[Run] = []
    for runs in snapshot.history.jobs.values():
        result.extend(open_runs(runs, snapshot))
    return sorted(result, key=lambda run: run.runid)


def saturated_since(snapshot: Snapshot, limit: int) -> datetime | None:
    """Return since when at least `limit` runs have been in flight without a break.

    Replays run starts and ends in time order. Runs without an end_time that
    are no longer in flight (pg_cron's `server restarted` rows) have no known
    end and are left out.
    """
    open_now = {run.runid for run in all_open_runs(snapshot)}
    changes: list[tuple[int, int]] = []
    for runs in snapshot.history.jobs.values():
        for _, start, end in runs.succeeded_intervals():
            changes.append((start, 1))
            changes.append((end, -1))
        for run in runs.other_runs():
            if run.runid in open_now:
                changes.append((micros(run.started), 1))
            elif run.finished and run.start_time is not None and run.end_time is not None:
                changes.append((micros(run.start_time), 1))
                changes.append((micros(run.end_time), -1))
    # At equal times an end comes before a start, so a hand-over is not saturation.
    changes.sort()
    in_flight = 0
    since: int | None = None
    for moment, step in changes:
        in_flight += step
        if in_flight >= limit and since is None:
            since = moment
        elif in_flight < limit:
            since = None
    return from_micros(since) if since is not None else None


def concurrency_saturated(rule: Rule, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Fire when runs in flight have been at cron.max_running_jobs for at least `for`."""
    status = snapshot.scheduler
    if status is None or status.max_running_jobs is None:
        return []
    limit = status.max_running_jobs
    running = all_open_runs(snapshot)
    since = saturated_since(snapshot, limit) if len(running) >= limit else None
    lasted = (now - since).total_seconds() if since is not None else 0.0
    firing = since is not None and lasted >= rule.saturated_for.total_seconds()
    return [_verdict(
        rule,
        SCHEDULER_LABEL,
        firing=firing,
        value=float(len(running)),
        facts={
            "in_flight": len(running),
            "max_running_jobs": limit,
            "configured": 1 if status.max_running_jobs_configured else 0,
            "saturated_seconds": lasted,
            "for_seconds": rule.saturated_for.total_seconds(),
        },
        evidence=sorted((run.runid for run in running), reverse=True),
        infrastructure=True,
    )]


def run_history_size(rule: Rule, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Fire when the catalog's estimate of cron.job_run_details exceeds max_rows or max_size."""
    size = snapshot.history_size
    if size is None:
        return []
    over_rows = rule.max_rows > 0 and size.rows > rule.max_rows
    over_size = rule.max_size > 0 and size.total_bytes > rule.max_size
    return [_verdict(
        rule,
        HISTORY_LABEL,
        firing=over_rows or over_size,
        value=float(size.rows),
        facts={
            "rows": size.rows,
            "rows_source": size.rows_source,
            "max_rows": rule.max_rows or None,
            "bytes": size.total_bytes,
            "max_bytes": rule.max_size or None,
            "keep_seconds": rule.keep.total_seconds() if rule.keep else None,
        },
    )]


def http_failures(rule: Rule, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Fire on failed pg_net responses in the window: by count, by ratio, or both.

    A response failed when its status_code is at or above min_status, it
    timed out, or pg_net stored an error_msg. pg_net does not record which
    job sent a request, so the verdict is for the whole database.
    """
    http = snapshot.http
    if http is None:
        return []
    if not http.installed or not http.readable:
        if rule.name not in _warned_no_pg_net:
            _warned_no_pg_net.add(rule.name)
            reason = (
                "net._http_response does not exist, so pg_net is not installed in this"
                " database" if not http.installed else
                "the role may not read net._http_response; GRANT SELECT ON"
                " net._http_response to it"
            )
            log.warning("rule %r skipped: %s", rule.name, reason)
        return []
    window = [
        response for response in http.responses
        if now - rule.window <= response.created <= now
    ]
    failed = [
        response for response in window
        if response.timed_out or response.error_msg
        or (response.status_code is not None and response.status_code >= rule.min_status)
    ]
    ratio = len(failed) / len(window) if window else 0.0
    by_count = rule.min_count > 0 and len(failed) >= rule.min_count
    by_ratio = rule.threshold > 0 and len(window) >= rule.min_runs and ratio >= rule.threshold
    last = max(failed, key=lambda response: response.id, default=None)
    last_timed_out = None
    if last is not None:
        last_timed_out = 1 if last.timed_out else 0
    return [_verdict(
        rule,
        HTTP_LABEL,
        firing=by_count or by_ratio,
        value=float(len(failed)),
        facts={
            "failed": len(failed),
            "total": len(window),
            "ratio": ratio,
            "threshold": rule.threshold or None,
            "min_count": rule.min_count or None,
            "min_status": rule.min_status,
            "window_seconds": rule.window.total_seconds(),
            "last_id": last.id if last else None,
            "last_status": last.status_code if last else None,
            "last_timed_out": last_timed_out,
            "last_body": _trim(last.content) if last else None,
        },
        last_error=_trim(last.error_msg) if last else None,
    )]


def infrastructure_outcomes(rule: Rule, snapshot: Snapshot, now: datetime) -> list[Verdict]:
    """Fire when jobs were hit by infrastructure outcomes in the window, in one alert.

    Counts failed runs whose message pg_cron wrote itself (job startup
    timeout, connection failed, server restarted, job canceled, connection
    lost) and abandoned runs. An abandoned run is placed at the moment it
    became abandoned, so it is reported while that moment is in the window
    and then left alone. The `groups` fact has one line per (minute, reason):
    `minute<TAB>reason<TAB>job labels`, where reason is the return_message or
    `abandoned:<status>`.
    """
    start = now - rule.window
    hits: list[tuple[datetime, str, str, int]] = []
    for jobid, runs in snapshot.history.jobs.items():
        job = snapshot.jobs.get(jobid) or snapshot.known_jobs.get(jobid)
        if job is not None and not rule.selects(job):
            continue
        label = job.label if job is not None else f"job {jobid}"
        for run in runs.others_in(start, now):
            if run.infrastructure_failure:
                reason = (run.return_message or "").strip().lower()
                hits.append((run.started, reason, label, run.runid))
        for runid, moment in abandoned_runs(runs, snapshot).items():
            if start <= moment <= now:
                hits.append((moment, f"abandoned:{runs.others[runid].status}", label, runid))

    jobs = {label for _, _, label, _ in hits}
    return [_verdict(
        rule,
        INFRASTRUCTURE_LABEL,
        firing=len(jobs) >= rule.min_jobs,
        value=float(len(jobs)),
        facts={
            "jobs": len(jobs),
            "runs": len(hits),
            "min_jobs": rule.min_jobs,
            "window_seconds": rule.window.total_seconds(),
            "groups": _group_by_minute(hits) or None,
        },
        evidence=sorted((runid for *_, runid in hits), reverse=True),
        infrastructure=True,
    )]


def _group_by_minute(hits: list[tuple[datetime, str, str, int]]) -> str:
    groups: dict[tuple[str, str], set[str]] = {}
    for moment, reason, label, _ in hits:
        minute = moment.astimezone(UTC).replace(second=0, microsecond=0).isoformat()
        groups.setdefault((minute, reason), set()).add(label)
    return "\n".join(
        f"{minute}\t{reason}\t{', '.join(sorted(labels))}"
        for (minute, reason), labels in sorted(groups.items())
    )


def _trim(text: str | None) -> str | None:
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= HTTP_TEXT_MAX_CHARS else flat[: HTTP_TEXT_MAX_CHARS - 1] + "…"


def adjust_missing_runs(verdicts: list[Verdict], snapshot: Snapshot) -> list[Verdict]:
    """Suppress missing_run verdicts while the scheduler is down; mark capacity starvation.

    A firing scheduler_down verdict gets the count and names of the jobs whose
    missing_run alerts it suppressed.
    """
    down = any(v.kind == "scheduler_down" and v.firing for v in verdicts)
    missing = any(v.kind == "missing_run" and v.firing for v in verdicts)
    # Counting the runs in flight walks every job, so it waits for a miss to explain.
    starved = _saturation(snapshot) if missing and not down else None
    suppressed: list[str] = []
    adjusted: list[Verdict] = []
    for verdict in verdicts:
        if verdict.kind == "missing_run" and verdict.firing and down:
            suppressed.append(verdict.job_label)
            verdict = dataclasses.replace(
                verdict, firing=False, facts={**verdict.facts, "suppressed_by": "scheduler_down"}
            )
        elif verdict.kind == "missing_run" and verdict.firing and starved is not None:
            in_flight, limit = starved
            verdict = dataclasses.replace(verdict, facts={
                **verdict.facts, "capacity_starved": 1, "in_flight": in_flight,
                "max_running_jobs": limit,
            })
        adjusted.append(verdict)
    if not suppressed:
        return adjusted
    names = sorted(set(suppressed))
    shown = ", ".join(names[:SUPPRESSED_NAMED_MAX])
    return [
        dataclasses.replace(verdict, facts={
            **verdict.facts, "suppressed": len(names), "suppressed_jobs": shown,
        }) if verdict.kind == "scheduler_down" and verdict.firing else verdict
        for verdict in adjusted
    ]


def _saturation(snapshot: Snapshot) -> tuple[int, int] | None:
    status = snapshot.scheduler
    if status is None or status.max_running_jobs is None:
        return None
    in_flight = len(all_open_runs(snapshot))
    return (in_flight, status.max_running_jobs) if in_flight >= status.max_running_jobs else None
