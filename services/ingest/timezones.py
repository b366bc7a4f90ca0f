"""Carrier times to UTC. Carriers often send local times without an offset; the zone then
comes from the scan's location (``zones.toml``), a per-event field (Yanwen ``time_zone``)
or the carrier's known zone."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from shared.guard import EARLIEST, LATEST
from shared.utc_offset import TimeFormatError


def to_utc(text: str, default_zone: tzinfo) -> datetime:
    """An ISO 8601 or ``yyyy-MM-dd HH:mm:ss`` time as an aware UTC datetime; a time
    without an offset is taken to be in ``default_zone`` (a fixed offset or an IANA zone,
    whose offset then depends on the date: daylight saving time)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeFormatError(f"{text!r} is not an ISO 8601 or 'yyyy-MM-dd HH:mm:ss' time") from None
    try:
        if moment.tzinfo is None:
            if not isinstance(default_zone, timezone):
                utc = moment.replace(tzinfo=default_zone).astimezone(UTC)
            else:
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


# --- Zones of scan locations (zones.toml) ---------------------------------------------------

ZONES_FILE = Path(__file__).with_name("zones.toml")


@dataclass(frozen=True)
class ZoneTable:
    """Country (and, where a country spans zones, state) -> IANA zone."""

    countries: Mapping[str, str]
    regions: Mapping[str, Mapping[str, str]]
    iso3: Mapping[str, str]

    def country_code(self, country: str) -> str:
        """ISO alpha-2 of an alpha-2 or alpha-3 code; '' when unknown."""
        code = country.strip().upper()
        if len(code) == 3:
            return self.iso3.get(code, "")
        return code if len(code) == 2 else ""

    def zone_name(self, country: str, region: str = "") -> str:
        """The IANA zone of a scan location; '' when the country is not in the table."""
        code = self.country_code(country)
        if not code:
            return ""
        regions = self.regions.get(code)
        if regions is None:
            return self.countries.get(code, "")
        return regions.get(region.strip().upper(), regions["default"])


def load_zone_table(path: Path = ZONES_FILE) -> ZoneTable:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    table = ZoneTable(
        countries=dict(data.get("countries", {})),
        regions={country: dict(zones) for country, zones in data.get("regions", {}).items()},
        iso3=dict(data.get("iso3", {})),
    )
    # Every zone must exist: a typo stops the service at start-up, not a scan at 3 a.m.
    for name in [*table.countries.values(), *(zone for zones in table.regions.values() for zone in zones.values())]:
        ZoneInfo(name)
    for country, zones in table.regions.items():
        if "default" not in zones:
            raise ValueError(f"{path.name} [regions.{country}] needs a `default` zone")
    return table


ZONES = load_zone_table()


@lru_cache(maxsize=1024)
def location_zone(country: str, region: str = "") -> tzinfo | None:
    """The zone of a scan at ``country`` (alpha-2 or alpha-3) and optional state/province;
    None when the table cannot tell (the caller then uses its source's fixed zone)."""
    name = ZONES.zone_name(country, region)
    return ZoneInfo(name) if name else None
