"""The state store's in-memory run window stays in step with the SQLite file."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from factories import NOW, run

from watchdog.state import StateStore

TARGET = "127.0.0.1:5432/postgres"


def test_window_survives_new_process(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = StateStore(path)
    with first.transaction():
        first.upsert_runs(TARGET, [run(1), run(2, status="running", duration=None)])
        first.upsert_runs(TARGET, [run(2, status="failed", message="ERROR:  boom")])
    first.close()

    second = StateStore(path)
    stored = second.runs(TARGET)
    assert [item.runid for item in stored] == [1, 2]
    assert stored[1].status == "failed"
    assert second.open_runids(TARGET) == []


def test_rolled_back_runs_are_forgotten(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    with store.transaction():
        store.upsert_runs(TARGET, [run(1)])

    with pytest.raises(RuntimeError), store.transaction():
        store.upsert_runs(TARGET, [run(2)])
        raise RuntimeError("cycle failed after the write")

    assert [item.runid for item in store.runs(TARGET)] == [1]


def test_trim_drops_old_finished_runs_only(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = StateStore(path)
    old_done = run(1, ago=timedelta(hours=3))
    old_open = run(2, status="running", ago=timedelta(hours=3), duration=None)
    recent = run(3, ago=timedelta(minutes=5))
    with store.transaction():
        store.upsert_runs(TARGET, [old_done, old_open, recent])
        dropped = store.trim_runs(TARGET, NOW - timedelta(hours=1))

    assert dropped == 1
    assert [item.runid for item in store.runs(TARGET)] == [2, 3]
    assert [item.runid for item in StateStore(path).runs(TARGET)] == [2, 3]


def test_reread_run_keeps_first_seen_at(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    started = run(1, status="running", duration=None)
    store.upsert_runs(TARGET, [started])
    store.upsert_runs(TARGET, [replace(run(1, status="succeeded"), seen_at=NOW)])

    [stored] = store.runs(TARGET)
    assert stored.status == "succeeded"
    assert stored.seen_at == started.seen_at
