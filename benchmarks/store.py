"""Measure the state store's run window: load from SQLite once versus each cycle.

Usage: python -m benchmarks.store [RUNS ...]   (default 60000 1440000)

60,000 runs is an hour of 1,000 jobs every minute; 1,440,000 is a day, the
least history the watchdog keeps.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchdog.models import Run
from watchdog.state import StateStore

TARGET = "bench:5432/postgres"
JOBS = 1000
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def measure(count: int) -> dict[str, float]:
    """Return seconds per operation for a window of `count` runs."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.sqlite3"
        store = StateStore(path)
        step = timedelta(days=1) / count
        seen_at = NOW - timedelta(days=1)
        runs = (
            Run(runid, runid % JOBS + 1, "running" if runid % 500 == 0 else "succeeded",
                "SELECT 1", seen_at + step * runid, seen_at + step * runid + timedelta(seconds=1),
                seen_at)
            for runid in range(1, count + 1)
        )
        with store.transaction():
            store.upsert_runs(TARGET, runs)
        store.close()

        timings: dict[str, float] = {}
        fresh = StateStore(path)
        timings["load at start-up"] = _seconds(lambda: fresh.runs(TARGET))
        timings["runs() per cycle, cached"] = _seconds(lambda: fresh.runs(TARGET))
        timings["open_runids() per cycle, cached"] = _seconds(lambda: fresh.open_runids(TARGET))
        cut_off = seen_at - timedelta(minutes=10)
        timings["trim, full scan"] = _seconds(lambda: fresh.trim_runs(TARGET, cut_off))
        timings["trim, next cycle (scan skipped)"] = _seconds(
            lambda: fresh.trim_runs(TARGET, cut_off + timedelta(seconds=30))
        )
        fresh.close()
        return timings


def _seconds(action: object) -> float:
    assert callable(action)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    for count in [int(value) for value in argv] or [60_000, 1_440_000]:
        for name, seconds in measure(count).items():
            print(f"{count:>9} runs  {name:<34} {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
