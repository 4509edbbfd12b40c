# ruff: noqa: RUF001  # expected Russian texts are Cyrillic on purpose
"""Rendering of alert, test and digest messages in English and Russian."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watchdog.messages import (
    DIGEST_BODY_MAX_CHARS,
    LOCALES,
    _lower_first,
    format_span,
    period_phrase,
    plural_ru,
    render,
    render_digest,
    render_test,
)
from watchdog.models import AlertEvent, Fact, Severity, Verdict

AT = datetime(2025, 5, 5, 12, 0, tzinfo=UTC)

FAILURE_FACTS: dict[str, Fact] = {
    "failed": 3,
    "finished": 10,
    "ratio": 0.3,
    "threshold": 0.2,
    "min_runs": 3,
    "window_seconds": 3600.0,
}
MISSING_FACTS: dict[str, Fact] = {
    "schedule": "*/5 * * * *",
    "expected_at": "2025-05-05T11:55:00+00:00",
    "grace_seconds": 120.0,
    "last_start": "2025-05-05T11:45:00.250000+00:00",
    "cron_timezone": "GMT",
    "missed": 2,
}
SLOW_FACTS: dict[str, Fact] = {
    "mean_seconds": 12.44,
    "max_seconds": 10.0,
    "runs": 5,
    "window_seconds": 3600.0,
}


def make_event(
    kind: str = "failure_ratio",
    facts: dict[str, Fact] | None = None,
    *,
    state: str = "firing",
    severity: Severity = Severity.CRITICAL,
    last_error: str | None = None,
    evidence: tuple[int, ...] = (),
    job_label: str = "provisioner-sync",
    rule: str = "provisioner failing",
    database: str | None = "app",
    lasted: timedelta = timedelta(minutes=25),
) -> AlertEvent:
    verdict = Verdict(
        rule=rule,
        kind=kind,
        jobid=7,
        job_label=job_label,
        firing=state == "firing",
        value=None,
        facts=dict(FAILURE_FACTS if facts is None else facts),
        last_error=last_error,
        evidence=evidence,
    )
    return AlertEvent(
        target="main",
        rule=rule,
        kind=kind,
        severity=severity,
        jobid=7,
        job_label=job_label,
        database=database,
        state=state,
        at=AT,
        since=AT - lasted,
        verdict=verdict,
    )


def body_lines(event: AlertEvent, locale: str) -> list[str]:
    return render(event, locale)[1].split("\n")


# --- Titles ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "severity", "state", "expected"),
    [
        ("en", Severity.CRITICAL, "firing", "[CRITICAL] provisioner-sync: provisioner failing"),
        ("en", Severity.WARNING, "firing", "[WARNING] provisioner-sync: provisioner failing"),
        ("en", Severity.INFO, "firing", "[INFO] provisioner-sync: provisioner failing"),
        ("en", Severity.CRITICAL, "resolved", "[RESOLVED] provisioner-sync: provisioner failing"),
        ("ru", Severity.CRITICAL, "firing", "[КРИТИЧНО] provisioner-sync: provisioner failing"),
        (
            "ru",
            Severity.WARNING,
            "firing",
            "[ПРЕДУПРЕЖДЕНИЕ] provisioner-sync: provisioner failing",
        ),
        ("ru", Severity.INFO, "firing", "[ИНФО] provisioner-sync: provisioner failing"),
        ("ru", Severity.CRITICAL, "resolved", "[ЗАКРЫТ] provisioner-sync: provisioner failing"),
    ],
)
def test_title_names_severity_job_and_rule(
    locale: str, severity: Severity, state: str, expected: str
) -> None:
    title, _ = render(make_event(severity=severity, state=state), locale)
    assert title == expected


# --- failure_ratio -----------------------------------------------------------


def test_failure_ratio_english_body() -> None:
    event = make_event(
        last_error='ERROR:  syntax error at or near "<"\nLINE 1: SELECT * FROM t WHERE a <',
        evidence=(101, 102, 103),
    )
    assert body_lines(event, "en") == [
        "3/10 runs failed (30%) in the last 1h, threshold 20%",
        "Database: app",
        'Last error: ERROR:  syntax error at or near "<"',
        "Failed runs (runid): 101, 102, 103",
    ]


def test_failure_ratio_russian_body() -> None:
    event = make_event(last_error="ERROR:  division by zero", evidence=(101, 102, 103))
    assert body_lines(event, "ru") == [
        "3 из 10 запусков завершились ошибкой (30%) за последний час, порог 20%",
        "База данных: app",
        "Последняя ошибка: ERROR:  division by zero",
        "Запуски с ошибкой (runid): 101, 102, 103",
    ]


def test_failure_ratio_russian_agrees_with_counts() -> None:
    facts = {**FAILURE_FACTS, "failed": 1, "finished": 1, "ratio": 1.0}
    assert body_lines(make_event(facts=facts), "ru")[0] == (
        "1 из 1 запуска завершился ошибкой (100%) за последний час, порог 20%"
    )

    facts = {**FAILURE_FACTS, "failed": 21, "finished": 25, "ratio": 0.84}
    assert body_lines(make_event(facts=facts), "ru")[0] == (
        "21 из 25 запусков завершился ошибкой (84%) за последний час, порог 20%"
    )


def test_failure_ratio_english_singular_run() -> None:
    facts = {**FAILURE_FACTS, "failed": 1, "finished": 1, "ratio": 1.0}
    assert body_lines(make_event(facts=facts), "en")[0] == (
        "1/1 run failed (100%) in the last 1h, threshold 20%"
    )


@pytest.mark.parametrize(
    ("window_seconds", "english", "russian"),
    [
        (3600.0, "in the last 1h", "за последний час"),
        (900.0, "in the last 15m", "за последние 15 минут"),
        (7200.0, "in the last 2h", "за последние 2 часа"),
        (21 * 3600.0, "in the last 21h", "за последний 21 час"),
        (86400.0, "in the last 1d", "за последние сутки"),
        (60.0, "in the last 1m", "за последнюю минуту"),
        (90.0, "in the last 1m 30s", "за последние 1 мин 30 с"),
        (21 * 60.0, "in the last 21m", "за последнюю 21 минуту"),
    ],
)
def test_failure_ratio_window_phrase(window_seconds: float, english: str, russian: str) -> None:
    event = make_event(facts={**FAILURE_FACTS, "window_seconds": window_seconds})
    assert f" {english}, " in body_lines(event, "en")[0]
    assert f" {russian}, " in body_lines(event, "ru")[0]


def test_small_percentages_keep_one_decimal() -> None:
    facts = {**FAILURE_FACTS, "failed": 1, "finished": 400, "ratio": 0.0025, "threshold": 0.001}
    assert body_lines(make_event(facts=facts), "en")[0] == (
        "1/400 runs failed (0.2%) in the last 1h, threshold 0.1%"
    )
    assert "(0,2%)" in body_lines(make_event(facts=facts), "ru")[0]


# --- Last error --------------------------------------------------------------


@pytest.mark.parametrize(("locale", "label"), [("en", "Last error"), ("ru", "Последняя ошибка")])
def test_null_last_error_shows_dash(locale: str, label: str) -> None:
    assert f"{label}: —" in body_lines(make_event(last_error=None), locale)


def test_blank_last_error_shows_dash() -> None:
    assert "Last error: —" in body_lines(make_event(last_error=" \n\t\n"), "en")


def test_multiline_last_error_uses_first_line() -> None:
    message = "\n  ERROR:  relation \"orders\" does not exist  \nLINE 1: SELECT * FROM orders\n"
    lines = body_lines(make_event(last_error=message), "en")
    assert 'Last error: ERROR:  relation "orders" does not exist' in lines
    assert not any("LINE 1" in line for line in lines)


def test_long_last_error_is_cut_to_300_chars() -> None:
    message = "ERROR: " + "x" * 1000
    error_line = next(
        line for line in body_lines(make_event(last_error=message), "en")
        if line.startswith("Last error: ")
    )
    error_text = error_line.removeprefix("Last error: ")
    assert len(error_text) == 300
    assert error_text.endswith("…")
    assert error_text.startswith("ERROR: xxx")


def test_error_of_300_chars_is_kept_whole() -> None:
    message = "E" * 300
    assert f"Last error: {message}" in body_lines(make_event(last_error=message), "en")


def test_markup_characters_pass_through_unchanged() -> None:
    message = "ERROR: value < 0 & x > 1 in purge_old_rows *all* [#1] v1.2"
    assert f"Last error: {message}" in body_lines(make_event(last_error=message), "en")


# --- Evidence ----------------------------------------------------------------


def test_evidence_lists_five_runids_and_counts_the_rest() -> None:
    event = make_event(evidence=(11, 12, 13, 14, 15, 16, 17, 18))
    assert "Failed runs (runid): 11, 12, 13, 14, 15 and 3 more" in body_lines(event, "en")
    assert "Запуски с ошибкой (runid): 11, 12, 13, 14, 15 и ещё 3" in body_lines(event, "ru")


def test_evidence_of_exactly_five_has_no_remainder() -> None:
    event = make_event(evidence=(1, 2, 3, 4, 5))
    assert "Failed runs (runid): 1, 2, 3, 4, 5" in body_lines(event, "en")


def test_event_without_database_omits_the_line() -> None:
    lines = body_lines(make_event(database=None), "en")
    assert not any(line.startswith("Database") for line in lines)


# --- missing_run -------------------------------------------------------------


def test_missing_run_english_body() -> None:
    assert body_lines(make_event("missing_run", MISSING_FACTS), "en") == [
        'No run since 2025-05-05 11:55:00 UTC (schedule "*/5 * * * *", cron time zone GMT, '
        "grace 2m); last run started 2025-05-05 11:45:00 UTC",
        "2 scheduled runs missed",
        "Database: app",
    ]


def test_missing_run_russian_body() -> None:
    assert body_lines(make_event("missing_run", MISSING_FACTS), "ru") == [
        'Нет запусков с 2025-05-05 11:55:00 UTC (расписание "*/5 * * * *", '
        "часовой пояс cron GMT, допуск 2 мин); последний запуск начался 2025-05-05 11:45:00 UTC",
        "Пропущено 2 запуска по расписанию",
        "База данных: app",
    ]


def test_missing_run_never_seen_and_no_missed_count() -> None:
    facts = {key: value for key, value in MISSING_FACTS.items() if key != "missed"}
    facts["last_start"] = None
    facts["cron_timezone"] = "Europe/Moscow"
    facts["grace_seconds"] = 90.0

    english = body_lines(make_event("missing_run", facts), "en")
    assert english[0] == (
        'No run since 2025-05-05 11:55:00 UTC (schedule "*/5 * * * *", '
        "cron time zone Europe/Moscow, grace 1m 30s); last run: never seen"
    )
    assert english[1] == "Database: app"

    russian = body_lines(make_event("missing_run", facts), "ru")
    assert russian[0].endswith("допуск 1 мин 30 с); последний запуск: не наблюдался")


def test_missing_run_converts_expected_time_to_utc() -> None:
    facts = {**MISSING_FACTS, "expected_at": "2025-05-05T14:55:00+03:00"}
    assert body_lines(make_event("missing_run", facts), "en")[0].startswith(
        "No run since 2025-05-05 11:55:00 UTC "
    )


@pytest.mark.parametrize(
    ("missed", "english", "russian"),
    [
        (1, "1 scheduled run missed", "Пропущен 1 запуск по расписанию"),
        (2, "2 scheduled runs missed", "Пропущено 2 запуска по расписанию"),
        (5, "5 scheduled runs missed", "Пропущено 5 запусков по расписанию"),
        (11, "11 scheduled runs missed", "Пропущено 11 запусков по расписанию"),
        (21, "21 scheduled runs missed", "Пропущен 21 запуск по расписанию"),
    ],
)
def test_missing_run_missed_count_plural(missed: int, english: str, russian: str) -> None:
    event = make_event("missing_run", {**MISSING_FACTS, "missed": missed})
    assert english in body_lines(event, "en")
    assert russian in body_lines(event, "ru")


def test_missing_run_shows_last_error_only_when_present() -> None:
    without = body_lines(make_event("missing_run", MISSING_FACTS), "en")
    assert not any(line.startswith("Last error") for line in without)

    with_error = body_lines(make_event("missing_run", MISSING_FACTS, last_error="boom"), "en")
    assert "Last error: boom" in with_error


# --- slow_average ------------------------------------------------------------


def test_slow_average_english_body() -> None:
    assert body_lines(make_event("slow_average", SLOW_FACTS, evidence=(9, 4)), "en") == [
        "Mean duration 12.4 s over 5 succeeded runs in the last 1h, limit 10 s",
        "Database: app",
        "Slowest runs (runid): 9, 4",
    ]


def test_slow_average_russian_body() -> None:
    assert body_lines(make_event("slow_average", SLOW_FACTS, evidence=(9, 4)), "ru") == [
        "Средняя длительность 12,4 с по 5 успешным запускам за последний час, лимит 10 с",
        "База данных: app",
        "Самые долгие запуски (runid): 9, 4",
    ]


def test_slow_average_long_durations_use_units() -> None:
    facts = {**SLOW_FACTS, "mean_seconds": 4000.0, "max_seconds": 1800.0, "runs": 1}
    assert body_lines(make_event("slow_average", facts), "en")[0] == (
        "Mean duration 1h 6m over 1 succeeded run in the last 1h, limit 30m"
    )
    assert body_lines(make_event("slow_average", facts), "ru")[0] == (
        "Средняя длительность 1 ч 6 мин по 1 успешному запуску за последний час, лимит 30 мин"
    )


# --- Unknown kinds and incomplete facts ---------------------------------------


def test_unknown_kind_lists_sorted_facts() -> None:
    facts: dict[str, Fact] = {"stuck_for": 5400.5, "status": "running", "alpha": None, "runid": 9}
    event = make_event("stuck_run", facts)
    assert body_lines(event, "en")[0] == (
        "Rule kind stuck_run: alpha=—, runid=9, status=running, stuck_for=5400.5"
    )
    assert body_lines(event, "ru")[0] == (
        "Правило типа stuck_run: alpha=—, runid=9, status=running, stuck_for=5400.5"
    )


def test_incomplete_facts_use_generic_form() -> None:
    event = make_event("failure_ratio", {"failed": 3, "finished": 10})
    assert body_lines(event, "en")[0] == "Rule kind failure_ratio: failed=3, finished=10"


# --- Resolved ----------------------------------------------------------------


def test_resolved_failure_ratio_english() -> None:
    facts = {**FAILURE_FACTS, "failed": 1, "ratio": 0.1}
    assert body_lines(make_event(facts=facts, state="resolved"), "en") == [
        "Resolved after 25m.",
        "Now: 1/10 runs failed (10%) in the last 1h, threshold 20%",
        "Database: app",
    ]


def test_resolved_failure_ratio_russian() -> None:
    facts = {**FAILURE_FACTS, "failed": 1, "ratio": 0.1}
    event = make_event(facts=facts, state="resolved", lasted=timedelta(hours=2, minutes=5))
    assert body_lines(event, "ru") == [
        "Алерт закрыт, длился 2 ч 5 мин.",
        "Сейчас: 1 из 10 запусков завершился ошибкой (10%) за последний час, порог 20%",
        "База данных: app",
    ]


def test_resolved_missing_run_shows_last_start() -> None:
    event = make_event("missing_run", MISSING_FACTS, state="resolved")
    assert body_lines(event, "en")[:2] == [
        "Resolved after 25m.",
        'Now: last run started 2025-05-05 11:45:00 UTC (schedule "*/5 * * * *", '
        "cron time zone GMT)",
    ]


def test_resolved_slow_average_lowercases_summary() -> None:
    lasted = timedelta(days=2, hours=3)
    event = make_event("slow_average", SLOW_FACTS, state="resolved", lasted=lasted)
    assert body_lines(event, "en")[:2] == [
        "Resolved after 2d 3h.",
        "Now: mean duration 12.4 s over 5 succeeded runs in the last 1h, limit 10 s",
    ]


def test_invalid_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="'pending'"):
        render(make_event(state="pending"), "en")


# --- Durations, plurals, locales ---------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "english", "russian"),
    [
        (0, "0s", "0 с"),
        (45, "45s", "45 с"),
        (90, "1m 30s", "1 мин 30 с"),
        (3600, "1h", "1 ч"),
        (3660, "1h 1m", "1 ч 1 мин"),
        (2 * 86400 + 3 * 3600 + 40 * 60, "2d 3h", "2 д 3 ч"),
        (86400 + 59, "1d", "1 д"),
    ],
)
def test_format_span(seconds: int, english: str, russian: str) -> None:
    assert format_span(seconds, "en") == english
    assert format_span(seconds, "ru") == russian


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "запусков"),
        (1, "запуск"),
        (2, "запуска"),
        (4, "запуска"),
        (5, "запусков"),
        (11, "запусков"),
        (12, "запусков"),
        (14, "запусков"),
        (21, "запуск"),
        (22, "запуска"),
        (111, "запусков"),
        (101, "запуск"),
    ],
)
def test_plural_ru(count: int, expected: str) -> None:
    assert plural_ru(count, "запуск", "запуска", "запусков") == expected


def test_unknown_locale_names_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'de'.*en, ru"):
        render(make_event(), "de")
    with pytest.raises(ValueError, match="en, ru"):
        render_test("fr")
    assert LOCALES == ("en", "ru")


def test_render_test_message() -> None:
    assert render_test("en") == (
        "[TEST] pg-cron-watchdog",
        "This is a test notification from pg-cron-watchdog. "
        "If you can read it, this channel delivers alerts.",
    )
    title, body = render_test("ru")
    assert title == "[ТЕСТ] pg-cron-watchdog"
    assert body.startswith("Это тестовое уведомление от pg-cron-watchdog.")


def test_long_job_label_shortens_title() -> None:
    title, _ = render(make_event(job_label="j" * 1000), "en")
    assert len(title) == 250
    assert title.endswith("…")


# --- Digest ------------------------------------------------------------------


def test_digest_orders_worst_first() -> None:
    events = [
        make_event(state="resolved", job_label="c-job"),
        make_event(severity=Severity.WARNING, job_label="b-job"),
        make_event(severity=Severity.CRITICAL, job_label="a-job"),
        make_event(severity=Severity.INFO, job_label="d-job"),
    ]
    title, body = render_digest(events, "en")
    assert title == "[CRITICAL] 4 alerts: 3 firing, 1 resolved"
    lines = body.split("\n")
    assert [line.split(" — ")[0] for line in lines] == [
        "[CRITICAL] a-job: provisioner failing",
        "[WARNING] b-job: provisioner failing",
        "[INFO] d-job: provisioner failing",
        "[RESOLVED] c-job: provisioner failing",
    ]
    assert lines[0] == (
        "[CRITICAL] a-job: provisioner failing — "
        "3/10 runs failed (30%) in the last 1h, threshold 20%"
    )
    assert lines[3] == "[RESOLVED] c-job: provisioner failing — resolved after 25m."


def test_digest_stops_at_limit_and_counts_the_rest() -> None:
    events = [make_event(job_label=f"job-{index:02d}") for index in range(15)]

    title, body = render_digest(events, "en", limit=10)
    lines = body.split("\n")
    assert title == "[CRITICAL] 15 alerts: 15 firing, 0 resolved"
    assert len(lines) == 11
    assert lines[-1] == "and 5 more"

    title, body = render_digest(events, "ru", limit=10)
    assert title == "[КРИТИЧНО] 15 алертов: 15 активных, 0 закрытых"
    assert body.split("\n")[-1] == "и ещё 5"


def test_digest_of_resolved_only_uses_resolved_tag() -> None:
    title, _ = render_digest([make_event(state="resolved")], "ru")
    assert title == "[ЗАКРЫТ] 1 алерт: 0 активных, 1 закрытый"


def test_digest_body_stays_bounded_with_long_lines() -> None:
    events = [
        make_event(job_label=f"{index}-" + "x" * 500, last_error="E" * 5000) for index in range(60)
    ]
    _, body = render_digest(events, "en", limit=1000)
    lines = body.split("\n")
    assert len(body) <= DIGEST_BODY_MAX_CHARS + len("and 60 more") + 1
    assert all(len(line) <= 300 for line in lines)
    hidden = 60 - (len(lines) - 1)
    assert lines[-1] == f"and {hidden} more"
    assert hidden > 0


def test_digest_rejects_empty_and_bad_limit() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        render_digest([], "en")
    with pytest.raises(ValueError, match="limit 0"):
        render_digest([make_event()], "en", limit=0)


def test_digest_line_lowercases_summary_after_dash() -> None:
    slow = make_event("slow_average", {**SLOW_FACTS, "statistic": "max"}, job_label="s-job")
    events = [slow, make_event(job_label="a-job"), make_event(job_label="b-job")]
    _, body = render_digest(events, "ru")
    assert "[КРИТИЧНО] s-job: provisioner failing — максимальная длительность 12,4 с" in body


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Mean duration", "mean duration"), ("HTTP requests", "HTTP requests"), ("", "")],
)
def test_lower_first_keeps_acronyms(text: str, expected: str) -> None:
    assert _lower_first(text) == expected


@pytest.mark.parametrize(
    ("seconds", "russian"),
    [
        (86400.0, "сутки"),
        (7 * 86400.0, "7 дней"),
        (21 * 86400.0, "21 день"),
        (2 * 3600.0, "2 часа"),
        (60.0, "1 минуту"),
        (90.0, "1 мин 30 с"),
    ],
)
def test_period_phrase_spells_single_units(seconds: float, russian: str) -> None:
    assert period_phrase(seconds, "ru") == russian
    assert period_phrase(seconds, "en") == format_span(seconds, "en")
