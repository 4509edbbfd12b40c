"""The `silence` and `test-notify` commands of `cron-watchdog`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from watchdog import messages, notify
from watchdog.config import Settings
from watchdog.durations import DURATION_FORM, parse_duration
from watchdog.errors import ConfigError
from watchdog.models import Severity
from watchdog.rules import RuleSet, load_rules
from watchdog.source import target_name
from watchdog.state import Silence, StateStore

EXIT_OK = 0
EXIT_ERROR = 2


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add `silence add|list|remove` and `test-notify` to the CLI."""
    silence = commands.add_parser("silence", help="mute alerts for a while; list or remove"
                                  " silences")
    actions = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="mute alerts of a rule and/or jobs")
    add.add_argument("--rule", help="rule name to mute (default: every rule)")
    add.add_argument("--job", help="jobname glob to mute, such as 'billing-*' (default: every"
                     " job)")
    add.add_argument("--for", dest="duration", required=True,
                     help='how long the silence lasts, such as "2h" or "30m"')
    add.add_argument("--reason", required=True, help="why, shown by `silence list` and logs")
    listing = actions.add_parser("list", parents=[common], help="show silences")
    listing.add_argument("--all", action="store_true", help="include silences that ended")
    remove = actions.add_parser("remove", parents=[common],
                                help="end a silence now; `list --all` still shows it")
    remove.add_argument("id", type=int, help="silence id from `silence list`")

    test = commands.add_parser("test-notify", parents=[common],
                               help="send a test message to each channel and report per URL")
    test.add_argument("channel", nargs="?", help="only this channel (default: every channel)")


def silence(settings: Settings, args: argparse.Namespace) -> int:
    target = _target(settings)
    # Only `add` may create the state file: a silence may be set before the first run.
    if args.silence_command == "add":
        store = StateStore(settings.state_path)
    else:
        store = StateStore.open_existing(settings.state_path)
    try:
        if args.silence_command == "add":
            return _silence_add(settings, store, target, args)
        if args.silence_command == "list":
            return _silence_list(store, target, args.all)
        if not store.end_silence(target, args.id, datetime.now(UTC)):
            raise ConfigError([f"silence {args.id} not found or already ended for {target};"
                               " run `cron-watchdog silence list` to see the active ids"])
        print(f"silence {args.id} ended")
        return EXIT_OK
    finally:
        store.close()


def _target(settings: Settings) -> str:
    if not settings.database_url:
        raise ConfigError(["silences are stored per watched database: set"
                           " WATCHDOG_DATABASE_URL or --database-url"])
    return target_name(settings.database_url)


def silence_warnings(settings: Settings, rules: RuleSet) -> list[str]:
    """Return a warning per active silence whose rule is not in the rules file.

    Only an existing state file is read, so `validate` never creates one.
    """
    if not settings.database_url or not settings.state_path.is_file():
        return []
    names = {rule.name for rule in rules.rules}
    store = StateStore(settings.state_path)
    try:
        active = store.silences(_target(settings), datetime.now(UTC))
    finally:
        store.close()
    return [
        f"warning: silence {item.id} names rule {item.rule!r}, which is not in"
        f" {rules.source}, so it mutes nothing; end it with `cron-watchdog silence remove"
        f" {item.id}`"
        for item in active
        if item.rule is not None and item.rule not in names
    ]


def _silence_add(
    settings: Settings, store: StateStore, target: str, args: argparse.Namespace
) -> int:
    try:
        duration = parse_duration(args.duration)
    except ValueError:
        raise ConfigError([f"--for {args.duration!r}: expected {DURATION_FORM}"]) from None
    if duration.total_seconds() <= 0:
        raise ConfigError([f"--for {args.duration!r}: must be longer than zero"])
    if args.rule is not None:
        _check_rule(load_rules(settings.rules_file), args.rule)
    now = datetime.now(UTC)
    silence_id = store.add_silence(target, args.rule, args.job, now, now + duration,
                                   args.reason)
    print(f"silence {silence_id} added: {_describe(args.rule, args.job)} until"
          f" {_time(now + duration)} ({args.reason})")
    if args.rule is None and args.job is None:
        print(f"warning: silence {silence_id} mutes every alert of every rule on {target}"
              " until it ends; narrow it with --rule or --job, or end it with"
              f" `cron-watchdog silence remove {silence_id}`", file=sys.stderr)
    return EXIT_OK


def _check_rule(rules: RuleSet, name: str) -> None:
    names = [rule.name for rule in rules.rules]
    if name not in names:
        known = ", ".join(repr(known) for known in names) or "none"
        raise ConfigError([f"--rule {name!r}: rule not found in {rules.source}; rules:"
                           f" {known}"])


def _silence_list(store: StateStore, target: str, show_all: bool) -> int:
    now = datetime.now(UTC)
    silences = store.silences(target, None if show_all else now)
    if not silences:
        print(f"no {'' if show_all else 'active '}silences for {target}")
    for item in silences:
        print(_silence_line(item, now))
    return EXIT_OK


def _silence_line(item: Silence, now: datetime) -> str:
    state = "ended" if item.ends_at <= now else "until"
    return (f"{item.id:>4}  {_describe(item.rule, item.job)}  {state} {_time(item.ends_at)}"
            f"  {item.reason}")


def _describe(rule: str | None, job: str | None) -> str:
    return f"rule {rule or '*'}, jobs {job or '*'}"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def send_test_notifications(settings: Settings, args: argparse.Namespace) -> int:
    """Send the test message to each channel (or one); return 2 when any URL failed."""
    rules = load_rules(settings.rules_file)
    channels = list(rules.channels.values())
    if args.channel is not None:
        if args.channel not in rules.channels:
            known = ", ".join(sorted(rules.channels)) or "none defined"
            raise ConfigError([f"channel {args.channel!r} not found in {rules.source};"
                               f" channels: {known}"])
        channels = [rules.channels[args.channel]]
    if not channels:
        raise ConfigError([f"{rules.source}: no channels defined; add a [channels.NAME] table"])

    failures = 0
    for channel in channels:
        title, body = messages.render_test(channel.locale)
        for result in notify.send(channel, title, body, Severity.INFO):
            if result.ok:
                print(f"channel {channel.name}: {result.url_masked}: ok")
            else:
                failures += 1
                print(f"channel {channel.name}: {result.url_masked}: failed: {result.error}")
    return EXIT_ERROR if failures else EXIT_OK
