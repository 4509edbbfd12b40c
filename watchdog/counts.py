"""English counts for CLI output and logs: "1 rule", "2 rules"."""

from __future__ import annotations


def count(number: int, noun: str, plural: str | None = None) -> str:
    """Return the number with the noun in singular or plural; the plural defaults to noun + "s"."""
    if number == 1:
        return f"{number} {noun}"
    return f"{number} {plural or noun + 's'}"
