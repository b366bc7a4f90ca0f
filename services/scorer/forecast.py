"""The numbers of one seller x marketplace x category for an evaluation day, and its
14-day forecast, from per-promised-date counts (domain.md section 3). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction

from services.scorer.window import FORECAST_DAYS, Window, window

DEFAULT_FLOOR = Fraction(95, 100)


@dataclass(frozen=True, slots=True)
class DayCounts:
    """Packages promised on one day (cancelled ones excluded)."""

    valid: int = 0
    invalid: int = 0
    pending: int = 0
    #: Sum of the pending packages' probabilities of becoming valid in time.
    expected_valid: float = 0.0

    @property
    def total(self) -> int:
        return self.valid + self.invalid + self.pending

    def __add__(self, other: DayCounts) -> DayCounts:
        return DayCounts(
            self.valid + other.valid,
            self.invalid + other.invalid,
            self.pending + other.pending,
            self.expected_valid + other.expected_valid,
        )


@dataclass(frozen=True, slots=True)
class ForecastDay:
    day: date
    vtr: float | None


@dataclass(frozen=True, slots=True)
class Score:
    window: Window
    total: int
    valid: int
    invalid: int
    pending: int
    vtr: float | None
    headroom: int
    forecast: tuple[ForecastDay, ...]
    days_to_breach: int | None
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def forecast_minimum(self) -> float | None:
        values = [point.vtr for point in self.forecast if point.vtr is not None]
        return min(values) if values else None


def rate(valid: float, total: int) -> float | None:
    return None if total == 0 else valid / total


def headroom(valid: int, total: int, floor: Fraction = DEFAULT_FLOOR) -> int:
    """How many more invalid packages the window takes and stays at or above the floor:
    max(0, floor(valid / floor - total)), in exact arithmetic."""
    return max(0, int((Fraction(valid) / floor - total) // 1))


def score(
    days: Mapping[date, DayCounts],
    as_of: date,
    *,
    lag_days: int = 0,
    floor: Fraction = DEFAULT_FLOOR,
    forecast_days: int = FORECAST_DAYS,
    reasons: Mapping[str, int] | None = None,
) -> Score:
    """Score for ``as_of`` from counts keyed by promised date.

    In the window every promised date has passed, so a package still counted as pending
    there (the clock job has not run yet) is invalid. For the forecast, a package already in
    the window keeps its state, and one promised on or after ``as_of`` counts with its
    probability of becoming valid in time.
    """
    current = window(as_of, lag_days)
    valid = invalid = 0
    for day, counts in days.items():
        if day in current:
            valid += counts.valid
            invalid += counts.invalid + counts.pending
    total = valid + invalid
    forecast: list[ForecastDay] = []
    breach: int | None = 0 if total and Fraction(valid, total) < floor else None
    upcoming_from = current.last + timedelta(days=1)
    for k in range(1, forecast_days + 1):
        future = window(as_of + timedelta(days=k), lag_days)
        expected = 0.0
        future_total = 0
        for day, counts in days.items():
            if day not in future:
                continue
            future_total += counts.total
            expected += counts.valid + (counts.expected_valid if day >= upcoming_from else 0.0)
        value = rate(expected, future_total)
        forecast.append(ForecastDay(as_of + timedelta(days=k), value))
        if breach is None and value is not None and value < float(floor):
            breach = k
    pending_upcoming = sum(counts.pending for day, counts in days.items() if day >= upcoming_from)
    return Score(
        window=current,
        total=total,
        valid=valid,
        invalid=invalid,
        pending=pending_upcoming,
        vtr=rate(valid, total),
        headroom=headroom(valid, total, floor),
        forecast=tuple(forecast),
        days_to_breach=breach,
        reasons=dict(reasons or {}),
    )
