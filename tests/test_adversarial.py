"""Input that production and SREs produce by accident: odd DSNs, absurd values, odd rows."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbhelpers import add_run, db_now, schedule_job
from factories import FAILING_JOB_RULES
from pgcluster import PgCronCluster, free_tcp_port
from receivers import HttpReceiver

from watchdog.config import load_settings, mask_dsn
from watchdog.errors import ConfigError, SourceError
from watchdog.loop import CycleResult, Worker
from watchdog.notify import validate_url
from watchdog.rules import RuleSet, load_rules, parse_rules
from watchdog.source import PgSource
from watchdog.state import StateStore

Conn = psycopg.Connection[Any]

_ONE_RULE = '[[rules]]\nname = "r"\nkind = "failure_ratio"\nthreshold = 0.5\n'

# Each DSN makes libpq fail with a message that quotes the text around the
# password, or puts part of the password where the host or port goes.
_BROKEN_DSNS = {
    "percent escape": ("postgresql://u:Pw%zzSecret1@127.0.0.1:{port}/db", ["Pw%zzSecret1"]),
    "unencoded at": ("postgresql://u:Pw@localhost:HiddenPart2@127.0.0.1:{port}/db",
                     ["HiddenPart2"]),
    "space in keyword value": ("host=127.0.0.1 port={port} password=First3 Second3 user=u",
                               ["First3", "Second3"]),
    "escaped space": ("host=127.0.0.1 port={port} password=Esc4\\ aped4 user=u",
                      ["Esc4", "aped4"]),
    "slash in url password": ("postgresql://u:Sla5/shed5@127.0.0.1:{port}/db",
                              ["Sla5", "shed5"]),
}


@pytest.mark.parametrize("case", sorted(_BROKEN_DSNS))
def test_broken_dsn_error_hides_password(case: str) -> None:
    template, secrets = _BROKEN_DSNS[case]
    dsn = template.format(port=free_tcp_port())

    with pytest.raises(SourceError) as raised:
        source = PgSource(dsn, connect_timeout=1)
        with source.read_transaction():
            pass

    message = str(raised.value)
    for secret in secrets:
        assert secret not in message
    for secret in secrets:
        assert secret not in mask_dsn(dsn)


@pytest.mark.parametrize("value", ["900000d", "99999999999999d", "87600.5h"])
def test_rules_reject_absurd_duration(value: str) -> None:
    text = f'[[rules]]\nname = "r"\nkind = "failure_ratio"\nthreshold = 0.5\nwindow = "{value}"\n'

    with pytest.raises(ConfigError) as raised:
        parse_rules(text, "rules.toml", {})

    assert len(raised.value.problems) == 1
    assert value in raised.value.problems[0]
    assert "3650d" in raised.value.problems[0]


@pytest.mark.parametrize("key", ["for", "keep_firing_for", "repeat_interval"])
def test_defaults_reject_absurd_duration(key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_rules(f'[defaults]\n{key} = "99999999999999d"\n', "rules.toml", {})

    assert "99999999999999d" in raised.value.problems[0]


@pytest.mark.parametrize("value", ["99999999999999d", "99999999999999999"])
def test_settings_reject_absurd_poll_interval(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(poll_interval=value)

    assert raised.value.problems[0].startswith("setting WATCHDOG_POLL_INTERVAL:")
    assert value in raised.value.problems[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watchdog.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_takes_options_before_command(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(_ONE_RULE)

    result = _cli("--rules-file", str(rules), "validate")

    assert result.returncode == 0, result.stderr
    assert f"{rules}: valid, 1 rule" in result.stdout


def test_cli_option_after_command_wins(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(_ONE_RULE)

    result = _cli("--rules-file", str(tmp_path / "missing.toml"), "validate",
                  "--rules-file", str(rules))

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_actions_rejects_limit_below_one(limit: str, tmp_path: Path) -> None:
    result = _cli("actions", "--limit", limit, "--state-path", str(tmp_path / "state.sqlite3"))

    assert result.returncode == 2
    assert f"invalid number {limit!r}" in result.stderr
    assert "Traceback" not in result.stderr




def _one_cycle(cluster: PgCronCluster, rules: RuleSet, state: Path) -> CycleResult:
    store = StateStore(state)
    source = PgSource(cluster.dsn)
    try:
        return Worker(rules, store, source).cycle()
    finally:
        source.close()
        store.close()


# Rows that pg_cron never writes but a person can insert or edit by hand.
_HAND_MADE_ROWS = {
    "infinite start": "INSERT INTO cron.job_run_details (jobid, status, start_time, end_time)"
                      " VALUES (%(jobid)s, 'succeeded', 'infinity', 'infinity')",
    "year 20000": "INSERT INTO cron.job_run_details (jobid, status, start_time, end_time)"
                  " VALUES (%(jobid)s, 'succeeded', '20000-01-01', '20000-01-01')",
    "before year 1": "INSERT INTO cron.job_run_details (jobid, status, start_time, end_time)"
                     " VALUES (%(jobid)s, 'succeeded', '0044-03-15 BC', '-infinity')",
    "no jobid": "INSERT INTO cron.job_run_details (jobid, status, start_time)"
                " VALUES (NULL, 'failed', now())",
    "no status": "INSERT INTO cron.job_run_details (jobid, status) VALUES (%(jobid)s, NULL)",
}


@pytest.mark.parametrize("case", sorted(_HAND_MADE_ROWS))
def test_hand_made_row_keeps_cycle_working(
    case: str, pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    rules = parse_rules(FAILING_JOB_RULES.format(hook=http_receiver.json_url("/alerts")),
                        "rules.toml", {})
    other = schedule_job(pg, "other-job")
    pg.execute(_HAND_MADE_ROWS[case], {"jobid": other})
    failing = schedule_job(pg, "sync-orders")
    add_run(pg, failing, "failed", db_now(pg) - timedelta(minutes=1), message="ERROR:  boom")

    result = _one_cycle(pg_cluster, rules, tmp_path / "state.sqlite3")

    assert [(event.state, event.job_label) for event in result.events] == [
        ("firing", "sync-orders")
    ]
    [request] = http_receiver.wait_for(1)
    assert "sync-orders" in request.json["title"]


def test_job_renamed_out_of_rule_closes_quietly(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    rules = parse_rules(FAILING_JOB_RULES.format(hook=http_receiver.json_url("/alerts"))
                        + 'jobs = ["sync-*"]\n', "rules.toml", {})
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders")
    add_run(pg, jobid, "failed", db_now(pg) - timedelta(minutes=1), message="ERROR:  boom")
    first = _one_cycle(pg_cluster, rules, state)
    assert [event.state for event in first.events] == ["firing"]

    pg.execute("UPDATE cron.job SET jobname = 'orders-sync' WHERE jobid = %s", (jobid,))
    second = _one_cycle(pg_cluster, rules, state)

    assert second.events == []
    assert second.firing == []
    assert len(http_receiver.wait_for(1)) == 1


_MISSING_RUN_RULES = """
[channels.hook]
urls = ["{hook}"]

[[rules]]
name = "job did not run"
kind = "missing_run"
notify = ["hook"]
"""


def test_missing_run_resolve_states_no_stale_value(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    rules = parse_rules(_MISSING_RUN_RULES.format(hook=http_receiver.json_url("/alerts")),
                        "rules.toml", {})
    state = tmp_path / "state.sqlite3"
    jobid = schedule_job(pg, "sync-orders", "* * * * *")
    add_run(pg, jobid, "succeeded", db_now(pg) - timedelta(minutes=10))
    first = _one_cycle(pg_cluster, rules, state)
    assert [event.state for event in first.events] == ["firing"]

    # The job starts again: the rule leaves a job with a run in flight to stuck_run.
    add_run(pg, jobid, "running", db_now(pg), seconds=None)
    second = _one_cycle(pg_cluster, rules, state)

    assert [event.state for event in second.events] == ["resolved"]
    resolve = http_receiver.wait_for(2)[1].json["message"]
    assert "Now:" not in resolve
    assert "The rule stopped checking this job" in resolve


def test_rules_file_in_cp1251_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(_ONE_RULE.replace('"r"', '"задание упало"').encode("cp1251"))

    with pytest.raises(ConfigError) as raised:
        load_rules(path)

    [problem] = raised.value.problems
    assert str(path) in problem
    assert "not UTF-8" in problem
    assert "save the file as UTF-8" in problem


def test_rules_file_with_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b"\xef\xbb\xbf" + _ONE_RULE.encode())

    rules = load_rules(path)

    assert [rule.name for rule in rules.rules] == ["r"]


def test_empty_environment_variable_in_url_is_named() -> None:
    text = '[channels.oncall]\nurls = ["${SLACK_WEBHOOK_URL}"]\n'

    with pytest.raises(ConfigError) as raised:
        parse_rules(text, "rules.toml", {"SLACK_WEBHOOK_URL": " "})

    assert raised.value.problems == [
        "rules.toml: channel 'oncall', url #1: the URL is empty; set SLACK_WEBHOOK_URL"
        " to an Apprise URL"
    ]


def test_empty_url_error_is_readable() -> None:
    message = validate_url("")

    assert message is not None
    assert "***U" not in message


def test_channel_listed_twice_sends_once(
    pg: Conn, pg_cluster: PgCronCluster, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    url = http_receiver.json_url("/alerts")
    text = FAILING_JOB_RULES.format(hook=url)
    text = text.replace('notify = ["hook"]', 'notify = ["hook", "hook"]')
    text = text.replace(f'urls = ["{url}"]', f'urls = ["{url}", "{url}"]')
    rules = parse_rules(text, "rules.toml", {})
    jobid = schedule_job(pg, "sync-orders")
    add_run(pg, jobid, "failed", db_now(pg) - timedelta(minutes=1), message="ERROR:  boom")

    result = _one_cycle(pg_cluster, rules, tmp_path / "state.sqlite3")

    assert result.delivery.sent == 1
    assert len(http_receiver.wait_for(1)) == 1


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("outage_after", "x", "invalid number 'x': expected a whole number of failed polls,"
     " at least 1"),
    ("outage_after", "0", "invalid number '0': expected a whole number of failed polls,"
     " at least 1"),
    ("max_running_jobs", "abc", "invalid number 'abc': expected a whole number of jobs,"
     " at least 1, as cron.max_running_jobs"),
    ("max_running_jobs", "-1", "invalid number '-1': expected a whole number of jobs,"
     " at least 1, as cron.max_running_jobs"),
    ("cron_timezone", "Mars/Base", "unknown time zone 'Mars/Base': expected an IANA zone"
     " such as Europe/Berlin, as cron.timezone"),
])
def test_settings_reject_bad_value(field: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**{field: value})

    assert raised.value.problems == [f"setting WATCHDOG_{field.upper()}: {expected}"]


def test_settings_accept_fallback_values() -> None:
    settings = load_settings(cron_timezone="Europe/Berlin", max_running_jobs="8",
                             outage_after="2")

    assert settings.cron_timezone == "Europe/Berlin"
    assert settings.max_running_jobs == 8
    assert settings.outage_after == 2
