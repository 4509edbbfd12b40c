"""Validation of the rules file: every problem named with rule, field and allowed values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from watchdog.errors import ConfigError
from watchdog.models import Severity
from watchdog.rules import load_rules, parse_rules

CHANNEL = """
[channels.oncall]
urls = ["json://127.0.0.1:9/hook"]
"""


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "rules.toml", environ or {})
    return caught.value.problems


def test_valid_file_builds_rules() -> None:
    text = CHANNEL + """
[[rules]]
name = "provisioner failing"
kind = "failure_ratio"
jobs = ["openrouter-*"]
exclude = ["openrouter-test"]
severity = "critical"
notify = ["oncall"]
window = "1h"
threshold = 0.2
min_runs = 3

[[rules]]
name = "sync stopped"
kind = "missing_run"

[[rules]]
name = "export slow"
kind = "slow_average"
max_duration = "90s"
"""
    rules = parse_rules(text, "rules.toml", {})
    first, second, third = rules.rules
    assert first.severity is Severity.CRITICAL
    assert first.window == timedelta(hours=1)
    assert first.jobs == ("openrouter-*",)
    assert first.notify == ("oncall",)
    assert second.grace == timedelta(minutes=2)
    assert second.severity is Severity.WARNING
    assert third.max_duration == timedelta(seconds=90)
    assert third.min_runs == 1
    assert rules.lookback == timedelta(hours=1)


def test_toml_syntax_error_reports_line_and_column() -> None:
    [problem] = problems('[[rules]]\nname = "x\n')
    assert "invalid TOML" in problem
    assert "line 2" in problem
    assert "column" in problem


def test_unknown_key_is_rejected_with_allowed_keys() -> None:
    [problem] = problems('[[rules]]\nname = "a"\nkind = "missing_run"\ngrce = "5m"\n')
    assert "rule #1 'a'" in problem
    assert "'grce'" in problem
    assert "grace" in problem


def test_unknown_top_level_key_is_rejected() -> None:
    [problem] = problems('[[rule]]\nname = "a"\n')
    assert "'rule'" in problem
    assert "rules" in problem


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("threshold", "1.5", "0 < threshold <= 1"),
        ("threshold", "0", "0 < threshold <= 1"),
        ("threshold", "true", "0 < threshold <= 1"),
        ("window", '"1 hour"', '"90s", "5m", "1h" or "1d"'),
        ("window", "60", "is not a duration"),
        ("window", '"0s"', "longer than zero"),
        ("min_runs", "0", "at least 1"),
        ("min_runs", "2.5", "whole number"),
        ("severity", '"high"', "info, warning, critical"),
        ("jobs", "[1]", "jobname globs"),
        ("notify", '["pager"]', "unknown channel 'pager'"),
    ],
)
def test_bad_field_names_rule_field_and_allowed_form(field: str, value: str, expected: str) -> None:
    text = CHANNEL + f"""
[[rules]]
name = "r"
kind = "failure_ratio"
threshold = 0.5
{field} = {value}
"""
    if field == "threshold":
        text = text.replace("threshold = 0.5\n", "", 1)
    found = problems(text)
    assert len(found) == 1, found
    assert f"rule #1 'r', field '{field}'" in found[0]
    assert expected in found[0]


def test_missing_required_field_is_named() -> None:
    [problem] = problems('[[rules]]\nname = "r"\nkind = "stuck_run"\n')
    assert "field 'max_runtime'" in problem
    assert "required for kind stuck_run" in problem


def test_slow_average_needs_a_limit() -> None:
    [problem] = problems('[[rules]]\nname = "r"\nkind = "slow_average"\n')
    assert "needs max_duration (too slow), min_duration (too fast) or both" in problem


def test_unknown_kind_lists_kinds() -> None:
    [problem] = problems('[[rules]]\nname = "r"\nkind = "failure_rate"\n')
    assert "'failure_rate' is not one of failure_ratio, missing_run, slow_average" in problem


def test_rule_without_name_is_named_by_position() -> None:
    found = problems('[[rules]]\nkind = "missing_run"\n[[rules]]\nname = ""\nkind = "x"\n')
    assert any(p.startswith("rules.toml: rule #1: field 'name' is required") for p in found)
    assert any("rule #2" in p and "'x' is not one of" in p for p in found)


def test_duplicate_rule_names_are_rejected() -> None:
    text = '[[rules]]\nname = "a"\nkind = "missing_run"\n' * 2
    [problem] = problems(text)
    assert "rule #2 'a'" in problem
    assert "unique" in problem


def test_all_problems_are_listed_at_once() -> None:
    text = '[[rules]]\nname = "a"\nkind = "missing_run"\ngrace = "soon"\nseverity = "x"\n'
    assert len(problems(text)) == 2


def test_env_reference_is_expanded() -> None:
    text = '[channels.hook]\nurls = ["json://${HOOK_HOST}/alerts"]\n'
    rules = parse_rules(text, "rules.toml", {"HOOK_HOST": "127.0.0.1:8080"})
    assert rules.channels["hook"].urls == ("json://127.0.0.1:8080/alerts",)


def test_unset_env_variable_is_named() -> None:
    text = '[channels.oncall]\nurls = ["${SLACK_WEBHOOK_URL}"]\n'
    [problem] = problems(text)
    assert "channel 'oncall', url #1" in problem
    assert "SLACK_WEBHOOK_URL is not set" in problem


def test_invalid_apprise_url_is_rejected_without_secret() -> None:
    text = '[channels.oncall]\nurls = ["nosuchscheme://user:hunter2@example.invalid/x"]\n'
    [problem] = problems(text)
    assert "channel 'oncall', url #1" in problem
    assert "hunter2" not in problem


def test_defaults_notify_applies_to_rules_without_notify() -> None:
    text = CHANNEL + '[defaults]\nnotify = ["oncall"]\nseverity = "info"\n' \
        '[[rules]]\nname = "a"\nkind = "missing_run"\n' \
        '[[rules]]\nname = "b"\nkind = "missing_run"\nnotify = []\nseverity = "critical"\n'
    first, second = parse_rules(text, "rules.toml", {}).rules
    assert first.notify == ("oncall",)
    assert first.severity is Severity.INFO
    assert second.notify == ()
    assert second.severity is Severity.CRITICAL


def test_bad_locale_is_rejected() -> None:
    [problem] = problems('locale = "de"\n')
    assert "'de' is not one of en, ru" in problem


def test_missing_file_names_path_and_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules(tmp_path / "absent.toml")
    [problem] = caught.value.problems
    assert "absent.toml" in problem
    assert "WATCHDOG_RULES_FILE" in problem


def test_shipped_example_is_valid() -> None:
    example = Path(__file__).parent.parent / "rules.toml"
    environ = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/XXXX",
               "TELEGRAM_BOT_TOKEN": "123456:ABCDEF", "TELEGRAM_CHAT_ID": "-1001",
               "WEBHOOK_URL": "json://127.0.0.1:8080/alerts",
               "SMTP_URL": "mailto://127.0.0.1:2525?from=w@example.org&to=o@example.org"}
    rules = load_rules(example, environ)
    assert rules.rules


def test_lifecycle_options_parse_with_defaults() -> None:
    text = CHANNEL + """
[defaults]
for = "5m"
repeat_interval = "0"

[[rules]]
name = "a"
kind = "missing_run"
keep_firing_for = "10m"
send_resolved = false

[[rules]]
name = "b"
kind = "missing_run"
repeat_interval = "2h"
"""
    first, second = parse_rules(text, "rules.toml", {}).rules
    assert first.for_duration == timedelta(minutes=5)
    assert first.keep_firing_for == timedelta(minutes=10)
    assert first.repeat_interval == timedelta(0)
    assert first.send_resolved is False
    assert second.repeat_interval == timedelta(hours=2)
    assert second.send_resolved is True


def test_lifecycle_defaults_without_options() -> None:
    [rule] = parse_rules('[[rules]]\nname = "a"\nkind = "missing_run"\n', "rules.toml", {}).rules
    assert rule.for_duration == timedelta(0)
    assert rule.keep_firing_for == timedelta(0)
    assert rule.repeat_interval == timedelta(hours=4)
    assert rule.send_resolved is True


def test_invalid_lifecycle_options_are_named() -> None:
    found = problems(
        '[defaults]\nrepeat_interval = "often"\n'
        '[[rules]]\nname = "a"\nkind = "missing_run"\nfor = 5\nsend_resolved = "yes"\n'
    )
    assert any("defaults, field 'repeat_interval'" in p and "'often'" in p for p in found)
    assert any("rule #1 'a', field 'for'" in p and "duration" in p for p in found)
    assert any("field 'send_resolved'" in p and "true or false" in p for p in found)


def test_channel_options_are_validated() -> None:
    found = problems(
        '[channels.mail]\nurls = ["json://127.0.0.1:9/x"]\nmin_severity = "high"\n'
        "group_threshold = 0\n"
    )
    assert any("channel 'mail', field 'min_severity'" in p and "'high'" in p for p in found)
    assert any("channel 'mail', field 'group_threshold'" in p for p in found)


def test_channel_options_parse() -> None:
    text = '[channels.mail]\nurls = ["json://127.0.0.1:9/x"]\nmin_severity = "critical"\n'
    channel = parse_rules(text, "rules.toml", {}).channels["mail"]
    assert channel.min_severity is Severity.CRITICAL
    assert channel.group_threshold == 3


def test_display_timezone_must_be_iana() -> None:
    [problem] = problems('display_timezone = "Moscow"\n')
    assert "display_timezone" in problem
    assert "'Moscow'" in problem
    assert "Europe/Moscow" in problem


def test_compose_example_rules_are_valid() -> None:
    example = Path(__file__).parent.parent / "deploy" / "rules.toml"
    rules = load_rules(example, {"WEBHOOK_URL": "json://127.0.0.1:8080/alerts"})
    assert [rule.kind for rule in rules.rules] == [
        "failure_ratio", "missing_run", "scheduler_down",
    ]


def test_empty_jobs_list_is_rejected() -> None:
    text = CHANNEL + '[[rules]]\nname = "r"\nkind = "consecutive_failures"\njobs = []\n'
    [problem] = problems(text)
    assert "rule #1 'r', field 'jobs'" in problem
    assert "empty list selects no job" in problem
    assert 'omit jobs or write ["*"]' in problem


def test_single_string_accepted_for_jobs_and_notify() -> None:
    text = CHANNEL + """
[defaults]
notify = "oncall"

[[rules]]
name = "r"
kind = "consecutive_failures"
jobs = "nu-*"
notify = "oncall"
"""
    rules = parse_rules(text, "rules.toml", {})
    assert rules.rules[0].jobs == ("nu-*",)
    assert rules.rules[0].notify == ("oncall",)
    assert rules.default_notify == ("oncall",)


def test_channel_with_empty_urls_reported_once() -> None:
    text = """
[channels.hook]
urls = []

[defaults]
notify = ["hook"]

[[rules]]
name = "r"
kind = "consecutive_failures"
notify = ["hook", "pager"]
"""
    found = problems(text)
    assert len(found) == 2, found
    assert "channel 'hook', field 'urls': must be a non-empty list" in found[0]
    assert "rule #1 'r', field 'notify': unknown channel 'pager'" in found[1]


@pytest.mark.parametrize("value", ['"0"', '"0s"'])
def test_outbox_max_age_zero_says_longer_than_zero(value: str) -> None:
    [problem] = problems(f"[outbox]\nmax_age = {value}\n")
    assert "outbox, field 'max_age'" in problem
    assert "must be longer than zero" in problem


def test_url_without_scheme_is_named() -> None:
    [problem] = problems('[channels.hook]\nurls = ["hook.example"]\n')
    assert "channel 'hook', url #1" in problem
    assert "Apprise URL hook.example has no scheme" in problem
    assert "json://" in problem


def test_url_with_unknown_scheme_is_named() -> None:
    [problem] = problems('[channels.hook]\nurls = ["jsn://1234:abcd@host.example/x"]\n')
    assert "unknown Apprise scheme 'jsn'" in problem
    assert "json://, slack://, tgram://, mailto://" in problem
    assert "abcd" not in problem


def test_plain_https_url_suggests_json_scheme() -> None:
    [problem] = problems('[channels.hook]\nurls = ["https://example.com/hook"]\n')
    assert "Apprise does not recognise https://example.com/*** as the webhook" in problem
    assert "write json:// or jsons:// in place of https://" in problem
