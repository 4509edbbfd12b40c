"""Compose the messages of one channel: routing by severity, grouping, templates.

The built-in texts come from `messages`; a `[templates]` table replaces the
title or body of single-alert messages. A grouped message always uses the
built-in digest, because one template cannot describe a list of alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from watchdog import messages
from watchdog.channels import Channel
from watchdog.models import AlertEvent, Severity
from watchdog.rules import RuleSet


@dataclass(frozen=True)
class Message:
    """One message for one channel, and the alerts it is about."""

    notify_type: str  # a severity value, or "resolved"
    title: str
    body: str
    alert_ids: tuple[str, ...]


def routed(events: Sequence[AlertEvent], channel: Channel) -> list[AlertEvent]:
    """Keep the events at or above the channel's min_severity."""
    return [event for event in events if event.severity.rank >= channel.min_severity.rank]


def compose(events: Sequence[AlertEvent], channel: Channel, rules: RuleSet) -> list[Message]:
    """Build the channel's messages for this cycle: one each, or one grouped message.

    The events are grouped once there are at least `channel.group_threshold`.
    """
    if not events:
        return []
    if len(events) >= channel.group_threshold:
        title, body = messages.render_digest(
            events, channel.locale, timezone=rules.display_timezone
        )
        return [Message(_group_type(events), title, body, tuple(e.alert_id for e in events))]
    return [_single(event, channel, rules) for event in events]


def _single(event: AlertEvent, channel: Channel, rules: RuleSet) -> Message:
    title, body = messages.render(event, channel.locale, rules.display_timezone)
    values = template_values(event, title, body, rules.display_timezone, channel.locale)
    title, body = rules.templates.apply(values)
    return Message(_notify_type(event), title, body, (event.alert_id,))


def _notify_type(event: AlertEvent) -> str:
    return "resolved" if event.state == "resolved" else event.severity.value


def _group_type(events: Sequence[AlertEvent]) -> str:
    """Return the worst severity among firing events, or "resolved" when none fire."""
    firing = [event.severity for event in events if event.state == "firing"]
    if not firing:
        return "resolved"
    worst: Severity = max(firing, key=lambda severity: severity.rank)
    return worst.value


def template_values(
    event: AlertEvent, title: str, body: str, timezone: str, locale: str
) -> dict[str, str]:
    """Return the value of every template placeholder for one event."""
    verdict = event.verdict
    firing_for = messages.format_span((event.at - event.since).total_seconds(), locale)
    return {
        "title": title,
        "body": body,
        "state": event.state,
        "reminder": "yes" if event.reminder else "no",
        "severity": event.severity.value,
        "rule": event.rule,
        "kind": event.kind,
        "job": event.job_label,
        "jobid": str(event.jobid),
        "database": event.database or messages.NO_VALUE,
        "target": event.target,
        "value": messages.NO_VALUE if verdict.value is None else f"{verdict.value:g}",
        "last_error": messages.first_error_line(verdict.last_error),
        "since": messages.format_time(event.since, timezone),
        "at": messages.format_time(event.at, timezone),
        "firing_for": firing_for,
    }
