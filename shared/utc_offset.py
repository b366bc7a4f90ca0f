"""Fixed UTC offsets as carriers write them (``+8``, ``UTC+08:00``, ``-0530``)."""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from functools import lru_cache

_OFFSET = re.compile(r"^\s*(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?\s*$", re.IGNORECASE)


class TimeFormatError(ValueError):
    """A time or zone that cannot be read; the message says which."""


@lru_cache(maxsize=256)
def parse_utc_offset(text: str) -> timezone:
    """``+8``, ``+08``, ``-05:00``, ``+0530``, ``UTC+8`` -> a fixed-offset zone."""
    match = _OFFSET.match(text)
    if match is None:
        raise TimeFormatError(f"{text!r} is not a UTC offset such as +08:00")
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if hours > 14 or minutes > 59:
        raise TimeFormatError(f"{text!r} is not a UTC offset such as +08:00")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if sign == "-" else offset)
