# ruff: noqa: RUF001  # the Russian texts are Cyrillic on purpose
"""Notification sentences of the rule kinds added after the first three, in en and ru.

`summarize(kind, facts, locale)` returns the lines of a kind's message, the
first being a one-line summary, or None for a kind this module does not
render. It raises KeyError when a fact the kind always sets is absent, which
messages.py turns into the generic key=value rendering.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from watchdog.messages import (
    NO_VALUE,
    first_error_line,
    format_span,
    period_phrase,
    plural_ru,
    window_phrase,
)
from watchdog.models import Fact

Summarizer = Callable[[dict[str, Fact], str], list[str]]


def summarize(kind: str, facts: dict[str, Fact], locale: str) -> list[str] | None:
    summarizer = _SUMMARIZERS.get(kind)
    return None if summarizer is None else summarizer(facts, locale)


def missing_run_notes(facts: dict[str, Fact], locale: str) -> list[str]:
    """Explain a missing run that the scheduler's state, not the job, accounts for."""
    ru = locale == "ru"
    if facts.get("suppressed_by") == "scheduler_down":
        return ["Подавлено: планировщик pg_cron не работает, отдельный алерт scheduler_down"
                if ru else
                "Suppressed: the pg_cron scheduler is down; see the scheduler_down alert"]
    if facts.get("capacity_starved"):
        in_flight, limit = _int(facts, "in_flight"), _int(facts, "max_running_jobs")
        if ru:
            return [f"Job'у не хватило слотов: {in_flight} {_runs_ru(in_flight)} уже шли при"
                    f" cron.max_running_jobs = {limit}; сам job в этом не виноват"]
        return [f"Capacity-starved: {in_flight} runs were in flight with cron.max_running_jobs"
                f" = {limit}, so the job waited in pg_cron's queue; not the job's own fault"]
    return []


# --- Helpers -------------------------------------------------------------------


def _int(facts: dict[str, Fact], key: str) -> int:
    value = facts[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KeyError(key)
    return int(value)


def _float(facts: dict[str, Fact], key: str) -> float:
    value = facts[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KeyError(key)
    return float(value)


def _span(seconds: float, locale: str) -> str:
    return format_span(seconds, locale)


def _seconds(value: float, locale: str) -> str:
    """Format a measured duration: `0.25 s` or `12.4 s` below a minute, else as a span."""
    if value >= 60:
        return _span(value, locale)
    text = _number(value, locale, 2 if value < 1 else 1)
    return f"{text} с" if locale == "ru" else f"{text} s"


def _number(value: float, locale: str, digits: int = 1) -> str:
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",") if locale == "ru" else text


def _count(value: int, locale: str) -> str:
    grouped = f"{value:,}"
    return grouped.replace(",", "\u00a0") if locale == "ru" else grouped


def _window(seconds: float, locale: str) -> str:
    return window_phrase(seconds, locale)


def _size(size: float, locale: str) -> str:
    units = ("B", "kB", "MB", "GB", "TB") if locale != "ru" else ("Б", "кБ", "МБ", "ГБ", "ТБ")
    value = float(size)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{_number(value, locale)} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _runs_ru(count: int) -> str:
    return plural_ru(count, "запуск", "запуска", "запусков")


def _clock(iso: str) -> str:
    moment = datetime.fromisoformat(iso)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- Per-job kinds ---------------------------------------------------------------


def _consecutive_failures(facts: dict[str, Fact], locale: str) -> list[str]:
    streak, count = _int(facts, "streak"), _int(facts, "count")
    window = _window(_float(facts, "window_seconds"), locale)
    if locale == "ru":
        verb = plural_ru(streak, "завершился", "завершились", "завершились")
        lines = [f"{streak} {_runs_ru(streak)} подряд {verb} ошибкой {window}, порог {count}"]
    else:
        runs = "run" if streak == 1 else "runs"
        lines = [f"{streak} finished {runs} in a row failed {window}, limit {count}"]
    return lines + _infrastructure_note(facts, locale)


def _infrastructure_note(facts: dict[str, Fact], locale: str) -> list[str]:
    skipped = _int(facts, "infrastructure") if "infrastructure" in facts else 0
    if not skipped:
        return []
    if locale == "ru":
        return [f"Инфраструктурных сбоев pg_cron (job startup timeout, server restarted и т. п.):"
                f" {skipped}; они не считаются ошибками job'а"]
    outcomes = "outcome" if skipped == 1 else "outcomes"
    return [f"{skipped} infrastructure {outcomes} (job startup timeout, server restarted and the"
            " like, written by pg_cron itself) not counted as job failures"]


def _stuck_run(facts: dict[str, Fact], locale: str) -> list[str]:
    limit = _seconds(_float(facts, "max_runtime_seconds"), locale)
    runid, status = facts.get("runid"), facts.get("status")
    if runid is None or not _int(facts, "stuck"):
        if locale == "ru":
            return [f"Нет запусков, идущих дольше {limit}"]
        return [f"No run in flight longer than {limit}"]
    runtime = _seconds(_float(facts, "runtime_seconds"), locale)
    stuck = _int(facts, "stuck")
    if locale == "ru":
        lines = [f"Запуск {runid} в статусе {status} уже {runtime}, лимит {limit}"]
        if stuck > 1:
            lines.append(f"Зависших запусков: {stuck}")
        if facts.get("waiting"):
            lines.append(f"Статус {status} обычно означает нехватку соединений (max_connections)"
                         " или упор в cron.max_running_jobs, а не медленную команду")
        return lines
    lines = [f"Run {runid} has been in status {status} for {runtime}, limit {limit}"]
    if stuck > 1:
        lines.append(f"{stuck} runs are stuck")
    if facts.get("waiting"):
        lines.append(f"A run stuck in {status} usually means connection limits"
                     " (max_connections) or cron.max_running_jobs, not a slow command")
    return lines


def _error_match(facts: dict[str, Fact], locale: str) -> list[str]:
    matches, minimum = _int(facts, "matches"), _int(facts, "min_count")
    pattern = facts["pattern"]
    window = _window(_float(facts, "window_seconds"), locale)
    if locale == "ru":
        verb = plural_ru(matches, "завершился", "завершились", "завершились")
        lines = [f"{matches} {_runs_ru(matches)} {verb} ошибкой по шаблону /{pattern}/ {window},"
                 f" порог {minimum}"]
    else:
        runs = "run" if matches == 1 else "runs"
        lines = [f"{matches} failed {runs} matched /{pattern}/ {window}, limit {minimum}"]
    return lines + _infrastructure_note(facts, locale)


def _duration_regression(facts: dict[str, Fact], locale: str) -> list[str]:
    recent = _seconds(_float(facts, "recent_mean_seconds"), locale)
    baseline = _seconds(_float(facts, "baseline_mean_seconds"), locale)
    ratio = _number(_float(facts, "ratio"), locale)
    factor = _number(_float(facts, "factor"), locale)
    recent_runs, baseline_runs = _int(facts, "recent_runs"), _int(facts, "baseline_runs")
    window = _window(_float(facts, "window_seconds"), locale)
    period = period_phrase(_float(facts, "baseline_seconds"), locale)
    if locale == "ru":
        return [
            f"Средняя длительность {recent} по {recent_runs} успешным запускам {window},"
            f" это {ratio}× от базовой {baseline} ({baseline_runs} {_runs_ru(baseline_runs)}"
            f" за {period} до этого), порог {factor}×"
        ]
    return [
        f"Mean duration {recent} over {recent_runs} succeeded runs {window} is {ratio}x the"
        f" baseline {baseline} ({baseline_runs} runs in the {period} before), limit {factor}x"
    ]


def _job_drift(facts: dict[str, Fact], locale: str) -> list[str]:
    changes = [change for change in str(facts["changes"] or "").split(",") if change]
    if not changes:
        return ["Job совпадает с ожидаемым определением" if locale == "ru"
                else "The job matches its expected definition"]
    return [_drift_line(change, facts, locale) for change in changes]


def _drift_line(change: str, facts: dict[str, Fact], locale: str) -> str:
    ru = locale == "ru"
    if change == "unscheduled":
        return ("Job снят с расписания: его больше нет в cron.job" if ru
                else "The job was unscheduled: it is no longer in cron.job")
    if change == "schedule":
        now, expected = facts.get("schedule"), facts.get("expected_schedule")
        return (f'Расписание изменено: "{now}", ожидалось "{expected}"' if ru
                else f'Schedule changed to "{now}", expected "{expected}"')
    if change == "active":
        paused = facts.get("active") == "false"
        if ru:
            return ("Job отключён (active = false), а должен быть активен" if paused
                    else "Job активен, а должен быть отключён")
        return ("The job is inactive (active = false), expected active" if paused
                else "The job is active, expected inactive")
    changed = ("Команда job'а изменилась с тех пор, как watchdog впервые его увидел" if ru
               else "The job's command changed since the watchdog first saw it")
    was, now = facts.get("expected_command_fingerprint"), facts.get("command_fingerprint")
    if was is None or now is None:
        # Facts stored by a version without fingerprints.
        return changed
    if ru:
        return (f"{changed}: отпечаток (SHA-256) был {was}, стал {now}; текст команды не"
                " показан, потому что в командах часто бывают учётные данные")
    return (f"{changed}: fingerprint {was}, now {now} (first 8 hex digits of SHA-256; the"
            " text is left out because commands often hold credentials)")


# --- Scheduler-wide kinds -------------------------------------------------------


def _infrastructure_failures(facts: dict[str, Fact], locale: str) -> list[str]:
    jobs = _int(facts, "jobs")
    window = _window(_float(facts, "window_seconds"), locale)
    if locale == "ru":
        word = plural_ru(jobs, "job пострадал", "job'а пострадали", "job'ов пострадали")
        lines = [f"{jobs} {word} от инфраструктурных сбоев pg_cron {window};"
                 " это не ошибки самих job'ов, автоматических действий не будет"]
    else:
        word = "job was" if jobs == 1 else "jobs were"
        lines = [f"{jobs} {word} hit by pg_cron infrastructure outcomes {window}; these are not"
                 " the jobs' own failures and get no remediation"]
    for group in str(facts.get("groups") or "").splitlines():
        minute, reason, labels = group.split("\t")
        lines.append(f"{_clock(minute)}, {_reason(reason, locale)}: {labels}")
    return lines


def _reason(reason: str, locale: str) -> str:
    if not reason.startswith("abandoned:"):
        return f'"{reason}"'
    status = reason.split(":", 1)[1]
    if locale == "ru":
        return (f"запуск брошен в статусе {status} (не завершится: был рестарт сервера"
                " или уже есть более новый запуск)")
    return (f"run abandoned in status {status} (it will never finish: the server restarted"
            " or a newer run exists)")


_DOWN_REASONS = {
    "no_process": (
        "No pg_cron scheduler process in pg_stat_activity: no job starts and no run row is"
        " written",
        "В pg_stat_activity нет процесса планировщика pg_cron: job'ы не запускаются, записи"
        " о запусках не появляются",
    ),
    "launch_active_jobs_off": (
        "cron.launch_active_jobs is off: pg_cron starts no job",
        "cron.launch_active_jobs выключен: pg_cron не запускает job'ы",
    ),
    "standby": (
        "The server is a standby (pg_is_in_recovery() is true): pg_cron runs jobs only on the"
        " primary, so connect the watchdog to the primary",
        "Сервер работает как реплика (pg_is_in_recovery() = true): pg_cron запускает job'ы"
        " только на primary, подключите watchdog к primary",
    ),
}


def _scheduler_down(facts: dict[str, Fact], locale: str) -> list[str]:
    ru = locale == "ru"
    reason = facts.get("reason")
    if reason is None:
        processes = _int(facts, "processes")
        return [f"планировщик pg_cron работает (процессов: {processes})" if ru
                else f"The pg_cron scheduler is running ({processes} process)"]
    english, russian = _DOWN_REASONS[str(reason)]
    lines = [russian if ru else english]
    suppressed = _int(facts, "suppressed")
    if suppressed:
        names = facts.get("suppressed_jobs") or NO_VALUE
        lines.append(
            f"Алертов missing_run подавлено, пока планировщик не работает: {suppressed} ({names})"
            if ru else
            f"{suppressed} missing_run alerts suppressed while the scheduler is down: {names}"
        )
    return lines


def _concurrency_saturated(facts: dict[str, Fact], locale: str) -> list[str]:
    in_flight, limit = _int(facts, "in_flight"), _int(facts, "max_running_jobs")
    lasted = _span(_float(facts, "saturated_seconds"), locale)
    hold = _span(_float(facts, "for_seconds"), locale)
    if locale == "ru":
        lines = [f"Одновременно идёт {in_flight} {_runs_ru(in_flight)} при cron.max_running_jobs"
                 f" = {limit} уже {lasted} (алерт после {hold}); остальные job'ы ждут в очереди"
                 " и стартуют с опозданием"]
        if facts.get("configured"):
            lines.append("Лимит взят из настроек watchdog: роль не может прочитать"
                         " cron.max_running_jobs, выдайте ей pg_read_all_settings")
        return lines
    lines = [f"{in_flight} runs in flight reached cron.max_running_jobs = {limit} for {lasted}"
             f" (alert after {hold}); other jobs wait in pg_cron's queue and start late"]
    if facts.get("configured"):
        lines.append("The limit is the watchdog's configured value: the role cannot read"
                     " cron.max_running_jobs; grant it pg_read_all_settings")
    return lines


def _run_history_size(facts: dict[str, Fact], locale: str) -> list[str]:
    ru = locale == "ru"
    rows, size = _count(_int(facts, "rows"), locale), _size(_float(facts, "bytes"), locale)
    limits = []
    if facts.get("max_rows") is not None:
        limits.append(f"{_count(_int(facts, 'max_rows'), locale)} {'строк' if ru else 'rows'}")
    if facts.get("max_bytes") is not None:
        limits.append(_size(_float(facts, "max_bytes"), locale))
    limit_text = ", ".join(limits)
    lines = [f"В cron.job_run_details около {rows} строк, {size} на диске (лимит: {limit_text})"
             if ru else
             f"cron.job_run_details holds about {rows} rows, {size} on disk (limit: {limit_text})"]
    if facts.get("rows_source") == "runid_span":
        lines.append("Число строк оценено по диапазону runid: таблицу ещё ни разу не анализировали"
                     if ru else
                     "Row count estimated from the runid range: the table was never analyzed")
    keep = facts.get("keep_seconds")
    if isinstance(keep, int | float):
        span = _span(float(keep), locale)
        lines.append(f"Запуски старше {span} (keep) подлежат очистке пакетами по runid" if ru
                     else f"Runs older than {span} (keep) are due for purge in batches by runid")
    else:
        lines.append("pg_cron сам не удаляет историю запусков: запланируйте очистку или выключите"
                     " cron.log_run" if ru else
                     "pg_cron never deletes run history: schedule a cleanup job or set"
                     " cron.log_run = off")
    return lines


def _http_failures(facts: dict[str, Fact], locale: str) -> list[str]:
    ru = locale == "ru"
    failed, total = _int(facts, "failed"), _int(facts, "total")
    ratio = _number(_float(facts, "ratio") * 100, locale, 0)
    window = _window(_float(facts, "window_seconds"), locale)
    minimum = _int(facts, "min_status")
    lines = [f"{failed} из {total} ответов pg_net с ошибкой ({ratio}%) {window}: статус >="
             f" {minimum}, таймаут или error_msg" if ru else
             f"{failed}/{total} pg_net responses failed ({ratio}%) {window}: status >= {minimum},"
             " timeout or error_msg"]
    if facts.get("last_id") is not None:
        status = facts.get("last_status") or NO_VALUE
        timed_out = ""
        if facts.get("last_timed_out"):
            timed_out = " (таймаут)" if ru else " (timed out)"
        lines.append(f"Последний неудачный ответ id {facts['last_id']}: статус {status}{timed_out}"
                     if ru else
                     f"Last failed response id {facts['last_id']}: status {status}{timed_out}")
        body = first_error_line(str(facts["last_body"])) if facts.get("last_body") else NO_VALUE
        lines.append(f"Тело ответа: {body}" if ru else f"Body: {body}")
    lines.append("pg_net не записывает, какой job отправил запрос, и хранит ответы только"
                 " pg_net.ttl (6 часов по умолчанию)" if ru else
                 "pg_net does not record which job sent a request and keeps responses only for"
                 " pg_net.ttl (6 hours by default)")
    return lines


_SUMMARIZERS: dict[str, Summarizer] = {
    "consecutive_failures": _consecutive_failures,
    "stuck_run": _stuck_run,
    "error_match": _error_match,
    "duration_regression": _duration_regression,
    "job_drift": _job_drift,
    "infrastructure_failures": _infrastructure_failures,
    "scheduler_down": _scheduler_down,
    "concurrency_saturated": _concurrency_saturated,
    "run_history_size": _run_history_size,
    "http_failures": _http_failures,
}
