"""The rules file: TOML schema, validation and environment expansion.

Validation collects every problem instead of stopping at the first, so one
`cron-watchdog validate` run lists all that needs fixing. Unknown keys are
problems too: a typo must not silently disable a rule.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from watchdog.channels import Channel
from watchdog.durations import DURATION_FORM, parse_duration
from watchdog.errors import ConfigError
from watchdog.models import Job, Severity

LOCALES = ("en", "ru")
KINDS = (
    "failure_ratio",
    "missing_run",
    "slow_average",
    "consecutive_failures",
    "stuck_run",
    "error_match",
    "duration_regression",
    "job_drift",
    "infrastructure_failures",
    "scheduler_down",
    "concurrency_saturated",
    "run_history_size",
    "http_failures",
)
# Kinds judged once per database, not per job. Their alerts use SCHEDULER_JOBID.
SCHEDULER_KINDS = frozenset({
    "infrastructure_failures",
    "scheduler_down",
    "concurrency_saturated",
    "run_history_size",
    "http_failures",
})
STATISTICS = ("mean", "p95", "max")
SEVERITIES = tuple(severity.value for severity in Severity)

_COMMON_KEYS = {"name", "kind", "jobs", "exclude", "severity", "notify"}
_KIND_KEYS: dict[str, set[str]] = {
    "failure_ratio": {"window", "threshold", "min_runs"},
    "missing_run": {"grace"},
    "slow_average": {"window", "max_duration", "min_runs", "statistic", "min_duration"},
    "consecutive_failures": {"count", "window"},
    "stuck_run": {"max_runtime"},
    "error_match": {"pattern", "window", "min_count"},
    "duration_regression": {"window", "baseline", "factor", "min_runs"},
    "job_drift": {"expect_schedule", "expect_active"},
    "infrastructure_failures": {"window", "min_jobs"},
    "scheduler_down": set(),
    "concurrency_saturated": {"for"},
    "run_history_size": {"max_rows", "max_size", "keep"},
    "http_failures": {"window", "min_status", "threshold", "min_count", "min_runs"},
}
# TOML keys that are Python keywords are stored under another Rule field name.
_FIELD_NAMES = {"for": "saturated_for"}
_TOP_KEYS = {"locale", "channels", "defaults", "rules"}
_CHANNEL_KEYS = {"urls", "locale"}
_DEFAULT_KEYS = {"notify", "severity"}
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Rule:
    """One `[[rules]]` table after validation. Unused kind fields keep their defaults."""

    name: str
    kind: str
    jobs: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    severity: Severity = Severity.WARNING
    notify: tuple[str, ...] = ()
    window: timedelta = timedelta(hours=1)
    threshold: float = 0.0
    min_runs: int = 3
    grace: timedelta = timedelta(minutes=2)
    max_duration: timedelta = timedelta(0)
    statistic: str = "mean"
    min_duration: timedelta = timedelta(0)
    count: int = 3
    max_runtime: timedelta = timedelta(0)
    pattern: str = ""
    min_count: int = 1
    baseline: timedelta = timedelta(days=7)
    factor: float = 2.0
    expect_schedule: str | None = None
    expect_active: bool | None = None
    min_jobs: int = 1
    saturated_for: timedelta = timedelta(0)
    max_rows: int = 0
    max_size: int = 0
    keep: timedelta | None = None
    min_status: int = 400

    def selects(self, job: Job) -> bool:
        """Tell whether the rule applies to the job by its jobname globs."""
        name = job.jobname or ""
        included = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.jobs)
        excluded = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)
        return included and not excluded

    @property
    def lookback(self) -> timedelta:
        """Return how much run history the rule needs."""
        if self.kind == "duration_regression":
            return self.window + self.baseline
        if self.kind in _WINDOWED_KINDS:
            return self.window
        return timedelta(0)


# Kinds whose `window` is a span of run history that must be in the snapshot.
# http_failures also has a window, but over net._http_response, not runs.
_WINDOWED_KINDS = frozenset({
    "failure_ratio",
    "slow_average",
    "consecutive_failures",
    "error_match",
    "infrastructure_failures",
})


@dataclass(frozen=True)
class RuleSet:
    """A validated rules file."""

    rules: tuple[Rule, ...]
    channels: Mapping[str, Channel] = field(default_factory=dict)
    locale: str = "en"
    source: str = ""

    @property
    def lookback(self) -> timedelta:
        """Return the longest history any rule needs."""
        return max((rule.lookback for rule in self.rules), default=timedelta(0))


class _Problems:
    """Collects validation problems, each prefixed with where it was found."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{self.source}: {where}: {message}")


def load_rules(path: Path, environ: Mapping[str, str] | None = None) -> RuleSet:
    """Read and validate a rules file; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            [f"{path}: cannot read the rules file ({reason}); set WATCHDOG_RULES_FILE or"
             " --rules-file to an existing TOML file"]
        ) from exc
    return parse_rules(text, str(path), os.environ if environ is None else environ)


def parse_rules(text: str, source: str, environ: Mapping[str, str]) -> RuleSet:
    """Validate rules-file text; raise ConfigError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from exc

    problems = _Problems(source)
    for key in sorted(set(data) - _TOP_KEYS):
        problems.add(f"top-level key {key!r}", f"unknown key; allowed: {_allowed(_TOP_KEYS)}")

    locale = data.get("locale", "en")
    if locale not in LOCALES:
        problems.add("locale", f"{locale!r} is not one of {', '.join(LOCALES)}")
        locale = "en"

    channels = _parse_channels(data.get("channels", {}), locale, environ, problems)
    defaults = _parse_defaults(data.get("defaults", {}), channels, problems)
    rules = _parse_rule_list(data.get("rules", []), defaults, channels, problems)

    if problems.items:
        raise ConfigError(problems.items)
    return RuleSet(tuple(rules), channels, locale, source)


def _allowed(keys: set[str]) -> str:
    return ", ".join(sorted(keys))


def _expand_env(value: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace `${NAME}` from the environment; return the text and the unset names."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            missing.append(name)
            return match.group(0)
        return environ[name]

    return _ENV_REFERENCE.sub(replace, value), missing


def _parse_channels(
    raw: Any, locale: str, environ: Mapping[str, str], problems: _Problems
) -> dict[str, Channel]:
    # Imported here because notify pulls in Apprise, which only this step needs.
    from watchdog.notify import validate_url

    if not isinstance(raw, dict):
        problems.add("channels", "must be a table of [channels.NAME] tables")
        return {}
    channels: dict[str, Channel] = {}
    for name, table in raw.items():
        where = f"channel {name!r}"
        if not isinstance(table, dict):
            problems.add(where, "must be a table with urls = [...]")
            continue
        for key in sorted(set(table) - _CHANNEL_KEYS):
            problems.add(where, f"unknown key {key!r}; allowed: {_allowed(_CHANNEL_KEYS)}")
        urls = table.get("urls")
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            problems.add(f"{where}, field 'urls'", "must be a non-empty list of Apprise URLs")
            continue
        expanded: list[str] = []
        for position, url in enumerate(urls, start=1):
            value, missing = _expand_env(url, environ)
            for variable in missing:
                problems.add(
                    f"{where}, url #{position}",
                    f"environment variable {variable} is not set; export it or remove"
                    " the reference",
                )
            if missing:
                continue
            error = validate_url(value)
            if error:
                problems.add(f"{where}, url #{position}", error)
                continue
            expanded.append(value)
        channel_locale = table.get("locale", locale)
        if channel_locale not in LOCALES:
            problems.add(f"{where}, field 'locale'", f"{channel_locale!r} is not one of en, ru")
            channel_locale = locale
        channels[name] = Channel(name, tuple(expanded), channel_locale)
    return channels


@dataclass(frozen=True)
class _Defaults:
    notify: tuple[str, ...] = ()
    severity: Severity = Severity.WARNING


def _parse_defaults(raw: Any, channels: Mapping[str, Channel], problems: _Problems) -> _Defaults:
    if not isinstance(raw, dict):
        problems.add("defaults", "must be a table")
        return _Defaults()
    for key in sorted(set(raw) - _DEFAULT_KEYS):
        problems.add("defaults", f"unknown key {key!r}; allowed: {_allowed(_DEFAULT_KEYS)}")
    notify = _channel_names(raw.get("notify", []), channels, "defaults, field 'notify'", problems)
    severity = _severity(raw.get("severity", "warning"), "defaults, field 'severity'", problems)
    return _Defaults(notify, severity)


def _channel_names(
    raw: Any, channels: Mapping[str, Channel], where: str, problems: _Problems
) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        problems.add(where, "must be a list of channel names")
        return ()
    for name in raw:
        if name not in channels:
            known = ", ".join(sorted(channels)) or "none defined"
            problems.add(where, f"unknown channel {name!r}; channels: {known}")
    return tuple(name for name in raw if name in channels)


def _severity(raw: Any, where: str, problems: _Problems) -> Severity:
    if raw not in SEVERITIES:
        problems.add(where, f"{raw!r} is not one of {', '.join(SEVERITIES)}")
        return Severity.WARNING
    return Severity(raw)


def _parse_rule_list(
    raw: Any, defaults: _Defaults, channels: Mapping[str, Channel], problems: _Problems
) -> list[Rule]:
    if not isinstance(raw, list):
        problems.add("rules", "must be an array of [[rules]] tables")
        return []
    rules: list[Rule] = []
    seen: set[str] = set()
    for position, table in enumerate(raw, start=1):
        if not isinstance(table, dict):
            problems.add(f"rule #{position}", "must be a [[rules]] table")
            continue
        name = table.get("name")
        label = f"rule #{position} {name!r}" if isinstance(name, str) else f"rule #{position}"
        if not isinstance(name, str) or not name.strip():
            problems.add(label, "field 'name' is required and must be a non-empty string")
        elif name in seen:
            problems.add(label, "field 'name' must be unique; another rule already uses it")
        else:
            seen.add(name)
        rule = _parse_rule(table, label, defaults, channels, problems)
        if rule is not None:
            rules.append(rule)
    return rules


def _parse_rule(
    table: dict[str, Any],
    label: str,
    defaults: _Defaults,
    channels: Mapping[str, Channel],
    problems: _Problems,
) -> Rule | None:
    kind = table.get("kind")
    if kind not in KINDS:
        problems.add(f"{label}, field 'kind'", f"{kind!r} is not one of {', '.join(KINDS)}")
        return None
    allowed = _COMMON_KEYS | _KIND_KEYS[kind]
    for key in sorted(set(table) - allowed):
        problems.add(label, f"unknown key {key!r} for kind {kind}; allowed: {_allowed(allowed)}")

    def where(key: str) -> str:
        return f"{label}, field {key!r}"

    values: dict[str, Any] = {
        "name": str(table.get("name", "")),
        "kind": kind,
        "jobs": _globs(table.get("jobs", ["*"]), where("jobs"), problems),
        "exclude": _globs(table.get("exclude", []), where("exclude"), problems),
        "severity": _severity(table.get("severity", defaults.severity.value), where("severity"),
                              problems),
        "notify": (
            _channel_names(table["notify"], channels, where("notify"), problems)
            if "notify" in table
            else defaults.notify
        ),
    }
    values.update(_KIND_DEFAULTS.get(kind, {}))
    failed_keys: set[str] = set()
    for key, parse in _FIELD_PARSERS[kind].items():
        if key in table:
            try:
                values[_FIELD_NAMES.get(key, key)] = parse(table[key])
            except ValueError as exc:
                problems.add(where(key), str(exc))
                failed_keys.add(key)
        elif key in _REQUIRED[kind]:
            problems.add(where(key), f"required for kind {kind}: {_REQUIRED[kind][key]}")
    rule = Rule(**values)
    check = _KIND_CHECKS.get(kind)
    if check is None or failed_keys:
        return rule
    checked, messages = check(rule, table)
    for message in messages:
        problems.add(label, message)
    return checked


def _globs(raw: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
        problems.add(where, 'must be a list of jobname globs, such as ["sync-*"]')
        return ("*",)
    return tuple(raw)


def _positive_duration(raw: Any) -> timedelta:
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not a duration: expected {DURATION_FORM}")
    value = parse_duration(raw)
    if value <= timedelta(0):
        raise ValueError(f"{raw!r} must be longer than zero")
    return value


def _ratio(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 1:
        raise ValueError(f"{raw!r} must be a number with 0 < threshold <= 1, such as 0.2")
    return float(raw)


def _count(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"{raw!r} must be a whole number of at least 1")
    return raw


def _statistic(raw: Any) -> str:
    if raw not in STATISTICS:
        raise ValueError(f"{raw!r} is not one of {', '.join(STATISTICS)}")
    return str(raw)


def _factor(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 1:
        raise ValueError(f"{raw!r} must be a number above 1, such as 2.0 for twice as slow")
    return float(raw)


def _regex(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"{raw!r} must be a non-empty regular expression string")
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(
            f"invalid regular expression {raw!r}: {exc.msg} at position {exc.pos};"
            " escape literal characters such as ( [ . with a backslash"
        ) from exc
    return raw


def _schedule(raw: Any) -> str:
    # Imported here because schedules pulls in cronsim, which only this field needs.
    from watchdog.schedules import ScheduleError, parse_schedule

    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} must be a pg_cron schedule string, such as \"*/5 * * * *\"")
    try:
        parse_schedule(raw)
    except ScheduleError as exc:
        raise ValueError(f"invalid schedule {raw!r}: {exc}") from exc
    return raw


def _boolean(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"{raw!r} must be true or false")
    return raw


def _row_count(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"{raw!r} must be a whole number of rows, such as 1000000")
    return raw


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
SIZE_FORM = 'a number with a unit B, kB, MB, GB or TB, such as "500MB" or "1GB"'


def _byte_size(raw: Any) -> int:
    """Parse a size such as "1GB" into bytes; units are powers of 1024, as in PostgreSQL."""
    match = _SIZE.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f"invalid size {raw!r}: expected {SIZE_FORM}")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size < 1:
        raise ValueError(f"{raw!r} must be larger than zero")
    return size


def _status_code(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 100 <= raw <= 599:
        raise ValueError(f"{raw!r} must be an HTTP status code from 100 to 599, such as 400")
    return raw


def _check_slow_average(rule: Rule, table: dict[str, Any]) -> tuple[Rule, list[str]]:
    if "max_duration" not in table and "min_duration" not in table:
        return rule, [
            "kind slow_average needs max_duration (too slow), min_duration (too fast) or"
            f" both: {DURATION_FORM}"
        ]
    if "max_duration" in table and "min_duration" in table and (
        rule.min_duration >= rule.max_duration
    ):
        return rule, ["min_duration must be shorter than max_duration"]
    return rule, []


def _check_run_history_size(rule: Rule, table: dict[str, Any]) -> tuple[Rule, list[str]]:
    if "max_rows" not in table and "max_size" not in table:
        return rule, [
            "kind run_history_size needs max_rows (such as 1000000), max_size (such as"
            ' "1GB") or both'
        ]
    return rule, []


def _check_http_failures(rule: Rule, table: dict[str, Any]) -> tuple[Rule, list[str]]:
    # With neither limit given, one failed response is enough.
    if "threshold" not in table and "min_count" not in table:
        return replace(rule, min_count=1), []
    return rule, []


_FIELD_PARSERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "failure_ratio": {"window": _positive_duration, "threshold": _ratio, "min_runs": _count},
    "missing_run": {"grace": _positive_duration},
    "slow_average": {
        "window": _positive_duration,
        "max_duration": _positive_duration,
        "min_runs": _count,
        "statistic": _statistic,
        "min_duration": _positive_duration,
    },
    "consecutive_failures": {"count": _count, "window": _positive_duration},
    "stuck_run": {"max_runtime": _positive_duration},
    "error_match": {"pattern": _regex, "window": _positive_duration, "min_count": _count},
    "duration_regression": {
        "window": _positive_duration,
        "baseline": _positive_duration,
        "factor": _factor,
        "min_runs": _count,
    },
    "job_drift": {"expect_schedule": _schedule, "expect_active": _boolean},
    "infrastructure_failures": {"window": _positive_duration, "min_jobs": _count},
    "scheduler_down": {},
    "concurrency_saturated": {"for": _positive_duration},
    "run_history_size": {"max_rows": _row_count, "max_size": _byte_size,
                         "keep": _positive_duration},
    "http_failures": {
        "window": _positive_duration,
        "min_status": _status_code,
        "threshold": _ratio,
        "min_count": _count,
        "min_runs": _count,
    },
}
# One slow run is worth an alert; a ratio needs a few runs to mean anything.
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "slow_average": {"min_runs": 1},
    # A job that runs once a day still needs its last few runs in view.
    "consecutive_failures": {"window": timedelta(days=1)},
    "infrastructure_failures": {"window": timedelta(minutes=15)},
    # 0 means "not set"; _check_http_failures falls back to 1 when threshold is unset too.
    "http_failures": {"min_count": 0},
}
_REQUIRED: dict[str, dict[str, str]] = {
    "failure_ratio": {"threshold": "a number with 0 < threshold <= 1, such as 0.2"},
    "missing_run": {},
    # slow_average needs max_duration or min_duration, which _check_slow_average checks.
    "slow_average": {},
    "consecutive_failures": {},
    "stuck_run": {"max_runtime": f"{DURATION_FORM}"},
    "error_match": {"pattern": 'a regular expression, such as "deadlock detected"'},
    "duration_regression": {},
    "job_drift": {},
    "infrastructure_failures": {},
    "scheduler_down": {},
    "concurrency_saturated": {},
    "run_history_size": {},
    "http_failures": {},
}
# Checks across fields, run after every field parsed: (rule, table) -> (rule, problems).
_KIND_CHECKS: dict[str, Callable[[Rule, dict[str, Any]], tuple[Rule, list[str]]]] = {
    "slow_average": _check_slow_average,
    "run_history_size": _check_run_history_size,
    "http_failures": _check_http_failures,
}
