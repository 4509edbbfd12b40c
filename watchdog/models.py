"""Plain data read from pg_cron and produced by evaluation.

All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchdog.history import RunHistory

# pg_cron's run statuses (job_metadata.h). A run is inserted as `starting` and
# moves through `connecting`, `sending` and `running` (libpq mode) to a
# terminal status.
TERMINAL_STATUSES = frozenset({"succeeded", "failed"})
IN_FLIGHT_STATUSES = frozenset({"starting", "connecting", "sending", "running"})

# Messages that pg_cron's scheduler writes itself, not the job's SQL.
INFRASTRUCTURE_MESSAGES = (
    "job startup timeout",
    "connection failed",
    "server restarted",
    "job canceled",
    "connection lost",
)

# The jobid under which alerts of scheduler-wide kinds (one per database) are
# stored. pg_cron's jobid sequence starts at 1, so 0 never names a real job.
SCHEDULER_JOBID = 0


# pg_cron reloads its job table about once a second (pg_cron 1.4, `RefreshTaskHash`),
# so a run may still start shortly after a pause and then be canceled.
CANCEL_MARGIN = timedelta(minutes=1)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return ("info", "warning", "critical").index(self.value)


def format_time(value: datetime | None) -> str | None:
    """Return a datetime as ISO 8601 text for the state file, or None."""
    return value.isoformat() if value is not None else None


def parse_time(text: str | None) -> datetime | None:
    """Return the datetime that `format_time` wrote, or None."""
    return datetime.fromisoformat(text) if text is not None else None


@dataclass(frozen=True)
class Job:
    """A `cron.job` row."""

    jobid: int
    jobname: str | None
    schedule: str
    command: str
    database: str
    username: str
    active: bool

    @property
    def label(self) -> str:
        """Return the name shown in messages: the jobname, or `job <id>` when unnamed."""
        return self.jobname if self.jobname else f"job {self.jobid}"


@dataclass(frozen=True)
class Run:
    """A `cron.job_run_details` row, plus when the watchdog first saw it.

    `start_time` may be NULL: pg_cron before 1.6.3 leaves it unset on runs that
    never started, so such runs are placed in windows by `seen_at` instead.
    """

    runid: int
    jobid: int
    status: str
    return_message: str | None
    start_time: datetime | None
    end_time: datetime | None
    seen_at: datetime

    @functools.cached_property
    def started(self) -> datetime:
        """Return the time used to place the run in a window."""
        return self.start_time if self.start_time is not None else self.seen_at

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT_STATUSES

    @property
    def duration(self) -> timedelta | None:
        """Return end minus start, or None when either is NULL."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def infrastructure_failure(self) -> bool:
        """Tell whether pg_cron itself, not the job's SQL, wrote the failure."""
        if not self.failed or not self.return_message:
            return False
        return self.return_message.strip().lower() in INFRASTRUCTURE_MESSAGES


@dataclass(frozen=True)
class SchedulerStatus:
    """The pg_cron scheduler process and its settings, as read by one poll.

    `processes` counts pg_stat_activity rows of the pg_cron launcher.
    `launch_active_jobs` and `max_running_jobs` are None when the role may
    not read them (pg_cron registers every cron.* setting as superuser-only).
    """

    processes: int
    launch_active_jobs: bool | None = None
    max_running_jobs: int | None = None
    # True when max_running_jobs is the configured fallback, not the server's setting.
    max_running_jobs_configured: bool = False


@dataclass(frozen=True)
class HistorySize:
    """The catalog's estimate of `cron.job_run_details`, read without counting rows.

    `rows` is pg_class.reltuples, or the runid span when the table was never
    analyzed (reltuples -1). `rows_source` names the source.
    """

    rows: int
    total_bytes: int
    rows_source: str = "reltuples"


@dataclass(frozen=True)
class HttpResponse:
    """A `net._http_response` row written by pg_net, with `content` already trimmed."""

    id: int
    status_code: int | None
    timed_out: bool
    error_msg: str | None
    content: str | None
    created: datetime


@dataclass(frozen=True)
class HttpResponses:
    """The pg_net responses of the longest http_failures window.

    `installed` is False when `net._http_response` does not exist, and
    `readable` False when the role lacks SELECT on it.
    """

    installed: bool
    responses: tuple[HttpResponse, ...] = ()
    readable: bool = True


@dataclass(frozen=True)
class Snapshot:
    """What one poll cycle read: jobs, the runs in the longest window, and context.

    `history` holds every job's runs that started at or after `horizon`, and
    hourly sums of older succeeded runs for baselines. `last_start` has each
    job's newest known start time, which may be older than the horizon.
    `first_seen` has when the watchdog first saw each job.
    """

    taken_at: datetime
    jobs: dict[int, Job]
    runs: list[Run]
    horizon: datetime
    last_start: dict[int, datetime] = field(default_factory=dict)
    first_seen: dict[int, datetime] = field(default_factory=dict)
    cron_timezone: str = "GMT"
    postmaster_start: datetime | None = None
    role: str = ""
    in_recovery: bool = False
    # When the watchdog last paused or unscheduled each job, by jobid; see
    # `canceled_by_watchdog`.
    watchdog_cancels: dict[int, datetime] = field(default_factory=dict)
    # Rows this poll read from cron.job and cron.job_run_details.
    rows_read: int = 0
    # Scheduler-wide facts, read only when a rule of the matching kind needs them.
    scheduler: SchedulerStatus | None = None
    history_size: HistorySize | None = None
    http: HttpResponses | None = None
    # The definition each job had when the watchdog first saw it, including
    # jobs since unscheduled; job_drift compares against it.
    known_jobs: dict[int, Job] = field(default_factory=dict)
    # (jobid, field) pairs the watchdog's own remediation changed; job_drift
    # does not report them. Fields: "schedule", "command", "active", "exists".
    own_changes: frozenset[tuple[int, str]] = frozenset()

    # The runs as the poll cycle keeps them. Left unset, it is built from `runs`,
    # which is how tests hand-make a snapshot.
    stored_history: RunHistory | None = None

    @functools.cached_property
    def history(self) -> RunHistory:
        """Return every job's runs, built once per snapshot from `runs` unless stored."""
        if self.stored_history is not None:
            return self.stored_history
        from watchdog.history import RunHistory

        return RunHistory.from_runs(self.runs)

    def canceled_by_watchdog(self, run: Run) -> bool:
        """Tell whether the run failed only because the watchdog paused or unscheduled its job.

        pg_cron marks the run in flight as failed with `job canceled` when its
        job is deactivated or unscheduled. Such a run started before the
        action, or within CANCEL_MARGIN after it while pg_cron had not yet
        reloaded its jobs. Every evaluator that counts failures must skip it,
        so the watchdog's own action never counts as a new failure.
        """
        acted_at = self.watchdog_cancels.get(run.jobid)
        if acted_at is None or not run.failed:
            return False
        message = (run.return_message or "").strip().lower()
        return message == "job canceled" and run.started <= acted_at + CANCEL_MARGIN


Fact = int | float | str | None


@dataclass(frozen=True)
class Verdict:
    """The outcome of one rule on one job at one time.

    `facts` contains the numbers behind the verdict, keyed by name, for the
    message templates of the rule kind (for example `failed`, `finished`,
    `ratio`, `threshold`, `window_seconds` for failure_ratio). Durations are
    seconds and times are ISO 8601 strings, so facts can be stored as JSON.
    `value` is the main observed number, stored with each alert transition.
    """

    rule: str
    kind: str
    jobid: int
    job_label: str
    firing: bool
    value: float | None
    facts: dict[str, Fact] = field(default_factory=dict)
    last_error: str | None = None
    evidence: tuple[int, ...] = ()
    # True when the verdict is about pg_cron or the server rather than the
    # job's own SQL (infrastructure outcomes, scheduler down, capacity).
    # Remediation must not act on such verdicts.
    infrastructure: bool = False


@dataclass(frozen=True)
class AlertEvent:
    """A notification-worthy change of one alert: it fired, is still firing, or resolved."""

    target: str
    rule: str
    kind: str
    severity: Severity
    jobid: int
    job_label: str
    database: str | None
    state: str  # "firing" or "resolved"
    at: datetime
    since: datetime
    verdict: Verdict
    remediation: ActionResult | None = None
    # True for a repeat_interval reminder of an alert that is still firing.
    reminder: bool = False
    # True for the first announcement of an alert that fired while muted.
    announced_late: bool = False
    # The job's schedule and its newest run, for the message body; None when unknown.
    schedule: str | None = None
    last_run_at: datetime | None = None
    last_run_seconds: float | None = None

    @property
    def alert_id(self) -> str:
        """Return the alert's id in logs and the outbox: `rule/jobid`."""
        return f"{self.rule}/{self.jobid}"


@dataclass(frozen=True)
class ActionResult:
    """What remediation did, or would have done, for one alert event.

    `outcome` is one of remediate.OUTCOMES. `statement` is the exact SQL call
    with its arguments, or for a purge the rows it deleted; `undo` the command
    that reverses it. `detail` is the error of a failed action. `current`
    is the job's (schedule, active) when it no longer matched what the
    decision was made on.
    """

    action: str
    outcome: str
    jobid: int
    statement: str
    undo: str | None = None
    detail: str | None = None
    limit: int | None = None
    current: tuple[str, bool] | None = None
    # Set for the purge action, which changes no job.
    purge: PurgeSummary | None = None


@dataclass(frozen=True)
class PurgeSummary:
    """The rows a purge of cron.job_run_details deleted, or would delete in dry-run.

    `below_runid` is the lowest runid kept by age; None when the purge did not
    run or no run was old enough.
    """

    keep_seconds: float
    rows: int = 0
    below_runid: int | None = None
    batches: int = 0
