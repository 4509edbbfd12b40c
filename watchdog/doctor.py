"""`cron-watchdog doctor`: what the configured role can see and do, each with its fix.

Every check only reads. Permission for `cron.alter_job` and `cron.unschedule`
is judged from `has_function_privilege` and job ownership, never by calling them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from watchdog.errors import SourceError
from watchdog.notify import validate_url
from watchdog.rules import RuleSet
from watchdog.source import PgSource

Cursor = psycopg.Cursor[dict[str, Any]]

_ALTER_JOB = "cron.alter_job(bigint,text,text,text,text,boolean)"
_UNSCHEDULE = "cron.unschedule(bigint)"


@dataclass(frozen=True)
class Check:
    """One line of the checklist. A failed check that is not required is a warning."""

    ok: bool
    required: bool
    text: str
    fix: str = ""


def run_checks(rules: RuleSet, source: PgSource) -> list[Check]:
    """Connect, run every check, and return them in the order they are printed."""
    checks = [_channel_check(rules)]
    try:
        with source.read_transaction() as cur:
            installed = _extension_check(cur)
            checks.append(installed)
            if not installed.ok:
                return checks
            checks.append(_database_name_check(cur))
            checks.append(_primary_check(cur))
            checks.append(_jobs_check(cur))
            checks.append(_settings_check(cur))
            checks.append(_scheduler_check(cur))
            checks.append(_remediation_check(cur))
            checks.append(_pg_net_check(cur, rules))
    except SourceError as exc:
        checks.append(Check(False, True, f"read pg_cron: {exc}",
                            "check WATCHDOG_DATABASE_URL and that the server is up"))
    return checks


def format_checks(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        if check.ok:
            mark = "ok"
        elif check.required:
            mark = "FAIL"
        else:
            mark = "warn"
        line = f"[{mark:4}] {check.text}"
        if not check.ok and check.fix:
            line += f"\n       fix: {check.fix}"
        lines.append(line)
    return "\n".join(lines)


def _one(cur: Cursor, query: str) -> dict[str, Any]:
    cur.execute(query)
    row = cur.fetchone()
    assert row is not None
    return row


def _channel_check(rules: RuleSet) -> Check:
    urls = [url for channel in rules.channels.values() for url in channel.urls]
    problems = [problem for problem in map(validate_url, urls) if problem]
    if problems:
        return Check(False, True, f"{len(problems)} of {len(urls)} channel URLs do not parse",
                     problems[0])
    return Check(True, True, f"all {len(urls)} channel URLs parse")


def _extension_check(cur: Cursor) -> Check:
    row = _one(cur, "SELECT current_database() AS db,"
                    " (SELECT extversion FROM pg_extension WHERE extname = 'pg_cron') AS version")
    if row["version"] is None:
        return Check(False, True, f"pg_cron is not installed in database {row['db']}",
                     "connect to the database named by cron.database_name, where CREATE"
                     " EXTENSION pg_cron ran")
    return Check(True, True, f"pg_cron {row['version']} is installed in database {row['db']}")


def _database_name_check(cur: Cursor) -> Check:
    # pg_settings hides a superuser-only setting from a role that may not read it.
    row = _one(cur, "SELECT current_database() AS db, (SELECT setting FROM pg_settings"
                    " WHERE name = 'cron.database_name') AS cron_db")
    if row["cron_db"] is None:
        return Check(False, False, "cron.database_name is not readable by this role",
                     "grant pg_read_all_settings to the role to confirm it")
    if row["cron_db"] != row["db"]:
        return Check(False, True,
                     f"cron.database_name is {row['cron_db']}, but this is {row['db']}",
                     f"connect to database {row['cron_db']}")
    return Check(True, True, f"this is the database named by cron.database_name ({row['db']})")


def _primary_check(cur: Cursor) -> Check:
    if _one(cur, "SELECT pg_is_in_recovery() AS standby")["standby"]:
        return Check(False, True, "the server is a standby; pg_cron runs jobs only on the"
                     " primary", "connect to the primary")
    return Check(True, True, "the server is a primary")


def _jobs_check(cur: Cursor) -> Check:
    row = _one(cur, "SELECT current_user AS role, (SELECT count(*) FROM cron.job) AS jobs,"
                    " (SELECT rolsuper OR rolbypassrls FROM pg_roles"
                    "  WHERE rolname = current_user) AS sees_all")
    scope = "all jobs" if row["sees_all"] else (
        f"only the jobs owned by {row['role']} (row-level security hides the others)"
    )
    if row["jobs"] == 0:
        return Check(False, True, f"role {row['role']} sees no jobs in cron.job; it sees {scope}",
                     "connect as the role that scheduled the jobs (on Supabase usually"
                     " postgres)")
    return Check(True, True, f"role {row['role']} sees {row['jobs']} jobs: {scope}")


def _settings_check(cur: Cursor) -> Check:
    cur.execute("SELECT name FROM pg_settings WHERE name IN"
                " ('cron.timezone', 'cron.max_running_jobs')")
    readable = sorted(row["name"] for row in cur.fetchall())
    missing = sorted({"cron.timezone", "cron.max_running_jobs"} - set(readable))
    if missing:
        return Check(False, False, f"not readable: {', '.join(missing)} (schedules are then"
                     " read in GMT or WATCHDOG_CRON_TIMEZONE)",
                     "grant pg_read_all_settings to the role, or set WATCHDOG_CRON_TIMEZONE")
    return Check(True, False, "cron.timezone and cron.max_running_jobs are readable")


def _scheduler_check(cur: Cursor) -> Check:
    row = _one(cur, "SELECT count(*) AS n FROM pg_stat_activity"
                    " WHERE application_name = 'pg_cron scheduler'")
    if row["n"] == 0:
        return Check(False, False, "the pg_cron scheduler is not visible in pg_stat_activity",
                     "add pg_cron to shared_preload_libraries and restart, or grant"
                     " pg_read_all_stats to the role so it can see the scheduler")
    return Check(True, False, "the pg_cron scheduler is running (seen in pg_stat_activity)")


def _remediation_check(cur: Cursor) -> Check:
    row = _one(cur, "SELECT"
                    f" has_function_privilege('{_ALTER_JOB}', 'EXECUTE') AS alter_job,"
                    f" has_function_privilege('{_UNSCHEDULE}', 'EXECUTE') AS unschedule,"
                    " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,"
                    " (SELECT count(*) FROM cron.job WHERE username <> current_user) AS foreign")
    # pg_cron lets a role other than a superuser change only the jobs it owns.
    allowed = row["alter_job"] and row["unschedule"] and (row["superuser"] or not row["foreign"])
    if not allowed:
        return Check(False, False, "cron.alter_job or cron.unschedule would be refused on"
                     " some jobs", "connect as the role that owns the jobs, or grant EXECUTE"
                     " on cron.alter_job and cron.unschedule")
    return Check(True, False, "cron.alter_job and cron.unschedule are permitted on every"
                 " visible job")


def _pg_net_check(cur: Cursor, rules: RuleSet) -> Check:
    needed = any(rule.kind == "http_failures" for rule in rules.rules)
    exists = _one(cur, "SELECT to_regclass('net._http_response') IS NOT NULL AS e")["e"]
    if exists:
        return Check(True, needed, "net._http_response exists (pg_net)")
    return Check(False, needed, "net._http_response does not exist (pg_net is not installed)",
                 "CREATE EXTENSION pg_net, or remove http_failures rules")
