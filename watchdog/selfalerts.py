# ruff: noqa: RUF001  # the Russian texts are Cyrillic on purpose
"""The watchdog's own alerts: it cannot read the database, or its rules file is invalid.

They go to the channels of `[defaults] notify` through the same outbox as job
alerts. Their state is kept in the state store, so a restart neither repeats
nor forgets them: each one is announced once when it starts and once when it
resolves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from watchdog import messages
from watchdog.outbox import url_key
from watchdog.rules import RuleSet
from watchdog.state import StateStore

log = logging.getLogger(__name__)

DATABASE_UNREADABLE = "database_unreadable"
RULES_INVALID = "rules_invalid"
NAMES = (DATABASE_UNREADABLE, RULES_INVALID)

SEVERITY = {DATABASE_UNREADABLE: "critical", RULES_INVALID: "warning"}

# Texts per locale: (firing title, firing body, resolved title, resolved body).
_TEXTS: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "en": {
        DATABASE_UNREADABLE: (
            "cron-watchdog cannot read pg_cron on {target}",
            "cannot read pg_cron on {target}: {detail}\n"
            "Failing since {since}. Job alerts keep their state and are not evaluated"
            " until reads work again.",
            "cron-watchdog reads pg_cron on {target} again",
            "Reads of pg_cron on {target} work again; the outage lasted {span}.",
        ),
        RULES_INVALID: (
            "cron-watchdog: invalid rules file",
            "{detail}\nThe last valid rules stay in force. Run `cron-watchdog validate`"
            " to list every problem.",
            "cron-watchdog: rules file is valid again",
            "The rules file was fixed after {span}; the new rules are in force.",
        ),
    },
    "ru": {
        DATABASE_UNREADABLE: (
            "cron-watchdog не может прочитать pg_cron на {target}",
            "Не удаётся прочитать pg_cron на {target}: {detail}\n"
            "Чтение не удаётся с {since}. Алерты по job'ам сохраняют своё состояние и не"
            " пересчитываются, пока чтение не восстановится.",
            "cron-watchdog снова читает pg_cron на {target}",
            "Чтение pg_cron на {target} снова работает, сбой длился {span}.",
        ),
        RULES_INVALID: (
            "cron-watchdog: ошибка в файле правил",
            "{detail}\nДействуют последние корректные правила. Все ошибки покажет"
            " `cron-watchdog validate`.",
            "cron-watchdog: файл правил снова корректен",
            "Файл правил исправлен спустя {span}, новые правила действуют.",
        ),
    },
}


@dataclass(frozen=True)
class SelfAlert:
    """A firing alert of the watchdog itself."""

    name: str
    since: datetime
    detail: str


def _key(target: str, name: str) -> str:
    return f"self_alert:{target}:{name}"


def firing_self_alerts(store: StateStore, target: str) -> list[SelfAlert]:
    """Return the watchdog's own alerts that are firing on the target."""
    alerts = []
    for name in NAMES:
        raw = store.meta_value(_key(target, name))
        if raw is None:
            continue
        stored = json.loads(raw)
        alerts.append(SelfAlert(name, datetime.fromisoformat(stored["since"]), stored["detail"]))
    return alerts


def fire(
    store: StateStore, target: str, rules: RuleSet, name: str, detail: str, now: datetime,
    since: datetime | None = None,
) -> bool:
    """Start a self alert and queue its message; return False when it was already firing.

    `since` is when the problem began, such as the first failed poll; it defaults to now.
    """
    if store.meta_value(_key(target, name)) is not None:
        return False
    began = since or now
    with store.transaction():
        store.set_meta_value(
            _key(target, name), json.dumps({"since": began.isoformat(), "detail": detail})
        )
        _enqueue(store, target, rules, name, firing=True, detail=detail, since=began, now=now)
    log.warning("watchdog alert %s is firing on %s: %s", name, target, detail)
    return True


def resolve(store: StateStore, target: str, rules: RuleSet, name: str, now: datetime) -> bool:
    """Resolve a firing self alert and queue its message; return False when it was not firing."""
    raw = store.meta_value(_key(target, name))
    if raw is None:
        return False
    stored = json.loads(raw)
    since = datetime.fromisoformat(stored["since"])
    with store.transaction():
        store.delete_meta_value(_key(target, name))
        _enqueue(store, target, rules, name, firing=False, detail=stored["detail"],
                 since=since, now=now)
    log.info("watchdog alert %s on %s resolved after firing since %s", name, target,
             since.isoformat(timespec="seconds"))
    return True


def _enqueue(
    store: StateStore, target: str, rules: RuleSet, name: str, *, firing: bool, detail: str,
    since: datetime, now: datetime,
) -> None:
    if not rules.default_notify:
        log.warning(
            "watchdog alert %s has no channel to go to: list channels in [defaults] notify"
            " of the rules file", name,
        )
        return
    notify_type = SEVERITY[name] if firing else "resolved"
    for channel_name in rules.default_notify:
        channel = rules.channels[channel_name]
        title, body = render(name, channel.locale, firing=firing, target=target, detail=detail,
                             since=since, now=now, timezone=rules.display_timezone)
        for url in channel.urls:
            store.enqueue(target, channel.name, url_key(url), notify_type, title, body, now)


def render(
    name: str, locale: str, *, firing: bool, target: str, detail: str, since: datetime,
    now: datetime, timezone: str = "UTC",
) -> tuple[str, str]:
    """Return the title and body of a self alert message in the locale.

    Times are shown in `timezone`, the rules file's display_timezone, as job alerts show them.
    """
    texts = _TEXTS.get(locale, _TEXTS["en"])[name]
    title, body = (texts[0], texts[1]) if firing else (texts[2], texts[3])
    values = {
        "target": target,
        "detail": detail,
        "since": messages.format_time(since, timezone),
        "span": messages.format_span((now - since).total_seconds(), locale),
    }
    return title.format(**values), body.format(**values)
