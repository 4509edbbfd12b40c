"""One watchdog worker under measurement, run in its own process for a clean peak RSS.

Usage: python -m benchmarks.worker DSN STATE_FILE RULES_FILE CYCLES
       python -m benchmarks.worker --restart DSN STATE_FILE RULES_FILE

Runs the start-up cycle, then CYCLES poll cycles, inserting before each the
runs that 30 s of the seeded fleet would add. With --restart, runs only the
first cycle of a new worker on the state file an earlier run saved. Prints
one JSON object.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.plans import RecordingSource, SentQuery
from watchdog import loop
from watchdog.evaluate import evaluate
from watchdog.loop import Worker
from watchdog.rules import load_rules
from watchdog.snapshot import take_snapshot
from watchdog.state import StateStore

# 1,000 jobs, most every minute or every five: about this many runs start in 30 s.
RUNS_PER_CYCLE = 300
IN_FLIGHT_PER_CYCLE = 20


class TimedSource(RecordingSource):
    """A RecordingSource that also adds up the time spent waiting on the database."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.database_seconds = 0.0
        self.by_statement: dict[str, float] = {}

    def read_transaction(self) -> Any:
        return _TimedTransaction(super().read_transaction(), self)


class _TimedTransaction:
    """Add the time of opening and committing the transaction to the source's total."""

    def __init__(self, inner: Any, source: TimedSource) -> None:
        self._inner = inner
        self._source = source

    def __enter__(self) -> Any:
        started = time.perf_counter()
        cursor = self._inner.__enter__()
        self._source.database_seconds += time.perf_counter() - started
        return _TimedCursor(cursor, self._source)

    def __exit__(self, *exc: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._inner.__exit__(*exc)
        finally:
            self._source.database_seconds += time.perf_counter() - started


class _TimedCursor:
    def __init__(self, cursor: Any, source: TimedSource) -> None:
        self._cursor = cursor
        self._source = source

    def execute(self, query: Any, params: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return self._cursor.execute(query, params)
        finally:
            elapsed = time.perf_counter() - started
            self._source.database_seconds += elapsed
            text = self._source.sent[-1].text if self._source.sent else str(query)
            self._source.by_statement[text] = self._source.by_statement.get(text, 0.0) + elapsed

    def stream(self, query: Any, params: Any = None) -> Any:
        # The rows arrive while the caller iterates, so the whole iteration is timed.
        started = time.perf_counter()
        yield from self._cursor.stream(query, params)
        self._source.database_seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def add_fresh_runs(conn: psycopg.Connection[Any]) -> None:
    """Insert the runs of the last 30 s, some still in flight, and finish older in-flight ones."""
    conn.execute(
        "UPDATE cron.job_run_details SET status = 'succeeded', end_time = now()"
        " WHERE runid > (SELECT max(runid) - 2000 FROM cron.job_run_details)"
        " AND status = 'running'"
    )
    conn.execute(
        "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, status,"
        " return_message, start_time, end_time)"
        " SELECT j.jobid, 4242, 'postgres', 'postgres', 'SELECT 1',"
        "  CASE WHEN g <= %(open)s THEN 'running' WHEN g %% 50 = 0 THEN 'failed'"
        "   ELSE 'succeeded' END,"
        "  CASE WHEN g %% 50 = 0 THEN 'ERROR:  division by zero' ELSE 'SELECT 1' END,"
        "  now() - interval '30 seconds' + g * interval '0.1 second',"
        "  CASE WHEN g <= %(open)s THEN NULL"
        "   ELSE now() - interval '30 seconds' + g * interval '0.1 second' + interval '0.2 s' END"
        " FROM generate_series(1, %(count)s) g"
        " JOIN LATERAL (SELECT jobid FROM cron.job WHERE active"
        "  ORDER BY jobid OFFSET (g * 7) %% 900 LIMIT 1) j ON true",
        {"open": IN_FLIGHT_PER_CYCLE, "count": RUNS_PER_CYCLE},
    )


_snapshot_seconds: list[float] = []
_evaluate_cpu_seconds: list[float] = []


def _timed_take_snapshot(*args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    try:
        return take_snapshot(*args, **kwargs)
    finally:
        _snapshot_seconds.append(time.perf_counter() - started)


def restart(dsn: str, state: Path, rules_file: Path) -> dict[str, float]:
    """Time the first cycle of a new worker on the state file the previous one saved.

    30 s of new runs are added first, as if the worker had been down that long.
    """
    with psycopg.connect(dsn, autocommit=True) as writer:
        add_fresh_runs(writer)
    started = time.perf_counter()
    rules = load_rules(rules_file)
    store = StateStore(state)
    source = TimedSource(dsn)
    Worker(rules, store, source).cycle()
    wall = time.perf_counter() - started
    database = source.database_seconds
    source.close()
    store.close()
    return {"wall_s": wall, "db_s": database,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _timed_evaluate(*args: Any, **kwargs: Any) -> Any:
    started = time.process_time()
    try:
        return evaluate(*args, **kwargs)
    finally:
        _evaluate_cpu_seconds.append(time.process_time() - started)


def main(dsn: str, state: Path, rules_file: Path, cycles: int) -> dict[str, Any]:
    # Replace the name the worker calls, so each snapshot is timed on its own.
    setattr(loop, "take_snapshot", _timed_take_snapshot)  # noqa: B010
    setattr(loop, "evaluate", _timed_evaluate)  # noqa: B010
    rules = load_rules(rules_file)
    store = StateStore(state)
    source = TimedSource(dsn)
    worker = Worker(rules, store, source)

    started = time.perf_counter()
    worker.cycle()
    startup = {"wall_s": time.perf_counter() - started, "db_s": source.database_seconds}

    walls, dbs, queries = [], [], []
    with psycopg.connect(dsn, autocommit=True) as writer:
        for _ in range(cycles):
            add_fresh_runs(writer)
            source.database_seconds = 0.0
            source.by_statement = {}
            sent_before = len(source.sent)
            started = time.perf_counter()
            result = worker.cycle()
            walls.append(time.perf_counter() - started)
            dbs.append(source.database_seconds)
            queries.append(len(source.sent) - sent_before)


    source.close()
    store.close()
    steady: list[SentQuery] = source.sent[-queries[-1]:] if queries else []
    return {
        "startup": startup,
        "cycle_wall_s": statistics.median(walls),
        "cycle_db_s": statistics.median(dbs),
        # The cycles' own evaluations, each on the runs that had just arrived.
        "evaluate_cpu_s": (
            statistics.median(_evaluate_cpu_seconds[1:1 + cycles]) if cycles else 0.0),
        "startup_evaluate_cpu_s": _evaluate_cpu_seconds[0],
        "startup_snapshot_s": _snapshot_seconds[0],
        "cycle_snapshot_s": statistics.median(_snapshot_seconds[1:]) if cycles else 0.0,
        "last_cycle_statements_ms": {
            text: seconds * 1000 for text, seconds in source.by_statement.items()
        },
        "queries_per_cycle": queries[-1] if queries else 0,
        "runs_in_snapshot": len(result.snapshot.history) if cycles else 0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sent": [[query.text, list(query.params or ())] for query in source.sent],
        "steady_sent": [[query.text, list(query.params or ())] for query in steady],
    }


if __name__ == "__main__":
    if sys.argv[1] == "--restart":
        dsn_arg, state_arg, rules_arg = sys.argv[2:5]
        print(json.dumps(restart(dsn_arg, Path(state_arg), Path(rules_arg))))
    else:
        dsn_arg, state_arg, rules_arg, cycles_arg = sys.argv[1:5]
        report = main(dsn_arg, Path(state_arg), Path(rules_arg), int(cycles_arg))
        print(json.dumps(report, default=str))
