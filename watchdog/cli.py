"""The `cron-watchdog` command: validate, once, run, status, doctor."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from watchdog import __version__
from watchdog.commands import (
    add_parsers,
    send_test_notifications,
    silence,
    silence_warnings,
)
from watchdog.config import Settings, load_settings
from watchdog.counts import count
from watchdog.errors import ConfigError, WatchdogError
from watchdog.health import Health, HealthServer, Heartbeat, Metrics
from watchdog.logs import configure_logging
from watchdog.loop import CycleResult, StopFlag, Worker, run_forever
from watchdog.messages import format_time
from watchdog.remediate import format_action
from watchdog.restore import restore
from watchdog.rules import RuleSet, load_rules
from watchdog.service import Service
from watchdog.source import PgSource
from watchdog.state import StateStore

log = logging.getLogger("watchdog")

EXIT_OK = 0
EXIT_FIRING = 1
EXIT_ERROR = 2


def _add_common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--database-url", default=default,
                        help="libpq URL or key=value string of the pg_cron"
                        " database (WATCHDOG_DATABASE_URL)")
    parser.add_argument("--rules-file", type=Path, default=default,
                        help="rules TOML file (WATCHDOG_RULES_FILE, default rules.toml)")
    parser.add_argument("--state-path", type=Path, default=default,
                        help="SQLite state file (WATCHDOG_STATE_PATH, default"
                        " ~/.local/state/cron-watchdog/state.sqlite3)")
    parser.add_argument("--poll-interval", default=default,
                        help="seconds between polls, or a duration such as 30s or 2m"
                        " (WATCHDOG_POLL_INTERVAL, default 30s)")
    parser.add_argument("--log-level", default=default,
                        help="DEBUG, INFO, WARNING or ERROR (WATCHDOG_LOG_LEVEL, default INFO)")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: expected a whole number"
                                         " of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    # The options are accepted before and after the command. SUPPRESS keeps a
    # command's parser from resetting a value given before the command to None.
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="cron-watchdog",
        description="Watch pg_cron jobs, alert through Apprise when rules fire.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("validate", parents=[common],
                        help="check the rules file without touching the database")
    commands.add_parser("once", parents=[common],
                        help="run one poll cycle; exit 1 when an alert is firing")
    commands.add_parser("run", parents=[common],
                        help="poll until SIGTERM or SIGINT; SIGHUP reloads the rules file")
    status = commands.add_parser("status", parents=[common],
                                 help="read the database once and print a table of jobs")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands.add_parser("doctor", parents=[common],
                        help="check what the configured role can see and do; exit 1 when"
                        " something the rules need is missing")
    add_parsers(commands, common)
    actions = commands.add_parser("actions", parents=[common],
                                  help="list stored remediation actions, newest first")
    actions.add_argument("--limit", type=_positive_int, default=50,
                         help="number of actions to list (default 50)")
    restore = commands.add_parser(
        "restore", parents=[common],
        help="undo the newest remediation action on a job: resume it, or re-create it"
             " after an unschedule",
    )
    restore.add_argument("job", metavar="JOB", help="jobid or jobname, as `actions` lists it")
    restore.add_argument("--dry-run", action="store_true",
                         help="print the SQL call that would run and change nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            database_url=args.database_url,
            rules_file=args.rules_file,
            state_path=args.state_path,
            poll_interval=args.poll_interval,
            log_level=args.log_level,
        )
    except ConfigError as exc:
        return _report_problems(exc)
    configure_logging(settings.log_level, settings.log_format)

    handlers = {"validate": _validate, "once": _once, "run": _run, "doctor": _doctor}
    with_args = {"silence": silence, "test-notify": send_test_notifications}
    try:
        if args.command in with_args:
            return with_args[args.command](settings, args)
        if args.command == "actions":
            return _actions(settings, args.limit)
        if args.command == "restore":
            return _restore(settings, args.job, args.dry_run)
        if args.command == "status":
            return _status(settings, args.json)
        return handlers[args.command](settings)
    except ConfigError as exc:
        return _report_problems(exc)
    except WatchdogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _report_problems(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    return EXIT_ERROR


def _validate(settings: Settings) -> int:
    rules = load_rules(settings.rules_file)
    print(f"{settings.rules_file}: valid, {count(len(rules.rules), 'rule')},"
          f" {count(len(rules.channels), 'channel')},"
          f" {count(len(rules.maintenance), 'maintenance window')}")
    if not rules.rules:
        print(f"{settings.rules_file}: warning: no [[rules]] defined, so the watchdog would"
              " watch nothing; add a [[rules]] table", file=sys.stderr)
    for warning in silence_warnings(settings, rules):
        print(warning, file=sys.stderr)
    for rule in rules.rules:
        if not rule.notify:
            # Valid, since `once` and the log still show the alert, but rarely intended.
            print(f"{settings.rules_file}: warning: rule {rule.name!r} notifies no channel;"
                  " set notify = [...] on it or [defaults] notify", file=sys.stderr)
    return EXIT_OK


def _open(settings: Settings, retries: bool = False) -> tuple[RuleSet, StateStore, PgSource]:
    rules = load_rules(settings.rules_file)
    source = PgSource(settings.database_url, settings.connect_timeout,
                      settings.statement_timeout, retries=retries)
    store = StateStore(settings.state_path)
    return rules, store, source


def _once(settings: Settings) -> int:
    rules, store, source = _open(settings)
    try:
        worker = Worker(
            rules, store, source, settings.cron_timezone, settings.max_running_jobs
        )
        result = worker.cycle()
    finally:
        source.close()
        store.close()
    _print_summary(result)
    return EXIT_FIRING if result.firing else EXIT_OK


def _print_summary(result: CycleResult) -> None:
    snapshot = result.snapshot
    print(f"{count(len(snapshot.jobs), 'job')}, {count(len(snapshot.history), 'run')} in window,"
          f" {count(len(result.firing), 'alert')} firing")
    for event in result.events:
        print(f"  {event.state.upper():9} {event.severity.value:8} {event.job_label}:"
              f" {event.rule}")
    for record in result.firing:
        label = record.verdict.get("job_label", f"job {record.jobid}")
        print(f"  firing since {format_time(record.since)}: {label}:"
              f" {record.rule}")
    delivery = result.delivery
    print(f"notifications: {delivery.sent} sent, {delivery.failed} failed,"
          f" {delivery.waiting} waiting for retry")


def _run(settings: Settings) -> int:
    rules, store, source = _open(settings, retries=True)
    health = Health(settings.poll_interval)
    metrics = Metrics()
    heartbeat = Heartbeat(settings.heartbeat_url) if settings.heartbeat_url else None
    worker = Worker(rules, store, source, settings.cron_timezone, settings.max_running_jobs)
    service = Service(worker, settings.rules_file, settings.outage_after, health, metrics,
                      heartbeat)
    server: HealthServer | None = None
    try:
        if settings.http_addr:
            server = HealthServer(settings.http_addr, health, metrics).start()
        stop = StopFlag()
        stop.install()
        signal.signal(signal.SIGHUP, lambda signum, frame: _request_reload(service))
        run_forever(service.tick, settings.poll_interval, stop)
    finally:
        if server is not None:
            server.stop()
        source.close()
        store.close()
    return EXIT_OK


def _actions(settings: Settings, limit: int) -> int:
    store = StateStore.open_existing(settings.state_path)
    try:
        records = store.actions(limit=limit)
    finally:
        store.close()
    if not records:
        print("no remediation actions stored")
    for record in records:
        print(format_action(record))
    return EXIT_OK


def _restore(settings: Settings, job: str, dry_run: bool) -> int:
    store = StateStore.open_existing(settings.state_path)
    source = PgSource(settings.database_url, settings.connect_timeout,
                      settings.statement_timeout, retries=False)
    try:
        print(restore(store, source, job, dry_run))
    finally:
        source.close()
        store.close()
    return EXIT_OK


def _request_reload(service: Service) -> None:
    log.info("SIGHUP received: rereading the rules file before the next cycle")
    service.reload_requested.set()


def _status(settings: Settings, as_json: bool) -> int:
    from watchdog.status import format_table, read_status

    rules, store, source = _open(settings)
    try:
        rows = read_status(rules, store, source, settings.cron_timezone)
    finally:
        source.close()
        store.close()
    if as_json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return EXIT_OK


def _doctor(settings: Settings) -> int:
    from watchdog.doctor import Fallbacks, format_checks, run_checks

    rules = load_rules(settings.rules_file)
    source = PgSource(settings.database_url, settings.connect_timeout,
                      settings.statement_timeout, retries=False)
    fallbacks = Fallbacks(settings.cron_timezone, settings.max_running_jobs)
    try:
        checks = run_checks(rules, source, fallbacks)
    finally:
        source.close()
    print(format_checks(checks))
    return EXIT_OK if all(check.ok or not check.required for check in checks) else EXIT_FIRING


if __name__ == "__main__":
    sys.exit(main())
