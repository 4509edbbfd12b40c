# ruff: noqa: RUF001  # the Russian texts are Cyrillic on purpose
"""Texts of the watchdog's own alerts in both locales."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watchdog.selfalerts import DATABASE_UNREADABLE, RULES_INVALID, render

SINCE = datetime(2026, 12, 4, 21, 11, 50, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "Failing since 2026-12-04 21:11:50 UTC."),
        ("ru", "Чтение не удаётся с 2026-12-04 21:11:50 UTC."),
    ],
)
def test_outage_shows_since_like_job_alerts(locale: str, expected: str) -> None:
    _, body = render(DATABASE_UNREADABLE, locale, firing=True, target="db:5432/postgres",
                     detail="connection refused", since=SINCE, now=SINCE)
    assert expected in body
    assert "+00:00" not in body


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "Reads of pg_cron on db:5432/postgres work again; the outage lasted 2m 5s."),
        ("ru", "Чтение pg_cron на db:5432/postgres снова работает, сбой длился 2 мин 5 с."),
    ],
)
def test_outage_resolve_says_how_long(locale: str, expected: str) -> None:
    _, body = render(DATABASE_UNREADABLE, locale, firing=False, target="db:5432/postgres",
                     detail="connection refused", since=SINCE,
                     now=SINCE + timedelta(minutes=2, seconds=5))
    assert body == expected


def test_rules_invalid_titles_in_russian() -> None:
    fired, _ = render(RULES_INVALID, "ru", firing=True, target="t", detail="bad", since=SINCE,
                      now=SINCE)
    fixed, body = render(RULES_INVALID, "ru", firing=False, target="t", detail="bad",
                         since=SINCE, now=SINCE + timedelta(minutes=3))
    assert fired == "cron-watchdog: ошибка в файле правил"
    assert fixed == "cron-watchdog: файл правил снова корректен"
    assert body == "Файл правил исправлен спустя 3 мин, новые правила действуют."
