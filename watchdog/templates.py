"""User templates for notification titles and bodies (`[templates]` in the rules file).

Templates use Python's `string.Template` syntax: `$job` or `${job}`, and `$$`
for a literal dollar sign. Only the names in PLACEHOLDERS are allowed, so a
typo is a validation error instead of a message with a hole in it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Template
from typing import Any

# Each placeholder with what it holds, for docs and validation messages.
PLACEHOLDERS: Mapping[str, str] = {
    "title": "the title the watchdog would send without a template",
    "body": "the body the watchdog would send without a template",
    "state": "firing or resolved",
    "reminder": "yes for a reminder of a still-firing alert, otherwise no",
    "severity": "info, warning or critical",
    "rule": "the rule name",
    "kind": "the rule kind, such as failure_ratio",
    "job": "the jobname, or 'job N' for a job without a name",
    "jobid": "the pg_cron jobid",
    "database": "the database the job runs in",
    "target": "the watched database as host:port/dbname",
    "value": "the observed value",
    "last_error": "the first line of the last error message, trimmed",
    "since": "when the alert started firing, in display_timezone",
    "at": "when this message was produced, in display_timezone",
    "firing_for": "how long the alert has been firing, such as 2h 5m",
}

_KEYS = ("title", "body")

ProblemSink = Callable[[str, str], None]


@dataclass(frozen=True)
class Templates:
    """The `[templates]` table: None keeps the built-in text."""

    title: Template | None = None
    body: Template | None = None

    def apply(self, values: Mapping[str, str]) -> tuple[str, str]:
        """Fill the templates; values must contain every name in PLACEHOLDERS."""
        title = self.title.substitute(values) if self.title else values["title"]
        body = self.body.substitute(values) if self.body else values["body"]
        return title, body


def parse_templates(raw: Any, problem: ProblemSink) -> Templates:
    """Validate `[templates]`; report unknown keys and placeholders to `problem`."""
    if not isinstance(raw, dict):
        problem("templates", 'must be a table such as [templates] with title = "..."')
        return Templates()
    for key in sorted(set(raw) - set(_KEYS)):
        problem("templates", f"unknown key {key!r}; allowed: {', '.join(_KEYS)}")
    parsed = {key: _template(key, raw[key], problem) for key in _KEYS if key in raw}
    return Templates(**parsed)


def _template(key: str, raw: Any, problem: ProblemSink) -> Template | None:
    where = f"templates, field {key!r}"
    if not isinstance(raw, str):
        problem(where, "must be a string")
        return None
    template = Template(raw)
    if not template.is_valid():
        problem(where, "invalid placeholder syntax; write $name or ${name}, and $$ for a"
                " literal dollar sign")
        return None
    unknown = sorted(set(template.get_identifiers()) - set(PLACEHOLDERS))
    for name in unknown:
        problem(where, f"unknown placeholder ${name}; allowed: {', '.join(PLACEHOLDERS)}")
    return None if unknown else template
