"""The watchdog's own state in SQLite: cursor, runs in the window, alerts, outbox.

Every record is keyed by target (the watched database) as well as by rule and
job, so one file can later serve several databases. The schema carries a
version number and is migrated forward on open.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from watchdog.errors import ConfigError
from watchdog.models import Run
from watchdog.runcache import RunWindow

SCHEMA_VERSION = 1

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cursor (target TEXT PRIMARY KEY, last_runid INTEGER NOT NULL);
CREATE TABLE runs (
    target TEXT NOT NULL, runid INTEGER NOT NULL, jobid INTEGER NOT NULL,
    status TEXT NOT NULL, return_message TEXT, start_time TEXT, end_time TEXT,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (target, runid)
);
CREATE TABLE jobs_seen (
    target TEXT NOT NULL, jobid INTEGER NOT NULL, first_seen TEXT NOT NULL, last_start TEXT,
    PRIMARY KEY (target, jobid)
);
CREATE TABLE alerts (
    target TEXT NOT NULL, rule TEXT NOT NULL, jobid INTEGER NOT NULL,
    state TEXT NOT NULL, since TEXT NOT NULL, value REAL, verdict TEXT NOT NULL,
    PRIMARY KEY (target, rule, jobid)
);
CREATE TABLE transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, rule TEXT NOT NULL,
    jobid INTEGER NOT NULL, at TEXT NOT NULL, old_state TEXT NOT NULL,
    new_state TEXT NOT NULL, value REAL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, channel TEXT NOT NULL,
    url_key TEXT NOT NULL, notify_type TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
    created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt TEXT NOT NULL,
    last_error TEXT
);
"""

# Each entry upgrades the schema from its index to the next version.
_MIGRATIONS: list[str] = [_SCHEMA_V1]


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


@dataclass(frozen=True)
class AlertRecord:
    """The stored state of one alert."""

    rule: str
    jobid: int
    state: str
    since: datetime
    value: float | None
    verdict: dict[str, object]


@dataclass(frozen=True)
class OutboxEntry:
    """A notification waiting for delivery to one channel URL."""

    id: int
    channel: str
    url_key: str
    notify_type: str
    title: str
    body: str
    created_at: datetime
    attempts: int


class StateStore:
    """SQLite-backed state. One connection, used from the worker thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                [f"state file {path}: cannot open it ({exc}); set WATCHDOG_STATE_PATH"
                 " to a writable location"]
            ) from exc
        self._db.row_factory = sqlite3.Row
        # NOTE: the copies assume this store is the only writer of its targets' runs.
        # Another process polling the same target into the same file would not be seen.
        self._windows: dict[str, RunWindow] = {}
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so a crash mid-cycle leaves the previous consistent state."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            # The in-memory run windows may hold writes that were just rolled back.
            self._windows.clear()
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        version = 0
        if has_meta:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row["value"]) if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(
                [f"state file {self.path}: schema version {version} is newer than this"
                 f" watchdog supports ({SCHEMA_VERSION}); upgrade pg-cron-watchdog"]
            )
        for target_version in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in _MIGRATIONS[target_version].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(target_version + 1),),
                )

    # Cursor and runs

    def cursor(self, target: str) -> int | None:
        row = self._db.execute("SELECT last_runid FROM cursor WHERE target=?", (target,)).fetchone()
        return int(row["last_runid"]) if row else None

    def set_cursor(self, target: str, runid: int) -> None:
        self._db.execute(
            "INSERT INTO cursor (target, last_runid) VALUES (?, ?)"
            " ON CONFLICT (target) DO UPDATE SET last_runid=excluded.last_runid",
            (target, runid),
        )

    def reset_target(self, target: str) -> None:
        """Forget the cursor and runs of a target, keeping alerts and first-seen times."""
        self._db.execute("DELETE FROM cursor WHERE target=?", (target,))
        self._db.execute("DELETE FROM runs WHERE target=?", (target,))
        self._windows[target] = RunWindow()

    def upsert_runs(self, target: str, runs: Iterable[Run]) -> None:
        """Store runs; a re-read run keeps the time it was first seen."""
        runs = list(runs)
        self._window(target).upsert(runs)
        self._db.executemany(
            "INSERT INTO runs (target, runid, jobid, status, return_message, start_time,"
            " end_time, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (target, runid) DO UPDATE SET status=excluded.status,"
            " return_message=excluded.return_message, start_time=excluded.start_time,"
            " end_time=excluded.end_time",
            [
                (target, run.runid, run.jobid, run.status, run.return_message,
                 _time(run.start_time), _time(run.end_time), _time(run.seen_at))
                for run in runs
            ],
        )

    def runs(self, target: str) -> list[Run]:
        """Return the stored runs of a target in runid order."""
        return self._window(target).runs()

    def _window(self, target: str) -> RunWindow:
        """Return the in-memory copy of a target's runs, loading it on first use."""
        window = self._windows.get(target)
        if window is None:
            window = RunWindow(self._load_runs(target))
            self._windows[target] = window
        return window

    def _load_runs(self, target: str) -> list[Run]:
        rows = self._db.execute(
            "SELECT * FROM runs WHERE target=? ORDER BY runid", (target,)
        ).fetchall()
        # Runs read in one poll share their seen_at, so each distinct value is parsed once.
        seen: dict[str, datetime] = {}
        runs = []
        for row in rows:
            seen_at = seen.get(row["seen_at"])
            if seen_at is None:
                seen_at = seen[row["seen_at"]] = datetime.fromisoformat(row["seen_at"])
            runs.append(Run(
                runid=row["runid"], jobid=row["jobid"], status=row["status"],
                return_message=row["return_message"],
                start_time=_parse_time(row["start_time"]), end_time=_parse_time(row["end_time"]),
                seen_at=seen_at,
            ))
        return runs

    def open_runids(self, target: str) -> list[int]:
        """Return runs stored with a status that is not final yet."""
        return self._window(target).open_runids()

    def trim_runs(self, target: str, before: datetime) -> int:
        """Drop finished runs that started before the horizon; return how many."""
        dropped = self._window(target).trim(before)
        # Deleting by key touches only the dropped rows; a filter on start time would
        # scan the whole table, which has no index on it.
        self._db.executemany(
            "DELETE FROM runs WHERE target=? AND runid=?", [(target, runid) for runid in dropped]
        )
        return len(dropped)

    # Jobs

    def note_jobs(self, target: str, jobids: Iterable[int], now: datetime) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO jobs_seen (target, jobid, first_seen) VALUES (?, ?, ?)",
            [(target, jobid, now.isoformat()) for jobid in jobids],
        )

    def note_last_starts(self, target: str, starts: dict[int, datetime]) -> None:
        for jobid, started in starts.items():
            self._db.execute(
                "UPDATE jobs_seen SET last_start=? WHERE target=? AND jobid=?"
                " AND (last_start IS NULL OR last_start < ?)",
                (started.isoformat(), target, jobid, started.isoformat()),
            )

    def jobs_seen(self, target: str) -> tuple[dict[int, datetime], dict[int, datetime]]:
        """Return (first_seen, last_start) per jobid."""
        first_seen: dict[int, datetime] = {}
        last_start: dict[int, datetime] = {}
        for row in self._db.execute("SELECT * FROM jobs_seen WHERE target=?", (target,)):
            first_seen[row["jobid"]] = datetime.fromisoformat(row["first_seen"])
            if row["last_start"]:
                last_start[row["jobid"]] = datetime.fromisoformat(row["last_start"])
        return first_seen, last_start

    # Alerts

    def alerts(self, target: str) -> dict[tuple[str, int], AlertRecord]:
        rows = self._db.execute("SELECT * FROM alerts WHERE target=?", (target,)).fetchall()
        return {
            (row["rule"], row["jobid"]): AlertRecord(
                rule=row["rule"], jobid=row["jobid"], state=row["state"],
                since=datetime.fromisoformat(row["since"]), value=row["value"],
                verdict=json.loads(row["verdict"]),
            )
            for row in rows
        }

    def save_alert(self, target: str, record: AlertRecord) -> None:
        self._db.execute(
            "INSERT INTO alerts (target, rule, jobid, state, since, value, verdict)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (target, rule, jobid) DO UPDATE SET"
            " state=excluded.state, since=excluded.since, value=excluded.value,"
            " verdict=excluded.verdict",
            (target, record.rule, record.jobid, record.state, record.since.isoformat(),
             record.value, json.dumps(record.verdict)),
        )

    def delete_alert(self, target: str, rule: str, jobid: int) -> None:
        self._db.execute(
            "DELETE FROM alerts WHERE target=? AND rule=? AND jobid=?", (target, rule, jobid)
        )

    def record_transition(
        self, target: str, rule: str, jobid: int, at: datetime, old: str, new: str,
        value: float | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO transitions (target, rule, jobid, at, old_state, new_state, value)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (target, rule, jobid, at.isoformat(), old, new, value),
        )

    def transitions(self, target: str) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT * FROM transitions WHERE target=? ORDER BY id", (target,)
        ).fetchall()

    # Outbox

    def enqueue(
        self, target: str, channel: str, url_key: str, notify_type: str, title: str, body: str,
        now: datetime,
    ) -> None:
        self._db.execute(
            "INSERT INTO outbox (target, channel, url_key, notify_type, title, body, created_at,"
            " next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (target, channel, url_key, notify_type, title, body, now.isoformat(),
             now.isoformat()),
        )

    def due_notifications(self, target: str, now: datetime) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE target=? AND next_attempt<=? ORDER BY id",
            (target, now.isoformat()),
        ).fetchall()
        return [
            OutboxEntry(
                id=row["id"], channel=row["channel"], url_key=row["url_key"],
                notify_type=row["notify_type"], title=row["title"], body=row["body"],
                created_at=datetime.fromisoformat(row["created_at"]), attempts=row["attempts"],
            )
            for row in rows
        ]

    def pending_count(self, target: str) -> int:
        row = self._db.execute("SELECT count(*) AS n FROM outbox WHERE target=?", (target,))
        return int(row.fetchone()["n"])

    def delivered(self, entry_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id=?", (entry_id,))

    def delivery_failed(self, entry_id: int, error: str, next_attempt: datetime) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts=attempts+1, last_error=?, next_attempt=? WHERE id=?",
            (error, next_attempt.isoformat(), entry_id),
        )
