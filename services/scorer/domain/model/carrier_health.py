"""Carrier health across sellers: a carrier x origin that went silent for everyone."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.scorer.domain.model.parameters import ModelSettings


@dataclass(frozen=True)
class CarrierHealth:
    carrier: str
    origin: str
    #: Hours since the carrier's newest scan from this origin.
    silent_hours: float
    #: Usual scans per hour over the baseline period.
    usual_rate: float
    #: The push source in an outage that explains the silence (services/scorer/domain/sources.py):
    #: the scans are not arriving, the parcels are not going lost, so it is not silent.
    source_outage: str = ""

    @property
    def expected_scans(self) -> float:
        return self.usual_rate * self.silent_hours

    def silent(self, settings: ModelSettings) -> bool:
        return (
            not self.source_outage
            and self.silent_hours >= settings.silent_min_hours
            and self.expected_scans >= settings.silent_min_expected_scans
        )

    def factor(self, settings: ModelSettings) -> float:
        if not self.silent(settings):
            return 1.0
        return max(settings.silent_min_factor, math.pow(0.5, self.silent_hours / settings.silent_half_life_hours))


def carrier_health(
    scan_times: Mapping[tuple[str, str], Iterable[datetime]], now: datetime, settings: ModelSettings
) -> dict[tuple[str, str], CarrierHealth]:
    """Per carrier x origin: the usual scan rate (the baseline period before the last day)
    and how long it has been silent. Scan times are when the scans occurred (not when they
    arrived), so a backfill of old history reads the same as live pushes."""
    found: dict[tuple[str, str], CarrierHealth] = {}
    baseline = settings.health_baseline_hours
    for key, times in scan_times.items():
        newest: datetime | None = None
        in_baseline = 0
        for moment in times:
            if moment > now:
                continue
            age_hours = (now - moment).total_seconds() / 3600.0
            if 24.0 <= age_hours < 24.0 + baseline:
                in_baseline += 1
            if newest is None or moment > newest:
                newest = moment
        if newest is None:
            continue
        found[key] = CarrierHealth(
            key[0], key[1], (now - newest).total_seconds() / 3600.0, in_baseline / baseline if baseline else 0.0
        )
    return found
