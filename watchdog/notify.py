"""Deliver rendered notifications to a channel's Apprise URLs.

Each URL gets its own Apprise instance and its own DeliveryResult, so one
failing URL never stops the others. Message text is sent with body_format TEXT
because it contains job names and return_message values from the database.
With TEXT, Apprise 2.3.0 escapes `<`, `>` and `&` for Telegram's HTML parse
mode and for Slack, and sends `_`, `*` and `[` literally.

Raw URLs carry tokens and passwords, so they are never logged or returned;
`mask_url` gives the form that is safe to show.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import apprise
from apprise.manager_plugins import NotificationManager
from apprise.plugins.base import NotifyBase
from apprise.plugins.telegram import NotifyTelegram

from watchdog.channels import Channel
from watchdog.models import Severity

log = logging.getLogger(__name__)

# A retry to Telegram cuts the body to this many characters. Telegram rejects a
# message over 4096 characters, and Apprise adds the title and markup.
TELEGRAM_RETRY_BODY_CHARS = 3500

APPRISE_URL_HELP = "https://github.com/caronc/apprise/wiki"

_MASK = "***"
_APPRISE_LOGGER = "apprise"

_SEVERITY_NOTIFY_TYPES = {
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.INFO: apprise.NotifyType.INFO,
}

# Characters that separate the parts of a URL: scheme, credentials, host,
# path segments and query pairs.
_URL_SEPARATORS = re.compile(r"[/:@?&=#]+")
_HOSTNAME = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass
class DeliveryResult:
    """The outcome of sending one notification to one URL of a channel."""

    url_masked: str
    ok: bool
    error: str | None


def notify_type_for(event_state: str, severity: Severity) -> apprise.NotifyType:
    """Map an alert transition to the Apprise notify type that sets its color and icon.

    A resolved alert is SUCCESS whatever its severity. A firing one maps
    critical to FAILURE, warning to WARNING and info to INFO.
    """
    if event_state == "resolved":
        return apprise.NotifyType.SUCCESS
    if event_state == "firing":
        return _SEVERITY_NOTIFY_TYPES[severity]
    raise ValueError(f"invalid alert state {event_state!r}: expected 'firing' or 'resolved'")


def mask_url(url: str) -> str:
    """Return the URL with its tokens and passwords hidden, for logs and messages.

    A URL that Apprise can parse is masked by Apprise itself
    (`plugin.url(privacy=True)`), which keeps the first and last character of
    each token. Any other URL keeps only its scheme and host, and only when the
    host looks like a host name or IP address. Everything else becomes `***`.
    """
    plugin, _ = _instantiate(url)
    if plugin is not None:
        return _private_url(plugin)
    return _mask_unparsed(url)


def validate_url(url: str) -> str | None:
    """Return None when Apprise can load the URL, otherwise an error message.

    The message names the masked URL, repeats Apprise's reason with secrets
    hidden, and points to the URL format documentation.
    """
    plugin, problems = _instantiate(url)
    if plugin is not None:
        return None
    return _scheme_problem(url) or _invalid_url_message(url, problems)


def _scheme_problem(url: str) -> str | None:
    """Name a missing or unknown scheme, which Apprise reports only as an unparseable URL.

    Call it only for a URL Apprise rejected: Apprise also loads native http(s)
    webhook URLs of services such as Slack, whose scheme is not in its list.
    """
    examples = "json://, slack://, tgram://, mailto://"
    scheme, separator, _ = url.strip().partition("://")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        # Masked as if it had a scheme, so that a plain host name stays readable.
        shown = _mask_unparsed(f"x://{url.strip()}").removeprefix("x://")
        return (f"Apprise URL {shown} has no scheme; write it with one such as {examples}"
                f" ({APPRISE_URL_HELP})")
    if scheme.lower() in ("http", "https"):
        return (f"Apprise does not recognise {_mask_unparsed(url)} as the webhook of a service"
                " it knows (such as Slack or Discord); for a plain HTTP endpoint write"
                f" json:// or jsons:// in place of {scheme}:// ({APPRISE_URL_HELP})")
    if scheme.lower() not in _apprise_schemes():
        return (f"unknown Apprise scheme {scheme!r} in {_mask_unparsed(url)}; expected an"
                f" Apprise scheme such as {examples} ({APPRISE_URL_HELP})")
    return None


@functools.cache
def _apprise_schemes() -> frozenset[str]:
    # NotificationManager is a singleton that loads Apprise's plugins once. It
    # has no type annotations in Apprise 2.3.0.
    manager = NotificationManager()  # type: ignore[no-untyped-call]
    return frozenset(scheme.lower() for scheme in manager.schemas())  # type: ignore[no-untyped-call]


def load_config_urls(path: Path) -> tuple[list[str], list[str]]:
    """Read the URLs of an Apprise configuration file (YAML or text); return (urls, errors).

    Each error names the file and hides secrets. Apprise regenerates each URL
    with every option spelled out, including `overflow=upstream`, its default.
    That option is removed so that `prepare_url` can add `overflow=truncate`.
    """
    if not path.is_file():
        return [], [f"Apprise configuration file {path} not found; fix the path or remove"
                    " 'config'"]
    config = apprise.AppriseConfig()
    with _apprise_records() as records:
        config.add(str(path))
        services = config.services()
    urls = [_drop_default_overflow(_full_url(service)) for service in services]
    problems = [record.getMessage() for record in records if record.levelno >= logging.WARNING]
    errors = [f"Apprise configuration file {path}: {_redact_all(problem, urls)}"
              for problem in problems]
    if not urls and not errors:
        errors.append(f"Apprise configuration file {path} contains no URLs")
    return urls, errors


def _full_url(plugin: NotifyBase) -> str:
    # NotifyBase.url has no type annotations in Apprise 2.3.0.
    return str(plugin.url())  # type: ignore[no-untyped-call]


def _drop_default_overflow(url: str) -> str:
    base, _, query = url.partition("?")
    pairs = [pair for pair in query.split("&") if pair and pair != "overflow=upstream"]
    return f"{base}?{'&'.join(pairs)}" if pairs else base


def _redact_all(text: str, urls: list[str]) -> str:
    for url in urls:
        text = _redact(text, url)
    # A line Apprise could not parse is not among the URLs; it may still hold a token.
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", lambda m: _mask_unparsed(m.group(0)), text)


def _invalid_url_message(url: str, problems: list[str]) -> str:
    reason = "; ".join(_redact(problem, url) for problem in problems)
    detail = f": {reason}" if reason else ""
    return (
        f"invalid Apprise URL {_mask_unparsed(url)}{detail}. Check the scheme and the URL "
        f"format of this service in the Apprise documentation ({APPRISE_URL_HELP})."
    )


def prepare_url(url: str) -> str:
    """Add `overflow=truncate` to a URL that sets no overflow mode of its own.

    By default Apprise sends a too-long body as it is: Telegram rejects a
    message over 4096 characters and Discord drops one over 2000 without an
    error. With `truncate`, Apprise cuts the body to the service's limit.
    """
    _, _, query = url.partition("?")
    keys = {pair.partition("=")[0].strip().lower() for pair in query.split("&") if pair}
    if "overflow" in keys:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}overflow=truncate"


def send(
    channel: Channel, title: str, body: str, severity_or_state: Severity | str
) -> list[DeliveryResult]:
    """Send one notification to every URL of the channel; return one result per URL.

    `severity_or_state` is a Severity for a firing alert or a test message, or
    "resolved". A failed send to Telegram is retried once with the body cut to
    TELEGRAM_RETRY_BODY_CHARS characters.
    """
    notify_type = _notify_type(severity_or_state)
    return [_deliver(channel.name, url, title, body, notify_type) for url in channel.urls]


def _notify_type(severity_or_state: Severity | str) -> apprise.NotifyType:
    if isinstance(severity_or_state, Severity):
        return _SEVERITY_NOTIFY_TYPES[severity_or_state]
    if severity_or_state == "resolved":
        return apprise.NotifyType.SUCCESS
    try:
        return _SEVERITY_NOTIFY_TYPES[Severity(severity_or_state)]
    except ValueError:
        allowed = ", ".join([*(severity.value for severity in Severity), "resolved"])
        raise ValueError(
            f"invalid severity or state {severity_or_state!r}: expected one of {allowed}"
        ) from None


def _deliver(
    channel_name: str, url: str, title: str, body: str, notify_type: apprise.NotifyType
) -> DeliveryResult:
    started = time.monotonic()
    plugin, problems = _instantiate(prepare_url(url))
    if plugin is None:
        invalid = _invalid_url_message(url, problems)
        result = DeliveryResult(_mask_unparsed(url), ok=False, error=invalid)
        _log_delivery(channel_name, result, time.monotonic() - started)
        return result

    masked = _private_url(plugin)
    error = _notify(plugin, title, body, notify_type, url)
    if error is not None and isinstance(plugin, NotifyTelegram):
        log.warning(
            "channel %s: delivery to %s failed, retrying once with the body cut to %d "
            "characters: %s",
            channel_name,
            masked,
            TELEGRAM_RETRY_BODY_CHARS,
            error,
        )
        error = _notify(plugin, title, _cut(body, TELEGRAM_RETRY_BODY_CHARS), notify_type, url)

    result = DeliveryResult(masked, ok=error is None, error=error)
    _log_delivery(channel_name, result, time.monotonic() - started)
    return result


def _notify(
    plugin: NotifyBase, title: str, body: str, notify_type: apprise.NotifyType, url: str
) -> str | None:
    """Send through one plugin and return None on success, else the reason it failed.

    The reason joins the WARNING and ERROR lines that Apprise 2.3.0 captures
    per call on its AppriseResult, with the URL's secrets hidden.
    """
    sender = apprise.Apprise()
    sender.add(plugin)
    try:
        outcome = sender.notify(
            body=body,
            title=title,
            notify_type=notify_type,
            body_format=apprise.NotifyFormat.TEXT,
        )
    except Exception as exc:
        # Apprise catches the errors of its plugins, so this is unexpected. It
        # still becomes a failed delivery, so the channel's other URLs are sent.
        # No traceback is logged because its message text could contain a token.
        reason = _redact(f"Apprise raised {type(exc).__name__}: {exc}", url)
        log.error("unexpected error sending to %s: %s", _private_url(plugin), reason)
        return reason

    with outcome:
        if outcome:
            return None
        reasons = [_redact(entry.message, url) for entry in outcome.logs()]
        status = outcome.status.name
    if reasons:
        return " | ".join(reasons)
    return f"Apprise reported {status} without a logged reason"


def _log_delivery(channel_name: str, result: DeliveryResult, seconds: float) -> None:
    if result.ok:
        log.info("channel %s: delivered to %s in %.2fs", channel_name, result.url_masked, seconds)
    else:
        log.warning(
            "channel %s: delivery to %s failed after %.2fs: %s",
            channel_name,
            result.url_masked,
            seconds,
            result.error,
        )


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


# --- Parsing and masking -----------------------------------------------------


def _instantiate(url: str) -> tuple[NotifyBase | None, list[str]]:
    """Load the Apprise plugin for a URL and return it, or None, with Apprise's warnings.

    Apprise logs why a URL is invalid, sometimes with a token in clear, so
    those records are returned here instead of reaching the application's log.
    """
    with _apprise_records() as records:
        plugin = apprise.Apprise.instantiate(url)
    problems = [record.getMessage() for record in records if record.levelno >= logging.WARNING]
    return plugin, problems


@contextmanager
def _apprise_records() -> Iterator[list[logging.LogRecord]]:
    """Collect the records that the `apprise` logger emits in this thread, and drop them.

    A logger filter runs before any handler and before propagation, so the
    records reach no other handler. Records from other threads pass as usual.
    """
    records: list[logging.LogRecord] = []
    thread = threading.get_ident()

    def keep(record: logging.LogRecord) -> bool:
        if record.thread == thread:
            records.append(record)
            return False
        return True

    apprise_logger = logging.getLogger(_APPRISE_LOGGER)
    apprise_logger.addFilter(keep)
    try:
        yield records
    finally:
        apprise_logger.removeFilter(keep)


def _private_url(plugin: NotifyBase) -> str:
    """Return Apprise's masked form of a loaded plugin's URL."""
    # NotifyBase.url has no type annotations in Apprise 2.3.0.
    return str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]


def _mask_unparsed(url: str) -> str:
    """Mask a URL that Apprise cannot parse: keep the scheme and a plain host only."""
    scheme, separator, rest = url.partition("://")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return _MASK

    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    remainder = rest[len(authority) :]
    credentials, at, host_port = authority.rpartition("@")
    host, port = _split_host_port(host_port)

    masked = f"{scheme}://"
    if at or credentials:
        masked += f"{_MASK}@"
    if _is_plain_host(host):
        masked += host + (f":{port}" if port.isdigit() else "")
    elif host_port:
        masked += _MASK
    if remainder.strip("/?#"):
        masked += f"/{_MASK}"
    return masked


def _split_host_port(host_port: str) -> tuple[str, str]:
    if host_port.startswith("["):
        host, _, after = host_port[1:].partition("]")
        return host, after.removeprefix(":")
    host, _, port = host_port.partition(":")
    return host, port


def _is_plain_host(host: str) -> bool:
    """Tell whether a URL's host part is a host name or IP address, not a token.

    Many Apprise URLs put a token where the host goes (`tgram://<bot token>/`,
    `slack://<token a>/…`), so a bare word without a dot counts as a token.
    """
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host))
    return True


def _secret_parts(url: str) -> set[str]:
    """Collect the parts of a raw URL that could be secrets.

    When Apprise can parse the URL, a part is secret if Apprise left it out of
    its masked form. Otherwise every part but the scheme and a plain host is.
    """
    scheme = url.partition("://")[0]
    parts = {part for part in _URL_SEPARATORS.split(unquote(url)) if part and part != scheme}
    plugin, _ = _instantiate(url)
    if plugin is None:
        return {part for part in parts if not _is_plain_host(part)}
    masked = unquote(_private_url(plugin))
    return parts - set(_URL_SEPARATORS.split(masked))


def _redact(text: str, url: str) -> str:
    """Replace the raw URL and each secret part of it in `text` with `***`."""
    if not url.strip():
        # str.replace with an empty pattern would put the mask between every character.
        return text
    text = text.replace(url, mask_url(url))
    # Longest first, so a token is replaced before any shorter part inside it.
    for part in sorted(_secret_parts(url), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(part)}(?![A-Za-z0-9])", _MASK, text)
    return text
