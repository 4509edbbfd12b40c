"""Property tests: rules files and schedules fail with clear errors, never tracebacks.

Schedules are also checked against the real `cron.schedule` of the test
cluster's pg_cron 1.4. That version rejects `'N seconds'` (pg_cron 1.5+) and
`$` (pg_cron 1.6+), so those forms are left to their tests in test_evaluate.py.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.errors import ConfigError
from watchdog.rules import KINDS, SEVERITIES, RuleSet, parse_rules
from watchdog.schedules import ScheduleError, parse_schedule

Conn = psycopg.Connection[Any]

KEYS = ["locale", "channels", "defaults", "rules", "name", "kind", "jobs", "exclude",
        "severity", "notify", "window", "threshold", "min_runs", "grace", "max_duration",
        "urls", "hook"]
WORDS = [*KINDS, *SEVERITIES, "hook", "en", "ru", "1h", "90s", "-5m", "0s", "sync-*",
         "json://127.0.0.1:9/x", "${UNSET}", "mailto://a@b"]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(WORDS),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=10))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=20,
)
documents = st.dictionaries(keys, values, max_size=6)


def toml_value(value: Any) -> str:
    """Write a value as TOML inline syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    pairs = ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items())
    return "{" + pairs + "}"


def toml_document(document: dict[str, Any]) -> str:
    return "\n".join(f"{json.dumps(key)} = {toml_value(value)}" for key, value in document.items())


def parse_or_problems(text: str) -> RuleSet | list[str]:
    try:
        return parse_rules(text, "rules.toml", {})
    except ConfigError as exc:
        return exc.problems


@settings(max_examples=300, deadline=None)
@given(documents)
def test_rule_structures_give_config_errors(document: dict[str, Any]) -> None:
    outcome = parse_or_problems(toml_document(document))
    if isinstance(outcome, list):
        assert outcome
        assert all(problem.startswith("rules.toml: ") for problem in outcome)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(keys, values, max_size=8), max_size=4))
def test_rule_lists_give_config_errors(rules: list[dict[str, Any]]) -> None:
    document = {"channels": {"hook": {"urls": ["json://127.0.0.1:9/x"]}}, "rules": rules}
    outcome = parse_or_problems(toml_document(document))
    if isinstance(outcome, RuleSet):
        assert len(outcome.rules) == len(rules)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_config_errors(text: str) -> None:
    outcome = parse_or_problems(text)
    if isinstance(outcome, list):
        assert outcome


CRON_CHARACTERS = "0123456789*/,-LW#?@ \tjanfebmonsunhourlydaiw"
cron_like = st.text(alphabet=CRON_CHARACTERS, max_size=24)


def accepts(text: str) -> bool:
    try:
        parse_schedule(text)
    except ScheduleError as exc:
        assert repr(text) in str(exc)
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=40), cron_like))
def test_schedules_accepted_or_rejected_clearly(text: str) -> None:
    accepts(text)


def pg_cron_accepts(conn: Conn, text: str) -> bool:
    try:
        with conn.transaction():
            conn.execute("SELECT cron.schedule('schedule-probe', %s, 'SELECT 1')", (text,))
            raise psycopg.Rollback()
    except psycopg.errors.InvalidParameterValue:
        return False
    return True


TRICKY_SCHEDULES = [
    "* * * * *", "0 0 * * *", "  0 0 * * *  ", "0\t0 * * *", "59 23 31 12 6", "00 00 * * *",
    "007 * * * *",
    # Out of range, or missing parts.
    "60 * * * *", "0 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 0 *", "* * * 13 *",
    "* * * * 8", "-1 * * * *", "1-60 * * * *", "* * * *", "", " ", "a * * * *",
    # Steps and ranges.
    "*/0 * * * *", "*/1 * * * *", "*/15 * * * *", "*/60 * * * *", "*/61 * * * *",
    "1/5 * * * *", "1-5/2 * * * *", "0-59/15 * * * *", "0 0 1-31/2 * *", "0-0 * * * *",
    "5-1 * * * *", "50-10 * * * *", "*-5 * * * *", "5- * * * *",
    # Lists.
    "0,30 * * * *", ",0 * * * *", "0, * * * *", "0 12 * * 1,", "1,2,3,4,5,6,7,8,9,10 * * * *",
    # Sunday as 7, names in any case.
    "* * * * 7", "0 0 * * 0-7", "0 0 * * 7-7", "* * * jan mon", "* * * JAN-MAR *",
    "* * * * sun-sat", "* * * * mon-fri", "0 0 * * MON,WED", "0 0 * JAN,jul *", "* * * foo *",
    # Forms of other cron dialects.
    "0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2", "0 0 ? * *", "0 0 * * ?", "H * * * *",
    "0 0 1W * *", "* * * * * *", "* * * * * extra words",
    # Dates that never come.
    "0 0 29 2 *", "0 0 30 2 *", "0 0 31 4 *",
    # Macros: case-sensitive, and the rest after the macro ignored.
    "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
    "@reboot", "@restart", "@every", "@HOURLY", "@Daily", "@", "@hourly now",
]


@pytest.mark.parametrize("text", TRICKY_SCHEDULES)
def test_schedule_agrees_with_pg_cron(pg: Conn, text: str) -> None:
    assert accepts(text) == pg_cron_accepts(pg, text)


# The `pg` fixture's cleanup after the test suits every example: each one rolls back.
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cron_like.filter(lambda text: "$" not in text))
def test_random_schedules_agree_with_pg_cron(pg: Conn, text: str) -> None:
    assert accepts(text) == pg_cron_accepts(pg, text)
