"""The numbers of one seller x marketplace x category for an evaluation day, and its
14-day forecast, from per-promised-date counts (domain.md section 3). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction

from services.scorer.domain.window import FORECAST_DAYS, Window, window

DEFAULT_FLOOR = Fraction(95, 100)


@dataclass(frozen=True, slots=True)
class DayCounts:
    """Packages promised on one day (cancelled ones excluded)."""

    valid: int = 0
    invalid: int = 0
    pending: int = 0
    #: Sum of the pending packages' probabilities of becoming valid in time.
    expected_valid: float = 0.0
    #: Sum of the pending packages' p(1-p): the variance of their valid count if independent.
    variance: float = 0.0
    #: Orders not confirmed yet, projected (services/scorer/projection.py): expected count,
    #: expected valid, variance of the valid count.
    projected: float = 0.0
    projected_valid: float = 0.0
    projected_variance: float = 0.0

    @property
    def total(self) -> int:
        return self.valid + self.invalid + self.pending


@dataclass(frozen=True, slots=True)
class ForecastDay:
    day: date
    #: Expected VTR of that day.
    vtr: float | None
    #: 10th, 50th and 90th percentile of that day's VTR, and the probability it is below the floor.
    p10: float | None = None
    p50: float | None = None
    p90: float | None = None
    breach_probability: float | None = None


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
    #: Probability that the VTR is below the floor on some day of the forecast (1 when it already is).
    breach_probability: float | None = None
    pending_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def forecast_minimum(self) -> float | None:
        values = [point.vtr for point in self.forecast if point.vtr is not None]
        return min(values) if values else None


def rate(valid: float, total: float) -> float | None:
    return None if total <= 0 else valid / total


def headroom(valid: int, total: int, floor: Fraction = DEFAULT_FLOOR) -> int:
    """How many more invalid packages the window takes and stays at or above the floor:
    max(0, floor(valid / floor - total)), in exact arithmetic."""
    return max(0, int((Fraction(valid) / floor - total) // 1))


#: z of the 10th / 90th percentile of a normal distribution.
Z90 = 1.2815515655446004
#: Default share of the pending packages' failures assumed to happen together (parcels of
#: one lane fail together when a carrier stops): widens the band beyond independent coins.
#: The variance it adds is ``correlation · F²`` (F the expected failures): the squared
#: coefficient of variation of the failure rate. The scorer learns it per lane from matured
#: cohorts (``domain/model/correlation.py``); this value (``VTR_FORECAST_CORRELATION``) is
#: the prior it is shrunk towards, and all a deployment without matured packages has.
DEFAULT_CORRELATION = 0.05


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


#: Breaches needing at most this many failures use :func:`failure_tail`; beyond, the count
#: is large enough for the normal curve.
DISCRETE_TAIL_MAX = 60


def failure_tail(mean: float, variance: float, at_least: int) -> float:
    """P(failures >= ``at_least``) for a count with this mean and variance: a binomial with
    them when the count is less spread than a Poisson (independent packages: a
    Poisson-binomial always is), a negative binomial when more (failures that come
    together, the correlated share). Both are exact for the count's first two moments and
    much closer than a normal curve in the tail of a small count."""
    if variance < mean:
        # Binomial with n trials of probability q = mean / n and variance n q (1 - q): n is
        # rarely whole, so the tails of the two whole numbers around it are interpolated
        # (rounding n was up to 0.066 off the exact Poisson-binomial with three packages;
        # interpolating, 0.017 over 40,000 random sets of 3-80 packages).
        trials = max(1.0, mean / (1.0 - variance / mean))
        fewer = math.floor(trials)
        share = trials - fewer
        tail = _binomial_tail(fewer, mean, at_least)
        return tail if share <= 0.0 else (1.0 - share) * tail + share * _binomial_tail(fewer + 1, mean, at_least)
    # Negative binomial with r successes of probability s: mean r (1-s)/s, variance mean/s.
    success = min(1.0 - 1e-12, mean / variance)
    size = mean * success / (1.0 - success)
    log_s, log_not_s = math.log(success), math.log1p(-success)
    below = sum(
        math.exp(
            math.lgamma(count + size) - math.lgamma(count + 1.0) - math.lgamma(size) + size * log_s + count * log_not_s
        )
        for count in range(at_least)
    )
    return max(0.0, min(1.0, 1.0 - below))


def _binomial_tail(trials: int, mean: float, at_least: int) -> float:
    """P(at least ``at_least`` of ``trials`` trials fail), each with probability mean / trials."""
    if at_least > trials:
        return 0.0
    q = mean / trials
    if q >= 1.0:
        return 1.0
    log_q, log_not_q = math.log(q), math.log1p(-q)
    below = sum(
        math.exp(
            math.lgamma(trials + 1.0)
            - math.lgamma(count + 1.0)
            - math.lgamma(trials - count + 1.0)
            + count * log_q
            + (trials - count) * log_not_q
        )
        for count in range(at_least)
    )
    return max(0.0, min(1.0, 1.0 - below))


@dataclass(frozen=True, slots=True)
class Outlook:
    """The distribution of one forecast day's valid count, as a normal approximation of the
    Poisson-binomial sum of the pending packages (plus a correlated share)."""

    certain_valid: float
    #: Valid if every pending (and projected) package became valid.
    possible_valid: float
    total: float
    mean: float
    variance: float

    def breach_probability(self, floor: Fraction) -> float:
        if self.total <= 0:
            return 0.0
        # Breach when valid < floor * total, i.e. valid <= needed - 1 (exact for whole totals;
        # projected orders make the total fractional, then it is the nearest whole count).
        needed = math.ceil(floor * Fraction(round(self.total, 6)).limit_denominator(10**6))
        if self.variance <= 1e-12:
            return 1.0 if self.mean < needed - 0.5 else 0.0
        # The same event counted in failures: at least this many of the packages that could
        # still be valid fail. Few failures expected (a healthy or a small category): the
        # normal curve is poor that far in its tail, a discrete law is not.
        failures = max(0.0, self.possible_valid - self.mean)
        at_least = math.ceil(self.possible_valid - (needed - 1) - 1e-9)
        if at_least <= 0:
            return 1.0
        if at_least <= DISCRETE_TAIL_MAX and failures > 0:
            return failure_tail(failures, self.variance, at_least)
        return normal_cdf((needed - 0.5 - self.mean) / math.sqrt(self.variance))

    def rate_at(self, z: float) -> float | None:
        if self.total <= 0:
            return None
        value = self.mean + z * math.sqrt(max(0.0, self.variance))
        return min(self.possible_valid, max(self.certain_valid, value)) / self.total


def score(
    days: Mapping[date, DayCounts],
    as_of: date,
    *,
    lag_days: int = 0,
    floor: Fraction = DEFAULT_FLOOR,
    forecast_days: int = FORECAST_DAYS,
    reasons: Mapping[str, int] | None = None,
    pending_reasons: Mapping[str, int] | None = None,
    correlation: float = DEFAULT_CORRELATION,
) -> Score:
    """Score for ``as_of`` from counts keyed by promised date.

    In the window every promised date has passed, so a package still counted as pending
    there (the clock job has not run yet) is invalid. For the forecast, a package already in
    the window keeps its state, and one promised on or after ``as_of`` counts with its
    probability of becoming valid in time. Each day's valid count is a sum of independent
    coins (mean Σp, variance Σp(1-p)) plus a correlated part whose standard deviation is
    ``sqrt(correlation)`` times the expected failures: together they give the band and the
    probability of being below the floor. ``correlation`` is the category's learnt value
    (its pending packages' lanes, ``LaneCorrelations.of_category``) when the caller has one.
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
    likely_breach: float = 0.0 if breach is None else 1.0
    for k in range(1, forecast_days + 1):
        future = window(as_of + timedelta(days=k), lag_days)
        expected = 0.0
        variance = 0.0
        failures = 0.0
        certain = possible = 0.0
        future_total = 0.0
        for day, counts in days.items():
            if day not in future:
                continue
            future_total += counts.total
            certain += counts.valid
            possible += counts.valid
            if day >= upcoming_from:
                future_total += counts.projected
                possible += counts.pending + counts.projected
                expected += counts.valid + counts.expected_valid + counts.projected_valid
                variance += counts.variance + counts.projected_variance
                failures += counts.pending - counts.expected_valid + counts.projected - counts.projected_valid
            else:
                expected += counts.valid
        outlook = Outlook(certain, possible, future_total, expected, variance + correlation * max(0.0, failures) ** 2)
        probability = outlook.breach_probability(floor)
        forecast.append(
            ForecastDay(
                as_of + timedelta(days=k),
                rate(expected, future_total),
                outlook.rate_at(-Z90),
                outlook.rate_at(0.0),
                outlook.rate_at(Z90),
                probability,
            )
        )
        likely_breach = max(likely_breach, probability)
        if breach is None and probability >= 0.5:
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
        breach_probability=likely_breach,
        pending_reasons=dict(pending_reasons or {}),
    )
