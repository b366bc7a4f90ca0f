"""Survival curves from censored data with delayed entry: per bucket, the (recency-weighted)
events over the hours at risk (a piecewise-exponential Kaplan-Meier), shrunk towards a
parent curve; and the priors before any data."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.scorer.domain.model.lanes import PROMISE_OFFSET
from services.scorer.domain.model.parameters import ModelSettings

#: Bucket boundaries in hours: 3-hour buckets for the first two days (first scans come
#: within hours, and a parcel still unscanned at 30 hours must be told from one at 24), then
#: 12-hour buckets to 30 days; beyond the last boundary nothing happens any more.
BOUNDS: tuple[float, ...] = (*(3.0 * b for b in range(17)), *(48.0 + 12.0 * b for b in range(1, 57)))
BUCKETS = len(BOUNDS) - 1
WIDTHS: tuple[float, ...] = tuple(BOUNDS[b + 1] - BOUNDS[b] for b in range(BUCKETS))
_BOUNDS = np.array(BOUNDS)
_WIDTHS = np.array(WIDTHS)
#: Points of the survival curve compared to decide whether a lane's model changed.
CHANGE_PROBES = (2, 4, 8, 12, 16, 20, 24, 30, 40, 50, 60, BUCKETS)


def bucket_of(hours: float) -> int:
    """Index of the bucket holding ``hours`` (``BUCKETS`` beyond the last)."""
    return bisect.bisect_right(BOUNDS, max(0.0, hours)) - 1


#: Before any data, the share of silences that end with another scan.
GAP_PRIOR_SHARE = 0.98


@dataclass
class Histogram:
    """Weighted events and exposures per bucket for one milestone of one lane."""

    events: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)
    exposure: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)
    #: The recent cohort at each boundary: packages that passed ``BOUNDS[b]`` hours within
    #: the last ``recent_hours`` (unweighted), and how many of them were still waiting then.
    crossed: list[float] = field(default_factory=lambda: [0.0] * (BUCKETS + 1))
    waiting: list[float] = field(default_factory=lambda: [0.0] * (BUCKETS + 1))
    #: Events and exposure of the older packages only: the baseline recent cohorts are
    #: compared with, untouched by the change they may show.
    base_events: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)
    base_exposure: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)
    #: Events and exposure of the packages of the second fold only (the first is the
    #: rest): two halves of the data, to compare the delivery clocks out of sample.
    fold_events: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)
    fold_exposure: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)

    def add(
        self,
        elapsed_hours: float,
        reached: bool,
        weight: float,
        baseline: bool = False,
        entry_hours: float = 0.0,
        fold: int = 0,
    ) -> None:
        """One package: reached the milestone after ``elapsed_hours`` or, if not ``reached``,
        still waiting after that long (censored). Exposure is time at risk, in hours, from
        ``entry_hours`` on (delayed entry: a package observed only from then on, because it
        was selected for still waiting then or because its clock starts later, tells
        nothing about the buckets before)."""
        elapsed = max(0.0, elapsed_hours)
        entry = min(elapsed, max(0.0, entry_hours))
        targets = [(self.events, self.exposure)]
        if baseline:
            targets.append((self.base_events, self.base_exposure))
        if fold:
            targets.append((self.fold_events, self.fold_exposure))
        for events, exposure in targets:
            _add_span(events, exposure, entry, elapsed, reached, weight)

    def held_out_log_likelihood(self, parent: Curve, weight: float) -> float:
        """Log-likelihood of each fold's packages under the curve learnt from the other fold
        (shrunk to ``parent`` as :func:`shrink` does): how well this clock predicts
        packages it was not fitted on. Piecewise exponential: per bucket, events times the
        log of the rate, less the rate times the hours at risk."""
        parent_rates = parent.rates()
        total = 0.0
        first_events = [a - b for a, b in zip(self.events, self.fold_events, strict=True)]
        first_exposure = [a - b for a, b in zip(self.exposure, self.fold_exposure, strict=True)]
        folds = ((first_events, first_exposure), (self.fold_events, self.fold_exposure))
        for (fit_events, fit_exposure), (test_events, test_exposure) in (folds, folds[::-1]):
            for b in range(BUCKETS):
                pseudo = weight * WIDTHS[b]
                rate = (max(0.0, fit_events[b]) + pseudo * parent_rates[b]) / (max(0.0, fit_exposure[b]) + pseudo)
                rate = max(rate, 1e-9)
                total += max(0.0, test_events[b]) * math.log(rate) - rate * max(0.0, test_exposure[b])
        return total

    def add_recent(self, elapsed_hours: float, reached: bool, age_hours: float, recent_hours: float) -> None:
        """The boundaries this package passed within the last ``recent_hours`` (it is
        ``age_hours`` past its reference time), and whether it was still waiting at each."""
        low = bucket_of(max(0.0, age_hours - recent_hours))
        for boundary in range(low, BUCKETS + 1):
            hours = BOUNDS[boundary]
            if hours > age_hours:
                break
            if hours < age_hours - recent_hours:
                continue
            self.crossed[boundary] += 1.0
            if not reached or elapsed_hours > hours:
                self.waiting[boundary] += 1.0

    def merge(self, other: Histogram) -> None:
        for bucket in range(BUCKETS):
            self.events[bucket] += other.events[bucket]
            self.exposure[bucket] += other.exposure[bucket]
        for boundary in range(BUCKETS + 1):
            self.crossed[boundary] += other.crossed[boundary]
            self.waiting[boundary] += other.waiting[boundary]
        for bucket in range(BUCKETS):
            self.base_events[bucket] += other.base_events[bucket]
            self.base_exposure[bucket] += other.base_exposure[bucket]
            self.fold_events[bucket] += other.fold_events[bucket]
            self.fold_exposure[bucket] += other.fold_exposure[bucket]

    def baseline(self) -> Histogram:
        return Histogram(self.base_events, self.base_exposure)

    def as_json(self) -> list[list[float]]:
        values = (
            self.events,
            self.exposure,
            self.crossed,
            self.waiting,
            self.base_events,
            self.base_exposure,
            self.fold_events,
            self.fold_exposure,
        )
        return [[round(v, 4) for v in column] for column in values]

    @classmethod
    def from_json(cls, value: list[list[float]]) -> Histogram:
        return cls(*(list(map(float, values)) for values in value))


def _add_span(
    events: list[float], exposure: list[float], entry: float, elapsed: float, reached: bool, weight: float
) -> None:
    """Hours at risk from ``entry`` to ``elapsed`` into the buckets, and the event at the end."""
    first, last = bucket_of(entry), bucket_of(elapsed)
    for bucket in range(first, min(last, BUCKETS)):
        exposure[bucket] += weight * (BOUNDS[bucket + 1] - max(BOUNDS[bucket], entry))
    if last >= BUCKETS:
        return
    exposure[last] += weight * (elapsed - max(BOUNDS[last], entry))
    if reached and elapsed > entry:
        events[last] += weight


@dataclass(frozen=True)
class Curve:
    """Piecewise-exponential survival curve: ``survival[b]`` = share not at the milestone
    after ``b`` buckets, with a constant rate inside each bucket."""

    survival: tuple[float, ...]
    #: Weighted packages at risk in each bucket, in this lane's own data (how much is known).
    at_risk: tuple[float, ...] = ()

    @classmethod
    def from_rates(cls, rates: Iterable[float], at_risk: tuple[float, ...] = ()) -> Curve:
        """From the rate (events per hour at risk) of each bucket."""
        survival = [1.0]
        for rate, width in zip(rates, WIDTHS, strict=True):
            survival.append(survival[-1] * math.exp(-max(0.0, rate) * width))
        return cls(tuple(survival), at_risk)

    def known_at(self, hours: float) -> float:
        """Weighted packages of this lane still observed after ``hours``."""
        bucket = bucket_of(hours)
        return self.at_risk[bucket] if self.at_risk and bucket < BUCKETS else 0.0

    @classmethod
    def prior(cls, mean_days: float, share: float, shape: int = 1, start_hours: float = 0.0) -> Curve:
        """Erlang waiting time (``shape`` exponential stages) with ``mean_days``, from
        ``start_hours`` on, reached by ``share`` of packages: one stage for a next scan that
        can come any time, several for a transit that takes days before it can end."""
        survival = [
            1.0 - share * _erlang_cdf(max(0.0, bound - start_hours) / 24.0, mean_days, shape) for bound in BOUNDS
        ]
        return cls(tuple(survival))

    @classmethod
    def prior_around(cls, centre_hours: float, spread_hours: float, share: float) -> Curve:
        """Waiting times spread normally around ``centre_hours``, reached by ``share``."""
        survival = [
            1.0 - share * 0.5 * (1.0 + math.erf((bound - centre_hours) / (spread_hours * math.sqrt(2.0))))
            for bound in BOUNDS
        ]
        return cls(tuple(survival))

    def rates(self) -> list[float]:
        s = self.survival
        return [math.log(s[b] / s[b + 1]) / WIDTHS[b] if s[b + 1] > 0 else 50.0 for b in range(BUCKETS)]

    def at(self, hours: float) -> float:
        """Survival after ``hours``, geometric within a bucket."""
        hours = max(0.0, hours)
        bucket = bucket_of(hours)
        if bucket >= BUCKETS:
            return self.survival[BUCKETS]
        start, end = self.survival[bucket], self.survival[bucket + 1]
        if start <= 0.0:
            return 0.0
        fraction = (hours - BOUNDS[bucket]) / WIDTHS[bucket]
        return start * (end / start) ** fraction if end > 0 else start * (1.0 - fraction)

    def at_many(self, hours: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """:meth:`at` for many hours at once."""
        hours = np.maximum(0.0, hours)
        survival = np.asarray(self.survival)
        bucket = np.searchsorted(_BOUNDS, hours, side="right") - 1
        inside = np.minimum(bucket, BUCKETS - 1)
        start, end = survival[inside], survival[inside + 1]
        fraction = (hours - _BOUNDS[inside]) / _WIDTHS[inside]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            geometric = start * (end / start) ** fraction
        within = np.where(end > 0, geometric, start * (1.0 - fraction))
        return np.where(bucket >= BUCKETS, survival[BUCKETS], np.where(start <= 0.0, 0.0, within))

    def reach_by(self, elapsed_hours: float, deadline_hours: float) -> float:
        """P(milestone before ``deadline_hours`` | not reached after ``elapsed_hours``)."""
        if deadline_hours <= elapsed_hours:
            return 0.0
        now = self.at(elapsed_hours)
        if now <= 1e-12:
            return 0.0
        return max(0.0, min(1.0, 1.0 - self.at(deadline_hours) / now))

    @property
    def eventual(self) -> float:
        return 1.0 - self.survival[BUCKETS]

    def share_by(self, hours: float) -> float:
        """Share of the packages that ever reach the milestone that did so within ``hours``."""
        eventual = self.eventual
        return 1.0 if eventual <= 1e-9 else (1.0 - self.at(hours)) / eventual


def _erlang_cdf(days: float, mean_days: float, shape: int) -> float:
    rate_x = days * shape / mean_days
    term, total = 1.0, 1.0
    for i in range(1, shape):
        term *= rate_x / i
        total += term
    return 1.0 - math.exp(-rate_x) * total


def promise_prior(settings: ModelSettings) -> Curve:
    """The promise clock before any data: ``prior_promise_share`` delivered by the deadline,
    ``prior_promise_early_days`` before it on average, 99% within the clock's grid."""
    eventual = 0.99
    early = settings.prior_promise_early_days * 24.0
    z = _normal_quantile(settings.prior_promise_share / eventual)
    return Curve.prior_around(PROMISE_OFFSET - early, early / z, eventual)


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection (a prior is built once per model)."""
    low, high = -10.0, 10.0
    for _ in range(80):
        middle = (low + high) / 2.0
        if 0.5 * (1.0 + math.erf(middle / math.sqrt(2.0))) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def shrink(histogram: Histogram | None, parent: Curve, weight: float) -> Curve:
    if histogram is None:
        return parent
    parent_rates = parent.rates()
    rates = [
        (histogram.events[b] + weight * WIDTHS[b] * parent_rates[b]) / (histogram.exposure[b] + weight * WIDTHS[b])
        for b in range(BUCKETS)
    ]
    # How well the tail is known: packages observed through the last buckets.
    return Curve.from_rates(rates, tuple(histogram.exposure[b] / WIDTHS[b] for b in range(BUCKETS)))
