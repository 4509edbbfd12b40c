"""`cron-watchdog doctor`: what the configured role can see and do, each with its fix.

Every check only reads. Permission for `cron.alter_job` and `cron.unschedule`
is judged from `has_function_privilege` and job ownership, never by calling them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from watchdog.counts import count
from watchdog.errors import SourceError
from watchdog.notify import validate_url
from watchdog.rules import JOB_ACTIONS, RuleSet
from watchdog.snapshot import version_tuple
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


@dataclass(frozen=True)
class Fallbacks:
    """WATCHDOG_CRON_TIMEZONE and WATCHDOG_MAX_RUNNING_JOBS, used when a setting is unreadable."""

    cron_timezone: str | None = None
    max_running_jobs: int | None = None


def run_checks(rules: RuleSet, source: PgSource,
               fallbacks: Fallbacks | None = None) -> list[Check]:
    """Connect, run every check, and return them in the order they are printed.

    Checks that only matter for some rules (remediation privileges, pg_net)
    are left out when no rule needs them.
    """
    fallbacks = fallbacks or Fallbacks()
    checks = _channel_checks(rules)
    try:
        with source.read_transaction() as cur:
            installed = _extension_check(cur)
            checks.append(installed)
            if not installed.ok:
                return checks
            checks.append(_database_name_check(cur))
            checks.append(_primary_check(cur))
            checks.append(_jobs_check(cur))
            checks.append(_timezone_check(cur, fallbacks.cron_timezone))
            checks.append(_max_running_jobs_check(cur, fallbacks.max_running_jobs))
            checks.append(_scheduler_check(cur))
            if any(rule.remediate and rule.remediate.action in JOB_ACTIONS
                   for rule in rules.rules):
                checks.append(_remediation_check(cur))
            if any(rule.kind == "http_failures" for rule in rules.rules):
                checks.append(_pg_net_check(cur))
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


def _one(cur: Cursor, query: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    cur.execute(query, params)
    row = cur.fetchone()
    assert row is not None
    return row


def _channel_checks(rules: RuleSet) -> list[Check]:
    urls = [url for channel in rules.channels.values() for url in channel.urls]
    if not urls:
        return []
    problems = [problem for problem in map(validate_url, urls) if problem]
    if problems:
        return [Check(False, True, f"{len(problems)} of {count(len(urls), 'channel URL')}"
                      " do not parse", problems[0])]
    if len(urls) == 1:
        return [Check(True, True, "the channel URL parses")]
    return [Check(True, True, f"all {len(urls)} channel URLs parse")]


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
    return Check(True, True, f"role {row['role']} sees {count(row['jobs'], 'job')}: {scope}")


def _setting(cur: Cursor, name: str) -> dict[str, Any]:
    # pg_settings omits a superuser-only setting the role may not read, and a
    # setting the loaded pg_cron version does not define.
    return _one(cur, "SELECT (SELECT setting FROM pg_settings WHERE name = %(name)s) AS value,"
                     " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                     " AS superuser,"
                     " (SELECT extversion FROM pg_extension WHERE extname = 'pg_cron')"
                     " AS version", {"name": name})


def _timezone_check(cur: Cursor, fallback: str | None) -> Check:
    row = _setting(cur, "cron.timezone")
    if row["value"] is not None:
        return Check(True, False, f"cron.timezone is {row['value']}")
    if version_tuple(row["version"]) < (1, 5):
        return Check(True, False, f"pg_cron {row['version']} evaluates schedules in GMT"
                     " (cron.timezone exists from pg_cron 1.5 on)")
    if fallback:
        return Check(True, False, f"cron.timezone is not readable by this role; schedules are"
                     f" read in WATCHDOG_CRON_TIMEZONE ({fallback})")
    return Check(False, False, "cron.timezone is not readable by this role; schedules are"
                 " read in GMT", _unreadable_fix(row["superuser"], "WATCHDOG_CRON_TIMEZONE"))


def _max_running_jobs_check(cur: Cursor, fallback: int | None) -> Check:
    row = _setting(cur, "cron.max_running_jobs")
    if row["value"] is not None:
        return Check(True, False, f"cron.max_running_jobs is {row['value']}")
    if fallback is not None:
        return Check(True, False, "cron.max_running_jobs is not readable by this role;"
                     f" WATCHDOG_MAX_RUNNING_JOBS ({fallback}) is used")
    return Check(False, False, "cron.max_running_jobs is not readable by this role;"
                 " pg_cron's default of 32 is assumed",
                 _unreadable_fix(row["superuser"], "WATCHDOG_MAX_RUNNING_JOBS"))


def _unreadable_fix(superuser: bool, variable: str) -> str:
    if superuser:
        # A superuser reads every setting, so the one missing is not defined at all.
        return f"check that pg_cron is in shared_preload_libraries, or set {variable}"
    return f"grant pg_read_all_settings to the role, or set {variable}"


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


def _pg_net_check(cur: Cursor) -> Check:
    exists = _one(cur, "SELECT to_regclass('net._http_response') IS NOT NULL AS e")["e"]
    if exists:
        return Check(True, True, "net._http_response exists (pg_net)")
    return Check(False, True, "net._http_response does not exist (pg_net is not installed)",
                 "CREATE EXTENSION pg_net, or remove http_failures rules")
