"""Settings of the worker, from `WATCHDOG_*` environment variables or CLI options."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from watchdog.durations import MAX_DURATION, parse_duration
from watchdog.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
# Away from postgres_exporter's 9187 and node_exporter's 9100.
DEFAULT_HTTP_ADDR = "127.0.0.1:9631"


def default_state_path() -> Path:
    """Return `$XDG_STATE_HOME/cron-watchdog/state.sqlite3` (`~/.local/state` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cron-watchdog" / "state.sqlite3"


class Settings(BaseSettings):
    """Process settings. Rules and channels live in the rules file instead."""

    model_config = SettingsConfigDict(env_prefix="WATCHDOG_", extra="forbid")

    database_url: str = ""
    rules_file: Path = Path("rules.toml")
    state_path: Path = default_state_path()
    poll_interval: float = 30.0
    log_level: str = "INFO"
    # Used only when the role may not read cron.timezone (pg_cron 1.5+, not a
    # superuser and not in pg_read_all_settings).
    cron_timezone: str | None = None
    connect_timeout: float = 10.0
    statement_timeout: float = 15.0
    # Failed polls in a row before the watchdog alerts that it cannot read the database.
    outage_after: int = 3
    http_addr: str = DEFAULT_HTTP_ADDR
    heartbeat_url: str = ""
    log_format: str = "text"
    # Used only when the role may not read cron.max_running_jobs (superuser-only);
    # unset means pg_cron's default of 32.
    max_running_jobs: int | None = None

    @field_validator("poll_interval", mode="before")
    @classmethod
    def _parse_interval(cls, value: Any) -> float:
        seconds = _seconds(value)
        if seconds < 1:
            raise ValueError(f"poll interval {value!r} is below 1 second")
        return seconds

    @field_validator("connect_timeout", "statement_timeout", mode="before")
    @classmethod
    def _parse_timeout(cls, value: Any) -> float:
        seconds = _seconds(value)
        if seconds < 1:
            raise ValueError(f"timeout {value!r} is below 1 second")
        return seconds

    @field_validator("outage_after", mode="before")
    @classmethod
    def _check_outage_after(cls, value: Any) -> int:
        return _whole_number(value, "failed polls")

    @field_validator("max_running_jobs", mode="before")
    @classmethod
    def _check_max_running_jobs(cls, value: Any) -> int | None:
        if value is None:
            return None
        return _whole_number(value, "jobs", ", as cron.max_running_jobs")

    @field_validator("cron_timezone", mode="before")
    @classmethod
    def _check_cron_timezone(cls, value: Any) -> str | None:
        if value is None or not str(value).strip():
            return None
        name = str(value).strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}: expected an IANA zone such as"
                             " Europe/Berlin, as cron.timezone") from None
        return name

    @field_validator("http_addr")
    @classmethod
    def _check_http_addr(cls, value: str) -> str:
        if value.strip():
            parse_http_addr(value)
        return value.strip()

    @field_validator("log_format", mode="before")
    @classmethod
    def _check_format(cls, value: Any) -> str:
        text = str(value).lower()
        if text not in LOG_FORMATS:
            raise ValueError(f"log format {value!r} is not one of {', '.join(LOG_FORMATS)}")
        return text

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_level(cls, value: Any) -> str:
        level = str(value).upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"log level {value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level


def _whole_number(value: Any, unit: str, suffix: str = "") -> int:
    """Read a whole number of at least 1; the error names the value and what it counts."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(f"invalid number {text!r}: expected a whole number of {unit},"
                         f" at least 1{suffix}")
    return int(text)


def _seconds(value: Any) -> float:
    """Read a number of seconds, or a duration such as "30s" or "2m"."""
    plain_number = isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)
    if not isinstance(value, int | float) and not plain_number:
        return parse_duration(str(value)).total_seconds()
    seconds = float(value)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} seconds is longer than the maximum of"
                         f" {MAX_DURATION.total_seconds():.0f} (10 years)")
    return seconds


def parse_http_addr(value: str) -> tuple[str, int]:
    """Split `HOST:PORT` into its parts; raise ValueError naming the expected form."""
    host, _, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"address {value!r} is not HOST:PORT, such as {DEFAULT_HTTP_ADDR};"
            " set it empty to disable the HTTP server"
        )
    return host, int(port)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment with CLI overrides; raise ConfigError on bad values."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"setting WATCHDOG_{field.upper()}: {message}")
        raise ConfigError(problems) from exc


# A password value in a key=value DSN: a quoted string (possibly unterminated),
# or unquoted words up to the next `keyword=`. libpq rejects an unquoted value
# with a space in it, but the words after the space are still part of the
# secret the user typed. Also matches `sslpassword`, the client key passphrase.
_KEYWORD_PASSWORD = re.compile(
    r"(password\s*=\s*)"
    r"('(?:[^'\\]|\\.)*(?:'|$)|(?:\\.|[^\s\\])+(?:\s+(?![A-Za-z_]+\s*=)(?:\\.|[^\s\\])+)*)",
    re.IGNORECASE,
)
_QUERY_PASSWORD = re.compile(r"(password=)([^&]*)", re.IGNORECASE)
# Characters that split a password into the fragments libpq may quote on its own.
_SECRET_SEPARATORS = re.compile(r"[\s/:@?&=#'\\]+")


def mask_dsn(dsn: str) -> str:
    """Return the DSN with its password replaced by `***`, for logs and errors."""
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    scheme, _, rest = dsn.partition("://")
    userinfo, at, after = _split_userinfo(rest)
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    after = _QUERY_PASSWORD.sub(r"\1***", after)
    return f"{scheme}://{userinfo}{at}{after}"


def _split_userinfo(rest: str) -> tuple[str, str, str]:
    """Split the text after `scheme://` at the `@` that ends the user and password.

    The last `@` is taken, not the first as libpq does, because a password
    with an unencoded `@` or `/` must still be masked whole. An `@` inside a
    query value, as in `?user=me@corp`, is skipped.
    """
    at = rest.rfind("@")
    query = rest.find("?")
    if 0 <= query < at and "=" in rest[query:at]:
        at = rest.rfind("@", 0, query)
    if at < 0:
        return "", "", rest
    return rest[:at], "@", rest[at + 1 :]


def dsn_secrets(dsn: str) -> set[str]:
    """Collect each password written in the DSN, whole, decoded and in fragments."""
    if "://" in dsn:
        userinfo = _split_userinfo(dsn.partition("://")[2])[0]
        values = [userinfo.split(":", 1)[1]] if ":" in userinfo else []
        values += [match.group(2) for match in _QUERY_PASSWORD.finditer(dsn)]
    else:
        values = [match.group(2) for match in _KEYWORD_PASSWORD.finditer(dsn)]
    secrets: set[str] = set()
    for value in values:
        for form in (value, unquote(value)):
            secrets.add(form)
            secrets.update(_SECRET_SEPARATORS.split(form))
    secrets.discard("")
    return secrets


def redact_dsn(text: str, dsn: str) -> str:
    """Replace every password fragment of the DSN in `text` with `***`.

    For messages from libpq and psycopg, which quote the part of a DSN they
    could not parse, or name part of a misplaced password as the host or port.
    """
    # Longest first, so a whole password goes before the fragments inside it.
    for secret in sorted(dsn_secrets(dsn), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text
