"""Input that production and SREs produce by accident: odd DSNs, absurd values, odd rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pgcluster import free_tcp_port

from watchdog.config import load_settings, mask_dsn
from watchdog.errors import ConfigError, SourceError
from watchdog.rules import parse_rules
from watchdog.source import PgSource

_ONE_RULE = '[[rules]]\nname = "r"\nkind = "failure_ratio"\nthreshold = 0.5\n'

# Each DSN makes libpq fail with a message that quotes the text around the
# password, or puts part of the password where the host or port goes.
_BROKEN_DSNS = {
    "percent escape": ("postgresql://u:Pw%zzSecret1@127.0.0.1:{port}/db", ["Pw%zzSecret1"]),
    "unencoded at": ("postgresql://u:Pw@localhost:HiddenPart2@127.0.0.1:{port}/db",
                     ["HiddenPart2"]),
    "space in keyword value": ("host=127.0.0.1 port={port} password=First3 Second3 user=u",
                               ["First3", "Second3"]),
    "escaped space": ("host=127.0.0.1 port={port} password=Esc4\\ aped4 user=u",
                      ["Esc4", "aped4"]),
    "slash in url password": ("postgresql://u:Sla5/shed5@127.0.0.1:{port}/db",
                              ["Sla5", "shed5"]),
}


@pytest.mark.parametrize("case", sorted(_BROKEN_DSNS))
def test_broken_dsn_error_hides_password(case: str) -> None:
    template, secrets = _BROKEN_DSNS[case]
    dsn = template.format(port=free_tcp_port())

    with pytest.raises(SourceError) as raised:
        source = PgSource(dsn, connect_timeout=1)
        with source.read_transaction():
            pass

    message = str(raised.value)
    for secret in secrets:
        assert secret not in message
    for secret in secrets:
        assert secret not in mask_dsn(dsn)


@pytest.mark.parametrize("value", ["900000d", "99999999999999d", "87600.5h"])
def test_rules_reject_absurd_duration(value: str) -> None:
    text = f'[[rules]]\nname = "r"\nkind = "failure_ratio"\nthreshold = 0.5\nwindow = "{value}"\n'

    with pytest.raises(ConfigError) as raised:
        parse_rules(text, "rules.toml", {})

    assert len(raised.value.problems) == 1
    assert value in raised.value.problems[0]
    assert "3650d" in raised.value.problems[0]


@pytest.mark.parametrize("key", ["for", "keep_firing_for", "repeat_interval"])
def test_defaults_reject_absurd_duration(key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_rules(f'[defaults]\n{key} = "99999999999999d"\n', "rules.toml", {})

    assert "99999999999999d" in raised.value.problems[0]


@pytest.mark.parametrize("value", ["99999999999999d", "99999999999999999"])
def test_settings_reject_absurd_poll_interval(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(poll_interval=value)

    assert raised.value.problems[0].startswith("setting WATCHDOG_POLL_INTERVAL:")
    assert value in raised.value.problems[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watchdog.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_takes_options_before_command(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(_ONE_RULE)

    result = _cli("--rules-file", str(rules), "validate")

    assert result.returncode == 0, result.stderr
    assert f"{rules}: valid, 1 rules" in result.stdout


def test_cli_option_after_command_wins(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(_ONE_RULE)

    result = _cli("--rules-file", str(tmp_path / "missing.toml"), "validate",
                  "--rules-file", str(rules))

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_actions_rejects_limit_below_one(limit: str, tmp_path: Path) -> None:
    result = _cli("actions", "--limit", limit, "--state-path", str(tmp_path / "state.sqlite3"))

    assert result.returncode == 2
    assert f"invalid number {limit!r}" in result.stderr
    assert "Traceback" not in result.stderr
