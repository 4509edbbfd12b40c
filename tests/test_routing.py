"""Routing, grouping, templates and the outbox, delivered to a real local HTTP receiver."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from factories import NOW
from receivers import HttpReceiver

from watchdog import outbox
from watchdog.models import AlertEvent, Severity, Verdict
from watchdog.rules import RuleSet, parse_rules
from watchdog.state import StateStore

TARGET = "db:5432/postgres"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    state = StateStore(tmp_path / "state.sqlite3")
    yield state
    state.close()


def event(job: str, severity: Severity = Severity.WARNING, state: str = "firing",
          jobid: int = 1, error: str | None = "ERROR:  boom") -> AlertEvent:
    verdict = Verdict(
        rule=f"{job} failing", kind="failure_ratio", jobid=jobid, job_label=job, firing=True,
        value=0.5, facts={"failed": 2, "finished": 4, "ratio": 0.5, "threshold": 0.2,
                          "window_seconds": 3600.0},
        last_error=error,
    )
    return AlertEvent(target=TARGET, rule=f"{job} failing", kind="failure_ratio",
                      severity=severity, jobid=jobid, job_label=job, database="app",
                      state=state, at=NOW, since=NOW - timedelta(minutes=30), verdict=verdict)


def rules_for(receiver: HttpReceiver, jobs: list[str], channel_extra: str = "",
              top: str = "") -> RuleSet:
    rules = "\n".join(
        f'[[rules]]\nname = "{job} failing"\nkind = "failure_ratio"\nthreshold = 0.2\n'
        for job in jobs
    )
    text = f"""{top}
[defaults]
notify = ["hook"]

[channels.hook]
urls = ["{receiver.json_url("/alerts")}"]
{channel_extra}

{rules}
"""
    return parse_rules(text, "rules.toml", {})


def deliver(store: StateStore, rules: RuleSet, events: list[AlertEvent]) -> outbox.DeliveryReport:
    outbox.enqueue_events(store, TARGET, rules, events, NOW)
    return outbox.deliver_due(store, TARGET, rules, NOW)


def test_below_group_threshold_sends_one_message_each(
    store: StateStore, http_receiver: HttpReceiver
) -> None:
    jobs = ["a", "b"]
    report = deliver(store, rules_for(http_receiver, jobs), [event(job) for job in jobs])

    assert report.sent == 2
    titles = sorted(request.json["title"] for request in http_receiver.wait_for(2))
    assert titles == ["[WARNING] a: a failing", "[WARNING] b: b failing"]


def test_group_threshold_groups_worst_first(
    store: StateStore, http_receiver: HttpReceiver
) -> None:
    jobs = [f"job-{n}" for n in range(14)]
    events = [event(job, jobid=n) for n, job in enumerate(jobs)]
    events[5] = event("job-5", Severity.CRITICAL, jobid=5)
    events[6] = event("job-6", state="resolved", jobid=6)

    rules = rules_for(http_receiver, jobs)
    assert outbox.enqueue_events(store, TARGET, rules, events, NOW) == 1
    [stored] = store.notifications(TARGET)
    assert stored.alert_ids.split(",") == [f"job-{n} failing/{n}" for n in range(14)]
    report = outbox.deliver_due(store, TARGET, rules, NOW)

    assert report.sent == 1
    [request] = http_receiver.wait_for(1)
    assert request.json["title"] == "[CRITICAL] 14 alerts: 13 firing, 1 resolved"
    assert request.json["type"] == "failure"
    lines = request.json["message"].split("\n")
    assert lines[0].startswith("[CRITICAL] job-5: job-5 failing")
    assert lines[-1] == "and 4 more"


def test_group_threshold_is_per_channel(store: StateStore, http_receiver: HttpReceiver) -> None:
    jobs = ["a", "b"]
    rules = rules_for(http_receiver, jobs, channel_extra="group_threshold = 2")
    report = deliver(store, rules, [event(job) for job in jobs])

    assert report.sent == 1
    [request] = http_receiver.wait_for(1)
    assert request.json["title"] == "[WARNING] 2 alerts: 2 firing, 0 resolved"


def test_min_severity_filters_channel(store: StateStore, http_receiver: HttpReceiver) -> None:
    jobs = ["a", "b"]
    rules = rules_for(http_receiver, jobs, channel_extra='min_severity = "critical"')
    report = deliver(store, rules, [event("a"), event("b", Severity.CRITICAL)])

    assert report.sent == 1
    [request] = http_receiver.wait_for(1)
    assert request.json["title"] == "[CRITICAL] b: b failing"


def test_template_replaces_title_and_body(
    store: StateStore, http_receiver: HttpReceiver
) -> None:
    top = """
display_timezone = "Europe/Moscow"

[templates]
title = "$severity | $job | $$5"
body = "since $since for $firing_for: $last_error\\n$body"
"""
    deliver(store, rules_for(http_receiver, ["a"], top=top), [event("a")])

    [request] = http_receiver.wait_for(1)
    assert request.json["title"] == "warning | a | $5"
    body = request.json["message"]
    # NOW - 30m is 11:30 UTC, 14:30 in Moscow.
    assert body.startswith("since 2025-05-05 14:30:00 MSK for 30m: ERROR:  boom\n")
    assert "2/4 runs failed (50%)" in body


def test_unknown_template_placeholder_is_rejected(http_receiver: HttpReceiver) -> None:
    from watchdog.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        rules_for(http_receiver, ["a"], top='[templates]\ntitle = "$job on $hostname"\n')
    [problem] = caught.value.problems
    assert "templates, field 'title'" in problem
    assert "$hostname" in problem
    assert "firing_for" in problem


def test_outbox_retry_after_receiver_returns(
    store: StateStore, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "FIRST_RETRY", timedelta(seconds=10))
    rules = rules_for(http_receiver, ["a", "b"])
    http_receiver.status = 503

    first = deliver(store, rules, [event("a"), event("b")])
    assert first.failed == 2
    assert first.waiting == 2
    http_receiver.wait_for(2)

    # Not due yet, because backoff delays both messages.
    early = outbox.deliver_due(store, TARGET, rules, NOW + timedelta(seconds=5))
    assert early.sent == 0
    assert len(http_receiver.requests) == 2

    http_receiver.status = 200
    later = outbox.deliver_due(store, TARGET, rules, NOW + timedelta(minutes=1))
    assert later.sent == 2
    assert later.waiting == 0
    again = outbox.deliver_due(store, TARGET, rules, NOW + timedelta(minutes=5))
    assert again.sent == 0

    titles = [request.json["title"] for request in http_receiver.requests[2:]]
    assert sorted(titles) == ["[WARNING] a: a failing", "[WARNING] b: b failing"]


def test_outbox_drops_message_after_max_age(
    store: StateStore, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    rules = rules_for(http_receiver, ["a"], top='[outbox]\nmax_age = "1h"\n')
    http_receiver.status = 500
    deliver(store, rules, [event("a", jobid=9)])

    with caplog.at_level(logging.ERROR, logger="watchdog.outbox"):
        report = outbox.deliver_due(store, TARGET, rules, NOW + timedelta(hours=1))

    assert report.waiting == 0
    assert report.failed == 0
    assert len(http_receiver.requests) == 1
    [record] = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert "alerts a failing/9" in record.getMessage()
    assert "older than the outbox max_age of 1:00:00" in record.getMessage()


def test_outbox_max_age_defaults_to_a_day(http_receiver: HttpReceiver) -> None:
    assert rules_for(http_receiver, ["a"]).outbox_max_age == timedelta(hours=24)


def test_apprise_config_file_adds_urls(
    tmp_path: Path, store: StateStore, http_receiver: HttpReceiver
) -> None:
    config = tmp_path / "apprise.yml"
    config.write_text(f"urls:\n  - {http_receiver.json_url('/from-config')}\n")
    text = f"""
[channels.team]
config = "{config}"

[[rules]]
name = "a failing"
kind = "failure_ratio"
threshold = 0.2
notify = ["team"]
"""
    rules = parse_rules(text, "rules.toml", {})
    [url] = rules.channels["team"].urls
    assert url.startswith(http_receiver.json_url("/from-config") + "?")
    assert "overflow" not in url

    report = deliver(store, rules, [event("a")])
    assert report.sent == 1
    [request] = http_receiver.wait_for(1)
    assert request.path == "/from-config"


def test_apprise_config_file_problems_are_named(tmp_path: Path) -> None:
    from watchdog.errors import ConfigError

    config = tmp_path / "apprise.txt"
    config.write_text("tgram://s3cretbot/987\n")
    text = f"""
[channels.team]
config = "{config}"

[channels.other]
config = "{tmp_path / "missing.yml"}"
"""
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "rules.toml", {})
    problems = caught.value.problems
    assert any("channel 'team', field 'config'" in p and str(config) in p for p in problems)
    assert not any("s3cretbot" in p for p in problems)
    assert any("missing.yml not found" in p for p in problems)
