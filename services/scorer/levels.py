"""Risk levels (domain.md section 3); every threshold is a setting."""

from __future__ import annotations

from dataclasses import dataclass

from services.scorer.forecast import Score
from shared.schemas import Level


@dataclass(frozen=True, slots=True)
class LevelThresholds:
    floor: float = 0.95
    at_risk_below: float = 0.955
    watch_below: float = 0.97
    watch_forecast_below: float = 0.96
    #: Categories with fewer packages in the window are never reported above WATCH unless breached.
    min_packages: int = 10


def level_of(score: Score, thresholds: LevelThresholds = LevelThresholds()) -> Level:
    vtr = score.vtr
    if vtr is not None and vtr < thresholds.floor:
        return Level.BREACH
    level = Level.OK
    forecast_minimum = score.forecast_minimum
    if score.days_to_breach is not None or (vtr is not None and vtr < thresholds.at_risk_below):
        level = Level.AT_RISK
    elif (vtr is not None and vtr < thresholds.watch_below) or (
        forecast_minimum is not None and forecast_minimum < thresholds.watch_forecast_below
    ):
        level = Level.WATCH
    if score.total < thresholds.min_packages and level.severity > Level.WATCH.severity:
        return Level.WATCH
    return level
