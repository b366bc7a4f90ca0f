"""Orders a seller has not confirmed yet, projected into the forecast. Pure.

Today's packages are not the only ones that will be in the window over the next 14 days:
a category that confirms 10 orders a day with promise lags of 10-14 days will have another
few dozen packages promised before the horizon, and if its carrier stopped scanning
yesterday they will fail like the ones already confirmed. The projection assumes the
category keeps shipping as it has lately: its volume over the last week, its promise lags
over the last two weeks, and the health of its packages confirmed one to four days ago
(valid 1, invalid 0, pending its probability), which already shows a carrier that went
silent or a carrier name Amazon does not integrate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from services.scorer.domain.window import FORECAST_DAYS
from services.scorer.model import ModelSettings

#: Fewer recent packages than this: their health is taken over the whole fortnight.
MIN_COHORT = 5
#: Promise lags are learnt over this many days of confirmations.
LAG_DAYS = 14


@dataclass(frozen=True, slots=True)
class RecentPackage:
    confirmed_at: datetime
    promised_date: date
    #: 1 valid, 0 invalid, the probability while pending.
    probability: float


@dataclass(frozen=True, slots=True)
class Projected:
    """Expected packages promised on one day, not confirmed yet."""

    expected: float
    expected_valid: float
    variance: float


def project(
    recent: Sequence[RecentPackage],
    today: date,
    now: datetime,
    settings: ModelSettings,
    horizon: int = FORECAST_DAYS,
) -> dict[date, Projected]:
    """Projected packages per promised date ``today .. today + horizon - 1`` (the days that
    enter the forecast windows), from one seller-category's packages confirmed lately."""
    if not recent:
        return {}
    volume_since = now - timedelta(days=settings.projection_volume_days)
    per_day = sum(1 for package in recent if volume_since <= package.confirmed_at <= now)
    per_day_rate = per_day / settings.projection_volume_days
    lags = Counter(
        max(0, (package.promised_date - package.confirmed_at.date()).days)
        for package in recent
        if package.confirmed_at >= now - timedelta(days=LAG_DAYS)
    )
    if per_day_rate <= 0 or not lags:
        return {}
    lag_total = sum(lags.values())
    health = _health(recent, now, settings)
    remaining_today = 1.0 - (now - datetime.combine(today, time())).total_seconds() / 86400.0
    last = today + timedelta(days=horizon - 1)
    expected: dict[date, float] = {}
    for offset in range(horizon):
        confirmed_on = today + timedelta(days=offset)
        share_of_day = max(0.0, remaining_today) if offset == 0 else 1.0
        for lag, count in lags.items():
            promised = confirmed_on + timedelta(days=lag)
            if promised > last:
                continue
            expected[promised] = expected.get(promised, 0.0) + per_day_rate * share_of_day * count / lag_total
    return {
        day: Projected(count, count * health, count * health * (1.0 - health))
        for day, count in sorted(expected.items())
        if count > 0
    }


def _health(recent: Sequence[RecentPackage], now: datetime, settings: ModelSettings) -> float:
    newest = now - timedelta(hours=settings.projection_health_from_hours)
    oldest = now - timedelta(hours=settings.projection_health_to_hours)
    cohort = [package.probability for package in recent if oldest <= package.confirmed_at <= newest]
    if len(cohort) < MIN_COHORT:
        cohort = [package.probability for package in recent if package.confirmed_at <= newest]
    if not cohort:
        cohort = [package.probability for package in recent]
    return sum(cohort) / len(cohort)
