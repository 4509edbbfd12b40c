"""Exceptions: one root, one class per boundary of the poll cycle."""

from __future__ import annotations


class WatchdogError(Exception):
    """Root of every error the watchdog raises on purpose."""


class ConfigError(WatchdogError):
    """Invalid settings or rules file; each problem is a line a user can act on."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SourceError(WatchdogError):
    """The watched database could not be read; the message has the DSN masked."""


class ReconnectPending(SourceError):
    """The poll was skipped because the reconnect backoff has not elapsed yet."""


class VisibilityError(SourceError):
    """No pg_cron job is visible to the connected role, usually because of row-level security."""



class RemediationError(WatchdogError):
    """A job could not be changed or restored; the message names the job and the cause."""
