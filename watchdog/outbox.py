"""The notification outbox: every message is stored before it is sent.

A message is deleted only after its URL accepted it. A failed send stays in
the outbox and is retried with exponential backoff, so a channel that is down
for an hour still gets every alert afterwards, and a failing URL never holds
back the other URLs of the same channel.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog import messages, notify
from watchdog.channels import Channel
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
    """Render each event per channel locale and store one message per URL; return the count."""
    rules_by_name = {rule.name: rule for rule in rules.rules}
    count = 0
    for event in events:
        rule = rules_by_name.get(event.rule)
        if rule is None:
            continue
        # Stored as the severity or "resolved"; notify maps it to Apprise's type.
        notify_type = "resolved" if event.state == "resolved" else event.severity.value
        for channel_name in rule.notify:
            channel = rules.channels[channel_name]
            title, body = messages.render(event, channel.locale)
            for url in channel.urls:
                store.enqueue(target, channel.name, url_key(url), notify_type, title, body, now)
                count += 1
    return count


def deliver_due(
    store: StateStore, target: str, rules: RuleSet, now: datetime,
    on_result: Callable[[str, bool], None] | None = None,
) -> DeliveryReport:
    """Send every stored message that is due; reschedule the ones that fail.

    `on_result` is called with the channel name and the outcome of each send.
    """
    sent = failed = 0
    for entry in store.due_notifications(target, now):
        channel = rules.channels.get(entry.channel)
        url = _find_url(channel, entry.url_key)
        if channel is None or url is None:
            # The rules file changed since the message was stored: deliver it to
            # what the channel holds now rather than dropping it.
            if channel is not None and channel.urls:
                with store.transaction():
                    for new_url in channel.urls:
                        store.enqueue(target, channel.name, url_key(new_url), entry.notify_type,
                                      entry.title, entry.body, now)
                    store.delivered(entry.id)
                log.info("message %d re-addressed to the current URLs of channel %r",
                         entry.id, entry.channel)
                continue
            error = f"channel {entry.channel!r} is no longer defined in the rules file"
            _reschedule(store, entry.id, entry.attempts, error, now)
            failed += 1
            continue

        single = Channel(channel.name, (url,), channel.locale)
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
