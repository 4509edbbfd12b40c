"""Record the queries a poll sends and check their generic plans.

psycopg prepares a statement server-side after it ran `prepare_threshold`
times (5 by default), and PostgreSQL may then switch to a generic plan that
no longer sees the parameter values. A generic plan of an innocent-looking
query (`runid > $1 OR runid = ANY($2)`, say) can walk the whole table. So
each recorded query is prepared again here and explained under
`plan_cache_mode = force_generic_plan`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from watchdog.source import PgSource

WATCHED_TABLE = "job_run_details"
_PLACEHOLDER = re.compile(r"%s")
_names = itertools.count()


@dataclass(frozen=True)
class SentQuery:
    """One statement a poll sent, with its parameters.

    `settings` are the `SET LOCAL` statements sent just before it, which the
    plan check applies too.
    """

    text: str
    params: tuple[Any, ...] | None
    settings: tuple[str, ...] = ()

    @property
    def reads_run_details(self) -> bool:
        return "cron.job_run_details" in self.text


@dataclass
class PlanCheck:
    """The generic plan of one sent query and what is wrong with it."""

    query: SentQuery
    plan_text: str
    generic: bool
    server_ms: float
    problems: list[str] = field(default_factory=list)


class _RecordingCursor:
    """Pass every call through to a psycopg cursor, noting each `execute`."""

    def __init__(self, cursor: psycopg.Cursor[Any], sent: list[SentQuery]) -> None:
        self._cursor = cursor
        self._sent = sent

    def execute(self, query: Any, params: Any = None) -> Any:
        text = query if isinstance(query, str) else query.as_string(self._cursor)
        self._sent.append(SentQuery(text, tuple(params) if params is not None else None))
        return self._cursor.execute(query, params)

    def stream(self, query: Any, params: Any = None) -> Any:
        text = query if isinstance(query, str) else query.as_string(self._cursor)
        self._sent.append(SentQuery(text, tuple(params) if params is not None else None))
        return self._cursor.stream(query, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class RecordingSource(PgSource):
    """A PgSource that keeps the text and parameters of every statement it sends."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.sent: list[SentQuery] = []

    @contextmanager
    def read_transaction(self) -> Iterator[Any]:
        with super().read_transaction() as cursor:
            yield _RecordingCursor(cursor, self.sent)


def distinct_run_queries(sent: list[SentQuery]) -> list[SentQuery]:
    """Return the first instance of each statement text that reads cron.job_run_details."""
    seen: dict[str, SentQuery] = {}
    settings: list[str] = []
    for query in sent:
        if query.text.startswith("SET LOCAL"):
            settings.append(query.text)
            continue
        if query.reads_run_details and query.text not in seen:
            seen[query.text] = SentQuery(query.text, query.params, tuple(settings))
        settings = []
    return list(seen.values())


def check_generic_plan(conn: psycopg.Connection[Any], query: SentQuery) -> PlanCheck:
    """Prepare the query, run it once under a forced generic plan, and inspect the plan.

    A problem is a sequential scan of cron.job_run_details, an index scan of
    it without an index condition that no LIMIT stops early, a sort over it,
    or any sort that spilled to disk.
    """
    numbers = itertools.count(1)
    server_text = _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", query.text)
    name = f"watchdog_plan_{next(_names)}"
    arguments: sql.Composable = sql.SQL("")
    if query.params:
        arguments = sql.SQL("({})").format(
            sql.SQL(", ").join(sql.Literal(value) for value in query.params)
        )

    with conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        for setting in query.settings:
            conn.execute(setting)
        conn.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(name)) + sql.SQL(server_text))
        try:
            execute = sql.SQL("EXECUTE {}{}").format(sql.Identifier(name), arguments)
            row = conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + execute
            ).fetchone()
            text_rows = conn.execute(
                sql.SQL("EXPLAIN (COSTS OFF) ") + execute
            ).fetchall()
            counts = conn.execute(
                "SELECT generic_plans FROM pg_prepared_statements WHERE name = %s", (name,)
            ).fetchone()
        finally:
            conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))

    assert row is not None and counts is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    plan = document[0]["Plan"]
    check = PlanCheck(
        query=query,
        plan_text="\n".join(line for (line,) in text_rows),
        generic=int(counts[0]) > 0,
        server_ms=float(document[0]["Planning Time"]) + float(document[0]["Execution Time"]),
    )
    check.problems.extend(_plan_problems(plan))
    if not check.generic:
        check.problems.append("PostgreSQL did not use a generic plan")
    return check


def _plan_problems(node: dict[str, Any], limited: bool = False) -> Iterator[str]:
    kind = node.get("Node Type", "")
    on_table = node.get("Relation Name") == WATCHED_TABLE
    if kind == "Seq Scan" and on_table:
        yield f"sequential scan of cron.{WATCHED_TABLE}"
    # Without an index condition an index scan walks the key from one end. That is
    # cheap only when a LIMIT stops it and no filter makes it skip rows.
    unbounded = "Index Cond" not in node and ("Filter" in node or not limited)
    if kind in ("Index Scan", "Index Only Scan") and on_table and unbounded:
        yield f"walk of the whole primary key of cron.{WATCHED_TABLE}"
    if kind in ("Sort", "Incremental Sort"):
        if _touches_watched_table(node):
            yield f"{kind.lower()} over cron.{WATCHED_TABLE}"
        if node.get("Sort Space Type") == "Disk":
            yield f"sort spilled to disk ({node.get('Sort Space Used')} kB)"
    for child in node.get("Plans", []):
        yield from _plan_problems(child, limited or kind == "Limit")


def _touches_watched_table(node: dict[str, Any]) -> bool:
    if node.get("Relation Name") == WATCHED_TABLE:
        return True
    return any(_touches_watched_table(child) for child in node.get("Plans", []))
