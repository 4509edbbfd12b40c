"""The runs of one target's window, kept in memory between poll cycles.

Reading the whole window back from SQLite each cycle costs seconds once it
contains a day of runs of a large fleet (12 s for 1.44 million runs on a
2-core machine, measured by benchmarks/store.py), so the state store loads
it once and then keeps this copy in step with every write. SQLite stays the
durable record, which `cron-watchdog once` reads in a fresh process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from watchdog.models import Run

# A trim scans every run, so it is repeated only once its cut-off has moved this
# far. Runs it leaves behind a little longer are outside every window anyway.
TRIM_STEP = timedelta(minutes=5)


class RunWindow:
    """Runs keyed by runid, iterated in runid order."""

    def __init__(self, runs: Iterable[Run] = ()) -> None:
        self._runs: dict[int, Run] = {}
        # True while the dict's insertion order is also runid order.
        self._ordered = True
        self._open: set[int] = set()
        self._trimmed_before: datetime | None = None
        self.upsert(runs)

    def __len__(self) -> int:
        return len(self._runs)

    def upsert(self, runs: Iterable[Run]) -> None:
        """Add new runs and replace re-read ones, keeping the first `seen_at` of each."""
        for run in runs:
            if run.finished:
                self._open.discard(run.runid)
            else:
                self._open.add(run.runid)
            known = self._runs.get(run.runid)
            if known is not None:
                self._runs[run.runid] = replace(run, seen_at=known.seen_at)
                continue
            if self._runs and self._ordered and run.runid < next(reversed(self._runs)):
                self._ordered = False
            self._runs[run.runid] = run

    def runs(self) -> list[Run]:
        if not self._ordered:
            self._runs = dict(sorted(self._runs.items()))
            self._ordered = True
        return list(self._runs.values())

    def open_runids(self) -> list[int]:
        return sorted(self._open)

    def trim(self, before: datetime) -> list[int]:
        """Drop finished runs that started before `before` and return their runids.

        Returns nothing without scanning when the previous scan's cut-off is
        less than TRIM_STEP older than `before`.
        """
        last = self._trimmed_before
        if last is not None and last <= before < last + TRIM_STEP:
            return []
        self._trimmed_before = before
        dropped = [
            run.runid for run in self._runs.values() if run.finished and run.started < before
        ]
        for runid in dropped:
            del self._runs[runid]
        return dropped

