"""The watchdog's own health: Prometheus metrics, `/healthz`, and the heartbeat ping.

The HTTP server and the heartbeat run in background threads, so neither a
slow scraper nor a slow heartbeat endpoint can delay a poll cycle.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from watchdog.config import parse_http_addr
from watchdog.errors import ConfigError

log = logging.getLogger(__name__)

# /healthz turns unhealthy when no cycle completed within this many poll intervals.
HEALTHY_INTERVALS = 3
HEARTBEAT_TIMEOUT_S = 5.0
# A failing heartbeat is logged at most once per this many seconds.
HEARTBEAT_LOG_EVERY_S = 60.0


class Metrics:
    """Prometheus metrics of one worker, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.cycle_seconds = Histogram(
            "cron_watchdog_cycle_duration_seconds", "Duration of poll cycles",
            ["outcome"], registry=registry,
        )
        self.last_success = Gauge(
            "cron_watchdog_last_success_timestamp_seconds",
            "Unix time when the last poll cycle completed", registry=registry,
        )
        self.rows_read = Counter(
            "cron_watchdog_rows_read", "Rows read from cron.job and cron.job_run_details",
            registry=registry,
        )
        self.alerts = Gauge(
            "cron_watchdog_alerts", "Alerts by state, rule and severity",
            ["state", "rule", "severity"], registry=registry,
        )
        self.notifications = Counter(
            "cron_watchdog_notifications", "Notifications by channel name and outcome",
            ["channel", "outcome"], registry=registry,
        )
        self.remediation_actions = Counter(
            "cron_watchdog_remediation_actions", "Remediation actions by outcome",
            ["outcome"], registry=registry,
        )
        self.database_errors = Counter(
            "cron_watchdog_database_errors", "Poll cycles that could not read the database",
            registry=registry,
        )

    def set_alerts(self, counts: dict[tuple[str, str, str], int]) -> None:
        """Replace the alert gauge with counts keyed by (state, rule, severity)."""
        self.alerts.clear()
        for (state, rule, severity), count in counts.items():
            self.alerts.labels(state=state, rule=rule, severity=severity).set(count)

    def count_delivery(self, channel: str, ok: bool) -> None:
        self.notifications.labels(channel=channel, outcome="sent" if ok else "failed").inc()


class Health:
    """Tracks when the last poll cycle completed, for `/healthz`."""

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self._last_success: float | None = None
        self.last_error = ""

    def cycle_succeeded(self) -> None:
        self._last_success = time.monotonic()
        self.last_error = ""

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Return whether the worker is healthy, and a JSON body with the reason."""
        limit = self.poll_interval * HEALTHY_INTERVALS
        if self._last_success is None:
            return False, {"status": "starting", "last_error": self.last_error or None}
        age = time.monotonic() - self._last_success
        healthy = age <= limit
        body: dict[str, Any] = {
            "status": "ok" if healthy else "stale",
            "seconds_since_last_cycle": round(age, 1),
            "limit_seconds": limit,
        }
        if self.last_error:
            body["last_error"] = self.last_error
        return healthy, body


class HealthServer:
    """Serves `/healthz` and `/metrics` on one address from a background thread."""

    def __init__(self, address: str, health: Health, metrics: Metrics) -> None:
        host, port = parse_http_addr(address)
        handler = _handler_class(health, metrics)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                [f"setting WATCHDOG_HTTP_ADDR: cannot listen on {address} ({exc.strerror});"
                 " choose a free HOST:PORT, or set it empty to disable the HTTP server"]
            ) from exc
        self._server.daemon_threads = True
        self.address = f"{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("serving /healthz and /metrics on http://%s", self.address)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(health: Health, metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                healthy, body = health.report()
                self._reply(200 if healthy else 503, "application/json",
                            json.dumps(body).encode())
            elif path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._reply(404, "text/plain", b"not found: try /healthz or /metrics\n")

        def _reply(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes every few seconds would flood the log; failures show in /healthz.
            return

    return Handler


def mask_heartbeat_url(url: str) -> str:
    """Return the scheme and host of a heartbeat URL; its path is the secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


class Heartbeat:
    """Pings a dead man's switch URL after successful cycles, from a background thread.

    A ping still in flight makes the next one wait for the cycle after, so a
    slow endpoint never piles up threads. Failures are logged at most once
    per HEARTBEAT_LOG_EVERY_S seconds.
    """

    def __init__(self, url: str, timeout: float = HEARTBEAT_TIMEOUT_S) -> None:
        self.url = url
        self.masked = mask_heartbeat_url(url)
        self.timeout = timeout
        self._thread: threading.Thread | None = None
        self._last_logged = -HEARTBEAT_LOG_EVERY_S
        self._failures = 0

    def ping(self) -> None:
        """Start a ping in the background unless the previous one is still running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._send, name="heartbeat", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _send(self) -> None:
        try:
            response = httpx.get(self.url, timeout=self.timeout)
        except httpx.HTTPError as exc:
            self._failed(type(exc).__name__)
            return
        if response.status_code >= 400:
            self._failed(f"HTTP {response.status_code}")
            return
        if self._failures:
            log.info("heartbeat to %s works again after %d failures", self.masked,
                     self._failures)
        self._failures = 0

    def _failed(self, reason: str) -> None:
        self._failures += 1
        now = time.monotonic()
        if now - self._last_logged < HEARTBEAT_LOG_EVERY_S:
            return
        self._last_logged = now
        log.warning("heartbeat to %s failed (%s); %d failures since the last success",
                    self.masked, reason, self._failures)
