"""Named groups of Apprise URLs, as declared under `[channels.NAME]`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    """A channel with its URLs after `${NAME}` expansion from the environment."""

    name: str
    urls: tuple[str, ...]
    locale: str = "en"
