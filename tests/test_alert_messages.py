# ruff: noqa: RUF001  # the Russian texts are Cyrillic on purpose
"""Lifecycle texts (reminders, late announcements, missed runs), display time zone,
and special characters through the whole path to Telegram and Slack payloads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from factories import NOW

from watchdog import outbox
from watchdog.messages import render
from watchdog.models import AlertEvent, Severity, Verdict
from watchdog.rules import parse_rules
from watchdog.state import StateStore

TARGET = "db:5432/postgres"
NASTY_JOB = "purge_*old*_[rows]<&>"
NASTY_ERROR = 'ERROR:  syntax error at or near "<" & *x* _y_ [z]'
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def missing_event(state: str = "firing", reminder: bool = False, late: bool = False,
                  facts: dict[str, Any] | None = None) -> AlertEvent:
    base = {"schedule": "*/5 * * * *", "expected_at": "2025-05-05T09:55:00+00:00",
            "grace_seconds": 120.0, "last_start": "2025-05-05T09:50:00+00:00",
            "cron_timezone": "GMT", "missed": 0}
    verdict = Verdict(rule="sync stopped", kind="missing_run", jobid=3, job_label="sync",
                      firing=state == "firing", value=0.0, facts={**base, **(facts or {})})
    return AlertEvent(target=TARGET, rule="sync stopped", kind="missing_run",
                      severity=Severity.CRITICAL, jobid=3, job_label="sync", database=None,
                      state=state, at=NOW, since=NOW - timedelta(hours=2, minutes=5),
                      verdict=verdict, reminder=reminder, announced_late=late)


def test_reminder_title_and_firing_time_english() -> None:
    title, body = render(missing_event(reminder=True), "en")
    assert title == "[CRITICAL] sync: sync stopped (reminder)"
    assert "Firing for 2h 5m, since 2025-05-05 09:55:00 UTC" in body.split("\n")


def test_reminder_russian() -> None:
    title, body = render(missing_event(reminder=True), "ru")
    assert title == "[КРИТИЧНО] sync: sync stopped (напоминание)"
    assert "Активен уже 2 ч 5 мин, с 2025-05-05 09:55:00 UTC" in body.split("\n")


def test_late_announcement_says_how_long_it_fired() -> None:
    title, body = render(missing_event(late=True), "en")
    assert title == "[CRITICAL] sync: sync stopped"
    assert "Firing for 2h 5m" in body


def test_first_announcement_has_no_firing_time() -> None:
    _, body = render(missing_event(), "en")
    assert "Firing for" not in body


@pytest.mark.parametrize(
    ("count", "english", "russian"),
    [
        (1, "1 scheduled run was missed while it fired",
         "За это время пропущен 1 запуск по расписанию"),
        (3, "3 scheduled runs were missed while it fired",
         "За это время пропущено 3 запуска по расписанию"),
        (25, "25 scheduled runs were missed while it fired",
         "За это время пропущено 25 запусков по расписанию"),
    ],
)
def test_resolve_counts_missed_runs(count: int, english: str, russian: str) -> None:
    event = missing_event("resolved", facts={"missed_while_firing": count})
    assert english in render(event, "en")[1].split("\n")
    assert russian in render(event, "ru")[1].split("\n")


def test_last_run_line_in_both_locales() -> None:
    event = dataclasses.replace(
        missing_event(), schedule="*/5 * * * *", last_run_at=NOW - timedelta(minutes=7),
        last_run_seconds=12.5,
    )
    english = render(event, "en", "Europe/Berlin")[1].split("\n")
    russian = render(event, "ru")[1].split("\n")
    assert ('Last run: started 2025-05-05 13:53:00 CEST, took 12.5 s; schedule "*/5 * * * *"'
            in english)
    assert ('Последний запуск: начат 2025-05-05 11:53:00 UTC, длился 12,5 с; расписание'
            ' "*/5 * * * *"' in russian)


def test_last_run_without_end_is_still_running() -> None:
    event = dataclasses.replace(missing_event(), schedule="@hourly", last_run_at=NOW)
    assert 'Last run: started 2025-05-05 12:00:00 UTC, still running; schedule "@hourly"' \
        in render(event, "en")[1].split("\n")
    assert ('Последний запуск: начат 2025-05-05 12:00:00 UTC, ещё выполняется; расписание'
            ' "@hourly"' in render(event, "ru")[1].split("\n"))


def test_times_follow_display_timezone() -> None:
    _, body = render(missing_event(), "ru", "Europe/Moscow")
    assert "Нет запусков с 2025-05-05 12:55:00 MSK" in body
    assert "последний запуск начался 2025-05-05 12:50:00 MSK" in body


# --- Whole path to intercepted Telegram and Slack ---------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Intercept every request made through `requests` and respond 200."""
    calls: list[tuple[str, Any]] = []

    def request(session: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        calls.append((url, json.loads(data) if isinstance(data, str | bytes) else data))
        response = requests.Response()
        response.status_code = 200
        # Slack's webhook responds with a plain "ok", Telegram with JSON.
        response._content = b"ok" if "slack.com" in url else b'{"ok": true}'
        return response

    monkeypatch.setattr(requests.Session, "request", request)
    return calls


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    state = StateStore(tmp_path / "state.sqlite3")
    yield state
    state.close()


def nasty_event() -> AlertEvent:
    verdict = Verdict(rule="purge failing", kind="failure_ratio", jobid=4, job_label=NASTY_JOB,
                      firing=True, value=1.0,
                      facts={"failed": 3, "finished": 3, "ratio": 1.0, "threshold": 0.5,
                             "window_seconds": 3600.0},
                      last_error=NASTY_ERROR)
    return AlertEvent(target=TARGET, rule="purge failing", kind="failure_ratio",
                      severity=Severity.CRITICAL, jobid=4, job_label=NASTY_JOB, database="app",
                      state="firing", at=NOW, since=NOW, verdict=verdict)


def deliver_to(url: str, store: StateStore) -> None:
    text = f"""
[channels.chat]
urls = ["{url}"]

[[rules]]
name = "purge failing"
kind = "failure_ratio"
threshold = 0.5
notify = ["chat"]
"""
    rules = parse_rules(text, "rules.toml", {})
    outbox.enqueue_events(store, TARGET, rules, [nasty_event()], NOW)
    report = outbox.deliver_due(store, TARGET, rules, NOW)
    assert report.sent == 1


def test_telegram_gets_special_characters_escaped(
    sent: list[tuple[str, Any]], store: StateStore
) -> None:
    deliver_to(f"tgram://{TELEGRAM_TOKEN}/987", store)

    [(url, payload)] = sent
    assert url.endswith("/sendMessage")
    assert payload["parse_mode"] == "HTML"
    text = payload["text"]
    assert "<b>[CRITICAL] purge_*old*_[rows]&lt;&amp;&gt;: purge failing</b>" in text
    assert 'Last error: ERROR:  syntax error at or near "&lt;" &amp; *x* _y_ [z]' in text
    # Only Telegram's own bold tag is markup; every other `<` is escaped.
    assert text.count("<") == 2


def test_slack_gets_special_characters_escaped(
    sent: list[tuple[str, Any]], store: StateStore
) -> None:
    deliver_to("slack://T1ABCDEFG/B2ABCDEFG/C3abcdefghijklmnopqrstuv/#alerts", store)

    [(_, payload)] = sent
    assert payload["mrkdwn"] is False
    [attachment] = payload["attachments"]
    assert attachment["title"] == "[CRITICAL] purge_*old*_[rows]&lt;&amp;&gt;: purge failing"
    assert ('Last error: ERROR:  syntax error at or near "&lt;" &amp; *x* _y_ [z]'
            in attachment["text"])
    assert "<" not in attachment["text"]
