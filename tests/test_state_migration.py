"""Upgrading a state file written by an older watchdog keeps its data."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watchdog.errors import ConfigError
from watchdog.state import _SCHEMA_V1, SCHEMA_VERSION, StateStore

TARGET = "db:5432/postgres"
SINCE = datetime(2025, 5, 5, 11, 0, tzinfo=UTC)


def write_v1_file(path: Path) -> None:
    db = sqlite3.connect(path)
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    db.execute("INSERT INTO cursor (target, last_runid) VALUES (?, 42)", (TARGET,))
    db.execute(
        "INSERT INTO alerts (target, rule, jobid, state, since, value, verdict)"
        " VALUES (?, 'sync failing', 3, 'firing', ?, 0.5, ?)",
        (TARGET, SINCE.isoformat(), json.dumps({"rule": "sync failing", "jobid": 3})),
    )
    db.execute(
        "INSERT INTO transitions (target, rule, jobid, at, old_state, new_state, value)"
        " VALUES (?, 'sync failing', 3, ?, 'ok', 'firing', 0.5)",
        (TARGET, SINCE.isoformat()),
    )
    db.execute(
        "INSERT INTO outbox (target, channel, url_key, notify_type, title, body, created_at,"
        " next_attempt) VALUES (?, 'hook', 'abc', 'critical', 'title', 'body', ?, ?)",
        (TARGET, SINCE.isoformat(), SINCE.isoformat()),
    )
    db.commit()
    db.close()


def test_v1_file_is_upgraded_with_data_intact(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    write_v1_file(path)

    store = StateStore(path)
    try:
        version = store._db.execute(
            "SELECT value FROM meta WHERE key='schema_version'"
        ).fetchone()["value"]
        assert int(version) == SCHEMA_VERSION
        assert store.history(TARGET).cursor is None

        record = store.alerts(TARGET)[("sync failing", 3)]
        assert record.state == "firing"
        assert record.since == SINCE
        assert record.value == 0.5
        # A v1 alert was announced when it fired, so it must not be announced again.
        assert record.fired_at == SINCE
        assert record.last_sent == SINCE
        assert record.announced is True

        [transition] = store.transitions(TARGET)
        assert transition["new_state"] == "firing"

        [entry] = store.due_notifications(TARGET, SINCE)
        assert entry.title == "title"
        assert entry.alert_ids == ""
        assert store.silences(TARGET) == []
    finally:
        store.close()


def test_upgraded_file_opens_again_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    write_v1_file(path)
    StateStore(path).close()

    store = StateStore(path)
    try:
        assert len(store.alerts(TARGET)) == 1
        assert len(store.transitions(TARGET)) == 1
    finally:
        store.close()


def test_newer_schema_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()

    with pytest.raises(ConfigError) as caught:
        StateStore(path)
    assert f"schema version {SCHEMA_VERSION + 1}" in caught.value.problems[0]
