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
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from watchdog.channels import Channel
from watchdog.durations import DURATION_FORM, parse_duration
from watchdog.errors import ConfigError
from watchdog.models import Job, Severity

LOCALES = ("en", "ru")
KINDS = ("failure_ratio", "missing_run", "slow_average")
SEVERITIES = tuple(severity.value for severity in Severity)

_COMMON_KEYS = {"name", "kind", "jobs", "exclude", "severity", "notify"}
_KIND_KEYS: dict[str, set[str]] = {
    "failure_ratio": {"window", "threshold", "min_runs"},
    "missing_run": {"grace"},
    "slow_average": {"window", "max_duration", "min_runs"},
}
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

    def selects(self, job: Job) -> bool:
        """Tell whether the rule applies to the job by its jobname globs."""
        name = job.jobname or ""
        included = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.jobs)
        excluded = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)
        return included and not excluded

    @property
    def lookback(self) -> timedelta:
        """Return how much run history the rule needs."""
        return self.window if self.kind in ("failure_ratio", "slow_average") else timedelta(0)


@dataclass(frozen=True)
class RuleSet:
    """A validated rules file."""

    rules: tuple[Rule, ...]
    channels: Mapping[str, Channel] = field(default_factory=dict)
    locale: str = "en"
    source: str = ""
    # Channels of `[defaults] notify`, which also carry the watchdog's own alerts.
    default_notify: tuple[str, ...] = ()

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
    return RuleSet(tuple(rules), channels, locale, source, defaults.notify)


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
    for key, parse in _FIELD_PARSERS[kind].items():
        if key in table:
            try:
                values[key] = parse(table[key])
            except ValueError as exc:
                problems.add(where(key), str(exc))
        elif key in _REQUIRED[kind]:
            problems.add(where(key), f"required for kind {kind}: {_REQUIRED[kind][key]}")
    return Rule(**values)


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


_FIELD_PARSERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "failure_ratio": {"window": _positive_duration, "threshold": _ratio, "min_runs": _count},
    "missing_run": {"grace": _positive_duration},
    "slow_average": {
        "window": _positive_duration,
        "max_duration": _positive_duration,
        "min_runs": _count,
    },
}
# One slow run is worth an alert; a ratio needs a few runs to mean anything.
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {"slow_average": {"min_runs": 1}}
_REQUIRED: dict[str, dict[str, str]] = {
    "failure_ratio": {"threshold": "a number with 0 < threshold <= 1, such as 0.2"},
    "missing_run": {},
    "slow_average": {"max_duration": f"{DURATION_FORM}"},
}
