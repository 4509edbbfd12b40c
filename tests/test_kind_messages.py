# ruff: noqa: RUF001  # expected Russian texts are Cyrillic on purpose
"""Messages of the new rule kinds, rendered from real verdicts in English and Russian."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from factories import NOW, job, run, snapshot

from watchdog.evaluate import evaluate
from watchdog.messages import render
from watchdog.models import (
    AlertEvent,
    HistorySize,
    HttpResponse,
    HttpResponses,
    SchedulerStatus,
    Severity,
    Snapshot,
    Verdict,
)
from watchdog.rules import Rule, RuleSet

MINUTE = timedelta(minutes=1)


def event(verdict: Verdict, state: str = "firing") -> AlertEvent:
    return AlertEvent(
        target="main", rule=verdict.rule, kind=verdict.kind, severity=Severity.WARNING,
        jobid=verdict.jobid, job_label=verdict.job_label, database=None, state=state,
        at=NOW, since=NOW - MINUTE * 5, verdict=verdict,
    )


def body(rule: Rule, snap: Snapshot, locale: str, kind: str | None = None) -> str:
    verdicts = [v for v in evaluate(RuleSet((rule,)), snap, NOW)
                if v.kind == (kind or rule.kind)]
    assert verdicts[0].firing
    text = render(event(verdicts[0]), locale)[1]
    assert "Rule kind" not in text
    assert "Правило типа" not in text
    return text


def failed(runid: int, minutes: int, message: str = "ERROR:  deadlock detected") -> object:
    return run(runid, status="failed", ago=MINUTE * minutes, message=message)


STREAK = snapshot([job()], [failed(1, 3), failed(2, 2, "server restarted"), failed(3, 1)])
BUSY = replace(
    snapshot([job(i, f"job-{i}") for i in (1, 2)],
             [run(i, i, status="connecting", ago=MINUTE * 30, message=None) for i in (1, 2)]),
    scheduler=SchedulerStatus(processes=1, max_running_jobs=2, max_running_jobs_configured=True),
)
HTTP = replace(snapshot([job()], []), http=HttpResponses(True, (
    HttpResponse(id=311, status_code=None, timed_out=True, error_msg="Timeout was reached",
                 content=None, created=NOW - MINUTE),
    HttpResponse(id=312, status_code=401, timed_out=False, error_msg=None,
                 content='{"msg":\n"Invalid JWT"}', created=NOW - MINUTE),
)))

CASES = [
    (Rule(name="r", kind="consecutive_failures", count=2, window=timedelta(hours=1)), STREAK,
     ["2 finished runs in a row failed in the last 1h, limit 2",
      "1 infrastructure outcome", "Last error: ERROR:  deadlock detected"],
     ["2 запуска подряд завершились ошибкой за последний час, порог 2",
      "Инфраструктурных сбоев pg_cron", "не считаются ошибками job'а"]),
    (Rule(name="r", kind="stuck_run", max_runtime=MINUTE * 10), BUSY,
     ["Run 1 has been in status connecting for 30m, limit 10m", "connection limits"],
     ["Запуск 1 в статусе connecting уже 30 мин, лимит 10 мин", "нехватку соединений"]),
    (Rule(name="r", kind="error_match", pattern="dead.ock", min_count=2,
          window=timedelta(hours=1)), STREAK,
     ["2 failed runs matched /dead.ock/ in the last 1h, limit 2"],
     ["2 запуска завершились ошибкой по шаблону /dead.ock/ за последний час, порог 2"]),
    (Rule(name="r", kind="concurrency_saturated", saturated_for=MINUTE * 5), BUSY,
     ["2 runs in flight reached cron.max_running_jobs = 2 for 30m (alert after 5m)",
      "grant it pg_read_all_settings"],
     ["Одновременно идёт 2 запуска при cron.max_running_jobs = 2 уже 30 мин",
      "выдайте ей pg_read_all_settings"]),
    (Rule(name="r", kind="http_failures", window=timedelta(hours=1), min_count=2), HTTP,
     ["2/2 pg_net responses failed (100%) in the last 1h", "Last failed response id 312:"
      " status 401", 'Body: {"msg": "Invalid JWT"}', "does not record which job"],
     ["2 из 2 ответов pg_net с ошибкой (100%) за последний час", "статус 401",
      "не записывает, какой job"]),
    (Rule(name="r", kind="run_history_size", max_rows=1000, keep=timedelta(days=7)),
     replace(snapshot([job()], []), history_size=HistorySize(1_234_567, 3 * 1024**3,
                                                             "runid_span")),
     ["about 1,234,567 rows, 3 GB on disk (limit: 1,000 rows)", "never analyzed",
      "Runs older than 7d (keep) are due for purge"],
     ["около 1\u00a0234\u00a0567 строк, 3 ГБ на диске", "ещё ни разу не анализировали",
      "старше 7 д"]),
]


@pytest.mark.parametrize(("rule", "snap", "english", "russian"), CASES,
                         ids=[case[0].kind for case in CASES])
def test_kind_renders_in_both_locales(
    rule: Rule, snap: Snapshot, english: list[str], russian: list[str]
) -> None:
    text_en = body(rule, snap, "en")
    for expected in english:
        assert expected in text_en
    text_ru = body(rule, snap, "ru")
    for expected in russian:
        assert expected in text_ru


def test_duration_regression_message() -> None:
    runs = [run(i, ago=timedelta(hours=5) + MINUTE * i, duration=10) for i in range(5)]
    runs += [run(100 + i, ago=MINUTE * (i + 1), duration=30) for i in range(3)]
    rule = Rule(name="r", kind="duration_regression", baseline=timedelta(days=1))
    snap = snapshot([job()], runs)
    assert ("Mean duration 30 s over 3 succeeded runs in the last 1h is 3x the baseline 10 s"
            " (5 runs in the 1d before), limit 2x") in body(rule, snap, "en")
    assert "это 3× от базовой 10 с (5 запусков за сутки до этого), порог 2×" in body(
        rule, snap, "ru")


def test_slow_average_too_fast_message() -> None:
    rule = Rule(name="r", kind="slow_average", min_duration=timedelta(seconds=1), min_runs=1,
                statistic="max")
    snap = snapshot([job()], [run(1, duration=0.005)])
    assert "Longest duration 5 ms over 1 succeeded run" in body(rule, snap, "en")
    assert "a run that fast usually did nothing" in body(rule, snap, "en")
    assert "Максимальная длительность 5 мс" in body(rule, snap, "ru")
    assert "ниже минимума 1 с" in body(rule, snap, "ru")


def test_job_drift_messages() -> None:
    first = job(1, "nightly")
    now = replace(first, schedule="*/5 * * * *", active=False)
    snap = replace(snapshot([now], []), known_jobs={1: first})
    text_en = body(Rule(name="r", kind="job_drift"), snap, "en")
    assert 'Schedule changed to "*/5 * * * *", expected "* * * * *"' in text_en
    assert "The job is inactive (active = false), expected active" in text_en
    edited = replace(first, command="SELECT refresh_all()")
    changed = replace(snapshot([edited], []), known_jobs={1: first})
    text_command = body(Rule(name="r", kind="job_drift"), changed, "en")
    old, new = _fingerprint(first.command), _fingerprint(edited.command)
    assert f"The job's command changed since the watchdog first saw it: fingerprint {old}," \
        f" now {new}" in text_command
    # Commands often carry credentials, so their text stays out of messages.
    assert "refresh_all" not in text_command
    assert first.command not in text_command
    assert f"отпечаток (SHA-256) был {old}, стал {new}" in body(
        Rule(name="r", kind="job_drift"), changed, "ru")
    gone = replace(snapshot([job(2, "other")], []), known_jobs={1: first, 2: job(2, "other")})
    assert "Job снят с расписания" in body(Rule(name="r", kind="job_drift"), gone, "ru")


def _fingerprint(command: str) -> str:
    return hashlib.sha256(command.encode()).hexdigest()[:8]


def test_scheduler_down_message_names_suppressed_jobs() -> None:
    jobs = [job(1, "sync-a"), job(2, "sync-b")]
    snap = replace(snapshot(jobs, [run(1, 1, ago=MINUTE * 10), run(2, 2, ago=MINUTE * 10)]),
                   scheduler=SchedulerStatus(processes=0))
    rules = RuleSet((Rule(name="down", kind="scheduler_down"),
                     Rule(name="missing", kind="missing_run")))
    verdicts = evaluate(rules, snap, NOW)
    [down] = [v for v in verdicts if v.kind == "scheduler_down"]
    text_en = render(event(down), "en")[1]
    assert "No pg_cron scheduler process in pg_stat_activity" in text_en
    assert "2 missing_run alerts suppressed while the scheduler is down: sync-a, sync-b" in text_en
    text_ru = render(event(down), "ru")[1]
    assert "нет процесса планировщика pg_cron" in text_ru
    resolved = render(event(replace(down, facts={**down.facts, "reason": None}), "resolved"),
                      "en")[1]
    assert "Now: the pg_cron scheduler is running (0 process)" in resolved
    [missing] = [v for v in verdicts if v.jobid == 1 and v.kind == "missing_run"]
    assert "Suppressed: the pg_cron scheduler is down" in render(event(missing), "en")[1]
    quiet = render(event(missing, "resolved"), "en")[1]
    assert "Suppressed: the pg_cron scheduler is down" in quiet


def test_infrastructure_message_groups_jobs_by_minute() -> None:
    start = datetime(2025, 5, 5, 11, 58, 10, tzinfo=UTC)
    runs = [run(i, i, status="failed", start=start, message="job startup timeout")
            for i in (1, 2)]
    snap = snapshot([job(1, "a"), job(2, "b")], runs)
    rule = Rule(name="r", kind="infrastructure_failures", window=MINUTE * 15)
    text_en = body(rule, snap, "en")
    assert "2 jobs were hit by pg_cron infrastructure outcomes in the last 15m" in text_en
    assert '2025-05-05 11:58 UTC, "job startup timeout": a, b' in text_en
    assert "2 job'а пострадали от инфраструктурных сбоев pg_cron за последние 15 минут" in body(
        rule, snap, "ru")


def test_capacity_starved_missing_run_message() -> None:
    snap = replace(BUSY, jobs={**BUSY.jobs, 9: job(9, "report")},
                   first_seen={**BUSY.first_seen, 9: NOW - timedelta(days=2)},
                   runs=[*BUSY.runs, run(50, 9, ago=MINUTE * 20)])
    verdicts = evaluate(RuleSet((Rule(name="m", kind="missing_run"),)), snap, NOW)
    [missing] = [v for v in verdicts if v.jobid == 9]
    assert "Capacity-starved: 2 runs were in flight" in render(event(missing), "en")[1]
    assert "Job'у не хватило слотов" in render(event(missing), "ru")[1]
