"""The `cron-watchdog` command: validate, once, run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from watchdog import __version__
from watchdog.config import Settings, load_settings
from watchdog.errors import ConfigError, SourceError, WatchdogError
from watchdog.loop import CycleResult, StopFlag, Worker, run_forever
from watchdog.rules import RuleSet, load_rules
from watchdog.source import PgSource
from watchdog.state import StateStore

log = logging.getLogger("watchdog")

EXIT_OK = 0
EXIT_FIRING = 1
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="libpq URL or key=value string of the pg_cron"
                        " database (WATCHDOG_DATABASE_URL)")
    common.add_argument("--rules-file", type=Path,
                        help="rules TOML file (WATCHDOG_RULES_FILE, default rules.toml)")
    common.add_argument("--state-path", type=Path,
                        help="SQLite state file (WATCHDOG_STATE_PATH, default"
                        " ~/.local/state/cron-watchdog/state.sqlite3)")
    common.add_argument("--poll-interval",
                        help="seconds between polls, or a duration such as 30s or 2m"
                        " (WATCHDOG_POLL_INTERVAL, default 30s)")
    common.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR"
                        " (WATCHDOG_LOG_LEVEL, default INFO)")

    parser = argparse.ArgumentParser(
        prog="cron-watchdog",
        description="Watch pg_cron jobs, alert through Apprise when rules fire.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("validate", parents=[common],
                        help="check the rules file without touching the database")
    commands.add_parser("once", parents=[common],
                        help="run one poll cycle; exit 1 when an alert is firing")
    commands.add_parser("run", parents=[common], help="poll until SIGTERM or SIGINT")
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
    _configure_logging(settings.log_level)

    handlers = {"validate": _validate, "once": _once, "run": _run}
    try:
        return handlers[args.command](settings)
    except ConfigError as exc:
        return _report_problems(exc)
    except WatchdogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Apprise's own debug lines may carry URLs with tokens; keep them out.
    logging.getLogger("apprise").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _report_problems(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    return EXIT_ERROR


def _validate(settings: Settings) -> int:
    rules = load_rules(settings.rules_file)
    print(f"{settings.rules_file}: valid, {len(rules.rules)} rules,"
          f" {len(rules.channels)} channels")
    return EXIT_OK


def _open(settings: Settings) -> tuple[RuleSet, StateStore, PgSource]:
    rules = load_rules(settings.rules_file)
    source = PgSource(settings.database_url)
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
    print(f"{len(snapshot.jobs)} jobs, {len(snapshot.runs)} runs in window,"
          f" {len(result.firing)} alerts firing")
    for event in result.events:
        print(f"  {event.state.upper():9} {event.severity.value:8} {event.job_label}:"
              f" {event.rule}")
    for record in result.firing:
        label = record.verdict.get("job_label", f"job {record.jobid}")
        print(f"  firing since {record.since.isoformat(timespec='seconds')}: {label}:"
              f" {record.rule}")
    delivery = result.delivery
    print(f"notifications: {delivery.sent} sent, {delivery.failed} failed,"
          f" {delivery.waiting} waiting for retry")


def _run(settings: Settings) -> int:
    rules, store, source = _open(settings)
    worker = Worker(rules, store, source, settings.cron_timezone, settings.max_running_jobs)

    def cycle() -> None:
        try:
            worker.cycle()
        except SourceError as exc:
            # Expected trouble (database down, wrong role): one line, no traceback.
            log.error("poll cycle failed: %s", exc)

    stop = StopFlag()
    stop.install()
    try:
        run_forever(cycle, settings.poll_interval, stop)
    finally:
        source.close()
        store.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
