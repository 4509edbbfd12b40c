"""Stored job definitions for job_drift, and the schema upgrade that adds them."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from factories import NOW, job

from watchdog.state import _SCHEMA_V1, SCHEMA_VERSION, StateStore


def test_first_definition_is_kept(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    first = job(1, "nightly", schedule="0 3 * * *")
    store.note_job_definitions("db", [first], NOW)
    store.note_job_definitions("db", [replace(first, schedule="*/5 * * * *")], NOW)
    assert store.job_definitions("db") == {1: first}
    assert store.job_definitions("other") == {}

    store.forget_job_definition("db", 1)
    store.note_job_definitions("db", [replace(first, active=False)], NOW)
    assert store.job_definitions("db")[1].active is False
    store.close()


def test_version_one_state_file_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    # A version 1 file, as the first release of the watchdog left it.
    with sqlite3.connect(path) as db:
        for statement in _SCHEMA_V1.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        db.execute("INSERT INTO cursor (target, last_runid) VALUES ('db', 42)")

    store = StateStore(path)
    # Version 5 keeps runs in one saved record; the window is read again after the upgrade.
    assert store.history("db").cursor is None
    store.note_job_definitions("db", [job(1, "nightly")], NOW)
    assert list(store.job_definitions("db")) == [1]
    store.close()
    with sqlite3.connect(path) as db:
        [(version,)] = db.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    assert int(version) == SCHEMA_VERSION
