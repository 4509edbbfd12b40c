# ruff: noqa: RUF001  # the Russian texts are Cyrillic on purpose
"""Render alert notifications as plain-text titles and bodies in English and Russian.

Rendering is pure: no I/O and no clock reads. The output is plain text, never
Markdown or HTML, because job names and return_message values come from the
database and may contain characters that a markup parser would interpret. The
sender passes it to Apprise as TEXT, so each service plugin escapes it for itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import ClassVar
from zoneinfo import ZoneInfo

from watchdog.models import ActionResult, AlertEvent, Fact, PurgeSummary, Severity, Verdict

LOCALES = ("en", "ru")

LAST_ERROR_MAX_CHARS = 300
EVIDENCE_MAX_RUNS = 5
TITLE_MAX_CHARS = 250
DIGEST_LINE_MAX_CHARS = 300
# Telegram rejects messages over 4096 characters, so the digest body stays
# below that with room for the title.
DIGEST_BODY_MAX_CHARS = 3500

NO_VALUE = "—"
ELLIPSIS = "…"

# Each unit with its length in seconds, largest first.
_SPAN_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def plural_ru(count: int, one: str, few: str, many: str) -> str:
    """Pick the Russian word form that agrees with `count`.

    `one` is used for 1, 21, 31 … (but not 11), `few` for 2-4, 22-24 … (but not
    12-14) and `many` for everything else, e.g. запуск, запуска, запусков.
    """
    count = abs(count)
    if count % 10 == 1 and count % 100 != 11:
        return one
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return few
    return many


def format_span(seconds: float, locale: str) -> str:
    """Format a duration in its two largest units, such as `1m 30s`, `1h` or `2d 3h`.

    Smaller units are dropped, so the result is rounded down: 2d 3h 40m is `2d 3h`.
    """
    texts = _texts_for(locale)
    return texts.span(_span_parts(seconds))


def format_seconds(seconds: float, locale: str) -> str:
    """Format a run's measured duration as notifications show it: `4 ms`, `12.4 s`, `2m 5s`."""
    return _texts_for(locale).seconds(seconds)


def first_error_line(return_message: str | None) -> str:
    """Return the first non-blank line of a return_message, stripped and shortened.

    NULL or an all-blank message gives `—`. A line over LAST_ERROR_MAX_CHARS is cut
    to that length, ending in an ellipsis.
    """
    if return_message is None:
        return NO_VALUE
    for line in return_message.splitlines():
        stripped = line.strip()
        if stripped:
            return _shorten(stripped, LAST_ERROR_MAX_CHARS)
    return NO_VALUE


def render(event: AlertEvent, locale: str, timezone: str = "UTC") -> tuple[str, str]:
    """Render one alert event as a (title, body) pair in the given locale.

    Times are shown in `timezone`, an IANA name. Raises ValueError for a
    locale outside LOCALES or a state other than "firing" or "resolved".
    """
    texts = _texts_for(locale)
    zone = ZoneInfo(timezone)
    suffix = ""
    if event.state == "firing":
        tag = texts.severity_tag(event.severity)
        lines = _firing_lines(event, texts, zone)
        suffix = texts.reminder_suffix if event.reminder else ""
    elif event.state == "resolved":
        tag = texts.resolved_tag
        lines = _resolved_lines(event, texts, zone)
    else:
        raise ValueError(
            f"invalid alert state {event.state!r}: expected 'firing' or 'resolved'"
        )
    title = _shorten(f"[{tag}] {event.job_label}: {event.rule}{suffix}", TITLE_MAX_CHARS)
    return title, "\n".join(lines)


def format_time(moment: datetime, timezone: str = "UTC") -> str:
    """Format a time as `2024-05-01 13:05:00 MSK` in the given IANA zone."""
    return _format_timestamp(moment.isoformat(), ZoneInfo(timezone))


def render_cap(
    limit: int, job_label: str | None, statement: str, locale: str
) -> tuple[str, str]:
    """Render the one message sent when remediation reaches its cap of actions per hour.

    `job_label` is None for an action that changes no job, such as a purge.
    """
    texts = _texts_for(locale)
    title = f"[{texts.severity_tag(Severity.WARNING)}] pg-cron-watchdog: {texts.cap_title}"
    return title, texts.cap_body(limit, job_label, statement)


def window_phrase(seconds: float, locale: str) -> str:
    """Phrase a rule window: `in the last 15m`, or `за последние 15 минут` in Russian."""
    texts = _texts_for(locale)
    if isinstance(texts, _Russian):
        return texts.window(seconds)
    return f"in the last {format_span(seconds, locale)}"


def period_phrase(seconds: float, locale: str) -> str:
    """Phrase a span that follows "in the" or "за": `7d`, or `7 дней` in Russian."""
    texts = _texts_for(locale)
    if isinstance(texts, _Russian):
        return texts.period(seconds)
    return format_span(seconds, locale)


def purge_plan(keep_seconds: float, locale: str) -> str:
    """Describe a purge of cron.job_run_details that has not run, in the channel's language."""
    return _texts_for(locale).purge_plan(format_span(keep_seconds, locale))


def render_test(locale: str) -> tuple[str, str]:
    """Render the (title, body) of a test notification that checks a channel."""
    texts = _texts_for(locale)
    return texts.test_title, texts.test_body


def render_digest(
    events: Sequence[AlertEvent], locale: str, limit: int = 10, timezone: str = "UTC"
) -> tuple[str, str]:
    """Render several alert events as one (title, body) pair, worst first.

    Firing alerts come before resolved ones, and higher severity before lower.
    The body has one line per event, with at most `limit` lines and at most
    DIGEST_BODY_MAX_CHARS characters. A final "and N more" line counts the
    events left out.
    """
    texts = _texts_for(locale)
    if not events:
        raise ValueError("render_digest needs at least one event")
    if limit < 1:
        raise ValueError(f"invalid digest limit {limit}: expected 1 or more")

    ordered = sorted(events, key=_digest_order)
    firing = [event for event in ordered if event.state == "firing"]
    tag = texts.severity_tag(firing[0].severity) if firing else texts.resolved_tag
    title = f"[{tag}] " + texts.digest_summary(
        len(events), len(firing), len(events) - len(firing)
    )

    lines: list[str] = []
    used = 0
    for event in ordered[:limit]:
        event_title, event_body = render(event, locale, timezone)
        summary = event_body.split("\n", 1)[0]
        line = _shorten(f"{event_title} — {_lower_first(summary)}", DIGEST_LINE_MAX_CHARS)
        if used + len(line) + 1 > DIGEST_BODY_MAX_CHARS:
            break
        lines.append(line)
        used += len(line) + 1

    hidden = len(events) - len(lines)
    if hidden:
        lines.append(texts.and_more(hidden))
    return title, "\n".join(lines)


# --- Facts of each rule kind -------------------------------------------------


class _MissingFact(Exception):
    """A fact that a kind's template needs is absent or has the wrong type."""


def _number(facts: dict[str, Fact], key: str) -> float:
    value = facts.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _MissingFact(key)
    return float(value)


def _optional_text(facts: dict[str, Fact], key: str) -> str | None:
    value = facts.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True)
class _FailureRatio:
    failed: int
    finished: int
    ratio: float
    threshold: float
    window_seconds: float

    @classmethod
    def from_facts(cls, facts: dict[str, Fact]) -> _FailureRatio:
        return cls(
            failed=int(_number(facts, "failed")),
            finished=int(_number(facts, "finished")),
            ratio=_number(facts, "ratio"),
            threshold=_number(facts, "threshold"),
            window_seconds=_number(facts, "window_seconds"),
        )


@dataclass(frozen=True)
class _MissingRun:
    schedule: str
    expected_at: str
    grace_seconds: float
    last_start: str | None
    cron_timezone: str
    missed: int | None

    @classmethod
    def from_facts(cls, facts: dict[str, Fact], zone: tzinfo = UTC) -> _MissingRun:
        if facts.get("schedule") is None or facts.get("expected_at") is None:
            raise _MissingFact("schedule or expected_at")
        missed = facts.get("missed")
        last_start = facts.get("last_start")
        return cls(
            schedule=str(facts["schedule"]),
            expected_at=_format_timestamp(str(facts["expected_at"]), zone),
            grace_seconds=_number(facts, "grace_seconds"),
            last_start=(
                _format_timestamp(last_start, zone) if isinstance(last_start, str) else None
            ),
            cron_timezone=_optional_text(facts, "cron_timezone") or "GMT",
            missed=int(missed) if isinstance(missed, int | float) else None,
        )


@dataclass(frozen=True)
class _SlowAverage:
    """Facts of slow_average. `mean_seconds` contains the chosen statistic, whatever it is."""

    mean_seconds: float
    max_seconds: float
    runs: int
    window_seconds: float
    statistic: str = "mean"
    too_fast: bool = False
    min_seconds: float = 0.0

    @classmethod
    def from_facts(cls, facts: dict[str, Fact]) -> _SlowAverage:
        return cls(
            mean_seconds=_number(facts, "mean_seconds"),
            max_seconds=_number(facts, "max_seconds"),
            runs=int(_number(facts, "runs")),
            window_seconds=_number(facts, "window_seconds"),
            statistic=_optional_text(facts, "statistic") or "mean",
            too_fast=facts.get("direction") == "fast",
            min_seconds=float(_number(facts, "min_seconds")) if "min_seconds" in facts else 0.0,
        )


# --- Locale texts ------------------------------------------------------------


class _Texts:
    """Sentences of one locale, with the wording provided by a subclass."""

    locale = ""
    decimal_separator = "."
    resolved_tag = ""
    test_title = ""
    test_body = ""
    unit_symbols: ClassVar[dict[str, str]] = {}
    millisecond_symbol = "ms"
    unit_separator = ""

    def severity_tag(self, severity: Severity) -> str:
        raise NotImplementedError

    def span(self, parts: list[tuple[int, str]]) -> str:
        return " ".join(
            f"{count}{self.unit_separator}{self.unit_symbols[unit]}" for count, unit in parts
        )

    def seconds(self, value: float) -> str:
        """Format a measured duration: `4 ms` below a second, `12.4 s` below a minute,
        else like format_span."""
        if value >= 60:
            return self.span(_span_parts(value))
        if value < 1:
            # pg_cron jobs that queue an HTTP request finish in milliseconds.
            return f"{round(value * 1000)} {self.millisecond_symbol}"
        digits = 2 if value < 1 else 1
        unit = self.unit_symbols["s"]
        return f"{_decimal(value, digits, self.decimal_separator)} {unit}"

    def percent(self, ratio: float) -> str:
        value = ratio * 100
        digits = 0 if value >= 10 else 1
        return f"{_decimal(value, digits, self.decimal_separator)}%"

    def failure_ratio(self, facts: _FailureRatio) -> str:
        raise NotImplementedError

    def missing_run(self, facts: _MissingRun) -> list[str]:
        raise NotImplementedError

    def missing_run_now(self, facts: _MissingRun) -> str:
        raise NotImplementedError

    def slow_average(self, facts: _SlowAverage) -> str:
        raise NotImplementedError

    def generic(self, kind: str, pairs: str) -> str:
        raise NotImplementedError

    def database(self, name: str) -> str:
        raise NotImplementedError

    def last_error(self, line: str) -> str:
        raise NotImplementedError

    def evidence(self, kind: str, runids: str) -> str:
        raise NotImplementedError

    def and_more(self, count: int) -> str:
        raise NotImplementedError

    def resolved_after(self, span: str) -> str:
        raise NotImplementedError

    def now(self, summary: str) -> str:
        raise NotImplementedError

    # Shown on a resolve in place of the current value when the rule stopped judging the job.
    stopped_checking = ""

    def digest_summary(self, total: int, firing: int, resolved: int) -> str:
        raise NotImplementedError

    reminder_suffix = ""

    def last_run(self, started: str, took: str, schedule: str) -> str:
        raise NotImplementedError

    def last_run_in_flight(self, started: str, schedule: str) -> str:
        raise NotImplementedError

    def firing_for(self, span: str, since: str) -> str:
        raise NotImplementedError

    def missed_total(self, count: int) -> str:
        raise NotImplementedError

    cap_title = ""

    def cap_body(self, limit: int, job_label: str | None, statement: str) -> str:
        raise NotImplementedError

    def remediation(self, result: ActionResult) -> str:
        raise NotImplementedError

    def purge_plan(self, keep: str) -> str:
        raise NotImplementedError


class _English(_Texts):
    locale = "en"
    resolved_tag = "RESOLVED"
    test_title = "[TEST] pg-cron-watchdog"
    test_body = (
        "This is a test notification from pg-cron-watchdog. "
        "If you can read it, this channel delivers alerts."
    )
    unit_symbols: ClassVar[dict[str, str]] = {"d": "d", "h": "h", "m": "m", "s": "s"}

    def severity_tag(self, severity: Severity) -> str:
        return severity.value.upper()

    def failure_ratio(self, facts: _FailureRatio) -> str:
        runs = "run" if facts.finished == 1 else "runs"
        window = self.span(_span_parts(facts.window_seconds))
        return (
            f"{facts.failed}/{facts.finished} {runs} failed ({self.percent(facts.ratio)}) "
            f"in the last {window}, threshold {self.percent(facts.threshold)}"
        )

    def missing_run(self, facts: _MissingRun) -> list[str]:
        grace = self.span(_span_parts(facts.grace_seconds))
        if facts.last_start is None:
            last = "last run: never seen"
        else:
            last = f"last run started {facts.last_start}"
        lines = [
            f'No run since {facts.expected_at} (schedule "{facts.schedule}", '
            f"cron time zone {facts.cron_timezone}, grace {grace}); {last}"
        ]
        if facts.missed:
            runs = "run" if facts.missed == 1 else "runs"
            lines.append(f"{facts.missed} scheduled {runs} missed")
        return lines

    def missing_run_now(self, facts: _MissingRun) -> str:
        started = facts.last_start if facts.last_start is not None else NO_VALUE
        return (
            f'last run started {started} (schedule "{facts.schedule}", '
            f"cron time zone {facts.cron_timezone})"
        )

    _STATISTICS: ClassVar[dict[str, str]] = {
        "mean": "Mean duration", "p95": "95th percentile duration", "max": "Longest duration",
    }

    def slow_average(self, facts: _SlowAverage) -> str:
        runs = "run" if facts.runs == 1 else "runs"
        window = self.span(_span_parts(facts.window_seconds))
        name = self._STATISTICS.get(facts.statistic, "Mean duration")
        observed = f"{name} {self.seconds(facts.mean_seconds)} over {facts.runs} succeeded {runs}"
        if facts.too_fast:
            return (
                f"{observed} in the last {window}, below the minimum "
                f"{self.seconds(facts.min_seconds)}: a run that fast usually did nothing"
            )
        return f"{observed} in the last {window}, limit {self.seconds(facts.max_seconds)}"

    def generic(self, kind: str, pairs: str) -> str:
        return f"Rule kind {kind}: {pairs}"

    def database(self, name: str) -> str:
        return f"Database: {name}"

    def last_error(self, line: str) -> str:
        return f"Last error: {line}"

    def evidence(self, kind: str, runids: str) -> str:
        label = {
            "failure_ratio": "Failed runs",
            "slow_average": "Slowest runs",
            "consecutive_failures": "Failed runs",
            "error_match": "Matching runs",
            "stuck_run": "Stuck runs",
            "duration_regression": "Slowest runs",
            "concurrency_saturated": "Runs in flight",
        }.get(kind, "Runs")
        return f"{label} (runid): {runids}"

    def and_more(self, count: int) -> str:
        return f"and {count} more"

    def resolved_after(self, span: str) -> str:
        return f"Resolved after {span}."

    def now(self, summary: str) -> str:
        return f"Now: {_lower_first(summary)}"

    stopped_checking = ("The rule stopped checking this job: it is paused, has a run in flight,"
                        " or has no schedule slots to check.")

    def digest_summary(self, total: int, firing: int, resolved: int) -> str:
        alerts = "alert" if total == 1 else "alerts"
        return f"{total} {alerts}: {firing} firing, {resolved} resolved"

    reminder_suffix = " (reminder)"

    def last_run(self, started: str, took: str, schedule: str) -> str:
        return f'Last run: started {started}, took {took}; schedule "{schedule}"'

    def last_run_in_flight(self, started: str, schedule: str) -> str:
        return f'Last run: started {started}, still running; schedule "{schedule}"'

    def firing_for(self, span: str, since: str) -> str:
        return f"Firing for {span}, since {since}"

    def missed_total(self, count: int) -> str:
        runs = "run was" if count == 1 else "runs were"
        return f"{count} scheduled {runs} missed while it fired"

    cap_title = "remediation cap reached"

    def cap_body(self, limit: int, job_label: str | None, statement: str) -> str:
        actions = "action" if limit == 1 else "actions"
        on_job = f" on job {job_label}" if job_label is not None else ""
        return (
            f"Remediation made {limit} {actions} in the last hour, the max_actions_per_hour"
            " of the rules file. Further actions are skipped until that count drops;"
            " alerts still notify.\n"
            f"First skipped: {statement}{on_job}.\n"
            "List the actions with: cron-watchdog actions"
        )

    def remediation(self, result: ActionResult) -> str:
        statement, outcome = result.statement, result.outcome
        if result.purge is not None:
            return self._purge(outcome, result.purge, result)
        if outcome == "done":
            return self._done(result)
        if outcome == "dry_run":
            return f"Remediation (dry-run, nothing changed): would run {statement}"
        if outcome == "already" and result.action == "resume":
            return "Remediation: nothing to do, the job already has its saved schedule and"\
                " active flag"
        if outcome == "already":
            return f"Remediation: nothing to do, the job is already as {statement} would leave it"
        if outcome == "changed":
            schedule, active = result.current or ("", True)
            now = f"now schedule '{schedule}', active {str(active).lower()}"
            if result.action == "resume":
                return ("Remediation: revert skipped, the job was changed by hand after the"
                        f" watchdog's action ({now}); left as it is")
            return (f"Remediation skipped: the job changed after the decision ({now});"
                    " left as it is")
        if outcome == "failed":
            return f"Remediation failed: {result.detail or NO_VALUE}"
        if outcome == "capped":
            actions = "action" if result.limit == 1 else "actions"
            return (f"Remediation skipped: the cap of {result.limit} {actions} per hour is"
                    f" reached; would have run {statement}")
        return f"Remediation skipped: {self._SKIPS.get(outcome, outcome)}"

    _SKIPS: ClassVar[dict[str, str]] = {
        "gone": "the job no longer exists",
        "standby": "the server is a standby (pg_is_in_recovery() is true)",
        "infrastructure": (
            "the failed runs are pg_cron infrastructure outcomes (startup timeout, lost"
            " connection, server restart), not errors of the job's SQL"
        ),
        "scheduler_down": "the pg_cron scheduler is down",
    }

    def _done(self, result: ActionResult) -> str:
        undo = f". Undo: {result.undo}" if result.undo else ""
        if result.action == "pause":
            return f"Remediation: paused the job with {result.statement}{undo}"
        if result.action == "reschedule":
            return f"Remediation: rescheduled the job with {result.statement}{undo}"
        if result.action == "unschedule":
            return (f"Remediation: unscheduled the job with {result.statement}; its definition"
                    f" is saved{undo}")
        return f"Remediation: restored the saved schedule and active flag with {result.statement}"

    def purge_plan(self, keep: str) -> str:
        return f"deleting runs older than {keep} (keep) from cron.job_run_details"

    def _purge(self, outcome: str, purge: PurgeSummary, result: ActionResult) -> str:
        keep = format_span(purge.keep_seconds, self.locale)
        runs = f"{purge.rows:,} {'run' if purge.rows == 1 else 'runs'}"
        batches = f"{purge.batches} {'batch' if purge.batches == 1 else 'batches'}"
        scope = (f"{runs} older than {keep} (keep) from cron.job_run_details, runid below"
                 f" {purge.below_runid}, in {batches}")
        if outcome == "done":
            return (f"Remediation: deleted {scope}. Finished runs and runs left in flight"
                    " before the server's last start were deleted; deleted runs cannot be"
                    " restored")
        if outcome == "dry_run":
            return f"Remediation (dry-run, nothing changed): would delete {scope}"
        if outcome == "already":
            return ("Remediation: nothing to delete, cron.job_run_details has no finished or"
                    f" abandoned run older than {keep} (keep) except the newest")
        if outcome == "failed":
            return f"Remediation failed: {result.detail or NO_VALUE}"
        if outcome == "capped":
            actions = "action" if result.limit == 1 else "actions"
            return (f"Remediation skipped: the cap of {result.limit} {actions} per hour is"
                    f" reached; would have started {self.purge_plan(keep)}")
        return f"Remediation skipped: {self._SKIPS.get(outcome, outcome)}"


class _Russian(_Texts):
    locale = "ru"
    decimal_separator = ","
    resolved_tag = "ЗАКРЫТ"
    test_title = "[ТЕСТ] pg-cron-watchdog"
    millisecond_symbol = "мс"
    test_body = (
        "Это тестовое уведомление от pg-cron-watchdog. "
        "Если вы его видите, канал доставляет алерты."
    )
    unit_symbols: ClassVar[dict[str, str]] = {"d": "д", "h": "ч", "m": "мин", "s": "с"}
    unit_separator = " "

    _SEVERITY_TAGS: ClassVar[dict[Severity, str]] = {
        Severity.CRITICAL: "КРИТИЧНО",
        Severity.WARNING: "ПРЕДУПРЕЖДЕНИЕ",
        Severity.INFO: "ИНФО",
    }
    # "за последний час" reads better than "за последний 1 ч".
    _ONE_UNIT_WINDOWS: ClassVar[dict[str, str]] = {
        "d": "за последние сутки",
        "h": "за последний час",
        "m": "за последнюю минуту",
        "s": "за последнюю секунду",
    }

    def severity_tag(self, severity: Severity) -> str:
        return self._SEVERITY_TAGS[severity]

    # Accusative forms, as after "за": за 1 минуту, за 3 часа, за 7 дней.
    _UNIT_WORDS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "d": ("день", "дня", "дней"),
        "h": ("час", "часа", "часов"),
        "m": ("минуту", "минуты", "минут"),
        "s": ("секунду", "секунды", "секунд"),
    }

    def window(self, seconds: float) -> str:
        """Phrase a rule window as "за последний час" or "за последние 15 минут"."""
        parts = _span_parts(seconds)
        count, unit = parts[0]
        if len(parts) == 1 and count == 1:
            return self._ONE_UNIT_WINDOWS[unit]
        if len(parts) > 1:
            return f"за последние {self.span(parts)}"
        # The adjective agrees with the number and the gender of its unit:
        # минута and секунда are feminine, час and день masculine.
        one = "последнюю" if unit in ("m", "s") else "последний"
        adjective = plural_ru(count, one, "последние", "последние")
        return f"за {adjective} {self.period(seconds)}"

    def period(self, seconds: float) -> str:
        """Phrase a span for "за …": "сутки", "7 дней", "15 минут", else like span."""
        parts = _span_parts(seconds)
        if len(parts) > 1:
            return self.span(parts)
        count, unit = parts[0]
        if count == 1 and unit == "d":
            return "сутки"
        return f"{count} {plural_ru(count, *self._UNIT_WORDS[unit])}"

    def failure_ratio(self, facts: _FailureRatio) -> str:
        runs = plural_ru(facts.finished, "запуска", "запусков", "запусков")
        verb = plural_ru(facts.failed, "завершился", "завершились", "завершились")
        return (
            f"{facts.failed} из {facts.finished} {runs} {verb} ошибкой "
            f"({self.percent(facts.ratio)}) {self.window(facts.window_seconds)}, "
            f"порог {self.percent(facts.threshold)}"
        )

    def missing_run(self, facts: _MissingRun) -> list[str]:
        grace = self.span(_span_parts(facts.grace_seconds))
        if facts.last_start is None:
            last = "последний запуск: не наблюдался"
        else:
            last = f"последний запуск начался {facts.last_start}"
        lines = [
            f'Нет запусков с {facts.expected_at} (расписание "{facts.schedule}", '
            f"часовой пояс cron {facts.cron_timezone}, допуск {grace}); {last}"
        ]
        if facts.missed:
            verb = plural_ru(facts.missed, "Пропущен", "Пропущено", "Пропущено")
            runs = plural_ru(facts.missed, "запуск", "запуска", "запусков")
            lines.append(f"{verb} {facts.missed} {runs} по расписанию")
        return lines

    def missing_run_now(self, facts: _MissingRun) -> str:
        started = facts.last_start if facts.last_start is not None else NO_VALUE
        return (
            f'последний запуск начался {started} (расписание "{facts.schedule}", '
            f"часовой пояс cron {facts.cron_timezone})"
        )

    _STATISTICS: ClassVar[dict[str, str]] = {
        "mean": "Средняя длительность",
        "p95": "95-й перцентиль длительности",
        "max": "Максимальная длительность",
    }

    def slow_average(self, facts: _SlowAverage) -> str:
        runs = plural_ru(facts.runs, "успешному запуску", "успешным запускам", "успешным запускам")
        name = self._STATISTICS.get(facts.statistic, "Средняя длительность")
        observed = (
            f"{name} {self.seconds(facts.mean_seconds)} по {facts.runs} {runs} "
            f"{self.window(facts.window_seconds)}"
        )
        if facts.too_fast:
            return (
                f"{observed}, ниже минимума {self.seconds(facts.min_seconds)}: такой быстрый"
                " запуск обычно ничего не сделал"
            )
        return f"{observed}, лимит {self.seconds(facts.max_seconds)}"

    def generic(self, kind: str, pairs: str) -> str:
        return f"Правило типа {kind}: {pairs}"

    def database(self, name: str) -> str:
        return f"База данных: {name}"

    def last_error(self, line: str) -> str:
        return f"Последняя ошибка: {line}"

    def evidence(self, kind: str, runids: str) -> str:
        label = {
            "failure_ratio": "Запуски с ошибкой",
            "slow_average": "Самые долгие запуски",
            "consecutive_failures": "Запуски с ошибкой",
            "error_match": "Запуски с совпавшей ошибкой",
            "stuck_run": "Зависшие запуски",
            "duration_regression": "Самые долгие запуски",
            "concurrency_saturated": "Идущие запуски",
        }.get(kind, "Запуски")
        return f"{label} (runid): {runids}"

    def and_more(self, count: int) -> str:
        return f"и ещё {count}"

    def resolved_after(self, span: str) -> str:
        return f"Алерт закрыт, длился {span}."

    def now(self, summary: str) -> str:
        return f"Сейчас: {_lower_first(summary)}"

    stopped_checking = ("Правило перестало проверять этот job: он на паузе, у него идёт запуск"
                        " или в его расписании нет слотов для проверки.")

    def digest_summary(self, total: int, firing: int, resolved: int) -> str:
        alerts = plural_ru(total, "алерт", "алерта", "алертов")
        active = plural_ru(firing, "активный", "активных", "активных")
        done = plural_ru(resolved, "закрытый", "закрытых", "закрытых")
        return f"{total} {alerts}: {firing} {active}, {resolved} {done}"

    reminder_suffix = " (напоминание)"

    def last_run(self, started: str, took: str, schedule: str) -> str:
        return f'Последний запуск: начат {started}, длился {took}; расписание "{schedule}"'

    def last_run_in_flight(self, started: str, schedule: str) -> str:
        return f'Последний запуск: начат {started}, ещё выполняется; расписание "{schedule}"'

    def firing_for(self, span: str, since: str) -> str:
        return f"Активен уже {span}, с {since}"

    def missed_total(self, count: int) -> str:
        verb = plural_ru(count, "пропущен", "пропущено", "пропущено")
        runs = plural_ru(count, "запуск", "запуска", "запусков")
        return f"За это время {verb} {count} {runs} по расписанию"

    cap_title = "достигнут лимит автоматических действий"

    def cap_body(self, limit: int, job_label: str | None, statement: str) -> str:
        actions = plural_ru(limit, "действие", "действия", "действий")
        for_job = f" для job'а {job_label}" if job_label is not None else ""
        return (
            f"За последний час watchdog выполнил {limit} {actions}: это max_actions_per_hour"
            " из файла правил. Следующие действия пропускаются, пока счётчик не снизится;"
            " алерты по-прежнему отправляются.\n"
            f"Первое пропущенное: {statement}{for_job}.\n"
            "Список действий: cron-watchdog actions"
        )

    def remediation(self, result: ActionResult) -> str:
        statement, outcome = result.statement, result.outcome
        if result.purge is not None:
            return self._purge(outcome, result.purge, result)
        if outcome == "done":
            return self._done(result)
        if outcome == "dry_run":
            return ("Автоматическое действие (dry-run, ничего не изменено):"
                    f" выполнился бы {statement}")
        if outcome == "already" and result.action == "resume":
            return ("Автоматическое действие не нужно: у job'а уже сохранённые расписание и"
                    " active")
        if outcome == "already":
            return ("Автоматическое действие не нужно: job уже в том состоянии,"
                    f" что дал бы {statement}")
        if outcome == "changed":
            schedule, active = result.current or ("", True)
            now = f"сейчас расписание '{schedule}', active {str(active).lower()}"
            if result.action == "resume":
                return ("Откат пропущен: job изменили вручную после действия watchdog'а"
                        f" ({now}); оставлен как есть")
            return (f"Автоматическое действие пропущено: job изменился после принятия решения"
                    f" ({now}); оставлен как есть")
        if outcome == "failed":
            return f"Автоматическое действие не удалось: {result.detail or NO_VALUE}"
        if outcome == "capped":
            return (f"Автоматическое действие пропущено: достигнут лимит {result.limit} в час;"
                    f" выполнился бы {statement}")
        return f"Автоматическое действие пропущено: {self._SKIPS.get(outcome, outcome)}"

    _SKIPS: ClassVar[dict[str, str]] = {
        "gone": "job больше не существует",
        "standby": "сервер работает как реплика (pg_is_in_recovery() = true)",
        "infrastructure": (
            "запуски упали по причинам на стороне pg_cron (таймаут старта, обрыв соединения,"
            " перезапуск сервера), а не из-за ошибки в SQL самого job'а"
        ),
        "scheduler_down": "планировщик pg_cron не работает",
    }

    def _done(self, result: ActionResult) -> str:
        undo = f". Отменить: {result.undo}" if result.undo else ""
        if result.action == "pause":
            return f"Автоматическое действие: job поставлен на паузу: {result.statement}{undo}"
        if result.action == "reschedule":
            return (f"Автоматическое действие: у job'а изменено расписание: {result.statement}"
                    f"{undo}")
        if result.action == "unschedule":
            return (f"Автоматическое действие: job снят с расписания: {result.statement};"
                    f" его определение сохранено{undo}")
        return ("Автоматическое действие: возвращены сохранённые расписание и active:"
                f" {result.statement}")

    def purge_plan(self, keep: str) -> str:
        return f"удаление из cron.job_run_details запусков старше {keep} (keep)"

    def _purge(self, outcome: str, purge: PurgeSummary, result: ActionResult) -> str:
        keep = format_span(purge.keep_seconds, self.locale)
        count = f"{purge.rows:,}".replace(",", "\u00a0")
        runs = plural_ru(purge.rows, "запуск", "запуска", "запусков")
        batches = f"{purge.batches} {plural_ru(purge.batches, 'пакет', 'пакета', 'пакетов')}"
        scope = (f"{count} {runs} старше {keep} (keep) с runid меньше {purge.below_runid}"
                 f" за {batches}")
        if outcome == "done":
            deleted = plural_ru(purge.rows, "удалён", "удалено", "удалено")
            return (f"Автоматическое действие: из cron.job_run_details {deleted} {scope}."
                    " Удалены завершённые запуски и те, что остались незавершёнными после"
                    " перезапуска сервера; восстановить их нельзя")
        if outcome == "dry_run":
            would = plural_ru(purge.rows, "был бы удалён", "было бы удалено", "было бы удалено")
            return ("Автоматическое действие (dry-run, ничего не изменено): из"
                    f" cron.job_run_details {would} {scope}")
        if outcome == "already":
            return ("Автоматическое действие не нужно: в cron.job_run_details нет завершённых"
                    f" или брошенных запусков старше {keep} (keep), кроме самого нового")
        if outcome == "failed":
            return f"Автоматическое действие не удалось: {result.detail or NO_VALUE}"
        if outcome == "capped":
            return (f"Автоматическое действие пропущено: достигнут лимит {result.limit} в час;"
                    f" не выполнено {self.purge_plan(keep)}")
        return f"Автоматическое действие пропущено: {self._SKIPS.get(outcome, outcome)}"


_TEXTS: dict[str, _Texts] = {"en": _English(), "ru": _Russian()}


def _texts_for(locale: str) -> _Texts:
    texts = _TEXTS.get(locale)
    if texts is None:
        allowed = ", ".join(LOCALES)
        raise ValueError(f"unsupported locale {locale!r}: expected one of {allowed}")
    return texts


# --- Assembling a message ----------------------------------------------------


def _summary(
    kind: str, facts: dict[str, Fact], texts: _Texts, zone: tzinfo = UTC
) -> list[str]:
    """Describe the verdict's facts in the kind's sentence, or as sorted key=value pairs.

    Pairs are used for an unknown kind and for a known kind with a missing fact.
    """
    # Imported here because kind_messages formats with this module's helpers.
    from watchdog.kind_messages import missing_run_notes, summarize

    try:
        if kind == "failure_ratio":
            return [texts.failure_ratio(_FailureRatio.from_facts(facts))]
        if kind == "missing_run":
            notes = missing_run_notes(facts, texts.locale)
            return texts.missing_run(_MissingRun.from_facts(facts, zone)) + notes
        if kind == "slow_average":
            return [texts.slow_average(_SlowAverage.from_facts(facts))]
        lines = summarize(kind, facts, texts.locale)
        if lines is not None:
            return lines
    except (_MissingFact, KeyError, ValueError):
        pass
    pairs = ", ".join(f"{key}={_fact_text(facts[key])}" for key in sorted(facts))
    return [texts.generic(kind, pairs or NO_VALUE)]


_FAILURE_KINDS = frozenset({"failure_ratio", "consecutive_failures", "error_match"})


def _firing_lines(event: AlertEvent, texts: _Texts, zone: tzinfo) -> list[str]:
    verdict = event.verdict
    lines = _summary(verdict.kind, verdict.facts, texts, zone)
    # A reminder, or an announcement delayed by muting, shows how long it has fired.
    if event.reminder or event.announced_late:
        firing_for = texts.span(_span_parts((event.at - event.since).total_seconds()))
        since = _format_timestamp(event.since.isoformat(), zone)
        lines.append(texts.firing_for(firing_for, since))
    if event.database:
        lines.append(texts.database(event.database))
    if event.last_run_at is not None:
        started = _format_timestamp(event.last_run_at.isoformat(), zone)
        schedule = event.schedule or NO_VALUE
        # A run without a duration has no end_time yet: pg_cron still shows it running.
        if event.last_run_seconds is None:
            lines.append(texts.last_run_in_flight(started, schedule))
        else:
            took = texts.seconds(event.last_run_seconds)
            lines.append(texts.last_run(started, took, schedule))
    # A failure alert always shows the error line, even when it is NULL, so the
    # reader knows pg_cron stored no message.
    if verdict.kind in _FAILURE_KINDS or verdict.last_error is not None:
        lines.append(texts.last_error(first_error_line(verdict.last_error)))
    if verdict.evidence:
        lines.append(texts.evidence(verdict.kind, _runid_list(verdict.evidence, texts)))
    if event.remediation is not None:
        lines.append(texts.remediation(event.remediation))
    return lines


def _current_summary(verdict: Verdict, texts: _Texts, zone: tzinfo) -> str:
    if verdict.kind == "missing_run":
        try:
            return texts.missing_run_now(_MissingRun.from_facts(verdict.facts, zone))
        except _MissingFact:
            pass
    return _summary(verdict.kind, verdict.facts, texts, zone)[0]


def _resolved_lines(event: AlertEvent, texts: _Texts, zone: tzinfo) -> list[str]:
    verdict = event.verdict
    lasted = (event.at - event.since).total_seconds()
    lines = [texts.resolved_after(texts.span(_span_parts(lasted)))]
    if verdict.facts.get("not_judged"):
        # The facts are those of the last firing verdict, not current values.
        lines.append(texts.stopped_checking)
    else:
        lines.append(texts.now(_current_summary(verdict, texts, zone)))
    missed = verdict.facts.get("missed_while_firing")
    if isinstance(missed, int | float) and missed > 0:
        lines.append(texts.missed_total(int(missed)))
    if verdict.kind == "missing_run":
        # A miss suppressed by scheduler_down resolves here, so the message explains why.
        from watchdog.kind_messages import missing_run_notes

        lines.extend(missing_run_notes(verdict.facts, texts.locale))
    if event.database:
        lines.append(texts.database(event.database))
    if event.remediation is not None:
        lines.append(texts.remediation(event.remediation))
    return lines


def _runid_list(runids: Sequence[int], texts: _Texts) -> str:
    listed = ", ".join(str(runid) for runid in runids[:EVIDENCE_MAX_RUNS])
    hidden = len(runids) - EVIDENCE_MAX_RUNS
    if hidden > 0:
        return f"{listed} {texts.and_more(hidden)}"
    return listed


def _digest_order(event: AlertEvent) -> tuple[bool, int, str, str]:
    return (event.state != "firing", -event.severity.rank, event.job_label, event.rule)


# --- Small formatters --------------------------------------------------------


def _span_parts(seconds: float) -> list[tuple[int, str]]:
    """Split a duration into its largest unit and, when non-zero, the next one."""
    total = max(0, round(seconds))
    for index, (unit, size) in enumerate(_SPAN_UNITS):
        if total < size:
            continue
        parts = [(total // size, unit)]
        if index + 1 < len(_SPAN_UNITS):
            next_unit, next_size = _SPAN_UNITS[index + 1]
            rest = total % size // next_size
            if rest:
                parts.append((rest, next_unit))
        return parts
    return [(0, "s")]


def _decimal(value: float, digits: int, separator: str) -> str:
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", separator)


def _format_timestamp(iso: str, zone: tzinfo = UTC) -> str:
    """Format an ISO 8601 time in `zone`, such as `2024-05-01 10:05:00 UTC`.

    Unparsable text is returned as it is.
    """
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _fact_text(value: Fact) -> str:
    if value is None:
        return NO_VALUE
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _lower_first(text: str) -> str:
    """Lower-case the first letter for use mid-sentence, but keep an acronym such as HTTP."""
    if text[1:2].isupper():
        return text
    return text[:1].lower() + text[1:]


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS
