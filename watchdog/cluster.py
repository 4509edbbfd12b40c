"""Scheduler-wide reads: the pg_cron launcher, cron.* settings, history size, pg_net.

Every scheduler-wide rule kind is served by at most two queries per poll,
whatever the number of rules: one for the scheduler and catalog facts, and
one for recent `net._http_response` rows when an http_failures rule exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from watchdog.models import HistorySize, HttpResponse, HttpResponses, SchedulerStatus

log = logging.getLogger(__name__)

# pg_cron's own default for cron.max_running_jobs.
DEFAULT_MAX_RUNNING_JOBS = 32
# Newest pg_net responses read per poll. pg_net deletes responses after pg_net.ttl (6 hours
# by default), and this limit bounds the read when a job floods the table within that time.
HTTP_ROWS_MAX = 10_000
# Characters of each response body read; messages show fewer.
HTTP_CONTENT_MAX_CHARS = 500

_CLUSTER_QUERY = """
SELECT
  (SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'pg_cron launcher' OR application_name = 'pg_cron scheduler')
    AS launchers,
  (SELECT setting FROM pg_settings WHERE name = 'cron.launch_active_jobs') AS launch_active_jobs,
  (SELECT setting FROM pg_settings WHERE name = 'cron.max_running_jobs') AS max_running_jobs,
  (SELECT reltuples::bigint FROM pg_class WHERE oid = 'cron.job_run_details'::regclass)
    AS reltuples,
  pg_total_relation_size('cron.job_run_details'::regclass) AS history_bytes,
  to_regclass('net._http_response') IS NOT NULL AS pg_net,
  CASE WHEN to_regclass('net._http_response') IS NOT NULL
       THEN has_table_privilege(to_regclass('net._http_response'), 'SELECT') END
    AS pg_net_readable
"""


@dataclass(frozen=True)
class ClusterFacts:
    scheduler: SchedulerStatus
    history_size: HistorySize
    pg_net: bool
    pg_net_readable: bool


_warned_settings: set[str] = set()


def read_cluster(
    cur: psycopg.Cursor[dict[str, Any]],
    runid_bounds: tuple[int, int] | None,
    role: str,
    fallback_max_running_jobs: int | None = None,
) -> ClusterFacts:
    """Read the scheduler's process and settings, and the size of the run history.

    A cron.* setting the role may not read (pg_settings omits superuser-only
    rows) becomes None, except max_running_jobs, which falls back to the
    configured value, else pg_cron's default of 32, with one warning.
    """
    cur.execute(_CLUSTER_QUERY)
    row = cur.fetchone()
    assert row is not None

    limit = row["max_running_jobs"]
    configured = limit is None
    if configured:
        limit = fallback_max_running_jobs or DEFAULT_MAX_RUNNING_JOBS
        _warn_unreadable(role, "cron.max_running_jobs", str(limit), "WATCHDOG_MAX_RUNNING_JOBS")
    launch = row["launch_active_jobs"]
    scheduler = SchedulerStatus(
        processes=int(row["launchers"]),
        launch_active_jobs=None if launch is None else launch == "on",
        max_running_jobs=int(limit),
        max_running_jobs_configured=configured,
    )
    return ClusterFacts(
        scheduler,
        _history_size(row, runid_bounds),
        pg_net=bool(row["pg_net"]),
        pg_net_readable=bool(row["pg_net_readable"]),
    )


def _history_size(row: dict[str, Any], runid_bounds: tuple[int, int] | None) -> HistorySize:
    # reltuples is -1 until the table is first vacuumed or analyzed; the runid span
    # is then an upper bound (purged rows leave gaps).
    reltuples = row["reltuples"]
    if reltuples is not None and reltuples >= 0:
        return HistorySize(int(reltuples), int(row["history_bytes"]))
    span = runid_bounds[1] - runid_bounds[0] + 1 if runid_bounds else 0
    return HistorySize(span, int(row["history_bytes"]), rows_source="runid_span")


def _warn_unreadable(role: str, setting: str, assumed: str, variable: str) -> None:
    if setting in _warned_settings:
        return
    _warned_settings.add(setting)
    log.warning(
        "role %r cannot read %s; assuming %s. Grant pg_read_all_settings to the role or"
        " set %s", role, setting, assumed, variable,
    )


def read_http_responses(
    cur: psycopg.Cursor[dict[str, Any]], window: timedelta
) -> HttpResponses:
    """Read pg_net responses created within the window, newest first (index on `created`)."""
    cur.execute(
        "SELECT id, status_code, timed_out, error_msg, left(content, %s) AS content, created"
        " FROM net._http_response WHERE created >= now() - %s ORDER BY created DESC LIMIT %s",
        (HTTP_CONTENT_MAX_CHARS, window, HTTP_ROWS_MAX),
    )
    responses = tuple(
        HttpResponse(
            id=int(row["id"]) if row["id"] is not None else 0,
            status_code=row["status_code"],
            timed_out=bool(row["timed_out"]),
            error_msg=row["error_msg"],
            content=row["content"],
            created=row["created"],
        )
        for row in cur.fetchall()
    )
    return HttpResponses(installed=True, responses=responses)
