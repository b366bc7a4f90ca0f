"""How much a lane's failures come together, learnt from its matured daily cohorts. Pure.

The forecast (``services/scorer/domain/forecast.py``) adds to the independent coins of the
pending packages a correlated part: the failure rate of a set of packages is itself
uncertain (a carrier stops, a hub loses a truck), so the failures vary more than a
Poisson-binomial. Its variance is ``c · F²`` with ``F`` the expected failures: ``c`` is the
squared coefficient of variation of the failure rate, ``Var(rate) / rate²``.

Here ``c`` is measured on the packages whose counting deadline has passed (their outcome
is known): each seller's lane's packages promised on one day are a *cohort*; if the
failures of a cohort were independent coins of one rate, the cohorts' failure shares
would vary only binomially. What they vary beyond that is the variance of the rate between
cohorts, by the method of moments of the beta-binomial: with ``k`` cohorts of ``n_i``
packages, ``x_i`` of them failed, ``N = Σn_i`` and ``q = Σx_i / N``,

    E[Σ n_i (x_i/n_i - q)²] = σ² (N - Σn_i²/N - (k-1)) + (k-1) q(1-q)

so ``σ² = (S - (k-1) q(1-q)) / (N - Σn_i²/N - (k-1))`` (at least 0), the intra-class
correlation is ``ρ = σ² / (q(1-q))`` and ``c = σ² / q²`` (``= ρ (1-q)/q``).

Estimated per seller's lane, per lane (every seller's cohorts of it) and over every lane,
then shrunk from the general to the specific with pseudo-cohorts: a level with ``k``
cohorts takes ``(k·c_level + k0·c_parent) / (k + k0)``; the top level is shrunk towards
the prior (``VTR_FORECAST_CORRELATION``), which is all a deployment without matured
packages has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
    packages: int
    failed: int


@dataclass(frozen=True, slots=True)
class Dispersion:
    """The method-of-moments estimate of one group of cohorts."""

    cohorts: int
    packages: int
    failure_rate: float
    #: Variance of the failure rate between cohorts beyond the binomial (σ²).
    rate_variance: float

    @property
    def icc(self) -> float:
        """The intra-class correlation of the failures within a cohort (ρ)."""
        spread = self.failure_rate * (1.0 - self.failure_rate)
        return 0.0 if spread <= 0.0 else min(1.0, self.rate_variance / spread)

    @property
    def correlation(self) -> float:
        """The forecast's ``c``: ``σ² / q²``, at most :data:`MAX_CORRELATION`; 0 without failures."""
        if self.failure_rate <= 0.0:
            return 0.0
        return min(MAX_CORRELATION, self.rate_variance / self.failure_rate**2)


def dispersion(cohorts: Iterable[tuple[int, int]]) -> Dispersion | None:
    """The estimate from ``(packages, failed)`` cohorts; None when they cannot tell the
    binomial from more (fewer than two cohorts, or only cohorts of one package)."""
    sizes: list[int] = []
    failures: list[int] = []
    for packages, failed in cohorts:
        if packages <= 0:
            continue
        sizes.append(packages)
        failures.append(min(max(failed, 0), packages))
    count = len(sizes)
    total = sum(sizes)
    if count < 2:
        return None
    rate = sum(failures) / total
    # Cohorts of unequal sizes: the effective information about the between-cohort
    # variance is N - Σn²/N - (k-1) (0 when every cohort has one package).
    information = total - sum(n * n for n in sizes) / total - (count - 1)
    if information <= 1e-9:
        return None
    spread = sum(n * (x / n - rate) ** 2 for n, x in zip(sizes, failures, strict=True))
    variance = max(0.0, (spread - (count - 1) * rate * (1.0 - rate)) / information)
    return Dispersion(count, total, rate, variance)


def shrunk(estimate: Dispersion | None, parent: float, pseudo_cohorts: float) -> float:
    """A level's ``c`` shrunk towards its parent's with ``pseudo_cohorts``."""
    if estimate is None:
        return parent
    weight = estimate.cohorts
    return (weight * estimate.correlation + pseudo_cohorts * parent) / (weight + pseudo_cohorts)


@dataclass(frozen=True)
class LaneCorrelations:
    """The learnt estimates of every level, shrunk when asked (the prior is a setting of
    the reads, ``VTR_FORECAST_CORRELATION``, so it is not fixed at the build)."""

    #: Over every lane: the cohorts-weighted mean of the lanes' ``c`` (each lane against its
    #: own failure rate: lanes of different rates are no over-dispersion), with its cohorts.
    pooled: float | None = None
    pooled_cohorts: int = 0
    lanes: Mapping[LaneId, Dispersion] = field(default_factory=dict)
    seller_lanes: Mapping[SellerLane, Dispersion] = field(default_factory=dict)
    pseudo_cohorts: float = 14.0

    def everyone(self, prior: float) -> float:
        if self.pooled is None:
            return prior
        weight = self.pooled_cohorts
        return (weight * self.pooled + self.pseudo_cohorts * prior) / (weight + self.pseudo_cohorts)

    def of_lane(self, seller_id: str, lane: LaneId, prior: float) -> float:
        """``c`` of a seller's lane: its own cohorts, shrunk to the lane's, shrunk to everyone's."""
        lane_value = shrunk(self.lanes.get(lane), self.everyone(prior), self.pseudo_cohorts)
        return shrunk(self.seller_lanes.get((seller_id, lane)), lane_value, self.pseudo_cohorts)

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


def learn_correlations(cohorts: Iterable[Cohort], pseudo_cohorts: float = 14.0) -> LaneCorrelations:
    """Every level's estimate from the matured cohorts."""
    by_lane: dict[LaneId, list[tuple[int, int]]] = defaultdict(list)
    by_seller_lane: dict[SellerLane, list[tuple[int, int]]] = defaultdict(list)
    for cohort in cohorts:
        by_lane[cohort.lane].append((cohort.packages, cohort.failed))
        by_seller_lane[(cohort.seller_id, cohort.lane)].append((cohort.packages, cohort.failed))
    lanes = {lane: found for lane, items in by_lane.items() if (found := dispersion(items)) is not None}
    seller_lanes = {
        key: found for key, items in by_seller_lane.items() if (found := dispersion(items)) is not None
    }
    pooled_cohorts = sum(estimate.cohorts for estimate in lanes.values())
    pooled = (
        sum(estimate.cohorts * estimate.correlation for estimate in lanes.values()) / pooled_cohorts
        if pooled_cohorts
        else None
    )
    return LaneCorrelations(pooled, pooled_cohorts, lanes, seller_lanes, pseudo_cohorts)
