"""Carrier times to UTC. Carriers often send local times without an offset; the zone then
comes from the carrier's known zone or a per-event field (Yanwen ``time_zone``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from shared.guard import EARLIEST, LATEST

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


def to_utc(text: str, default_zone: timezone) -> datetime:
    """An ISO 8601 or ``yyyy-MM-dd HH:mm:ss`` time as an aware UTC datetime; a time
    without an offset is taken to be in ``default_zone``."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeFormatError(f"{text!r} is not an ISO 8601 or 'yyyy-MM-dd HH:mm:ss' time") from None
    try:
        if moment.tzinfo is None:
            # The hot path: most carriers send local times without an offset. Shifting the
            # wall time and building the UTC datetime directly takes half the time of
            # replace(tzinfo=...).astimezone(UTC) (replace() parses keywords slowly).
            local = moment - default_zone.utcoffset(None)
            utc = datetime(
                local.year, local.month, local.day, local.hour, local.minute, local.second, local.microsecond, UTC
            )
        else:
            utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    except OverflowError:
        raise TimeFormatError(f"{text!r} is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise TimeFormatError(f"{text!r} is out of range (years {EARLIEST.year}-{LATEST.year - 1})")
    return utc
