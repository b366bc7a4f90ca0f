"""How much a lane's failures come together, learnt from its matured daily cohorts. Pure.

The forecast (``services/scorer/domain/forecast.py``) adds to the independent coins of the
pending packages a correlated part: the failure rate of a set of packages is itself
uncertain (a carrier stops, a hub loses a truck), so the failures vary more than a
Poisson-binomial. Its variance is ``c · F²`` with ``F`` the expected failures: ``c`` is the
squared coefficient of variation of the failure rate, ``Var(rate) / rate²``.

Here ``c`` is measured on the packages whose counting deadline has passed (their outcome
is known): each seller's lane's packages promised on one day are a *cohort*. If the
failures of a cohort were independent coins of the rate the model follows, consecutive
cohorts' failure shares would differ only binomially; what they differ beyond that is the
day-to-day variance ``σ²`` of the rate (the method of moments of :func:`dispersion`), the
part no model that follows the lane's recent record can foresee. Then the intra-class
correlation of a cohort is ``ρ = σ² / (q(1-q))`` and ``c = σ² / q²`` (``= ρ (1-q)/q``),
``q`` the level's failure share. Differences of consecutive cohorts, not the spread around
the mean of the period: a lane that began to fail ten days ago spreads its cohorts widely
around its 28-day mean, but the model already prices its parcels low (its curves, its
recent cohorts); counted as correlation, that spread would widen the band of every category
on the lane up to the cap (measured: the breach probabilities of failing categories fell
from 0.99 to 0.7, their ``days_to_breach`` slipped by days).

Estimated per seller's lane, per lane (every seller's cohorts of it) and over every lane,
then shrunk from the general to the specific with pseudo-cohorts: a level of weight ``k``
(its pairs of cohorts, discounted where failures are rare: :attr:`Dispersion.weight`) takes
``(k·c_level + k0·c_parent) / (k + k0)``; the top level is shrunk towards
the prior (``VTR_FORECAST_CORRELATION``), which is all a deployment without matured
packages has. The prior is also the floor (``correlation_prior_is_floor``): the history
can show that a lane's failures jump from day to day more than chance, not that the model
will not be surprised by a failure the lane never had.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

#: carrier x service (normalised) x origin x marketplace, as ``freshness.LaneId``.
LaneId = tuple[str, str, str, str]
#: (seller, lane).
SellerLane = tuple[str, LaneId]

#: Never more than this (the setting's own bound): a lane that failed entirely on some days
#: and not at all on others would otherwise give hundreds.
MAX_CORRELATION = 1.0


@dataclass(frozen=True, slots=True)
class Cohort:
    """A seller's lane's packages promised on one day, once their deadline has passed."""

    seller_id: str
    lane: LaneId
    promised_date: date
    packages: int
    failed: int


@dataclass(frozen=True, slots=True)
class Dispersion:
    """The method-of-moments estimate of one group of cohorts."""

    #: Pairs of consecutive cohorts compared (the weight of the level in the shrinkage).
    cohorts: int
    packages: int
    failure_rate: float
    #: Variance of the failure rate between cohorts beyond the binomial (σ²), as estimated:
    #: below 0 when the cohorts vary less than the binomial (kept so that averages and
    #: shrinkage are not biased upwards by clipping each estimate at 0).
    rate_variance: float
    #: Mean packages per cohort.
    cohort_size: float = 0.0

    @property
    def weight(self) -> float:
        """What the estimate weighs against its parent's pseudo-cohorts: its pairs, times
        ``(f / (1 + f))²`` with ``f`` the failures a cohort has on average. ``c`` is
        ``σ² / q²``: the noise of ``σ²`` is about the binomial variance of a cohort's share,
        ``q / n``, so the noise of ``c`` grows as ``1 / (n q)``. A healthy lane's cohorts of
        30 parcels at 0.7% have a failure every fifth day: one unlucky day makes ``c`` hit
        its cap (measured on the ``delivery_stop`` family before this weight: healthy lanes
        learnt 1.0), while it tells almost nothing; a lane failing a few parcels a day speaks
        for itself."""
        failures = self.failure_rate * self.cohort_size
        return self.cohorts * (failures / (1.0 + failures)) ** 2

    @property
    def icc(self) -> float:
        """The intra-class correlation of the failures within a cohort (ρ)."""
        spread = self.failure_rate * (1.0 - self.failure_rate)
        return 0.0 if spread <= 0.0 else max(0.0, min(1.0, self.rate_variance / spread))

    @property
    def raw_correlation(self) -> float:
        """``σ² / q²`` as estimated, within ±:data:`MAX_CORRELATION` (what is averaged and shrunk)."""
        if self.failure_rate <= 0.0:
            return 0.0
        return max(-MAX_CORRELATION, min(MAX_CORRELATION, self.rate_variance / self.failure_rate**2))

    @property
    def correlation(self) -> float:
        """The forecast's ``c``: ``σ² / q²``, from 0 to :data:`MAX_CORRELATION`; 0 without failures."""
        return max(0.0, self.raw_correlation)


def dispersion(sequences: Iterable[Sequence[tuple[int, int]]]) -> Dispersion | None:
    """The estimate from sequences of ``(packages, failed)`` cohorts, each in date order
    (one sequence per seller's lane); None when they cannot tell the binomial from more
    (no two consecutive cohorts, or only cohorts of one package).

    Each cohort is compared with the one before it: a failure rate that moves slowly (a
    lane that degrades over weeks, a stop that began some days ago) is what the
    per-package model follows, and only the part that changes from one day to the next
    is left unexplained. For consecutive shares ``a``, ``b`` of ``n``, ``m`` packages,
    ``E[(b - a)²] = 2σ² + (q(1-q) - σ²)(1/n + 1/m)``; weighted by ``w = 1 / (1/n + 1/m)``
    over ``P`` pairs, ``σ² = (Σ w (b-a)² - P q(1-q)) / (2 Σw - P)``."""
    squares = weights = 0.0
    pairs = packages = failures = cohorts = 0
    for sequence in sequences:
        previous: tuple[int, float] | None = None
        for size, failed in sequence:
            if size <= 0:
                continue
            failed = min(max(failed, 0), size)
            cohorts += 1
            packages += size
            failures += failed
            share = failed / size
            if previous is not None:
                weight = 1.0 / (1.0 / previous[0] + 1.0 / size)
                squares += weight * (share - previous[1]) ** 2
                weights += weight
                pairs += 1
            previous = (size, share)
    information = 2.0 * weights - pairs
    if pairs == 0 or information <= 1e-9:
        return None
    rate = failures / packages
    variance = (squares - pairs * rate * (1.0 - rate)) / information
    return Dispersion(pairs, packages, rate, variance, packages / cohorts)


def shrunk(estimate: Dispersion | None, parent: float, pseudo_cohorts: float) -> float:
    """A level's ``c`` shrunk towards its parent's with ``pseudo_cohorts``, from its raw
    estimate (the caller clips the value it uses at 0: :meth:`LaneCorrelations.of_lane`)."""
    if estimate is None:
        return parent
    weight = estimate.weight
    return (weight * estimate.raw_correlation + pseudo_cohorts * parent) / (weight + pseudo_cohorts)


@dataclass(frozen=True)
class LaneCorrelations:
    """The learnt estimates of every level, shrunk when asked (the prior is a setting of
    the reads, ``VTR_FORECAST_CORRELATION``, so it is not fixed at the build)."""

    #: Over every lane: the mean of the lanes' ``c`` weighted by :attr:`Dispersion.weight`
    #: (each lane against its own failure rate: lanes of different rates are no
    #: over-dispersion), with its total weight.
    pooled: float | None = None
    pooled_weight: float = 0.0
    lanes: Mapping[LaneId, Dispersion] = field(default_factory=dict)
    seller_lanes: Mapping[SellerLane, Dispersion] = field(default_factory=dict)
    pseudo_cohorts: float = 14.0
    #: The prior is also the least a lane takes: what the history of matured cohorts
    #: cannot show (a lane failing now in a way it never did, the optimism of section 6's
    #: reliability split) keeps its margin. Measured without the floor on ``make
    #: evaluate`` (23 families, seeds 1-2): the learnt values, near 0 on the simulator's
    #: binomial lanes, made the breach probabilities overconfident (log loss of the
    #: categories 0.324 to 0.344; with the floor 0.316).
    prior_is_floor: bool = True

    def everyone(self, prior: float) -> float:
        if self.pooled is None:
            return prior
        weight = self.pooled_weight
        return max(0.0, (weight * self.pooled + self.pseudo_cohorts * prior) / (weight + self.pseudo_cohorts))

    def of_lane(self, seller_id: str, lane: LaneId, prior: float) -> float:
        """``c`` of a seller's lane: its own cohorts, shrunk to the lane's, shrunk to everyone's."""
        lane_value = shrunk(self.lanes.get(lane), self.everyone(prior), self.pseudo_cohorts)
        value = shrunk(self.seller_lanes.get((seller_id, lane)), lane_value, self.pseudo_cohorts)
        return max(prior if self.prior_is_floor else 0.0, min(MAX_CORRELATION, value))

    def of_category(self, seller_id: str, pending: Iterable[tuple[LaneId, int]], prior: float) -> float:
        """``c`` for a seller-category: its pending packages' lanes' values, weighted by
        their pending packages (the prior's shrunk value when it has none)."""
        weighted = total = 0.0
        for lane, count in pending:
            if count <= 0:
                continue
            weighted += count * self.of_lane(seller_id, lane, prior)
            total += count
        return self.everyone(prior) if total <= 0 else weighted / total


def learn_correlations(
    cohorts: Iterable[Cohort], pseudo_cohorts: float = 14.0, prior_is_floor: bool = True
) -> LaneCorrelations:
    """Every level's estimate from the matured cohorts."""
    sequences: dict[SellerLane, list[tuple[int, int]]] = defaultdict(list)
    for cohort in sorted(cohorts, key=lambda cohort: cohort.promised_date):
        sequences[(cohort.seller_id, cohort.lane)].append((cohort.packages, cohort.failed))
    by_lane: dict[LaneId, list[list[tuple[int, int]]]] = defaultdict(list)
    for (_, lane), sequence in sequences.items():
        by_lane[lane].append(sequence)
    lanes = {lane: found for lane, items in by_lane.items() if (found := dispersion(items)) is not None}
    seller_lanes = {key: found for key, sequence in sequences.items() if (found := dispersion([sequence])) is not None}
    pooled_weight = sum(estimate.weight for estimate in lanes.values())
    pooled = (
        sum(estimate.weight * estimate.raw_correlation for estimate in lanes.values()) / pooled_weight
        if pooled_weight > 0
        else None
    )
    return LaneCorrelations(pooled, pooled_weight, lanes, seller_lanes, pseudo_cohorts, prior_is_floor)
