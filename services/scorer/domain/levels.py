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
    #: Probability of falling below the floor within the forecast from which a category is AT_RISK / WATCH.
    at_risk_breach_probability: float = 0.3
    watch_breach_probability: float = 0.1


def level_of(score: Score, thresholds: LevelThresholds = LevelThresholds()) -> Level:
    vtr = score.vtr
    if vtr is not None and vtr < thresholds.floor:
        return Level.BREACH
    level = Level.OK
    forecast_minimum = score.forecast_minimum
    breach = score.breach_probability or 0.0
    if (
        score.days_to_breach is not None
        or breach >= thresholds.at_risk_breach_probability
        or (vtr is not None and vtr < thresholds.at_risk_below)
    ):
        level = Level.AT_RISK
    elif (
        (vtr is not None and vtr < thresholds.watch_below)
        or (forecast_minimum is not None and forecast_minimum < thresholds.watch_forecast_below)
        or breach >= thresholds.watch_breach_probability
    ):
        level = Level.WATCH
    if score.total < thresholds.min_packages and level.severity > Level.WATCH.severity:
        return Level.WATCH
    return level


def today_level(score: Score, thresholds: LevelThresholds = LevelThresholds()) -> Level:
    """The level today's VTR alone gives, without the forecast: BREACH below the floor,
    AT_RISK below ``at_risk_below``, WATCH below ``watch_below``."""
    vtr = score.vtr
    if vtr is None:
        return Level.OK
    if vtr < thresholds.floor:
        return Level.BREACH
    level = Level.OK
    if vtr < thresholds.at_risk_below:
        level = Level.AT_RISK
    elif vtr < thresholds.watch_below:
        level = Level.WATCH
    if score.total < thresholds.min_packages and level.severity > Level.WATCH.severity:
        return Level.WATCH
    return level


def capped_level(level: Level, today: Level, lanes_learnt: bool) -> Level:
    """While a category's lanes are not learnt its forecast rests on priors: the level is
    at most WATCH, unless today's VTR alone says worse (docs/forecast.md, "Cold start")."""
    if lanes_learnt:
        return level
    forecast_capped = min(level, Level.WATCH, key=lambda candidate: candidate.severity)
    return max(forecast_capped, today, key=lambda candidate: candidate.severity)
