"""The notification outbox: every message is stored before it is sent.

A message is deleted only after its URL accepted it. A failed send stays in
the outbox and is retried with exponential backoff, so a channel that is down
for an hour still gets every alert afterwards, and a failing URL never holds
back the other URLs of the same channel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog import notify
from watchdog.channels import Channel
from watchdog.compose import compose, routed
from watchdog.models import AlertEvent
from watchdog.rules import RuleSet
from watchdog.state import StateStore

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int
    waiting: int


def url_key(url: str) -> str:
    """Return a fingerprint of a URL, so the outbox never stores a secret."""
    return hashlib.sha256(url.encode()).hexdigest()[:20]


def enqueue_events(
    store: StateStore, target: str, rules: RuleSet, events: list[AlertEvent], now: datetime
) -> int:
    """Compose each channel's messages for the events and store one per URL; return the count.

    A channel gets the events of the rules that notify it, at or above its
    min_severity, grouped into one message when there are enough of them.
    """
    count = 0
    for channel_name, channel_events in _events_by_channel(rules, events).items():
        channel = rules.channels[channel_name]
        for message in compose(routed(channel_events, channel), channel, rules):
            for url in channel.urls:
                # notify_type is the severity or "resolved"; notify maps it to Apprise's type.
                store.enqueue(target, channel.name, url_key(url), message.notify_type,
                              message.title, message.body, now, ",".join(message.alert_ids))
                count += 1
    return count


def _events_by_channel(rules: RuleSet, events: list[AlertEvent]) -> dict[str, list[AlertEvent]]:
    rules_by_name = {rule.name: rule for rule in rules.rules}
    by_channel: dict[str, list[AlertEvent]] = {}
    for event in events:
        rule = rules_by_name.get(event.rule)
        if rule is None:
            continue
        for channel_name in rule.notify:
            by_channel.setdefault(channel_name, []).append(event)
    return by_channel


def drop_expired(store: StateStore, target: str, max_age: timedelta, now: datetime) -> int:
    """Delete the messages older than `max_age`, logging each with its alert ids."""
    dropped = 0
    for entry in store.notifications(target):
        if now - entry.created_at < max_age:
            continue
        store.delivered(entry.id)
        dropped += 1
        log.error(
            "message %d to channel %r dropped after %d attempts: older than the outbox"
            " max_age of %s; alerts %s; last error: %s",
            entry.id, entry.channel, entry.attempts, max_age, entry.alert_ids or "none",
            entry.last_error or "none",
        )
    return dropped


def deliver_due(
    store: StateStore, target: str, rules: RuleSet, now: datetime,
    on_result: Callable[[str, bool], None] | None = None,
) -> DeliveryReport:
    """Send every stored message that is due; reschedule the ones that fail.

    `on_result` is called with the channel name and the outcome of each send.

    A message still undelivered `rules.outbox_max_age` after it was stored is
    dropped and logged with its alert ids.
    """
    drop_expired(store, target, rules.outbox_max_age, now)
    sent = failed = 0
    for entry in store.due_notifications(target, now):
        channel = rules.channels.get(entry.channel)
        url = _find_url(channel, entry.url_key)
        if channel is None or url is None:
            # The rules file changed since the message was stored: deliver it to
            # the URLs the channel lists now rather than dropping it.
            if channel is not None and channel.urls:
                with store.transaction():
                    for new_url in channel.urls:
                        store.enqueue(target, channel.name, url_key(new_url), entry.notify_type,
                                      entry.title, entry.body, entry.created_at,
                                      entry.alert_ids)
                    store.delivered(entry.id)
                log.info("message %d re-addressed to the current URLs of channel %r",
                         entry.id, entry.channel)
                continue
            error = f"channel {entry.channel!r} is no longer defined in the rules file"
            _reschedule(store, entry.id, entry.attempts, error, now)
            failed += 1
            continue

        single = dataclasses.replace(channel, urls=(url,))
        result = notify.send(single, entry.title, entry.body, entry.notify_type)[0]
        if on_result is not None:
            on_result(channel.name, result.ok)
        if result.ok:
            store.delivered(entry.id)
            sent += 1
        else:
            _reschedule(store, entry.id, entry.attempts, result.error or "send failed", now)
            failed += 1
    return DeliveryReport(sent, failed, store.pending_count(target))


def _find_url(channel: Channel | None, key: str) -> str | None:
    if channel is None:
        return None
    return next((url for url in channel.urls if url_key(url) == key), None)


def _reschedule(store: StateStore, entry_id: int, attempts: int, error: str, now: datetime) -> None:
    delay = min(FIRST_RETRY * (2**attempts), MAX_RETRY)
    # Jitter spreads retries of many messages to one recovering service.
    delay *= random.uniform(0.8, 1.2)
    store.delivery_failed(entry_id, error, now + delay)
    log.warning("message %d will be retried in %ds (attempt %d): %s",
                entry_id, delay.total_seconds(), attempts + 1, error)
