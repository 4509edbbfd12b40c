"""The watchdog's own state in SQLite: run history and cursor, alerts, outbox.

Every record is keyed by target (the watched database) as well as by rule and
job, so one file can later serve several databases. The schema carries a
version number and is migrated forward on open.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchdog.errors import ConfigError
from watchdog.history import RunHistory
from watchdog.models import Job, format_time, parse_time

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5

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

# Version 2: the alert lifecycle (pending, keep_firing_for, reminders, late
# announcement after a silence), silences, and the alert ids of outbox messages.
# An alert that was firing under version 1 has been announced when it fired.
_SCHEMA_V2 = """
ALTER TABLE alerts ADD COLUMN fired_at TEXT;
ALTER TABLE alerts ADD COLUMN cleared_at TEXT;
ALTER TABLE alerts ADD COLUMN last_sent TEXT;
ALTER TABLE alerts ADD COLUMN announced INTEGER NOT NULL DEFAULT 1;
UPDATE alerts SET fired_at = since, last_sent = since WHERE state = 'firing';
CREATE TABLE silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, rule TEXT, job TEXT,
    created_at TEXT NOT NULL, ends_at TEXT NOT NULL, reason TEXT NOT NULL
);
ALTER TABLE outbox ADD COLUMN alert_ids TEXT NOT NULL DEFAULT ''
"""

# The remediation log: one row per action, dry-run decision, skip or revert.
# `before_def` and `after_def` are the job's full definition as JSON, so an
# unscheduled job can be re-created from its row. `reverted_by` points at the
# row that undid (or declined to undo) this one.
_SCHEMA_V3_REMEDIATION = """
CREATE TABLE actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, at TEXT NOT NULL,
    rule TEXT, jobid INTEGER NOT NULL, job_label TEXT NOT NULL, action TEXT NOT NULL,
    mode TEXT NOT NULL, outcome TEXT NOT NULL, statement TEXT NOT NULL,
    before_def TEXT, after_def TEXT, error TEXT, reverts INTEGER, reverted_by INTEGER
);
CREATE INDEX actions_by_job ON actions (target, jobid);
CREATE TABLE remediation_cap (target TEXT PRIMARY KEY, since TEXT NOT NULL);
"""

# The definition each job had when first seen, kept after it is unscheduled, for job_drift.
_SCHEMA_V4_JOB_DEFINITIONS = """
CREATE TABLE job_definitions (
    target TEXT NOT NULL, jobid INTEGER NOT NULL, jobname TEXT, schedule TEXT NOT NULL,
    command TEXT NOT NULL, database TEXT NOT NULL, username TEXT NOT NULL,
    active INTEGER NOT NULL, first_seen TEXT NOT NULL,
    PRIMARY KEY (target, jobid)
);
"""

# Version 5: each job's runs are saved as one compact record (see history.py), which
# loads in milliseconds where a row per run took seconds. The first poll after
# the upgrade reads the window again from the database.
_SCHEMA_V5_RUN_HISTORY = """
CREATE TABLE run_history (target TEXT PRIMARY KEY, saved_at TEXT NOT NULL, header TEXT NOT NULL);
CREATE TABLE run_history_jobs (
    target TEXT NOT NULL, jobid INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (target, jobid)
);
DROP TABLE runs;
DROP TABLE cursor
"""

# Each entry upgrades the schema from its index to the next version.
_MIGRATIONS: list[str] = [
    _SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3_REMEDIATION, _SCHEMA_V4_JOB_DEFINITIONS,
    _SCHEMA_V5_RUN_HISTORY,
]

# A changed run history is saved at most this often while polling, and always on close.
# After a crash, the next start reads again the runs added since the last save.
HISTORY_SAVE_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class AlertRecord:
    """The stored state of one alert."""

    rule: str
    jobid: int
    state: str
    since: datetime
    value: float | None
    verdict: dict[str, object]
    # When the alert last started firing; None unless the state is firing.
    fired_at: datetime | None = None
    # When a firing alert's condition cleared, while keep_firing_for keeps it firing.
    cleared_at: datetime | None = None
    # When the last firing message or reminder was stored for sending.
    last_sent: datetime | None = None
    # False while a firing alert has not been announced, because a silence or
    # a maintenance window muted it.
    announced: bool = True


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts of one rule (None: any) on jobs matching a glob (None: any)."""

    id: int
    rule: str | None
    job: str | None
    created_at: datetime
    ends_at: datetime
    reason: str


@dataclass(frozen=True)
class ActionRecord:
    """One row of the remediation log."""

    id: int
    target: str
    at: datetime
    rule: str | None
    jobid: int
    job_label: str
    action: str
    mode: str
    outcome: str
    statement: str
    before: Job | None
    after: Job | None
    error: str | None = None
    reverts: int | None = None
    reverted_by: int | None = None


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
    # The alerts of the message as "rule/jobid", comma-separated.
    alert_ids: str = ""
    last_error: str | None = None


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
        # NOTE: the histories assume this store is the only process polling its targets.
        # Another process polling the same target into the same file would not be seen.
        self._histories: dict[str, RunHistory] = {}
        self._saved_at: dict[str, datetime] = {}
        try:
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(
                [f"state file {path}: not a readable watchdog state database ({exc}). The file"
                 " was left unchanged. Restore it from a backup, or move it away to start"
                 " with empty state: alerts that are firing now will then be announced again"]
            ) from exc

    @classmethod
    def open_existing(cls, path: Path) -> StateStore:
        """Open a state file that must exist already, for commands that only read it.

        A mistyped WATCHDOG_STATE_PATH would otherwise create an empty store and
        report that nothing is stored.
        """
        if str(path) != ":memory:" and not path.is_file():
            raise ConfigError([f"state file {path} does not exist; set WATCHDOG_STATE_PATH or"
                               " --state-path to the file that `cron-watchdog run` writes"])
        return cls(path)

    def backup_job(self, job: Job) -> Path | None:
        """Append a job's full definition to `<state file>.unscheduled.jsonl` and flush it.

        Return the file, or None for an in-memory store. The file sits beside the
        state file, which stores the same definitions, so it needs the same care.
        """
        if str(self.path) == ":memory:":
            return None
        backup = Path(f"{self.path}.unscheduled.jsonl")
        line = json.dumps({"saved_at": datetime.now(UTC).isoformat(), **dataclasses.asdict(job)})
        with backup.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())
        return backup

    def close(self) -> None:
        """Save every changed run history, then close the file."""
        try:
            for target in list(self._histories):
                self.save_history(target, datetime.now(UTC), force=True)
        finally:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so a crash mid-cycle leaves the previous consistent state."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
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
                 f" watchdog supports ({SCHEMA_VERSION}). The file was left unchanged:"
                 " upgrade pg-cron-watchdog, or point WATCHDOG_STATE_PATH at another file"]
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

    # Settings of the watchdog itself, as key-value pairs in the meta table

    def meta_value(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row["value"]) if row else None

    def set_meta_value(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def delete_meta_value(self, key: str) -> None:
        self._db.execute("DELETE FROM meta WHERE key=?", (key,))

    # Run history

    def history(self, target: str) -> RunHistory:
        """Return the target's run history, loading the saved one on first use.

        A saved history this version cannot read is logged and replaced by an
        empty one, which the next poll fills from the database.
        """
        history = self._histories.get(target)
        if history is not None:
            return history
        row = self._db.execute(
            "SELECT header FROM run_history WHERE target=?", (target,)
        ).fetchone()
        history = RunHistory()
        if row is not None:
            jobs = self._db.execute(
                "SELECT jobid, data FROM run_history_jobs WHERE target=?", (target,))
            try:
                history = RunHistory.from_records(row["header"], jobs)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("saved run history of %s is unreadable (%s); reading the window"
                            " again from the database", target, exc)
        self._histories[target] = history
        return history

    def reset_history(self, target: str) -> RunHistory:
        """Forget the runs and cursor of a target, keeping alerts and first-seen times."""
        self._db.execute("DELETE FROM run_history WHERE target=?", (target,))
        self._db.execute("DELETE FROM run_history_jobs WHERE target=?", (target,))
        history = self._histories[target] = RunHistory()
        return history

    def save_history(self, target: str, now: datetime, force: bool = False) -> bool:
        """Save the target's history if it changed and the last save is old enough.

        Return whether it was written.
        """
        history = self._histories.get(target)
        if history is None or not history.changed:
            return False
        last = self._saved_at.get(target)
        if not force and last is not None and now - last < HISTORY_SAVE_INTERVAL:
            return False
        try:
            self._write_history(target, history, now)
        except BaseException:
            history.mark_unsaved()
            raise
        history.changed = False
        self._saved_at[target] = now
        return True

    def _write_history(self, target: str, history: RunHistory, now: datetime) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO run_history (target, saved_at, header) VALUES (?, ?, ?)"
                " ON CONFLICT (target) DO UPDATE SET saved_at=excluded.saved_at,"
                " header=excluded.header",
                (target, now.isoformat(), history.header()),
            )
            # One job at a time, so no copy of the whole history is ever held as bytes.
            for jobid, record in history.changed_jobs():
                self._db.execute(
                    "INSERT INTO run_history_jobs (target, jobid, data) VALUES (?, ?, ?)"
                    " ON CONFLICT (target, jobid) DO UPDATE SET data=excluded.data",
                    (target, jobid, record),
                )

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

    def note_job_definitions(self, target: str, jobs: Iterable[Job], now: datetime) -> None:
        """Store the definition of each job not seen before; a known job keeps its first one."""
        self._db.executemany(
            "INSERT OR IGNORE INTO job_definitions (target, jobid, jobname, schedule, command,"
            " database, username, active, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (target, job.jobid, job.jobname, job.schedule, job.command, job.database,
                 job.username, int(job.active), now.isoformat())
                for job in jobs
            ],
        )

    def job_definitions(self, target: str) -> dict[int, Job]:
        """Return the first-seen definition of every job, including unscheduled ones."""
        rows = self._db.execute("SELECT * FROM job_definitions WHERE target=?", (target,))
        return {
            row["jobid"]: Job(
                jobid=row["jobid"], jobname=row["jobname"], schedule=row["schedule"],
                command=row["command"], database=row["database"], username=row["username"],
                active=bool(row["active"]),
            )
            for row in rows
        }

    def forget_job_definition(self, target: str, jobid: int) -> None:
        """Drop a job's stored definition, so its current one becomes the expected one."""
        self._db.execute(
            "DELETE FROM job_definitions WHERE target=? AND jobid=?", (target, jobid)
        )

    # Alerts

    def alerts(self, target: str) -> dict[tuple[str, int], AlertRecord]:
        rows = self._db.execute("SELECT * FROM alerts WHERE target=?", (target,)).fetchall()
        return {
            (row["rule"], row["jobid"]): AlertRecord(
                rule=row["rule"], jobid=row["jobid"], state=row["state"],
                since=datetime.fromisoformat(row["since"]), value=row["value"],
                verdict=json.loads(row["verdict"]), fired_at=parse_time(row["fired_at"]),
                cleared_at=parse_time(row["cleared_at"]),
                last_sent=parse_time(row["last_sent"]), announced=bool(row["announced"]),
            )
            for row in rows
        }

    def save_alert(self, target: str, record: AlertRecord) -> None:
        self._db.execute(
            "INSERT INTO alerts (target, rule, jobid, state, since, value, verdict, fired_at,"
            " cleared_at, last_sent, announced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (target, rule, jobid) DO UPDATE SET"
            " state=excluded.state, since=excluded.since, value=excluded.value,"
            " verdict=excluded.verdict, fired_at=excluded.fired_at,"
            " cleared_at=excluded.cleared_at, last_sent=excluded.last_sent,"
            " announced=excluded.announced",
            (target, record.rule, record.jobid, record.state, record.since.isoformat(),
             record.value, json.dumps(record.verdict), format_time(record.fired_at),
             format_time(record.cleared_at), format_time(record.last_sent), int(record.announced)),
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

    # Silences

    def add_silence(
        self, target: str, rule: str | None, job: str | None, now: datetime, ends_at: datetime,
        reason: str,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO silences (target, rule, job, created_at, ends_at, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (target, rule, job, now.isoformat(), ends_at.isoformat(), reason),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def silences(self, target: str, active_at: datetime | None = None) -> list[Silence]:
        """Return the target's silences, only those not ended at `active_at` when given."""
        rows = self._db.execute(
            "SELECT * FROM silences WHERE target=? ORDER BY id", (target,)
        ).fetchall()
        silences = [
            Silence(
                id=row["id"], rule=row["rule"], job=row["job"],
                created_at=datetime.fromisoformat(row["created_at"]),
                ends_at=datetime.fromisoformat(row["ends_at"]), reason=row["reason"],
            )
            for row in rows
        ]
        if active_at is None:
            return silences
        return [silence for silence in silences if silence.ends_at > active_at]

    def end_silence(self, target: str, silence_id: int, now: datetime) -> bool:
        """End an active silence at `now`, keeping it for `silence list --all`.

        Returns False when the target has no active silence with that id.
        """
        cursor = self._db.execute(
            "UPDATE silences SET ends_at=? WHERE target=? AND id=? AND ends_at>?",
            (now.isoformat(), target, silence_id, now.isoformat()),
        )
        return cursor.rowcount > 0

    # Outbox

    def enqueue(
        self, target: str, channel: str, url_key: str, notify_type: str, title: str, body: str,
        now: datetime, alert_ids: str = "",
    ) -> None:
        self._db.execute(
            "INSERT INTO outbox (target, channel, url_key, notify_type, title, body, created_at,"
            " next_attempt, alert_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (target, channel, url_key, notify_type, title, body, now.isoformat(),
             now.isoformat(), alert_ids),
        )

    def due_notifications(self, target: str, now: datetime) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE target=? AND next_attempt<=? ORDER BY id",
            (target, now.isoformat()),
        ).fetchall()
        return self._outbox_entries(rows)

    def notifications(self, target: str) -> list[OutboxEntry]:
        """Return every stored message of the target, due or not."""
        rows = self._db.execute(
            "SELECT * FROM outbox WHERE target=? ORDER BY id", (target,)
        ).fetchall()
        return self._outbox_entries(rows)

    def _outbox_entries(self, rows: list[sqlite3.Row]) -> list[OutboxEntry]:
        return [
            OutboxEntry(
                id=row["id"], channel=row["channel"], url_key=row["url_key"],
                notify_type=row["notify_type"], title=row["title"], body=row["body"],
                created_at=datetime.fromisoformat(row["created_at"]), attempts=row["attempts"],
                alert_ids=row["alert_ids"], last_error=row["last_error"],
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

    # Remediation log

    def record_action(self, record: ActionRecord) -> int:
        """Store an action; the record's id is ignored and the new id returned."""
        cursor = self._db.execute(
            "INSERT INTO actions (target, at, rule, jobid, job_label, action, mode, outcome,"
            " statement, before_def, after_def, error, reverts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.target, record.at.isoformat(), record.rule, record.jobid, record.job_label,
             record.action, record.mode, record.outcome, record.statement,
             _job_json(record.before), _job_json(record.after), record.error, record.reverts),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def mark_reverted(self, action_id: int, by_id: int) -> None:
        self._db.execute("UPDATE actions SET reverted_by=? WHERE id=?", (by_id, action_id))

    def actions(self, target: str | None = None, limit: int = 50) -> list[ActionRecord]:
        """Return stored actions, newest first, of one target or of all."""
        where = "WHERE target=?" if target is not None else ""
        params: tuple[object, ...] = (target,) if target is not None else ()
        rows = self._db.execute(
            f"SELECT * FROM actions {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [_action(row) for row in rows]

    def action(self, action_id: int) -> ActionRecord | None:
        row = self._db.execute("SELECT * FROM actions WHERE id=?", (action_id,)).fetchone()
        return _action(row) if row else None

    def open_action(
        self, target: str, jobid: int, rule: str | None = None
    ) -> ActionRecord | None:
        """Return the newest action on the job that changed it (or would have) and is not undone.

        With `rule`, only that rule's actions count: a revert on resolve undoes
        what its own rule did. Without it, any rule's action or a restore does.
        """
        query = (
            "SELECT * FROM actions WHERE target=? AND jobid=? AND reverts IS NULL"
            " AND reverted_by IS NULL AND outcome IN ('done', 'dry_run')"
        )
        params: list[object] = [target, jobid]
        if rule is not None:
            query += " AND rule=?"
            params.append(rule)
        row = self._db.execute(query + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return _action(row) if row else None

    def count_actions(self, target: str, since: datetime, outcome: str) -> int:
        """Count decisions with the outcome since a time, reverts excluded."""
        row = self._db.execute(
            "SELECT count(*) AS n FROM actions WHERE target=? AND at>=? AND outcome=?"
            " AND reverts IS NULL",
            (target, since.isoformat(), outcome),
        ).fetchone()
        return int(row["n"])

    def cancel_times(self, target: str) -> dict[int, datetime]:
        """Return when the watchdog last paused or unscheduled each job, by jobid."""
        rows = self._db.execute(
            "SELECT jobid, max(at) AS at FROM actions WHERE target=? AND outcome='done'"
            " AND action IN ('pause', 'unschedule') GROUP BY jobid",
            (target,),
        ).fetchall()
        return {int(row["jobid"]): datetime.fromisoformat(row["at"]) for row in rows}

    def own_changes(self, target: str) -> frozenset[tuple[int, str]]:
        """Return the (jobid, field) changes made by remediation and not reverted yet.

        job_drift leaves these alone: a job the watchdog paused is not drift.
        """
        fields = {"pause": ("active",), "reschedule": ("schedule",), "unschedule": ("exists",)}
        rows = self._db.execute(
            "SELECT jobid, action FROM actions WHERE target=? AND outcome='done'"
            " AND reverted_by IS NULL",
            (target,),
        ).fetchall()
        return frozenset(
            (int(row["jobid"]), field) for row in rows for field in fields.get(row["action"], ())
        )

    def cap_since(self, target: str) -> datetime | None:
        row = self._db.execute(
            "SELECT since FROM remediation_cap WHERE target=?", (target,)
        ).fetchone()
        return datetime.fromisoformat(row["since"]) if row else None

    def set_cap(self, target: str, since: datetime | None) -> None:
        """Store that the action cap was reached at `since`, or clear it with None."""
        if since is None:
            self._db.execute("DELETE FROM remediation_cap WHERE target=?", (target,))
            return
        self._db.execute(
            "INSERT OR REPLACE INTO remediation_cap (target, since) VALUES (?, ?)",
            (target, since.isoformat()),
        )


def _job_json(job: Job | None) -> str | None:
    return json.dumps(dataclasses.asdict(job)) if job is not None else None


def _job_from_json(text: str | None) -> Job | None:
    return Job(**json.loads(text)) if text else None


def _action(row: sqlite3.Row) -> ActionRecord:
    return ActionRecord(
        id=row["id"], target=row["target"], at=datetime.fromisoformat(row["at"]),
        rule=row["rule"], jobid=row["jobid"], job_label=row["job_label"],
        action=row["action"], mode=row["mode"], outcome=row["outcome"],
        statement=row["statement"], before=_job_from_json(row["before_def"]),
        after=_job_from_json(row["after_def"]), error=row["error"], reverts=row["reverts"],
        reverted_by=row["reverted_by"],
    )
