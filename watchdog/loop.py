"""The worker: one poll cycle, and the loop that runs it every poll interval."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import FrameType

import schedule

from watchdog.alerts import firing_alerts, update_alerts
from watchdog.counts import count
from watchdog.evaluate import evaluate
from watchdog.models import AlertEvent, Snapshot, Verdict
from watchdog.outbox import DeliveryReport, deliver_due, enqueue_events
from watchdog.remediate import remediate_events
from watchdog.rules import RuleSet
from watchdog.silences import Muting
from watchdog.snapshot import ClusterReads, take_snapshot
from watchdog.source import PgSource
from watchdog.state import AlertRecord, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleResult:
    snapshot: Snapshot
    events: list[AlertEvent]
    firing: list[AlertRecord]
    delivery: DeliveryReport


class Worker:
    """Runs poll cycles against one watched database."""

    def __init__(
        self,
        rules: RuleSet,
        store: StateStore,
        source: PgSource,
        fallback_timezone: str | None = None,
        fallback_max_running_jobs: int | None = None,
    ) -> None:
        self.rules = rules
        self.store = store
        self.source = source
        self.fallback_timezone = fallback_timezone
        # Called with the channel name and outcome of every send (for metrics).
        self.on_delivery: Callable[[str, bool], None] | None = None
        # Database time of the last successful read.
        self.last_read_at: datetime | None = None
        # While polls fail: the last good read. After them: that time and the
        # first good read again, the span in which missed slots are not alerted.
        self.unread_since: datetime | None = None
        self.unread_span: tuple[datetime, datetime] | None = None
        self.fallback_max_running_jobs = fallback_max_running_jobs

    @property
    def target(self) -> str:
        return self.source.target

    def cycle(self) -> CycleResult:
        """Run one poll cycle.

        1. Read new runs and the jobs, and store them (snapshot).
        2. Evaluate every rule at the database's own `now()`, so the clock of
           the watchdog's host cannot skew windows.
        3. Apply verdicts to alerts, run remediation for alerts that start
           firing or resolve, and store each message in the outbox, in one
           transaction with the alert change, so no alert is lost.
        4. Deliver due messages, including retries of earlier failures.
        """
        reads = ClusterReads.for_rules(self.rules, self.fallback_max_running_jobs)
        snapshot = take_snapshot(
            self.source, self.store, self.rules.lookback, self.fallback_timezone, reads,
            baseline_lookback=self.rules.baseline_lookback,
        )
        now = snapshot.taken_at
        self.last_read_at = now
        if self.unread_since is not None:
            self.unread_span = (self.unread_since, now)
            self.unread_since = None
        verdicts = evaluate(self.rules, snapshot, now)
        if self.unread_span is not None:
            already_firing = {key for key, record in self.store.alerts(self.target).items()
                              if record.state == "firing"}
            verdicts = hold_unread_slots(verdicts, self.unread_span, already_firing)

        muting = Muting(
            now, tuple(self.store.silences(self.target, now)), self.rules.maintenance
        )
        with self.store.transaction():
            events = update_alerts(
                self.store, self.target, self.rules, snapshot, verdicts, now, muting
            )
            # NOTE: a crash between an action's PostgreSQL commit and this SQLite
            # commit loses the action's log row. The next cycle then finds the job
            # already changed and logs "already". An unscheduled job's definition
            # survives in the backup file that remediation flushes before acting.
            events = remediate_events(self.store, self.source, self.rules, snapshot, events)
            enqueue_events(self.store, self.target, self.rules, events, now)

        delivery = deliver_due(self.store, self.target, self.rules, now, self.on_delivery)
        firing = firing_alerts(self.store, self.target)
        log.info(
            "cycle on %s: %s read, %s, %s in window, %s firing, %d changed, %s sent,"
            " %d waiting",
            self.target, count(snapshot.rows_read, "row"), count(len(snapshot.jobs), "job"),
            count(len(snapshot.history), "run"), count(len(firing), "alert"), len(events),
            count(delivery.sent, "message"), delivery.waiting,
        )
        return CycleResult(snapshot, events, firing, delivery)


def hold_unread_slots(
    verdicts: list[Verdict], span: tuple[datetime, datetime], firing: set[tuple[str, int]]
) -> list[Verdict]:
    """Keep missing_run alerts from starting for slots due while the database was unread.

    When the database itself was down, pg_cron was down too and does not make
    up missed slots, so every job due in that span would alert at once. The
    next slot after the span is judged as usual. An alert that was already
    firing keeps its verdict, so it neither resolves nor repeats.
    """
    start, end = span
    held: list[Verdict] = []
    for verdict in verdicts:
        expected = verdict.facts.get("expected_at")
        if (
            verdict.kind == "missing_run"
            and verdict.firing
            and (verdict.rule, verdict.jobid) not in firing
            and isinstance(expected, str)
            and start <= datetime.fromisoformat(expected) <= end
        ):
            log.debug("alert %r on job %s held: its slot at %s fell while the database"
                     " could not be read", verdict.rule, verdict.job_label, expected)
            verdict = dataclasses.replace(verdict, firing=False)
        held.append(verdict)
    return held


class StopFlag:
    """Set by the first SIGTERM or SIGINT; a second one stops at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            raise SystemExit(0)
        log.info("%s received: stopping after the current cycle", signal.Signals(signum).name)
        self.event.set()


def guarded(job: Callable[[], object], name: str) -> Callable[[], None]:
    """Wrap a scheduled job so an exception is logged and the job stays scheduled.

    `schedule` does not advance a job that raised, so without this wrapper
    the failing job would run again on every loop pass and starve the others.
    """

    def run() -> None:
        try:
            job()
        except Exception:
            log.exception("%s failed; the next run follows on schedule", name)

    return run


def run_forever(cycle: Callable[[], object], interval: float, stop: StopFlag) -> None:
    """Run `cycle` now and then every `interval` seconds until the stop flag is set."""
    scheduler = schedule.Scheduler()
    poll = guarded(cycle, "poll cycle")
    # schedule's type hints declare int, but it accepts fractional seconds.
    scheduler.every(interval).seconds.do(poll)  # type: ignore[arg-type]
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    log.info("watchdog started at %s, polling every %gs", started, interval)

    poll()
    while not stop.event.is_set():
        try:
            scheduler.run_pending()
        except Exception:
            log.exception("scheduler loop failed; continuing")
        idle = scheduler.idle_seconds
        pause = 0.5 if idle is None else max(0.05, min(idle, 0.5))
        stop.event.wait(pause)
    log.info("watchdog stopped")
