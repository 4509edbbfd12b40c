"""Measure the run history alone: building it, its memory, saving and loading it.

Usage: python -m benchmarks.store [RUNS ...]   (default 60000 360000 1440000)

60,000 runs is an hour of 1,000 jobs every minute, 360,000 six hours, 1,440,000 a
day. 2 % of the runs fail and 0.2 % are still in flight, so they are kept as
objects; the rest go into the columns.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchdog.history import RunHistory
from watchdog.models import Run
from watchdog.state import StateStore

TARGET = "bench:5432/postgres"
JOBS = 1000
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _runs(count: int) -> list[Run]:
    step = timedelta(days=1) / count
    first = NOW - timedelta(days=1)
    runs = []
    for runid in range(1, count + 1):
        status = "succeeded"
        if runid % 500 == 0:
            status = "running"
        elif runid % 50 == 0:
            status = "failed"
        started = first + step * runid
        ended = None if status == "running" else started + timedelta(seconds=1)
        runs.append(Run(runid, runid % JOBS + 1, status, "SELECT 1", started, ended, first))
    return runs


def measure(count: int) -> dict[str, float]:
    """Return milliseconds per operation, and megabytes held, for `count` runs."""
    runs = _runs(count)
    figures: dict[str, float] = {}
    history = RunHistory()
    figures["build, ms"] = _milliseconds(lambda: history.upsert(runs))
    # Only allocations after start() are traced, so this counts the second history alone.
    tracemalloc.start()
    traced = RunHistory()
    traced.upsert(runs)
    figures["memory held, MB"] = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    del traced
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.sqlite3"
        store = StateStore(path)
        store._histories[TARGET] = history
        figures["save, ms"] = _milliseconds(lambda: store.save_history(TARGET, NOW, force=True))
        store.close()
        figures["file size, MB"] = path.stat().st_size / 1e6
        fresh = StateStore(path)
        figures["load at start-up, ms"] = _milliseconds(lambda: fresh.history(TARGET))
        cut_off = NOW - timedelta(hours=6)
        figures["trim to 6 h, ms"] = _milliseconds(
            lambda: fresh.history(TARGET).trim(cut_off, NOW - timedelta(days=2)))
        figures["trim again, ms"] = _milliseconds(
            lambda: fresh.history(TARGET).trim(cut_off + timedelta(seconds=5),
                                               NOW - timedelta(days=2)))
        fresh.close()
    return figures


def _milliseconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str]) -> None:
    for count in [int(value) for value in argv] or [60_000, 360_000, 1_440_000]:
        for name, value in measure(count).items():
            print(f"{count:>9} runs  {name:<24} {value:9.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
