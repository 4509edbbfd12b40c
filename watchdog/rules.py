"""The rules file: TOML schema, validation and environment expansion.

Validation collects every problem instead of stopping at the first, so one
`cron-watchdog validate` run lists all that needs fixing. Unknown keys are
problems too: a typo must not silently disable a rule.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from watchdog.channels import Channel
from watchdog.durations import DURATION_FORM, parse_duration
from watchdog.errors import ConfigError
from watchdog.maintenance import MaintenanceWindow, parse_maintenance
from watchdog.models import SCHEDULER_JOBID, Job, Severity
from watchdog.schedules import ScheduleError, parse_schedule
from watchdog.templates import Templates, parse_templates

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

# Lifecycle options that a rule may set and `[defaults]` may set for every rule:
# the TOML key and the Rule field it fills.
_LIFECYCLE_FIELDS = {
    "for": "for_duration",
    "keep_firing_for": "keep_firing_for",
    "repeat_interval": "repeat_interval",
    "send_resolved": "send_resolved",
}
_COMMON_KEYS = {"name", "kind", "jobs", "exclude", "severity", "notify", "remediate",
                *_LIFECYCLE_FIELDS}
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
    "concurrency_saturated": set(),
    "run_history_size": {"max_rows", "max_size", "keep"},
    "http_failures": {"window", "min_status", "threshold", "min_count", "min_runs"},
}
_TOP_KEYS = {
    "locale", "channels", "defaults", "rules", "maintenance", "display_timezone", "templates",
    "outbox", "remediation",
}
_CHANNEL_KEYS = {"urls", "locale", "min_severity", "config", "group_threshold"}
_DEFAULT_KEYS = {"notify", "severity", *_LIFECYCLE_FIELDS}
DEFAULT_GROUP_THRESHOLD = 3
DEFAULT_OUTBOX_MAX_AGE = timedelta(hours=24)
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


REMEDIATION_MODES = ("off", "dry-run", "on")
# Actions that change the alert's job, by its jobid.
JOB_ACTIONS = ("pause", "reschedule", "unschedule")
# Deletes old rows of cron.job_run_details; only for run_history_size rules.
PURGE_ACTION = "purge"
REMEDIATION_ACTIONS = (*JOB_ACTIONS, PURGE_ACTION)
_REMEDIATION_KEYS = {"mode", "max_actions_per_hour"}
_REMEDIATE_KEYS = {"action", "schedule", "revert_on_resolve"}


@dataclass(frozen=True)
class RemediationSettings:
    """The `[remediation]` table: whether actions run, and how many per hour at most."""

    mode: str = "dry-run"
    max_actions_per_hour: int = 5


@dataclass(frozen=True)
class Remediate:
    """A rule's `remediate` table: the action taken when its alert starts firing."""

    action: str
    schedule: str | None = None
    revert_on_resolve: bool = False


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
    # How long the condition must hold before the alert fires.
    for_duration: timedelta = timedelta(0)
    # How long the alert stays firing after its condition clears.
    keep_firing_for: timedelta = timedelta(0)
    # Zero turns reminders off.
    repeat_interval: timedelta = timedelta(hours=4)
    send_resolved: bool = True
    remediate: Remediate | None = None
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
        return selects_name(self.jobs, self.exclude, job.jobname or "")

    @property
    def lookback(self) -> timedelta:
        """Return how far back the rule needs runs one by one."""
        if self.kind in _WINDOWED_KINDS:
            return self.window
        if self.kind == "concurrency_saturated":
            # The runs that overlap the saturation may have started well before it.
            return self.saturated_for + SATURATION_LOOKBACK
        return timedelta(0)

    @property
    def baseline_lookback(self) -> timedelta:
        """Return how far back the rule needs hourly sums of succeeded runs."""
        if self.kind == "duration_regression":
            return self.window + self.baseline
        return timedelta(0)


# How much longer than `for` concurrency_saturated keeps finished runs to replay.
SATURATION_LOOKBACK = timedelta(hours=1)


# Every cycle calls this for each rule and job, and the results rarely change.
@functools.lru_cache(maxsize=65536)
def selects_name(jobs: tuple[str, ...], exclude: tuple[str, ...], name: str) -> bool:
    """Tell whether a job of this name (empty when unnamed) matches the include globs
    and none of the exclude globs."""
    included = any(fnmatch.fnmatchcase(name, pattern) for pattern in jobs)
    excluded = any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)
    return included and not excluded


# Kinds whose `window` is a span of run history that must be in the snapshot.
# http_failures also has a window, but over net._http_response, not runs.
_WINDOWED_KINDS = frozenset({
    "failure_ratio",
    "slow_average",
    "consecutive_failures",
    "error_match",
    "infrastructure_failures",
    "duration_regression",
})


@dataclass(frozen=True)
class RuleSet:
    """A validated rules file."""

    rules: tuple[Rule, ...]
    channels: Mapping[str, Channel] = field(default_factory=dict)
    locale: str = "en"
    source: str = ""
    maintenance: tuple[MaintenanceWindow, ...] = ()
    display_timezone: str = "UTC"
    templates: Templates = field(default_factory=Templates)
    outbox_max_age: timedelta = DEFAULT_OUTBOX_MAX_AGE
    remediation: RemediationSettings = field(default_factory=RemediationSettings)
    # Channels of `[defaults] notify`, which also carry the watchdog's own alerts.
    default_notify: tuple[str, ...] = ()

    @property
    def lookback(self) -> timedelta:
        """Return the longest span of runs any rule needs one by one."""
        return max((rule.lookback for rule in self.rules), default=timedelta(0))

    @property
    def baseline_lookback(self) -> timedelta:
        """Return the longest span of hourly sums any rule needs."""
        return max((rule.baseline_lookback for rule in self.rules), default=timedelta(0))


class _Problems:
    """Collects validation problems, each prefixed with where it was found."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []
        # Channels whose own table was invalid: a reference to one is not reported again.
        self.invalid_channels: set[str] = set()

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{self.source}: {where}: {message}")


def load_rules(path: Path, environ: Mapping[str, str] | None = None) -> RuleSet:
    """Read and validate a rules file; raise ConfigError listing every problem."""
    try:
        # utf-8-sig drops the byte order mark that some Windows editors write.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset"
             f" {exc.start}); TOML must be UTF-8, so save the file as UTF-8"]
        ) from exc
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
    maintenance = parse_maintenance(data.get("maintenance", []), problems.add)
    display_timezone = _display_timezone(data.get("display_timezone", "UTC"), problems)
    templates = parse_templates(data.get("templates", {}), problems.add)
    outbox_max_age = _outbox_max_age(data.get("outbox", {}), problems)
    remediation = _parse_remediation(data.get("remediation", {}), problems)

    if problems.items:
        raise ConfigError(problems.items)
    return RuleSet(
        tuple(rules), channels, locale, source, maintenance, display_timezone, templates,
        outbox_max_age, remediation, defaults.notify,
    )


def _display_timezone(raw: Any, problems: _Problems) -> str:
    if not isinstance(raw, str) or not _is_zone(raw):
        problems.add(
            "display_timezone",
            f"{raw!r} is not an IANA time zone; use a name such as \"UTC\" or \"Europe/Moscow\"",
        )
        return "UTC"
    return raw


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _outbox_max_age(raw: Any, problems: _Problems) -> timedelta:
    if not isinstance(raw, dict):
        problems.add("outbox", "must be a table such as [outbox] with max_age = \"24h\"")
        return DEFAULT_OUTBOX_MAX_AGE
    for key in sorted(set(raw) - {"max_age"}):
        problems.add("outbox", f"unknown key {key!r}; allowed: max_age")
    if "max_age" not in raw:
        return DEFAULT_OUTBOX_MAX_AGE
    try:
        return _positive_duration(raw["max_age"])
    except ValueError as exc:
        problems.add("outbox, field 'max_age'", str(exc))
        return DEFAULT_OUTBOX_MAX_AGE


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
    if not isinstance(raw, dict):
        problems.add("channels", "must be a table of [channels.NAME] tables")
        return {}
    channels: dict[str, Channel] = {}
    for name, table in raw.items():
        channel = _parse_channel(name, table, locale, environ, problems)
        if channel is not None:
            channels[name] = channel
        else:
            problems.invalid_channels.add(name)
    return channels


def _parse_channel(
    name: str, table: Any, locale: str, environ: Mapping[str, str], problems: _Problems
) -> Channel | None:
    where = f"channel {name!r}"
    if not isinstance(table, dict):
        problems.add(where, "must be a table with urls = [...]")
        return None
    for key in sorted(set(table) - _CHANNEL_KEYS):
        problems.add(where, f"unknown key {key!r}; allowed: {_allowed(_CHANNEL_KEYS)}")
    urls = table.get("urls", [] if "config" in table else None)
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or (
        not urls and "config" not in table
    ):
        problems.add(
            f"{where}, field 'urls'",
            "must be a non-empty list of Apprise URLs, unless 'config' names an Apprise"
            " configuration file",
        )
        return None
    expanded = _channel_urls(urls, where, environ, problems)
    if "config" in table:
        expanded.extend(_config_file_urls(table["config"], where, environ, problems))
    channel_locale = table.get("locale", locale)
    if channel_locale not in LOCALES:
        problems.add(f"{where}, field 'locale'", f"{channel_locale!r} is not one of en, ru")
        channel_locale = locale
    min_severity = _severity(table.get("min_severity", "info"), f"{where}, field 'min_severity'",
                             problems)
    threshold = table.get("group_threshold", DEFAULT_GROUP_THRESHOLD)
    try:
        threshold = _count(threshold)
    except ValueError as exc:
        problems.add(f"{where}, field 'group_threshold'", str(exc))
        threshold = DEFAULT_GROUP_THRESHOLD
    # A URL listed twice, or also in the config file, would get every message twice.
    urls_once = tuple(dict.fromkeys(expanded))
    return Channel(name, urls_once, channel_locale, min_severity, threshold)


def _channel_urls(
    urls: list[str], where: str, environ: Mapping[str, str], problems: _Problems
) -> list[str]:
    # Imported here because notify pulls in Apprise, which only this step needs.
    from watchdog.notify import validate_url

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
        if not value.strip():
            variables = ", ".join(_ENV_REFERENCE.findall(url))
            fix = (f"set {variables} to an Apprise URL" if variables
                   else "write an Apprise URL such as json://host/path")
            problems.add(f"{where}, url #{position}", f"the URL is empty; {fix}")
            continue
        error = validate_url(value)
        if error:
            problems.add(f"{where}, url #{position}", error)
            continue
        expanded.append(value)
    return expanded


def _config_file_urls(
    raw: Any, where: str, environ: Mapping[str, str], problems: _Problems
) -> list[str]:
    from watchdog.notify import load_config_urls

    if not isinstance(raw, str) or not raw:
        problems.add(f"{where}, field 'config'", "must be the path of an Apprise YAML or text"
                     " configuration file")
        return []
    path, missing = _expand_env(raw, environ)
    for variable in missing:
        problems.add(f"{where}, field 'config'",
                     f"environment variable {variable} is not set; export it or remove the"
                     " reference")
    if missing:
        return []
    urls, errors = load_config_urls(Path(path))
    for error in errors:
        problems.add(f"{where}, field 'config'", error)
    return urls


@dataclass(frozen=True)
class _Defaults:
    notify: tuple[str, ...] = ()
    severity: Severity = Severity.WARNING
    # Rule field name to value, for the lifecycle options set under [defaults].
    lifecycle: dict[str, Any] = field(default_factory=dict)


def _parse_defaults(raw: Any, channels: Mapping[str, Channel], problems: _Problems) -> _Defaults:
    if not isinstance(raw, dict):
        problems.add("defaults", "must be a table")
        return _Defaults()
    for key in sorted(set(raw) - _DEFAULT_KEYS):
        problems.add("defaults", f"unknown key {key!r}; allowed: {_allowed(_DEFAULT_KEYS)}")
    notify = _channel_names(raw.get("notify", []), channels, "defaults, field 'notify'", problems)
    severity = _severity(raw.get("severity", "warning"), "defaults, field 'severity'", problems)
    lifecycle = _lifecycle_options(raw, lambda key: f"defaults, field {key!r}", problems)
    return _Defaults(notify, severity, lifecycle)


def _lifecycle_options(
    table: dict[str, Any], where: Callable[[str], str], problems: _Problems
) -> dict[str, Any]:
    """Parse the lifecycle options present in a table; return them by Rule field name."""
    values: dict[str, Any] = {}
    for key, field_name in _LIFECYCLE_FIELDS.items():
        if key not in table:
            continue
        try:
            values[field_name] = _LIFECYCLE_PARSERS[key](table[key])
        except ValueError as exc:
            problems.add(where(key), str(exc))
    return values


def _channel_names(
    raw: Any, channels: Mapping[str, Channel], where: str, problems: _Problems
) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        problems.add(where, "must be a list of channel names")
        return ()
    for name in raw:
        if name not in channels and name not in problems.invalid_channels:
            known = ", ".join(sorted(channels)) or "none defined"
            problems.add(where, f"unknown channel {name!r}; channels: {known}")
    # A channel listed twice would get every message twice.
    return tuple(dict.fromkeys(name for name in raw if name in channels))


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
        "jobs": _job_globs(table.get("jobs", ["*"]), where("jobs"), problems),
        "exclude": _globs(table.get("exclude", []), where("exclude"), problems),
        "severity": _severity(table.get("severity", defaults.severity.value), where("severity"),
                              problems),
        "notify": (
            _channel_names(table["notify"], channels, where("notify"), problems)
            if "notify" in table
            else defaults.notify
        ),
    }
    values.update(defaults.lifecycle)
    values.update(_lifecycle_options(table, where, problems))
    if kind == "concurrency_saturated":
        # This kind measures how long saturation lasted from the runs' own start
        # and end times, which survives restarts; a pending state as well would
        # make the alert wait twice.
        values["saturated_for"] = values.get("for_duration", timedelta(0))
        values["for_duration"] = timedelta(0)
    if "remediate" in table:
        values["remediate"] = _parse_remediate(table["remediate"], where("remediate"), problems)
    values.update(_KIND_DEFAULTS.get(kind, {}))
    failed_keys: set[str] = set()
    for key, parse in _FIELD_PARSERS[kind].items():
        if key in table:
            try:
                values[key] = parse(table[key])
            except ValueError as exc:
                problems.add(where(key), str(exc))
                failed_keys.add(key)
        elif key in _REQUIRED[kind]:
            problems.add(where(key), f"required for kind {kind}: {_REQUIRED[kind][key]}")
    rule = Rule(**values)
    for message in _remediate_kind_problems(rule, table):
        problems.add(where("remediate"), message)
    check = _KIND_CHECKS.get(kind)
    if check is None or failed_keys:
        return rule
    checked, messages = check(rule, table)
    for message in messages:
        problems.add(label, message)
    return checked


def _parse_remediation(raw: Any, problems: _Problems) -> RemediationSettings:
    if not isinstance(raw, dict):
        problems.add("remediation", 'must be a table: [remediation] with mode = "dry-run"')
        return RemediationSettings()
    for key in sorted(set(raw) - _REMEDIATION_KEYS):
        problems.add("remediation", f"unknown key {key!r}; allowed: {_allowed(_REMEDIATION_KEYS)}")
    mode = raw.get("mode", "dry-run")
    if mode not in REMEDIATION_MODES:
        problems.add("remediation, field 'mode'",
                     f"{mode!r} is not one of {', '.join(REMEDIATION_MODES)}")
        mode = "dry-run"
    cap = raw.get("max_actions_per_hour", RemediationSettings.max_actions_per_hour)
    try:
        cap = _count(cap)
    except ValueError as exc:
        problems.add("remediation, field 'max_actions_per_hour'", str(exc))
        cap = RemediationSettings.max_actions_per_hour
    return RemediationSettings(mode, cap)


def _parse_remediate(raw: Any, where: str, problems: _Problems) -> Remediate | None:
    """Validate `remediate = { action = ..., schedule = ..., revert_on_resolve = ... }`."""
    if not isinstance(raw, dict):
        problems.add(where, 'must be a table such as { action = "pause" }')
        return None
    for key in sorted(set(raw) - _REMEDIATE_KEYS):
        problems.add(where, f"unknown key {key!r}; allowed: {_allowed(_REMEDIATE_KEYS)}")

    action = raw.get("action")
    if action not in REMEDIATION_ACTIONS:
        problems.add(f"{where}, key 'action'",
                     f"{action!r} is not one of {', '.join(REMEDIATION_ACTIONS)}")
        return None
    schedule = raw.get("schedule")
    if action == "reschedule":
        schedule = _reschedule_target(schedule, f"{where}, key 'schedule'", problems)
    elif schedule is not None:
        problems.add(f"{where}, key 'schedule'",
                     f"only action reschedule takes a schedule; remove it for {action}")
        schedule = None

    revert = raw.get("revert_on_resolve", False)
    if not isinstance(revert, bool):
        problems.add(f"{where}, key 'revert_on_resolve'", f"{revert!r} must be true or false")
        revert = False
    if revert and action == PURGE_ACTION:
        problems.add(f"{where}, key 'revert_on_resolve'",
                     "cannot be used with purge: deleted runs cannot be brought back;"
                     " remove revert_on_resolve")
        revert = False
    if revert and action == "unschedule":
        # The job is gone, so its alert resolves quietly and there is nothing to revert on.
        problems.add(f"{where}, key 'revert_on_resolve'",
                     "cannot be used with unschedule; re-create the job with"
                     " `cron-watchdog restore JOBID` instead")
        revert = False
    return Remediate(action, schedule, revert)


def _remediate_kind_problems(rule: Rule, table: dict[str, Any]) -> list[str]:
    """Check that the rule's remediate action fits its kind."""
    spec = rule.remediate
    if spec is None:
        return []
    if spec.action == PURGE_ACTION and rule.kind != "run_history_size":
        return [f"action purge deletes old rows of cron.job_run_details and works only on"
                f" kind run_history_size; for kind {rule.kind} use one of"
                f" {', '.join(JOB_ACTIONS)}, or remove remediate"]
    if spec.action == PURGE_ACTION and "keep" not in table:
        return ['action purge needs the rule\'s field \'keep\', the age of runs to keep,'
                ' such as keep = "7d"']
    if spec.action in JOB_ACTIONS and rule.kind in SCHEDULER_KINDS:
        hint = ' Use action = "purge" with keep = "7d" instead, or remove remediate.' \
            if rule.kind == "run_history_size" else " Remove remediate."
        return [f"action {spec.action} changes one job, but kind {rule.kind} alerts for the"
                f" whole database (jobid {SCHEDULER_JOBID}), so the action would never run."
                + hint]
    return []


def _reschedule_target(raw: Any, where: str, problems: _Problems) -> str | None:
    if not isinstance(raw, str):
        problems.add(where, "required for reschedule: a pg_cron schedule such as \"*/5 * * * *\"")
        return None
    try:
        parse_schedule(raw)
    except ScheduleError as exc:
        problems.add(where, str(exc))
        return None
    return raw


def _globs(raw: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
        problems.add(where, 'must be a list of jobname globs, such as ["sync-*"]')
        return ("*",)
    return tuple(raw)


def _job_globs(raw: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    # An empty `jobs` would turn the rule off without a word, like a typo in a glob.
    if raw == []:
        problems.add(where, 'an empty list selects no job, so the rule would never fire; to'
                     ' watch every job omit jobs or write ["*"]')
        return ("*",)
    return _globs(raw, where, problems)


def _positive_duration(raw: Any) -> timedelta:
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not a duration: expected {DURATION_FORM}")
    if raw.strip() == "0":
        raise ValueError(f"{raw!r} must be longer than zero")
    value = parse_duration(raw)
    if value <= timedelta(0):
        raise ValueError(f"{raw!r} must be longer than zero")
    return value


# The baseline is counted in whole hours before the window; a shorter span may hold none.
MIN_BASELINE = timedelta(hours=2)


def _baseline(raw: Any) -> timedelta:
    value = _positive_duration(raw)
    if value < MIN_BASELINE:
        raise ValueError(
            f"{raw!r} is shorter than 2h: the baseline is counted in whole hours before the"
            " window, so a shorter one may hold no hour at all; set baseline to \"2h\" or"
            " more")
    return value


def _duration_or_zero(raw: Any) -> timedelta:
    if raw == "0" or raw == 0:
        return timedelta(0)
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not a duration: expected {DURATION_FORM}, or \"0\"")
    return parse_duration(raw)


def _flag(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"{raw!r} must be true or false")
    return raw


_LIFECYCLE_PARSERS: dict[str, Callable[[Any], Any]] = {
    "for": _duration_or_zero,
    "keep_firing_for": _duration_or_zero,
    "repeat_interval": _duration_or_zero,
    "send_resolved": _flag,
}


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
        "baseline": _baseline,
        "factor": _factor,
        "min_runs": _count,
    },
    "job_drift": {"expect_schedule": _schedule, "expect_active": _boolean},
    "infrastructure_failures": {"window": _positive_duration, "min_jobs": _count},
    "scheduler_down": {},
    "concurrency_saturated": {},
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
