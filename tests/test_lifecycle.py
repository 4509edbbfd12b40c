"""The alert lifecycle against a real state file, with a clock the test controls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from factories import NOW, job, run, snapshot

from watchdog.alerts import update_alerts
from watchdog.maintenance import parse_maintenance
from watchdog.models import AlertEvent, Verdict
from watchdog.rules import RuleSet, parse_rules
from watchdog.silences import Muting
from watchdog.state import StateStore

TARGET = "db:5432/postgres"
JOB = job(jobid=7, name="billing-sync")
SNAPSHOT = snapshot([JOB], [])
MINUTE = timedelta(minutes=1)


def ruleset(options: str = "", defaults: str = "") -> RuleSet:
    text = f"""
[defaults]
{defaults}

[[rules]]
name = "billing missing"
kind = "missing_run"
{options}
"""
    return parse_rules(text, "rules.toml", {})


def verdict(firing: bool, missed: int = 1) -> Verdict:
    return Verdict(
        rule="billing missing", kind="missing_run", jobid=JOB.jobid, job_label="billing-sync",
        firing=firing, value=float(missed),
        facts={"schedule": "*/5 * * * *", "expected_at": NOW.isoformat(),
               "grace_seconds": 120.0, "last_start": None, "cron_timezone": "GMT",
               "missed": missed},
    )


class Clock:
    """Runs lifecycle steps at times the test chooses, on one state file."""

    def __init__(self, path: Path, rules: RuleSet) -> None:
        self.path = path
        self.rules = rules
        self.store = StateStore(path)
        self.now = NOW

    def step(self, firing: bool, after: timedelta = MINUTE, missed: int = 1,
             muting: Muting | None = None) -> list[AlertEvent]:
        self.now += after
        with self.store.transaction():
            return update_alerts(self.store, TARGET, self.rules, SNAPSHOT,
                                 [verdict(firing, missed)], self.now, muting)

    def restart(self) -> None:
        self.store.close()
        self.store = StateStore(self.path)

    def states(self) -> list[tuple[str, str]]:
        rows = self.store.transitions(TARGET)
        return [(row["old_state"], row["new_state"]) for row in rows]


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


@pytest.fixture
def clock_factory(state_file: Path) -> Iterator[list[Clock]]:
    clocks: list[Clock] = []
    yield clocks
    for clock in clocks:
        clock.store.close()


def make_clock(clocks: list[Clock], path: Path, rules: RuleSet) -> Clock:
    clock = Clock(path, rules)
    clocks.append(clock)
    return clock


def kinds(events: list[AlertEvent]) -> list[str]:
    return [("reminder" if event.reminder else event.state) for event in events]


def test_pending_that_clears_sends_nothing(clock_factory: list[Clock], state_file: Path) -> None:
    clock = make_clock(clock_factory, state_file, ruleset('for = "5m"'))

    assert clock.step(True) == []
    assert clock.step(True, after=2 * MINUTE) == []
    assert clock.step(False) == []

    assert clock.states() == [("ok", "pending"), ("pending", "ok")]
    assert clock.store.alerts(TARGET) == {}


def test_pending_fires_once_for_has_passed(clock_factory: list[Clock], state_file: Path) -> None:
    clock = make_clock(clock_factory, state_file, ruleset('for = "5m"'))

    assert clock.step(True) == []
    assert clock.step(True, after=4 * MINUTE) == []
    [event] = clock.step(True)

    assert event.state == "firing"
    assert clock.states() == [("ok", "pending"), ("pending", "firing")]


def test_keep_firing_for_suppresses_flapping(clock_factory: list[Clock], state_file: Path) -> None:
    clock = make_clock(clock_factory, state_file, ruleset('keep_firing_for = "10m"'))

    assert kinds(clock.step(True)) == ["firing"]
    for _ in range(3):
        assert clock.step(False, after=3 * MINUTE) == []
        assert clock.step(True, after=3 * MINUTE) == []
    assert clock.step(False) == []
    assert clock.step(False, after=9 * MINUTE) == []
    assert kinds(clock.step(False)) == ["resolved"]

    assert clock.states() == [("ok", "firing"), ("firing", "resolved")]


def test_reminders_follow_repeat_interval(clock_factory: list[Clock], state_file: Path) -> None:
    clock = make_clock(clock_factory, state_file, ruleset('repeat_interval = "1h"'))

    assert kinds(clock.step(True)) == ["firing"]
    assert clock.step(True, after=59 * MINUTE) == []
    [reminder] = clock.step(True)
    assert kinds([reminder]) == ["reminder"]
    assert reminder.at - reminder.since == timedelta(hours=1)
    assert clock.step(True, after=30 * MINUTE) == []
    assert kinds(clock.step(True, after=30 * MINUTE)) == ["reminder"]


def test_repeat_interval_zero_turns_reminders_off(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset(defaults='repeat_interval = "0"'))

    assert kinds(clock.step(True)) == ["firing"]
    assert clock.step(True, after=timedelta(days=2)) == []


def test_default_repeat_interval_is_four_hours(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset())

    assert kinds(clock.step(True)) == ["firing"]
    assert clock.step(True, after=3 * 60 * MINUTE + 59 * MINUTE) == []
    assert kinds(clock.step(True)) == ["reminder"]


def test_send_resolved_false_keeps_resolve_quiet(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset("send_resolved = false"))

    assert kinds(clock.step(True)) == ["firing"]
    assert clock.step(False) == []
    assert clock.states()[-1] == ("firing", "resolved")


def test_rule_option_overrides_defaults(clock_factory: list[Clock], state_file: Path) -> None:
    rules = ruleset('send_resolved = true\nfor = "0"', defaults='send_resolved = false\nfor = "1h"')

    [rule] = rules.rules
    assert rule.send_resolved is True
    assert rule.for_duration == timedelta(0)


def test_resolve_after_restart(clock_factory: list[Clock], state_file: Path) -> None:
    clock = make_clock(clock_factory, state_file, ruleset())
    assert kinds(clock.step(True, missed=3)) == ["firing"]

    clock.restart()
    assert clock.step(True) == []
    [resolved] = clock.step(False, missed=0)

    assert resolved.state == "resolved"
    assert resolved.since == NOW + MINUTE
    assert resolved.at - resolved.since == 2 * MINUTE
    # The firing verdict of the step before the resolve counted one missed run.
    assert resolved.verdict.facts["missed_while_firing"] == 1


def test_transitions_store_time_and_value(clock_factory: list[Clock], state_file: Path) -> None:
    clock = make_clock(clock_factory, state_file, ruleset())
    clock.step(True, missed=4)
    clock.step(False, missed=0)

    rows = clock.store.transitions(TARGET)
    assert [row["value"] for row in rows] == [4.0, 0.0]
    assert [row["at"] for row in rows] == [
        (NOW + MINUTE).isoformat(), (NOW + 2 * MINUTE).isoformat()
    ]


def test_silence_added_while_firing_mutes_reminders(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset('repeat_interval = "1h"'))
    assert kinds(clock.step(True)) == ["firing"]

    clock.store.add_silence(TARGET, None, "billing-*", clock.now,
                            clock.now + timedelta(hours=3), "known outage")

    def muting() -> Muting:
        return Muting(clock.now, tuple(clock.store.silences(TARGET, clock.now)))

    for _ in range(5):
        clock.now += 30 * MINUTE
        assert update_alerts(clock.store, TARGET, clock.rules, SNAPSHOT, [verdict(True)],
                             clock.now, muting()) == []
    # The silence ends at +3h of the add; the reminder is overdue then.
    clock.now += 31 * MINUTE
    events = update_alerts(clock.store, TARGET, clock.rules, SNAPSHOT, [verdict(True)],
                           clock.now, muting())
    assert kinds(events) == ["reminder"]


def test_silenced_firing_announced_at_end(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset())
    clock.store.add_silence(TARGET, "billing missing", None, clock.now,
                            clock.now + 10 * MINUTE, "maintenance")
    silences = tuple(clock.store.silences(TARGET))

    assert clock.step(True, muting=Muting(clock.now + MINUTE, silences)) == []
    assert clock.step(True, after=5 * MINUTE, muting=Muting(clock.now + 5 * MINUTE,
                                                            silences)) == []
    [late] = clock.step(True, after=5 * MINUTE, muting=Muting(clock.now + 5 * MINUTE,
                                                              silences))

    assert late.state == "firing"
    assert late.announced_late is True
    assert late.at - late.since == 10 * MINUTE
    assert clock.states() == [("ok", "firing")]


def test_silenced_resolve_sends_nothing(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset())
    clock.store.add_silence(TARGET, None, None, clock.now, clock.now + timedelta(hours=1), "x")
    silences = tuple(clock.store.silences(TARGET))

    assert clock.step(True, muting=Muting(clock.now + MINUTE, silences)) == []
    assert clock.step(False, muting=Muting(clock.now + MINUTE, ())) == []
    assert clock.states() == [("ok", "firing"), ("firing", "resolved")]


def test_silence_on_other_rule_does_not_mute(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset())
    clock.store.add_silence(TARGET, "other rule", None, clock.now,
                            clock.now + timedelta(hours=1), "x")
    silences = tuple(clock.store.silences(TARGET))

    assert kinds(clock.step(True, muting=Muting(clock.now + MINUTE, silences))) == ["firing"]


def test_maintenance_window_mutes_matching_jobs(
    clock_factory: list[Clock], state_file: Path
) -> None:
    problems: list[str] = []
    # NOW is 2025-05-05 12:00 UTC, 14:00 in Berlin, a Monday.
    windows = parse_maintenance(
        [{"name": "billing upgrade", "start": "30 13 * * 1", "duration": "1h",
          "timezone": "Europe/Berlin", "jobs": ["billing-*"]}],
        lambda where, message: problems.append(message),
    )
    assert problems == []
    clock = make_clock(clock_factory, state_file, ruleset())

    assert clock.step(True, muting=Muting(NOW + MINUTE, windows=windows)) == []
    later = NOW + 31 * MINUTE
    [late] = clock.step(True, after=30 * MINUTE, muting=Muting(later, windows=windows))
    assert late.announced_late is True


def test_event_carries_schedule_and_last_run(
    clock_factory: list[Clock], state_file: Path
) -> None:
    clock = make_clock(clock_factory, state_file, ruleset())
    runs = [run(11, jobid=JOB.jobid, ago=timedelta(minutes=9), duration=3.0),
            run(12, jobid=JOB.jobid, ago=timedelta(minutes=4), duration=1.5)]
    with_runs = snapshot([JOB], runs)

    with clock.store.transaction():
        [event] = update_alerts(clock.store, TARGET, clock.rules, with_runs, [verdict(True)],
                                NOW, None)

    assert event.schedule == JOB.schedule
    assert event.last_run_at == NOW - timedelta(minutes=4)
    assert event.last_run_seconds == 1.5
