"""Durations written as `"90s"`, `"5m"`, `"1h"`, `"1d"` in settings and rules."""

from __future__ import annotations

import re
from datetime import timedelta

DURATION_FORM = 'a number with a unit s, m, h or d, such as "90s", "5m", "1h" or "1d"'

# Ten years: far beyond any window or interval a rule needs, and small enough
# that `now - duration` stays within the years datetime can represent.
MAX_DURATION = timedelta(days=3650)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse a duration string; raise ValueError naming the allowed form."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected {DURATION_FORM}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"invalid duration {text!r}: longer than the maximum of"
            f" {format_duration(MAX_DURATION)} (10 years)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format a duration compactly in the units it was most likely written in."""
    seconds = round(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
