"""The runs of one target, kept between poll cycles in a compact form.

A day of runs of a large fleet takes hundreds of megabytes as Python objects,
and rules that walk them each cycle cost seconds of CPU. Most runs succeed,
and the rules need three numbers from a succeeded run: when it started, its
runid and how long it took. So each job keeps its succeeded runs as columns of
integers in start order, with running totals of their durations, and keeps
every other run (failed, in flight, without timestamps) as a Run. Counting a
window or taking its mean costs two binary searches.

Succeeded durations also go into hourly buckets per job. Those hold long
baselines (days) after the columns have been trimmed to the longest window.

All times in the columns are microseconds since the Unix epoch, and durations
are microseconds, so sums are exact integers and do not depend on the order
in which runs arrived.
"""

from __future__ import annotations

import functools
import json
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from watchdog.models import Run, format_time, parse_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
HOUR_US = 3_600_000_000
# Hourly buckets span at most this many hours per job. A hand-edited row far in the
# past or future would otherwise grow the bucket array by millions of entries.
MAX_BUCKET_HOURS = 24 * 400

FORMAT_VERSION = 1

# pg_cron rewrites `starting` and `running` rows when it starts again, but never these.
NEVER_FINISHED_AFTER_RESTART = frozenset({"connecting", "sending"})


# Windows of one cycle share their bounds, so most conversions repeat.
@functools.lru_cache(maxsize=1024)
def micros(moment: datetime) -> int:
    """Return a datetime as microseconds since the Unix epoch."""
    return (moment - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def columnar(run: Run) -> bool:
    """Tell whether a run is kept in the columns: succeeded, with both timestamps."""
    return run.status == "succeeded" and run.start_time is not None and run.end_time is not None


@dataclass(frozen=True)
class Bucket:
    """Succeeded runs of one job in one hour, summed, as read from the database at start-up."""

    jobid: int
    hour: int  # hours since the Unix epoch
    runs: int
    total_us: int


class JobRuns:
    """One job's runs: succeeded ones as columns, the rest as Run objects, and hourly sums."""

    __slots__ = (
        "_by_start",
        "_next_held",
        "_others_sorted",
        "base_total",
        "cut_off",
        "dirty",
        "durations",
        "hour_base",
        "hour_runs",
        "hour_totals",
        "newest",
        "next_dropped",
        "others",
        "runids",
        "starts",
        "totals",
        "version",
    )

    def __init__(self) -> None:
        self.starts = array("q")
        self.runids = array("q")
        self.durations = array("q")
        # totals[i] = base_total + durations[0] + ... + durations[i]
        self.totals = array("q")
        self.base_total = 0
        self.others: dict[int, Run] = {}
        self._others_sorted: list[Run] | None = None
        # The others in placement order, with their placement times, for window lookups.
        self._by_start: tuple[list[datetime], list[Run]] | None = None
        # runid -> (runid, placement) of the next run, found by a scan of the columns. A
        # run appended with a higher runid than all others cannot change a next run found
        # earlier, and neither can a trim.
        self._next_held: dict[int, tuple[int, datetime]] = {}
        self.newest: Run | None = None
        self.hour_base = 0
        self.hour_runs = array("q")
        self.hour_totals = array("q")
        # The last trim's cut-off in microseconds: runs that started before it are gone.
        self.cut_off: int | None = None
        # For a run in flight, the lowest newer runid of a run no longer held (trimmed,
        # or summarized at start-up), whose start time is gone but before the cut-off.
        self.next_dropped: dict[int, int] = {}
        # True when the job changed since it was last saved.
        self.dirty = True
        # Raised by every change, so a verdict computed on an unchanged job can be reused.
        self.version = 0

    def __len__(self) -> int:
        return len(self.starts) + len(self.others)

    # --- Writing

    def add(self, run: Run) -> Run:
        """Add a new run or replace a re-read one; return the run as stored.

        A re-read run keeps the `seen_at` of its first sight.
        """
        if known_column(self, run):
            return run
        if self.newest is not None and run.runid <= self.newest.runid:
            self._next_held.clear()
        self.touch()
        known = self.others.pop(run.runid, None)
        if known is not None:
            self.reset_order()
            if known.seen_at != run.seen_at:
                run = replace(run, seen_at=known.seen_at)
        if self.newest is None or run.runid >= self.newest.runid:
            if self.newest is not None and self.newest.runid == run.runid:
                run = replace(run, seen_at=self.newest.seen_at)
            self.newest = run
        if columnar(run):
            assert run.start_time is not None and run.end_time is not None
            start = micros(run.start_time)
            duration = (run.end_time - run.start_time) // MICROSECOND
            self._insert_column(start, run.runid, duration)
            self.add_bucket(start // HOUR_US, 1, duration)
        else:
            self.others[run.runid] = run
            self.reset_order()
        return run

    def note_newest(self, run: Run) -> None:
        """Record the newest run of the job when it lies outside the columns' window."""
        self.touch()
        if run.runid not in self.others:
            self._note_dropped([run.runid])
        if self.newest is None or run.runid > self.newest.runid:
            self.newest = run

    def _insert_column(self, start: int, runid: int, duration: int) -> None:
        if not self.starts or start >= self.starts[-1]:
            previous = self.totals[-1] if self.totals else self.base_total
            self.starts.append(start)
            self.runids.append(runid)
            self.durations.append(duration)
            self.totals.append(previous + duration)
            return
        index = bisect_right(self.starts, start)
        self.starts.insert(index, start)
        self.runids.insert(index, runid)
        self.durations.insert(index, duration)
        self.totals.insert(index, 0)
        running = self.totals[index - 1] if index else self.base_total
        for position in range(index, len(self.totals)):
            running += self.durations[position]
            self.totals[position] = running

    def add_bucket(self, hour: int, runs: int, total_us: int) -> None:
        """Add succeeded runs to an hour's bucket."""
        self.touch()
        if not self.hour_runs:
            self.hour_base = hour
        elif hour < self.hour_base:
            if self.hour_base + len(self.hour_runs) - hour > MAX_BUCKET_HOURS:
                return
            padding = array("q", bytes(8 * (self.hour_base - hour)))
            self.hour_runs[0:0] = padding
            self.hour_totals[0:0] = padding
            self.hour_base = hour
        index = hour - self.hour_base
        # NOTE: a hand-edited row dated far in the future evicts every real hour here, and
        # the job's baseline stays empty until the history is read again.
        if index >= MAX_BUCKET_HOURS:
            # Drop the oldest hours so the new one is the last of MAX_BUCKET_HOURS.
            # When that drops every hour held, the base still moves to the new span.
            self._drop_hours(index - MAX_BUCKET_HOURS + 1)
            if not self.hour_runs:
                self.hour_base = hour - MAX_BUCKET_HOURS + 1
            index = hour - self.hour_base
        if index >= len(self.hour_runs):
            padding = array("q", bytes(8 * (index + 1 - len(self.hour_runs))))
            self.hour_runs.extend(padding)
            self.hour_totals.extend(padding)
        self.hour_runs[index] += runs
        self.hour_totals[index] += total_us

    def _drop_hours(self, count: int) -> None:
        count = min(count, len(self.hour_runs))
        del self.hour_runs[:count]
        del self.hour_totals[:count]
        self.hour_base += count

    def trim(self, columns_before: int, buckets_before: int,
             server_started: int | None = None) -> int:
        """Drop runs that started before `columns_before` and buckets of hours before the
        one holding `buckets_before`; return the runs dropped.

        A run still in flight is dropped only once it was abandoned before
        `columns_before`, so before every window: a newer run superseded it then, and
        the server (started at `server_started`) did not restart after it began.
        pg_cron will not finish such a run and no verdict counts it. The others are
        re-read every poll.
        """
        self.cut_off = columns_before
        cut = bisect_left(self.starts, columns_before)
        if cut:
            self._note_dropped(self.runids[:cut])
            self.base_total = self.totals[cut - 1]
            for column in (self.starts, self.runids, self.durations, self.totals):
                del column[:cut]
        # Compared as datetimes, so the trim does not flood the cache of `micros`.
        cut_moment = from_micros(columns_before)
        stale = [
            runid for runid, run in self.others.items()
            if run.started < cut_moment and (
                run.finished or self._abandoned_before(run, columns_before, server_started))
        ]
        for runid in stale:
            del self.others[runid]
        if stale:
            self._note_dropped(stale)
            self.reset_order()
        self.next_dropped = {
            runid: newer for runid, newer in self.next_dropped.items() if runid in self.others
        }
        first_hour = buckets_before // HOUR_US
        if self.hour_runs and first_hour > self.hour_base:
            self._drop_hours(first_hour - self.hour_base)
            self.touch()
        if cut or stale:
            # A remembered next run stays right: a dropped run that was newer than a run
            # in flight and older than its remembered next run would have been that run.
            self.touch()
        return cut + len(stale)

    def forget(self, runid: int) -> bool:
        """Drop a purged run kept as an object; return whether this job kept it."""
        if self.others.pop(runid, None) is None:
            return False
        self.reset_order()
        self.touch()
        # The purged run may be some run's remembered next run.
        self._next_held.clear()
        if self.newest is not None and self.newest.runid == runid:
            self.newest = self.newest_held(self.newest.jobid)
        return True

    def _abandoned_before(self, run: Run, moment: int, server_started: int | None) -> bool:
        """Tell whether a run in flight was abandoned at or before `moment` (microseconds)."""
        if not run.in_flight:
            return False
        if (server_started is not None and server_started > moment
                and run.start_time is not None and micros(run.start_time) < server_started):
            # The restart abandoned it after `moment`, inside a window.
            return False
        newer = self.next_start_after(run.runid)
        return newer is not None and micros(newer) <= moment

    def _note_dropped(self, runids: Iterable[int]) -> None:
        """Remember, for each run in flight, the lowest of `runids` above its own."""
        waiting = [run.runid for run in self.others.values() if run.in_flight]
        if not waiting:
            return
        dropped = sorted(runids)
        for runid in waiting:
            index = bisect_right(dropped, runid)
            if index < len(dropped):
                known = self.next_dropped.get(runid)
                newer = dropped[index]
                self.next_dropped[runid] = newer if known is None else min(known, newer)

    def touch(self) -> None:
        """Note a change: the job must be saved again and its cached verdicts recomputed."""
        self.dirty = True
        self.version += 1

    def reset_order(self) -> None:
        self._others_sorted = None
        self._by_start = None

    # --- Reading

    def other_runs(self) -> list[Run]:
        """Return the runs kept as objects (failed, in flight, ...), in runid order."""
        if self._others_sorted is None:
            self._others_sorted = sorted(self.others.values(), key=lambda run: run.runid)
        return self._others_sorted

    def others_in(self, start: datetime, end: datetime) -> list[Run]:
        """Return the non-column runs placed (by start, else first sight) in [start, end],
        in placement order."""
        if not self.others:
            return []
        keys, ordered = self._placement()
        return ordered[bisect_left(keys, start):bisect_right(keys, end)]

    def _placement(self) -> tuple[list[datetime], list[Run]]:
        """Return the others sorted by placement time, and those times."""
        if self._by_start is None:
            ordered = sorted(self.others.values(), key=lambda run: (run.started, run.runid))
            self._by_start = ([run.started for run in ordered], ordered)
        return self._by_start

    def window_changes_at(self, start: datetime, end: datetime, length: timedelta) -> int:
        """Return when, in microseconds, the runs in the window [start, end] can next change
        without a new run being added, as `end` moves on with `start = end - length`.

        That is when the earliest run in it leaves, or when a run placed after `end`
        enters; sys.maxsize when neither can happen.
        """
        step = length // MICROSECOND + 1
        moments = []
        lo, hi = self.span(start, end)
        if lo < hi:
            moments.append(self.starts[lo] + step)
        if hi < len(self.starts):
            moments.append(self.starts[hi])
        if self.others:
            keys = self._placement()[0]
            first = bisect_left(keys, start)
            later = bisect_right(keys, end)
            if first < later:
                moments.append(micros(keys[first]) + step)
            if later < len(keys):
                moments.append(micros(keys[later]))
        return min(moments, default=sys.maxsize)

    def span(self, start: datetime, end: datetime) -> tuple[int, int]:
        """Return the column slice [lo, hi) of succeeded runs that started in [start, end]."""
        return bisect_left(self.starts, micros(start)), bisect_right(self.starts, micros(end))

    def total_us(self, lo: int, hi: int) -> int:
        """Return the summed duration of columns [lo, hi)."""
        if hi <= lo:
            return 0
        before = self.totals[lo - 1] if lo else self.base_total
        return self.totals[hi - 1] - before

    def ranked(self, lo: int, hi: int, count: int, slowest: bool = True) -> list[tuple[int, float]]:
        """Return (runid, seconds) of the `count` slowest (or fastest) runs in columns [lo, hi).

        Ties go to the run that started first.
        """
        order = sorted(
            range(lo, hi),
            key=lambda i: (-self.durations[i] if slowest else self.durations[i], i),
        )[:count]
        return [(self.runids[i], self.durations[i] / 1e6) for i in order]

    def bucket_sums(self, first_hour: int, end_hour: int) -> tuple[int, int]:
        """Return (runs, total microseconds) of hours in [first_hour, end_hour)."""
        lo = max(first_hour - self.hour_base, 0)
        hi = min(end_hour - self.hour_base, len(self.hour_runs))
        if hi <= lo:
            return 0, 0
        return sum(self.hour_runs[lo:hi]), sum(self.hour_totals[lo:hi])

    def latest_start(self) -> datetime | None:
        """Return the latest placement time of any held run."""
        latest = self.starts[-1] if self.starts else None
        moment = from_micros(latest) if latest is not None else None
        if self.others:
            last_other = self._placement()[0][-1]
            if moment is None or last_other > moment:
                moment = last_other
        if self.newest is not None and (moment is None or self.newest.started > moment):
            moment = self.newest.started
        return moment

    def next_start_after(self, runid: int) -> datetime | None:
        """Return when the job's next run after `runid` started, or None when it has none.

        When the next run is no longer held, it started before the last trim's
        cut-off, which is returned instead: a moment before every window.
        """
        best = self._next_held.get(runid)
        if best is None:
            best = self._find_next_held(runid)
            if best is not None:
                self._next_held[runid] = best
        dropped = self.next_dropped.get(runid)
        if dropped is not None and self.cut_off is not None and (
                best is None or dropped < best[0]):
            return from_micros(self.cut_off)
        return best[1] if best is not None else None

    def newest_held(self, jobid: int) -> Run | None:
        """Return the kept run with the highest runid, or None when the job keeps none.

        A succeeded run from the columns is rebuilt without its return_message,
        which the columns do not keep.
        """
        best = max(self.others.values(), key=lambda run: run.runid, default=None)
        if not self.runids:
            return best
        position = max(range(len(self.runids)), key=self.runids.__getitem__)
        if best is not None and best.runid > self.runids[position]:
            return best
        start = from_micros(self.starts[position])
        return Run(runid=self.runids[position], jobid=jobid, status="succeeded",
                   return_message=None, start_time=start,
                   end_time=start + timedelta(microseconds=self.durations[position]),
                   seen_at=start)

    def _find_next_held(self, runid: int) -> tuple[int, datetime] | None:
        best: tuple[int, datetime] | None = None
        for other in self.others.values():
            if other.runid > runid and (best is None or other.runid < best[0]):
                best = (other.runid, other.started)
        if self.newest is not None and self.newest.runid > runid:
            for position, candidate in enumerate(self.runids):
                if candidate > runid and (best is None or candidate < best[0]):
                    best = (candidate, from_micros(self.starts[position]))
        return best

    def succeeded_intervals(self) -> Iterator[tuple[int, int, int]]:
        """Yield (runid, start, end) in microseconds of every succeeded run in the columns."""
        for runid, start, duration in zip(self.runids, self.starts, self.durations, strict=True):
            yield runid, start, start + duration

    # --- Saving and loading

    def to_record(self) -> bytes:
        """Serialize to a JSON line followed by the raw bytes of the columns."""
        header = json.dumps({
            "base_total": self.base_total, "columns": len(self.starts),
            "cut_off": self.cut_off, "next_dropped": list(self.next_dropped.items()),
            "hour_base": self.hour_base, "hours": len(self.hour_runs),
            "newest": _run_to_list(self.newest) if self.newest else None,
            "others": [_run_to_list(run) for run in self.others.values()],
        }, separators=(",", ":")).encode()
        return b"".join([header, b"\n", *self._columns()])

    def _columns(self) -> tuple[array[int], ...]:
        return (self.starts, self.runids, self.durations, self.totals, self.hour_runs,
                self.hour_totals)

    @classmethod
    def from_record(cls, record: bytes) -> JobRuns:
        line_end = record.index(b"\n")
        fields = json.loads(record[:line_end])
        job = cls()
        job.base_total = fields["base_total"]
        job.cut_off = fields["cut_off"]
        job.next_dropped = dict(fields["next_dropped"])
        job.hour_base = fields["hour_base"]
        sizes = [fields["columns"]] * 4 + [fields["hours"]] * 2
        view = memoryview(record)
        offset = line_end + 1
        for column, size in zip(job._columns(), sizes, strict=True):
            column.frombytes(view[offset:offset + 8 * size])
            offset += 8 * size
        if offset != len(record):
            raise ValueError("saved run history of a job is truncated or has trailing bytes")
        job.newest = _run_from_list(fields["newest"]) if fields["newest"] else None
        job.others = {run.runid: run for run in map(_run_from_list, fields["others"])}
        job.dirty = False
        return job


def known_column(job: JobRuns, run: Run) -> bool:
    """Tell whether a succeeded run is already in the columns.

    Only a run at or below the newest runid can be; runids are in start order,
    not runid order, so the check is a scan. The cursor normally prevents it.
    """
    return (
        job.newest is not None and run.runid <= job.newest.runid and run.runid not in job.others
        and columnar(run) and run.runid in job.runids
    )


_EMPTY = JobRuns()


class RunHistory:
    """Every job's runs of one target, plus the cursor: the highest runid read."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobRuns] = {}
        self.cursor: int | None = None
        # How far back runs are held one by one, and as hourly sums, since the last trim.
        self.runs_span = timedelta(0)
        self.sums_span = timedelta(0)
        # runid -> jobid of the runs whose status was not final when last read.
        self._open: dict[int, int] = {}
        self.changed = False
        # Verdicts from earlier cycles, reused while nothing they depend on changed.
        # evaluate._reuse_or_evaluate reads and replaces them.
        self.verdicts: dict[tuple[str, int], Any] = {}

    @classmethod
    def from_runs(cls, runs: Iterable[Run]) -> RunHistory:
        history = cls()
        history.upsert(runs)
        return history

    def __len__(self) -> int:
        return sum(len(job) for job in self.jobs.values())

    def job(self, jobid: int) -> JobRuns:
        """Return the runs of a job; an empty record for a job with none."""
        return self.jobs.get(jobid, _EMPTY)

    def _held(self, jobid: int) -> JobRuns:
        """Return the runs of a job, adding an empty record the first time."""
        job = self.jobs.get(jobid)
        if job is None:
            job = self.jobs[jobid] = JobRuns()
        return job

    def upsert(self, runs: Iterable[Run]) -> None:
        for run in runs:
            self.changed = True
            self._held(run.jobid).add(run)
            if run.in_flight or not run.finished:
                self._open[run.runid] = run.jobid
            else:
                self._open.pop(run.runid, None)

    def add_bucket(self, bucket: Bucket) -> None:
        self.changed = True
        self._held(bucket.jobid).add_bucket(bucket.hour, bucket.runs, bucket.total_us)

    def note_newest(self, runs: Iterable[Run]) -> None:
        for run in runs:
            self.changed = True
            self._held(run.jobid).note_newest(run)

    def open_runids(self, server_started: datetime | None = None) -> list[int]:
        """Return the runids of runs whose status was not final when last read.

        Runs left `connecting` or `sending` from before the server's last start
        (`server_started`) are left out: pg_cron never finishes them.
        """
        result = []
        for runid, jobid in self._open.items():
            run = self.jobs[jobid].others.get(runid) if jobid in self.jobs else None
            if (server_started is not None and run is not None
                    and run.status in NEVER_FINISHED_AFTER_RESTART
                    and run.start_time is not None and run.start_time < server_started):
                continue
            result.append(runid)
        return sorted(result)

    def forget(self, runids: Iterable[int]) -> None:
        """Drop runs that vanished from the database (purged) from the runs kept as objects.

        A job whose newest run is dropped gets the newest run it still keeps instead.
        """
        for runid in runids:
            self._open.pop(runid, None)
            for job in self.jobs.values():
                if job.forget(runid):
                    self.changed = True
                    break

    def trim(self, columns_before: datetime, buckets_before: datetime,
             server_started: datetime | None = None) -> int:
        """Drop runs and buckets older than the windows need; return runs dropped.

        `server_started` is pg_postmaster_start_time(): runs in flight from before it
        were abandoned then, which a verdict may still report.
        """
        dropped = 0
        columns_us, buckets_us = micros(columns_before), micros(buckets_before)
        started_us = micros(server_started) if server_started is not None else None
        for job in self.jobs.values():
            dropped += job.trim(columns_us, buckets_us, started_us)
        if dropped:
            self.changed = True
            self._open = {
                runid: jobid for runid, jobid in self._open.items()
                if jobid in self.jobs and runid in self.jobs[jobid].others
            }
        return dropped

    # --- Saving and loading

    def header(self) -> str:
        """Return the history's own fields as JSON; each job is saved apart by `changed_jobs`."""
        return json.dumps({"version": FORMAT_VERSION, "byteorder": sys.byteorder,
                           "cursor": self.cursor, "open": sorted(self._open.items()),
                           "runs_span": self.runs_span.total_seconds(),
                           "sums_span": self.sums_span.total_seconds()})

    def changed_jobs(self) -> Iterator[tuple[int, bytes]]:
        """Yield (jobid, record) of every job changed since the last call."""
        for jobid, job in self.jobs.items():
            if job.dirty:
                job.dirty = False
                yield jobid, job.to_record()

    def mark_unsaved(self) -> None:
        """Mark every job as changed, after a save that failed part-way."""
        self.changed = True
        for job in self.jobs.values():
            job.dirty = True

    @classmethod
    def from_records(cls, header: str, jobs: Iterable[tuple[int, bytes]]) -> RunHistory:
        """Rebuild a saved history; raise ValueError on a format this version cannot read."""
        fields = json.loads(header)
        if not isinstance(fields, dict):
            raise ValueError(f"saved run history header is {type(fields).__name__}, not an object")
        if fields.get("version") != FORMAT_VERSION or fields.get("byteorder") != sys.byteorder:
            raise ValueError(f"saved run history has format {fields.get('version')!r}"
                             f" ({fields.get('byteorder')}), expected {FORMAT_VERSION}")
        history = cls()
        history.cursor = fields["cursor"]
        history._open = {runid: jobid for runid, jobid in fields["open"]}
        history.runs_span = timedelta(seconds=fields["runs_span"])
        history.sums_span = timedelta(seconds=fields["sums_span"])
        for jobid, record in jobs:
            history.jobs[jobid] = JobRuns.from_record(record)
        return history


def _run_to_list(run: Run) -> list[Any]:
    return [run.runid, run.jobid, run.status, run.return_message, format_time(run.start_time),
            format_time(run.end_time), run.seen_at.isoformat()]


def _run_from_list(values: list[Any]) -> Run:
    runid, jobid, status, message, start, end, seen = values
    return Run(runid=runid, jobid=jobid, status=status, return_message=message,
               start_time=parse_time(start), end_time=parse_time(end),
               seen_at=datetime.fromisoformat(seen))


