"""Measure what a poll costs the watched database, next to the usual full-scan SQL.

Usage: python -m benchmarks.run [--rows N ...] [--with-10m] [--smoke] [--latency]

For each row count it starts a throwaway PostgreSQL 15 + pg_cron cluster
(tests/pgcluster.py), seeds it (benchmarks/seed.py), runs a worker in its own
process (benchmarks/worker.py) and prints the figures. It exits 1 when a
poll query shows a sequential scan of cron.job_run_details, a walk of its
whole primary key, a sort over it, or a sort spilled to disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pgcluster import PgCronCluster  # noqa: E402

from benchmarks.plans import SentQuery, check_generic_plan, distinct_run_queries  # noqa: E402
from benchmarks.seed import seed  # noqa: E402

JOBS = 1000
DAYS = 7
FULL_SCAN_SQL = (
    "SELECT jobid, count(*) AS runs, count(*) FILTER (WHERE status = 'failed') AS failures,"
    " avg(end_time - start_time) AS mean_duration FROM cron.job_run_details"
    " WHERE start_time > now() - interval '1 hour' GROUP BY jobid"
)
RULES_TOML = """
[[rules]]
name = "failing, 1h"
kind = "failure_ratio"
window = "1h"
threshold = 0.2

[[rules]]
name = "failing, 15m"
kind = "failure_ratio"
jobs = ["bench-0*"]
window = "15m"
threshold = 0.5

[[rules]]
name = "failing often, 6h"
kind = "failure_ratio"
jobs = ["bench-00*"]
window = "6h"
threshold = 0.1
min_runs = 10

[[rules]]
name = "failing, sensitive"
kind = "failure_ratio"
jobs = ["bench-009*"]
window = "30m"
threshold = 0.05
min_runs = 1

[[rules]]
name = "did not run"
kind = "missing_run"
grace = "2m"

[[rules]]
name = "did not run, lenient"
kind = "missing_run"
jobs = ["bench-00*"]
grace = "15m"

[[rules]]
name = "slow, 1h"
kind = "slow_average"
window = "1h"
max_duration = "30s"

[[rules]]
name = "slower than last week"
kind = "duration_regression"
jobs = ["bench-0*"]
window = "1h"
baseline = "7d"
factor = 3

[[rules]]
name = "slow, 10m"
kind = "slow_average"
jobs = ["bench-001*"]
window = "10m"
max_duration = "5s"
min_runs = 1

[[rules]]
name = "slow, 3h"
kind = "slow_average"
exclude = ["bench-000*"]
window = "3h"
max_duration = "1m"
"""


def measure(rows: int, cycles: int, check_plans: bool) -> tuple[dict[str, Any], list[str]]:
    """Seed a fresh cluster with `rows` runs and return the figures and any plan problems."""
    with PgCronCluster() as cluster, tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        with cluster.connect() as conn:
            seed(conn, jobs=JOBS, runs=rows, days=DAYS)
        seed_seconds = time.perf_counter() - started

        rules_file = Path(directory) / "rules.toml"
        rules_file.write_text(RULES_TOML)
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", cluster.dsn,
             str(Path(directory) / "state.sqlite3"), str(rules_file), str(cycles)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
        report: dict[str, Any] = json.loads(output)
        report["seed_s"] = seed_seconds
        report["restart"] = json.loads(subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", "--restart", cluster.dsn,
             str(Path(directory) / "state.sqlite3"), str(rules_file)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout)

        with cluster.connect() as conn:
            report["full_scan_s"] = _full_scan_seconds(conn)
            sent = [SentQuery(text, tuple(params)) for text, params in report.pop("sent")]
            steady = [SentQuery(text, tuple(params)) for text, params in report.pop("steady_sent")]
            report["cycle_server_ms"] = _server_milliseconds(conn, steady)
            report["full_scan_server_ms"] = _full_scan_server_milliseconds(conn)
            problems: list[str] = []
            if check_plans:
                for query in distinct_run_queries(sent):
                    check = check_generic_plan(conn, query)
                    print(f"-- {query.text}\n{check.plan_text}\n")
                    problems.extend(f"{query.text}: {problem}" for problem in check.problems)
        return report, problems


def _server_milliseconds(conn: Any, statements: list[SentQuery], repeats: int = 5) -> float:
    """Return the planning plus execution time the server reports for one cycle's statements.

    The statements run again after the cycle, each under EXPLAIN ANALYZE, and
    the median of `repeats` sums is returned. SET statements are left out.
    """
    queries = [query for query in statements if not query.text.startswith("SET")]
    sums = [
        sum(check_generic_plan(conn, query).server_ms for query in queries)
        for _ in range(repeats)
    ]
    return statistics.median(sums)


def _full_scan_server_milliseconds(conn: Any) -> float:
    return _server_milliseconds(conn, [SentQuery(FULL_SCAN_SQL, None)])


def _full_scan_seconds(conn: Any, repeats: int = 3) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        conn.execute(FULL_SCAN_SQL).fetchall()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def print_report(rows: int, report: dict[str, Any]) -> None:
    cycle_db = report["cycle_db_s"]
    ratio = report["full_scan_s"] / cycle_db if cycle_db else float("inf")
    server_ratio = report["full_scan_server_ms"] / report["cycle_server_ms"]
    print(f"== {rows:,} runs, {JOBS:,} jobs, 10 rules (seeded in {report['seed_s']:.1f} s)")
    print(f"   start-up:   {report['startup']['wall_s'] * 1000:9.1f} ms wall,"
          f" {report['startup']['db_s'] * 1000:8.1f} ms database (empty state file)")
    print(f"   restart:    {report['restart']['wall_s'] * 1000:9.1f} ms wall,"
          f" {report['restart']['db_s'] * 1000:8.1f} ms database (saved state, 30 s later),"
          f" peak RSS {report['restart']['peak_rss_mb']:.1f} MB in its own process")
    print(f"   poll cycle: {report['cycle_wall_s'] * 1000:9.1f} ms wall,"
          f" {cycle_db * 1000:8.2f} ms database round trips,"
          f" {report['cycle_server_ms']:.2f} ms server time, {report['queries_per_cycle']} queries")
    print(f"   take_snapshot: {report['startup_snapshot_s'] * 1000:6.1f} ms at start-up,"
          f" {report['cycle_snapshot_s'] * 1000:.1f} ms per cycle (wall)")
    print(f"   evaluation: {report['evaluate_cpu_s'] * 1000:9.1f} ms CPU per cycle over"
          f" {report['runs_in_snapshot']:,} runs in the snapshot,"
          f" {report['startup_evaluate_cpu_s'] * 1000:.1f} ms at start-up")
    print(f"   peak RSS:   {report['peak_rss_mb']:9.1f} MB")
    for text, milliseconds in report["last_cycle_statements_ms"].items():
        print(f"      {milliseconds:7.2f} ms  {text[:90]}")
    print(f"   full-scan SQL: {report['full_scan_s'] * 1000:6.1f} ms round trip ({ratio:.0f}x the"
          f" poll's), {report['full_scan_server_ms']:.1f} ms server time ({server_ratio:.0f}x)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="run history sizes to measure (default 100000 1000000)")
    parser.add_argument("--with-10m", action="store_true",
                        help="also measure 10,000,000 runs (takes several minutes)")
    parser.add_argument("--smoke", action="store_true",
                        help="100,000 runs and 2 cycles only, with the plan checks")
    parser.add_argument("--cycles", type=int, default=10, help="poll cycles measured per size")
    parser.add_argument("--latency", action="store_true",
                        help="also measure detection latency with a real failing pg_cron job")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = [100_000] if args.smoke else list(args.rows)
    if args.with_10m:
        sizes.append(10_000_000)
    cycles = 2 if args.smoke else args.cycles

    failed = False
    for rows in sizes:
        report, problems = measure(rows, cycles, check_plans=True)
        print_report(rows, report)
        for problem in problems:
            print(f"   PLAN PROBLEM: {problem}")
        failed = failed or bool(problems)
    if args.latency:
        from benchmarks.latency import measure_latency

        print(f"== detection latency: {measure_latency():.2f} s with poll_interval 5 s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
