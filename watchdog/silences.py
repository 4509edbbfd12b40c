"""Muting: silences from the CLI and maintenance windows from the rules file.

A muted alert is still evaluated and still changes state; only its messages
are held back. The lifecycle calls `Muting.reason` before it stores a message.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime

from watchdog.maintenance import MaintenanceWindow, in_maintenance
from watchdog.state import Silence


@dataclass(frozen=True)
class Muting:
    """The silences and maintenance windows in force for one cycle."""

    now: datetime
    silences: tuple[Silence, ...] = ()
    windows: tuple[MaintenanceWindow, ...] = ()

    def reason(self, rule: str, jobname: str | None, job_label: str) -> str | None:
        """Return why the alert is muted now (for the log), or None when it is not."""
        for silence in self.silences:
            if silence.ends_at > self.now and silence_matches(silence, rule, job_label):
                return f"silence {silence.id} ({silence.reason})"
        window = in_maintenance(self.windows, jobname, self.now)
        if window is not None:
            return f"maintenance window {window.name!r}"
        return None


def silence_matches(silence: Silence, rule: str, job_label: str) -> bool:
    """Tell whether a silence selects the alert of `rule` on the job shown as `job_label`."""
    if silence.rule is not None and silence.rule != rule:
        return False
    return silence.job is None or fnmatch.fnmatchcase(job_label, silence.job)
