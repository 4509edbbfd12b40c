"""The compact run history: columns, running totals, hourly sums, saving and loading."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from factories import NOW, run
from hypothesis import given
from hypothesis import strategies as st

from watchdog.history import HOUR_US, RunHistory, micros
from watchdog.state import StateStore

TARGET = "127.0.0.1:5432/postgres"


def _mean(history: RunHistory, jobid: int, start: timedelta, end: timedelta) -> float:
    runs = history.job(jobid)
    lo, hi = runs.span(NOW - start, NOW - end)
    return runs.total_us(lo, hi) / (hi - lo) / 1e6


def test_succeeded_runs_become_columns_and_others_stay_objects() -> None:
    history = RunHistory.from_runs([
        run(1, ago=timedelta(minutes=3), duration=1.5),
        run(2, status="failed", ago=timedelta(minutes=2), message="ERROR:  boom"),
        run(3, status="running", ago=timedelta(minutes=1), duration=None),
    ])
    job = history.job(1)

    assert list(job.runids) == [1]
    assert list(job.durations) == [1_500_000]
    assert [item.runid for item in job.other_runs()] == [2, 3]
    assert job.newest is not None and job.newest.runid == 3
    assert history.open_runids() == [3]
    assert len(history) == 3


def test_out_of_order_start_stays_sorted() -> None:
    history = RunHistory.from_runs([
        run(1, ago=timedelta(minutes=10), duration=1.0),
        run(2, ago=timedelta(minutes=5), duration=3.0),
        run(3, ago=timedelta(minutes=7), duration=2.0),
    ])
    job = history.job(1)

    assert list(job.runids) == [1, 3, 2]
    assert list(job.totals) == [1_000_000, 3_000_000, 6_000_000]
    assert _mean(history, 1, timedelta(minutes=8), timedelta(0)) == 2.5


def test_trim_keeps_window_sums_exact() -> None:
    runs = [run(i, ago=timedelta(minutes=60 - i), duration=float(i)) for i in range(1, 60)]
    history = RunHistory.from_runs(runs)
    before = _mean(history, 1, timedelta(minutes=20), timedelta(0))

    dropped = history.trim(NOW - timedelta(minutes=30), NOW - timedelta(days=1))

    assert dropped == 29
    assert history.job(1).runids[0] == 30
    assert _mean(history, 1, timedelta(minutes=20), timedelta(0)) == before == 49.5


def test_trim_keeps_old_runs_still_in_flight() -> None:
    history = RunHistory.from_runs([
        run(1, ago=timedelta(hours=3)),
        run(2, status="failed", ago=timedelta(hours=3)),
        run(3, status="running", ago=timedelta(hours=3), duration=None),
    ])

    history.trim(NOW - timedelta(hours=1), NOW - timedelta(days=1))

    assert [item.runid for item in history.job(1).other_runs()] == [3]
    assert list(history.job(1).runids) == []
    assert history.open_runids() == [3]


def test_trim_drops_run_abandoned_before_every_window() -> None:
    history = RunHistory.from_runs([
        run(1, status="running", ago=timedelta(hours=3), duration=None),
        run(2, ago=timedelta(hours=2)),
        run(3, ago=timedelta(minutes=5)),
    ])

    history.trim(NOW - timedelta(hours=1), NOW - timedelta(days=1))

    assert history.job(1).others == {}
    assert history.open_runids() == []


def test_trim_keeps_run_abandoned_by_a_recent_restart() -> None:
    history = RunHistory.from_runs([
        run(1, status="connecting", ago=timedelta(hours=3), duration=None),
        run(2, ago=timedelta(hours=2)),
    ])

    history.trim(NOW - timedelta(hours=1), NOW - timedelta(days=1),
                 server_started=NOW - timedelta(minutes=30))

    assert list(history.job(1).others) == [1]


def test_reread_run_moves_to_columns() -> None:
    started = run(1, status="running", duration=None)
    history = RunHistory.from_runs([started])
    history.upsert([replace(run(1, status="succeeded"), seen_at=NOW)])

    job = history.job(1)
    assert list(job.runids) == [1]
    assert job.others == {}
    assert job.newest is not None and job.newest.seen_at == started.seen_at
    assert history.open_runids() == []


def test_succeeded_run_read_twice_counts_once() -> None:
    history = RunHistory.from_runs([run(1), run(2)])
    history.upsert([run(1)])

    assert list(history.job(1).runids) == [1, 2]


def test_hourly_sums_outlive_trimmed_columns() -> None:
    runs = [run(i, ago=timedelta(hours=i), duration=2.0) for i in range(1, 30)]
    history = RunHistory.from_runs(runs)
    history.trim(NOW - timedelta(hours=2), NOW - timedelta(days=2))

    job = history.job(1)
    first = micros(NOW - timedelta(hours=30)) // HOUR_US
    end = micros(NOW) // HOUR_US + 1
    # The run exactly two hours old sits on the cut-off and is kept.
    assert list(job.runids) == [2, 1]
    assert job.bucket_sums(first, end) == (29, 58_000_000)


def test_forget_drops_a_purged_run_in_flight() -> None:
    history = RunHistory.from_runs([run(1, status="running", duration=None)])
    history.forget({1})

    assert history.job(1).others == {}
    assert history.open_runids() == []


def test_history_survives_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = StateStore(path)
    history = first.history(TARGET)
    history.upsert([run(1, duration=1.25), run(2, status="running", duration=None),
                    run(3, jobid=7, status="failed", message="ERROR:  boom")])
    history.cursor = 3
    first.close()

    second = StateStore(path)
    loaded = second.history(TARGET)
    assert loaded.cursor == 3
    assert list(loaded.job(1).durations) == [1_250_000]
    assert loaded.open_runids() == [2]
    assert loaded.job(7).other_runs()[0].return_message == "ERROR:  boom"
    assert loaded.job(1).newest == history.job(1).newest


def test_unreadable_saved_history_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = StateStore(path)
    store.history(TARGET).upsert([run(1)])
    store.close()
    store = StateStore(path)
    store._db.execute("UPDATE run_history SET header = ?", ('{"version": 99}',))
    store._histories.clear()

    assert len(store.history(TARGET)) == 0
    assert store.history(TARGET).cursor is None


finished_runs = st.lists(
    st.tuples(st.integers(0, 3 * 24 * 60), st.integers(0, 10_000_000),
              st.sampled_from(["succeeded", "failed"])),
    max_size=60,
)


@given(finished_runs, st.integers(0, 3 * 24 * 60), st.integers(1, 3 * 24 * 60))
def test_saved_window_sums_match_plain_sums(
    specs: list[tuple[int, int, str]], end_minutes: int, length: int
) -> None:
    runs = [
        run(runid, ago=timedelta(minutes=minutes), duration=micro / 1e6, status=status)
        for runid, (minutes, micro, status) in enumerate(specs, start=1)
    ]
    history = RunHistory.from_runs(runs)
    loaded = RunHistory.from_records(history.header(), history.changed_jobs())
    end = NOW - timedelta(minutes=end_minutes)
    start = end - timedelta(minutes=length)

    expected = [
        item for item in runs if item.status == "succeeded" and start <= item.started <= end
    ]
    for copy in (history, loaded):
        job = copy.job(1)
        lo, hi = job.span(start, end)
        assert hi - lo == len(expected)
        assert job.total_us(lo, hi) == sum(
            (item.end_time - item.start_time) // timedelta(microseconds=1)  # type: ignore[operator]
            for item in expected)


def test_restart_leftovers_are_not_reread() -> None:
    history = RunHistory.from_runs([
        run(1, status="connecting", ago=timedelta(hours=2), duration=None),
        run(2, status="running", ago=timedelta(hours=2), duration=None),
        run(3, status="connecting", ago=timedelta(minutes=1), duration=None),
    ])

    assert history.open_runids() == [1, 2, 3]
    # pg_cron rewrites run 2 after the restart; it never finishes run 1.
    assert history.open_runids(NOW - timedelta(minutes=30)) == [2, 3]


def test_next_run_survives_its_trim() -> None:
    stuck = run(1, status="connecting", ago=timedelta(hours=3), duration=None)
    history = RunHistory.from_runs([stuck, run(2, ago=timedelta(minutes=150)),
                                    run(3, ago=timedelta(minutes=5))])
    job = history.job(1)
    assert job.next_start_after(1) == NOW - timedelta(minutes=150)

    # The cut-off lies between the two runs, so run 2 goes and run 1 stays: a server
    # restart 20 minutes ago marks run 1 abandoned inside the window.
    history.trim(NOW - timedelta(minutes=140), NOW - timedelta(days=1),
                 server_started=NOW - timedelta(minutes=20))

    assert list(job.runids) == [3]
    assert job.next_start_after(1) == NOW - timedelta(minutes=150)
