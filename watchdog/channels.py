"""Named groups of Apprise URLs, as declared under `[channels.NAME]`."""

from __future__ import annotations

from dataclasses import dataclass

from watchdog.models import Severity


@dataclass(frozen=True)
class Channel:
    """A channel with its URLs after `${NAME}` expansion from the environment.

    `urls` includes the URLs read from the channel's Apprise configuration
    file. Alerts below `min_severity` are not sent to the channel. When at
    least `group_threshold` alerts of one cycle go to the channel, they are
    sent as one grouped message.
    """

    name: str
    urls: tuple[str, ...]
    locale: str = "en"
    min_severity: Severity = Severity.INFO
    group_threshold: int = 3
