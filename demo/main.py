"""Run the pg-cron-watchdog demo end to end and check that it alerted as expected.

The demo starts a sandbox PostgreSQL 15 with pg_cron and a local HTTP receiver,
and schedules four jobs with an hour of history. It runs `cron-watchdog once`
and `status`, then lets `cron-watchdog run` watch pg_cron run the jobs for
RUN_SECONDS and stops it with SIGTERM. It ends with a recap and removes the
cluster. The cluster and the receiver listen on 127.0.0.1 only.

scripts/demo runs this file with tests/ on PYTHONPATH, for the sandbox cluster
(tests/pgcluster.py) and the receiver (tests/receivers.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from history import DemoJob, schedule_and_seed
from pgcluster import PgClusterError, PgCronCluster
from receivers import HttpReceiver, RecordedRequest, free_tcp_port

REPO = Path(__file__).resolve().parent.parent
RULES_FILE = REPO / "demo" / "rules.toml"
STATE_DIR = REPO / ".demo"
STATE_FILE = STATE_DIR / "state.sqlite3"

# An event line of `cron-watchdog once`, such as "  FIRING    critical demo-slow: job slow".
FIRING_LINE = re.compile(r"^\s+FIRING\s+\S+\s+(?P<job>.+?): (?P<rule>.+)$")

# Long enough for at least one minute boundary, so pg_cron runs every minutely job once.
RUN_SECONDS = 75
POLL_INTERVAL = "5s"
STOP_TIMEOUT_SECONDS = 30
ONCE_TIMEOUT_SECONDS = 120

_print_lock = threading.Lock()
_started = time.monotonic()


def say(text: str = "", prefix: str = "") -> None:
    """Print lines from several threads without interleaving them."""
    with _print_lock:
        for line in text.splitlines() or [""]:
            print(f"{prefix}{line}", flush=True)


def step(title: str) -> None:
    elapsed = time.monotonic() - _started
    say(f"\n== [{elapsed:5.1f}s] {title}")


def main() -> int:
    # SIGINT too, because a shell starts a background job with SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    cluster = PgCronCluster()
    receiver = HttpReceiver()
    watchdog: list[subprocess.Popen[str]] = []
    try:
        return _demo(cluster, receiver, watchdog)
    except KeyboardInterrupt:
        say("\ninterrupted: stopping the watchdog and removing the sandbox cluster")
        return 130
    except PgClusterError as exc:
        # Ctrl-C during initdb or pg_ctl start makes the clean-up in start() fail too.
        if isinstance(exc.__context__, KeyboardInterrupt):
            say("\ninterrupted while the sandbox cluster was starting")
            return 130
        say(f"\nerror: the sandbox cluster failed: {exc}")
        return 1
    finally:
        _teardown(cluster, receiver, watchdog)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _demo(cluster: PgCronCluster, receiver: HttpReceiver,
          watchdog: list[subprocess.Popen[str]]) -> int:
    step("Starting a sandbox PostgreSQL 15 with pg_cron on 127.0.0.1")
    cluster.start()
    receiver.start()
    with cluster.connect() as conn:
        version = _scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
        say(f"cluster: {cluster.dsn} (data in {cluster.base_dir}), pg_cron {version}")
        say(f"receiver: {receiver.url('/alerts')} prints every notification it gets")

        step("Scheduling the demo jobs and seeding an hour of run history")
        jobs, jobids, last_seeded_runid = schedule_and_seed(conn)
        _print_jobs(conn, jobs)

    STATE_DIR.mkdir(exist_ok=True)
    for stale in STATE_DIR.glob("state.sqlite3*"):
        stale.unlink()
    env = {
        **os.environ,
        "WATCHDOG_DATABASE_URL": cluster.dsn,
        "WATCHDOG_RULES_FILE": str(RULES_FILE),
        "WATCHDOG_STATE_PATH": str(STATE_FILE),
        # /healthz and /metrics of `run`, on a free port instead of the default 9631.
        "WATCHDOG_HTTP_ADDR": f"127.0.0.1:{free_tcp_port()}",
        "DEMO_WEBHOOK_URL": receiver.json_url("/alerts"),
    }
    say("environment of the watchdog:")
    for name in ("WATCHDOG_DATABASE_URL", "WATCHDOG_RULES_FILE", "WATCHDOG_STATE_PATH",
                 "WATCHDOG_HTTP_ADDR", "DEMO_WEBHOOK_URL"):
        say(f"  {name}={env[name]}")

    step("cron-watchdog validate")
    _run_command(["validate"], env)

    step("cron-watchdog once: one poll cycle over the seeded history")
    once = _run_command(["once"], env)
    notifications_printed = _print_notifications(receiver.requests, 0)
    after_once = notifications_printed

    step("cron-watchdog status: one line per job")
    _run_command(["status"], env)

    step(f"cron-watchdog run --poll-interval {POLL_INTERVAL}: pg_cron runs the jobs for"
         f" {RUN_SECONDS}s")
    process = subprocess.Popen(
        [*_watchdog_command(), "run", "--poll-interval", POLL_INTERVAL],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Its own session, so Ctrl-C reaches only this script, which then stops it.
        start_new_session=True,
    )
    watchdog.append(process)
    reader = threading.Thread(target=_relay, args=(process.stdout, "  watchdog | "), daemon=True)
    reader.start()
    names = {jobid: name for name, jobid in jobids.items()}
    notifications_printed = _watch_pg_cron(cluster, receiver, names, last_seeded_runid,
                                           notifications_printed)
    _print_health(env["WATCHDOG_HTTP_ADDR"])

    step("Stopping cron-watchdog run with SIGTERM")
    process.send_signal(signal.SIGTERM)
    run_code = process.wait(timeout=STOP_TIMEOUT_SECONDS)
    reader.join(timeout=5)
    watchdog.clear()
    say(f"cron-watchdog run exited with code {run_code}")

    return _recap(jobs, once, receiver.requests, after_once, run_code)


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _print_jobs(conn: psycopg.Connection[Any], jobs: list[DemoJob]) -> None:
    rows = conn.execute(
        "SELECT j.jobname, count(r.runid), count(r.runid) FILTER (WHERE r.status = 'failed'),"
        " max(r.start_time), avg(r.end_time - r.start_time)"
        " FROM cron.job j LEFT JOIN cron.job_run_details r USING (jobid)"
        " GROUP BY j.jobname"
    ).fetchall()
    stats = {row[0]: row[1:] for row in rows}
    say(f"  {'job':13} {'schedule':13} {'command':19} seeded history")
    for job in jobs:
        count, failed, newest, mean = stats[job.name]
        history = (f"{count} runs, {failed} failed, mean {mean.total_seconds():.3f}s,"
                   f" newest {newest:%H:%M} UTC")
        say(f"  {job.name:13} {job.schedule:13} {job.command:19} {history}")


def _watchdog_command() -> list[str]:
    """Return the command that runs `cron-watchdog` with this script's interpreter.

    `python -m watchdog.cli` is what the `cron-watchdog` console script runs,
    and it cannot pick up another installation earlier on PATH.
    """
    return [sys.executable, "-m", "watchdog.cli"]


EXIT_CODE_MEANINGS = {
    "validate": {0: "the rules file is valid", 2: "the rules file is invalid"},
    "once": {0: "no alert is firing", 1: "at least one alert is firing",
             2: "configuration or connection error"},
    "status": {0: "the jobs were read", 2: "configuration or connection error"},
}


def _run_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    say(f"$ cron-watchdog {' '.join(args)}")
    result = subprocess.run(
        [*_watchdog_command(), *args], env=env, capture_output=True, text=True,
        timeout=ONCE_TIMEOUT_SECONDS, start_new_session=True,
    )
    say(result.stdout.rstrip(), "  ")
    if result.stderr.strip():
        say(result.stderr.rstrip(), "  log: ")
    meaning = EXIT_CODE_MEANINGS[args[0]].get(result.returncode, "unexpected")
    say(f"exit code {result.returncode} ({meaning})")
    return result


def _print_health(address: str) -> None:
    url = f"http://{address}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            say(f"GET {url}: {response.status} {response.read().decode(errors='replace')}")
    except urllib.error.HTTPError as exc:
        say(f"GET {url}: {exc.code} {exc.read().decode(errors='replace')}")
    except OSError as exc:
        say(f"GET {url} failed: {exc}")


def _relay(stream: Iterable[str] | None, prefix: str) -> None:
    if stream is None:
        return
    for line in stream:
        say(line.rstrip("\n"), prefix)


def _print_notifications(requests: list[RecordedRequest], already_printed: int) -> int:
    """Print the requests after the first `already_printed`; return how many are printed now."""
    for request in requests[already_printed:]:
        body = request.json if isinstance(request.json, dict) else {}
        say(f"{request.method} {request.path}, Apprise type {body.get('type', '?')}:",
            "  receiver | ")
        say(str(body.get("title", "")), "  receiver |   ")
        say(str(body.get("message", request.body.decode(errors="replace"))), "  receiver |   ")
    return len(requests)


def _watch_pg_cron(cluster: PgCronCluster, receiver: HttpReceiver, names: dict[int, str],
                   after_runid: int, notifications_printed: int) -> int:
    """Print each run that pg_cron finishes and each notification, for RUN_SECONDS.

    Return how many notifications have been printed in all.
    """
    printed: set[int] = set()
    deadline = time.monotonic() + RUN_SECONDS
    with cluster.connect() as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT runid, jobid, status, return_message, start_time, end_time"
                " FROM cron.job_run_details WHERE runid > %s"
                " AND status IN ('succeeded', 'failed') ORDER BY runid",
                (after_runid,),
            ).fetchall()
            for runid, jobid, status, message, start, end in rows:
                if runid in printed:
                    continue
                printed.add(runid)
                seconds = (end - start).total_seconds()
                detail = (message or "").strip().splitlines()[0] if message else "-"
                say(f"runid {runid} {names.get(jobid, jobid)} started {start:%H:%M:%S}"
                    f" {status} in {seconds:.3f}s: {detail}", "  pg_cron  | ")
            notifications_printed = _print_notifications(receiver.requests, notifications_printed)
            time.sleep(1)
    if not printed:
        say("no run finished: pg_cron did not run the jobs, see the server log", "  pg_cron  | ")
    return notifications_printed


def _recap(jobs: list[DemoJob], once: subprocess.CompletedProcess[str],
           requests: list[RecordedRequest], after_once: int, run_code: int) -> int:
    """Print which alerts fired per job; return 0 when they are the expected ones.

    The alerts come from the event lines of `cron-watchdog once`, and each one
    must also be named in a notification that reached the receiver.
    """
    step("Recap")
    fired: dict[str, list[str]] = {}
    for line in once.stdout.splitlines():
        match = FIRING_LINE.match(line)
        if match:
            fired.setdefault(match["job"], []).append(match["rule"])
    notified = "\n".join(_notification_text(request) for request in requests)

    problems: list[str] = []
    for job in jobs:
        rules = fired.get(job.name, [])
        mentioned = job.name in notified
        if rules:
            delivery = "notified" if mentioned else "NOT in any notification"
            say(f"  {job.name}: fired {', '.join(repr(rule) for rule in rules)} ({delivery})")
        else:
            say(f"  {job.name}: no alert" + (", but named in a notification" if mentioned else ""))
        if job.expected_rule is None and (rules or mentioned):
            problems.append(f"{job.name} is healthy but got an alert")
        if job.expected_rule is not None and (job.expected_rule not in rules or not mentioned):
            problems.append(f"{job.name} got no notified {job.expected_rule!r} alert")
    if once.returncode != 1:
        problems.append(f"cron-watchdog once exited with {once.returncode}, expected 1")
    if run_code != 0:
        problems.append(f"cron-watchdog run exited with {run_code} after SIGTERM, expected 0")

    during_run = len(requests) - after_once
    say(f"  notifications received: {after_once} from `once`, {during_run} from `run`")
    if during_run == 0:
        say("  `run` repeated none of them: the state file already had those alerts as firing")
    say(f"  state file (cursor, runs, alerts, outbox): {STATE_FILE}")
    if problems:
        for problem in problems:
            say(f"  UNEXPECTED: {problem}")
        return 1
    say("  as expected: alerts for the failing, slow and stopped jobs, none for demo-healthy")
    return 0


def _notification_text(request: RecordedRequest) -> str:
    body = request.json if isinstance(request.json, dict) else {}
    return f"{body.get('title', '')}\n{body.get('message', '')}"


def _teardown(cluster: PgCronCluster, receiver: HttpReceiver,
              watchdog: list[subprocess.Popen[str]]) -> None:
    # A second Ctrl-C must not stop the clean-up halfway and leave the cluster running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for process in watchdog:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
    receiver.stop()
    step("Removing the sandbox cluster")
    cluster.stop()
    say(f"done in {time.monotonic() - _started:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
