"""Rule kinds beyond failure_ratio, missing_run and slow_average, by concern.

`JOB_EVALUATORS` judge one job at a time, like the first three kinds.
`SNAPSHOT_EVALUATORS` judge the whole snapshot at once. They are job_drift,
which also judges jobs since unscheduled, and the scheduler-wide kinds, whose
alerts use SCHEDULER_JOBID.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from watchdog.kinds.drift import job_drift
from watchdog.kinds.jobs import (
    consecutive_failures,
    duration_regression,
    error_match,
    stuck_run,
)
from watchdog.kinds.scheduler import (
    adjust_missing_runs,
    concurrency_saturated,
    http_failures,
    infrastructure_outcomes,
    run_history_size,
    scheduler_down,
)
from watchdog.models import Snapshot, Verdict
from watchdog.rules import Rule

SnapshotEvaluator = Callable[[Rule, Snapshot, datetime], list[Verdict]]

JOB_EVALUATORS = {
    "consecutive_failures": consecutive_failures,
    "stuck_run": stuck_run,
    "error_match": error_match,
    "duration_regression": duration_regression,
}
SNAPSHOT_EVALUATORS: dict[str, SnapshotEvaluator] = {
    "job_drift": job_drift,
    "infrastructure_failures": infrastructure_outcomes,
    "scheduler_down": scheduler_down,
    "concurrency_saturated": concurrency_saturated,
    "run_history_size": run_history_size,
    "http_failures": http_failures,
}

__all__ = ["JOB_EVALUATORS", "SNAPSHOT_EVALUATORS", "SnapshotEvaluator", "adjust_missing_runs"]
