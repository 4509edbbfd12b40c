"""Detection latency: a real pg_cron job starts failing; how long until the message arrives.

The time runs from the first failed run's end_time to the moment a local
HTTP receiver (tests/receivers.py) has received the notification, with the worker
polling every 5 s. pg_cron 1.4 starts jobs at the top of a minute, so one
measurement takes up to about 70 s.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pgcluster import PgCronCluster  # noqa: E402
from receivers import HttpReceiver  # noqa: E402

from watchdog.loop import StopFlag, Worker, run_forever  # noqa: E402
from watchdog.rules import RuleSet, parse_rules  # noqa: E402
from watchdog.source import PgSource  # noqa: E402
from watchdog.state import StateStore  # noqa: E402

POLL_INTERVAL_S = 5.0
WAIT_S = 150.0
RULES = """
[channels.hook]
urls = ["{url}"]

[[rules]]
name = "probe failing"
kind = "failure_ratio"
jobs = ["latency-probe"]
notify = ["hook"]
window = "5m"
threshold = 0.5
min_runs = 1
"""


def _watch(dsn: str, rules: RuleSet, directory: Path, stop: StopFlag) -> None:
    store = StateStore(directory / "state.sqlite3")
    source = PgSource(dsn)
    try:
        run_forever(Worker(rules, store, source).cycle, POLL_INTERVAL_S, stop)
    finally:
        source.close()
        store.close()


def measure_latency() -> float:
    """Return seconds from the failed run's end_time to the message at the receiver."""
    with PgCronCluster() as cluster, HttpReceiver() as receiver, \
            tempfile.TemporaryDirectory() as directory:
        rules = parse_rules(RULES.format(url=receiver.json_url("/alerts")), "latency", {})
        with cluster.connect() as conn:
            conn.execute("SELECT cron.schedule('latency-probe', '* * * * *', 'SELECT 1/0')")
        stop = StopFlag()
        # SQLite connections belong to the thread that opened them, so the worker
        # is built in the thread that runs it.
        thread = threading.Thread(
            target=_watch, args=(cluster.dsn, rules, Path(directory), stop), daemon=True
        )
        thread.start()
        try:
            receiver.wait_for(1, timeout=WAIT_S)
            arrived = time.time()
        finally:
            stop.event.set()
            thread.join()
        with cluster.connect() as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM min(end_time)) FROM cron.job_run_details"
                " WHERE status = 'failed'"
            ).fetchone()
        assert row is not None and row[0] is not None
        return arrived - float(row[0])


if __name__ == "__main__":
    print(f"{measure_latency():.2f} s")
