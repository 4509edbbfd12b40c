"""pg_cron's own reading of a 5-field schedule, so the watchdog accepts what it accepts.

pg_cron parses schedules with Paul Vixie's cron parser (pg_cron's
src/entry.c), which differs from cronsim in ways that matter here:
- after each field's list it skips the rest of the token, so `*-5` is `*`
  and `1#2` is `1`, and anything after the fifth field is ignored;
- a step needs a range or `*` before it (`1/5` is rejected), and a step
  of any size above zero is allowed (`*/61` is `0`);
- a reversed range such as `5-1` is accepted and selects nothing;
- names (`jan`, `mon`) are case-insensitive, `L` and `?` are rejected.
The functions here reproduce those rules; the result for a corpus of
tricky strings is compared with the real `cron.schedule` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
               "dec")
# Vixie's list ends with a second "sun", so 7 is Sunday as well as 0.
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")

# (name, lowest value, highest value, names that count from the lowest value)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTH_NAMES),
    ("day of week", 0, 7, DAY_NAMES),
)
_BLANKS = " \t"
# The end of the text reads as a line end, which ends a field but is not a blank.
_END = "\n"


class CronSyntaxError(ValueError):
    """A schedule pg_cron's parser rejects; the message names the field."""


@dataclass(frozen=True)
class Field:
    """One parsed field: the part of its token pg_cron read, and the values it selects.

    `exact` is False when the field has a reversed range such as `5-1`, whose
    values pg_cron's bit-string code sets in a way not reproduced here.
    """

    token: str
    values: frozenset[int]
    exact: bool = True


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text + _END
        self.position = 0

    def peek(self) -> str:
        """Return the current character, or "" at the end."""
        return self.text[self.position] if self.position < len(self.text) else ""

    def advance(self) -> str:
        self.position += 1
        return self.peek()


def parse_fields(text: str) -> list[Field]:
    """Parse the five fields as pg_cron does; raise CronSyntaxError naming the bad field."""
    reader = _Reader(text.lstrip(_BLANKS + "\n"))
    fields = []
    for name, low, high, names in _FIELDS:
        start = reader.position
        values, exact = _read_list(reader, name, low, high, names)
        token = reader.text[start:reader.position]
        _skip_rest_of_token(reader)
        fields.append(Field(token, frozenset(values), exact))
    return fields


def _skip_rest_of_token(reader: _Reader) -> None:
    char = reader.peek()
    while char and char not in _BLANKS and char != _END:
        char = reader.advance()
    while char and char in _BLANKS:
        char = reader.advance()


def _read_list(reader: _Reader, name: str, low: int, high: int,
               names: tuple[str, ...]) -> tuple[set[int], bool]:
    values: set[int] = set()
    exact = True
    while True:
        selected, first, last = _read_range(reader, name, low, high, names)
        values |= selected
        exact = exact and first <= last
        if reader.peek() != ",":
            return values, exact
        reader.advance()


def _read_range(reader: _Reader, name: str, low: int, high: int,
                names: tuple[str, ...]) -> tuple[set[int], int, int]:
    """Read `*`, `N`, `N-M`, each with an optional `/STEP`; return the values and bounds."""
    if reader.peek() == "*":
        first, last = low, high
        reader.advance()
    else:
        first = _read_number(reader, name, low, names)
        if reader.peek() == "/":
            raise CronSyntaxError(f"{name} field: a step needs a range or * before it,"
                                  " such as */5 or 0-30/5")
        if reader.peek() != "-":
            _check_bounds(name, low, high, first, first)
            return {first}, first, first
        reader.advance()
        last = _read_number(reader, name, low, names)

    step = 1
    if reader.peek() == "/":
        reader.advance()
        step = _read_number(reader, name, 0, ())
        if step <= 0:
            raise CronSyntaxError(f"{name} field: the step must be above zero")
    _check_bounds(name, low, high, first, last)
    return set(range(first, last + 1, step)), first, last


def _check_bounds(name: str, low: int, high: int, first: int, last: int) -> None:
    for value in (first, last):
        if not low <= value <= high:
            raise CronSyntaxError(f"{name} field: {value} is outside {low}-{high}")


def _read_number(reader: _Reader, name: str, low: int, names: tuple[str, ...]) -> int:
    start = reader.position
    char = reader.peek()
    while char and char.isascii() and char.isalnum():
        char = reader.advance()
    word = reader.text[start:reader.position]
    if not word:
        found = repr(char) if char and char != _END else "the end of the text"
        raise CronSyntaxError(f"{name} field: expected a number, a name or *, found {found}")
    if word.lower() in names:
        return names.index(word.lower()) + low
    if word.isdigit():
        return int(word)
    raise CronSyntaxError(f"{name} field: {word!r} is not a number or a known name")
