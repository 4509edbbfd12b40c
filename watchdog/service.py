"""The long-running worker around poll cycles: outages, rule reloads, health.

One `tick` per poll interval:
1. Reload the rules file when its content changed or SIGHUP asked for it.
2. Run the poll cycle.
3. On success: resolve the outage alert, update metrics and health, ping
   the heartbeat. On a database error: count the failed poll, raise the
   outage alert after `outage_after` of them, and still deliver queued
   messages, since the channels may work while the database does not.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from watchdog import selfalerts
from watchdog.counts import count
from watchdog.errors import ConfigError, ReconnectPending, SourceError
from watchdog.health import Health, Heartbeat, Metrics
from watchdog.loop import CycleResult, Worker
from watchdog.outbox import deliver_due
from watchdog.rules import load_rules
from watchdog.state import StateStore

log = logging.getLogger(__name__)


class Service:
    """Runs a Worker every poll interval and keeps it trustworthy over days."""

    def __init__(
        self,
        worker: Worker,
        rules_path: Path,
        outage_after: int,
        health: Health,
        metrics: Metrics,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.worker = worker
        self.rules_path = rules_path
        self.outage_after = outage_after
        self.health = health
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.reload_requested = threading.Event()
        self.failed_polls = 0
        # When the first of the current run of failed polls happened; None while reads work.
        self.failing_since: datetime | None = None
        self._rules_digest = _digest(rules_path)
        # The rules were valid at start, so an invalid-rules alert left by an earlier process
        # resolves on the first tick.
        self._rules_checked = False
        worker.on_delivery = metrics.count_delivery

    @property
    def store(self) -> StateStore:
        return self.worker.store

    def tick(self) -> None:
        """Reload rules if needed, then run one poll cycle and record its outcome."""
        self.reload_rules()
        started = time.monotonic()
        try:
            result = self.worker.cycle()
        except SourceError as exc:
            self.metrics.cycle_seconds.labels(outcome="failed").observe(
                time.monotonic() - started
            )
            self._poll_failed(exc)
            return
        self.metrics.cycle_seconds.labels(outcome="ok").observe(time.monotonic() - started)
        self._poll_succeeded(result)

    def reload_rules(self) -> None:
        """Switch to the rules file's new content when it is valid; alert once when not."""
        if not self._rules_checked:
            self._rules_checked = True
            self._resolve(selfalerts.RULES_INVALID, datetime.now(UTC))
        forced = self.reload_requested.is_set()
        self.reload_requested.clear()
        digest = _digest(self.rules_path)
        if digest == self._rules_digest and not forced:
            return
        self._rules_digest = digest
        now = datetime.now(UTC)
        try:
            rules = load_rules(self.rules_path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("rules reload: %s", problem)
            log.error("rules file %s is invalid; the last valid rules stay in force",
                      self.rules_path)
            self._fire(selfalerts.RULES_INVALID, exc.problems[0], now)
            return
        self.worker.rules = rules
        log.info("rules reloaded from %s: %s, %s", self.rules_path,
                 count(len(rules.rules), "rule"), count(len(rules.channels), "channel"))
        self._resolve(selfalerts.RULES_INVALID, now)

    def _poll_failed(self, exc: SourceError) -> None:
        now = datetime.now(UTC)
        if isinstance(exc, ReconnectPending):
            # Not a read attempt, so it does not count towards the outage alert.
            log.debug("poll skipped: %s", exc)
            self._deliver(now)
            return
        self.failed_polls += 1
        if self.failing_since is None:
            self.failing_since = now
        self.metrics.database_errors.inc()
        self.health.last_error = str(exc)
        if self.worker.unread_since is None:
            # NOTE: kept in memory only, so a restart during an outage loses when it began.
            self.worker.unread_since = self.worker.last_read_at or now
        if self.failed_polls < self.outage_after:
            log.warning("poll failed (%d of %d before the outage alert): %s",
                        self.failed_polls, self.outage_after, exc)
        else:
            if self.failed_polls == self.outage_after:
                log.error("cannot read pg_cron for %d polls in a row: %s",
                          self.failed_polls, exc)
            selfalerts.fire(self.store, self.worker.target, self.worker.rules,
                            selfalerts.DATABASE_UNREADABLE, str(exc), now, self.failing_since)
        # Channels may work while the database does not: send what is queued.
        self._deliver(now)

    def _poll_succeeded(self, result: CycleResult) -> None:
        if self.failed_polls:
            log.info("pg_cron on %s readable again after %d failed polls",
                     self.worker.target, self.failed_polls)
        self.failed_polls = 0
        self.failing_since = None
        self._resolve(selfalerts.DATABASE_UNREADABLE, result.snapshot.taken_at)
        self.health.cycle_succeeded()
        self.metrics.last_success.set(time.time())
        self.metrics.rows_read.inc(result.snapshot.rows_read)
        for event in result.events:
            if event.remediation is not None:
                self.metrics.remediation_actions.labels(outcome=event.remediation.outcome).inc()
        self._update_alert_metrics()
        if self.heartbeat is not None:
            self.heartbeat.ping()

    def _fire(self, name: str, detail: str, now: datetime) -> None:
        rules = self.worker.rules
        if selfalerts.fire(self.store, self.worker.target, rules, name, detail, now):
            self._deliver(now)

    def _resolve(self, name: str, now: datetime) -> None:
        rules = self.worker.rules
        if selfalerts.resolve(self.store, self.worker.target, rules, name, now):
            self._deliver(now)

    def _deliver(self, now: datetime) -> None:
        # The cycle's own log line counts only what the cycle sent, so this
        # delivery of self alerts and retries gets a line of its own.
        report = deliver_due(self.store, self.worker.target, self.worker.rules, now,
                             self.metrics.count_delivery)
        if report.sent or report.failed:
            log.info("messages delivered outside the poll cycle: %d sent, %d failed, %d waiting",
                     report.sent, report.failed, report.waiting)

    def _update_alert_metrics(self) -> None:
        severities = {rule.name: rule.severity.value for rule in self.worker.rules.rules}
        counts: Counter[tuple[str, str, str]] = Counter()
        # Pending and firing alerts; alerts back to ok are not stored.
        for record in self.store.alerts(self.worker.target).values():
            counts[(record.state, record.rule, severities.get(record.rule, "unknown"))] += 1
        for alert in selfalerts.firing_self_alerts(self.store, self.worker.target):
            counts[("firing", f"watchdog:{alert.name}", selfalerts.SEVERITY[alert.name])] += 1
        self.metrics.set_alerts(dict(counts))


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
