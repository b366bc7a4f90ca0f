"""The per-package model: the probability that a pending package's tracking becomes valid
before it is counted, learnt from the packages themselves. Pure: no I/O, no clock.

Two milestones decide validity (domain.md section 2):

- ``first_scan``: the first physical scan, timed from the confirmation. Enough for partial
  tracking.
- ``delivery``: the first delivery or delivery-attempt scan, timed from the first scan.
  Full tracking needs it too.

For each milestone the model keeps, per lane, a discrete-time survival curve (12-hour
buckets over 30 days) estimated as in Kaplan-Meier: in each bucket, the hazard is the
(recency-weighted) number of packages that reached the milestone in it over the number
still waiting at its start. Packages still waiting today are *censored*, not failures,
so a carrier that stopped scanning two days ago already shows: its recent parcels are at
risk in the early buckets and reach nothing. Packages that never reach the milestone stay
at risk in every bucket, so the curve's tail is the share that never gets there.

Lanes are shrunk hierarchically (seller's lane -> lane -> carrier -> everyone -> prior):
each level's hazard is ``(events + w * parent_hazard) / (exposure + w)``, so a new seller
borrows the lane's behaviour and a seller with enough recent parcels of their own is
judged by them.

Given a package at ``now`` with a deadline (the end of the first day on which it counts,
the day after its promised date), the probability is the chance of reaching the missing
milestones before the deadline, conditional on not having reached them by now.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.schemas import Reason

#: Bucket boundaries in hours: 3-hour buckets for the first two days (first scans come
#: within hours, and a parcel still unscanned at 30 hours must be told from one at 24), then
#: 12-hour buckets to 30 days; beyond the last boundary nothing happens any more.
BOUNDS: tuple[float, ...] = (*(3.0 * b for b in range(17)), *(48.0 + 12.0 * b for b in range(1, 57)))
BUCKETS = len(BOUNDS) - 1
WIDTHS: tuple[float, ...] = tuple(BOUNDS[b + 1] - BOUNDS[b] for b in range(BUCKETS))
#: Points of the survival curve compared to decide whether a lane's model changed.
CHANGE_PROBES = (2, 4, 8, 12, 16, 20, 24, 30, 40, 50, 60, BUCKETS)


def bucket_of(hours: float) -> int:
    """Index of the bucket holding ``hours`` (``BUCKETS`` beyond the last)."""
    return bisect.bisect_right(BOUNDS, max(0.0, hours)) - 1


#: Reasons that a silent carrier explains better (it is not this seller's parcel alone).
SILENCE_MASKS = frozenset(
    {
        Reason.AWAITING_FIRST_SCAN,
        Reason.OVERDUE_FIRST_SCAN,
        Reason.AWAITING_DELIVERY_SCAN,
        Reason.STALLED_IN_TRANSIT,
    }
)


class Milestone(StrEnum):
    FIRST_SCAN = "first_scan"
    DELIVERY = "delivery"
    #: The next physical scan after one of the stage's scans (see :data:`STAGE_OF_SCAN`):
    #: how long a lane's parcels usually stay silent in transit, at the destination, and
    #: out for delivery. A parcel silent far longer than its stage allows has probably
    #: stalled, days before it is overdue against the whole transit time.
    GAP_TRANSIT = "gap_transit"
    GAP_DESTINATION = "gap_destination"
    GAP_LAST_MILE = "gap_last_mile"


#: The silence a parcel's last physical scan starts, by its canonical status. A delivery
#: or delivery-attempt scan ends what full tracking needs; nothing is waited for after it.
STAGE_OF_SCAN: dict[str, Milestone] = {
    "ACCEPTED": Milestone.GAP_TRANSIT,
    "IN_TRANSIT": Milestone.GAP_TRANSIT,
    "EXCEPTION": Milestone.GAP_TRANSIT,
    "RETURNED": Milestone.GAP_TRANSIT,
    "ARRIVED_DESTINATION": Milestone.GAP_DESTINATION,
    "OUT_FOR_DELIVERY": Milestone.GAP_LAST_MILE,
}
GAP_MILESTONES = frozenset(STAGE_OF_SCAN.values())
#: Milestones a package waits for (the others are silences between scans).
PACKAGE_MILESTONES = (Milestone.FIRST_SCAN, Milestone.DELIVERY)


#: (seller, carrier, service key, origin, marketplace): the finest lane.
LaneKey = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class ModelSettings:
    """Model parameters (``[forecast]`` of policy.toml)."""

    #: Weight of a package halves every this many days of age (recent lanes count more).
    half_life_days: float = 7.0
    #: Pseudo-packages at risk a level borrows from its parent in each bucket.
    shrinkage_weight: float = 6.0
    #: Packages confirmed this many days ago or less are learnt from.
    history_days: int = 56
    #: Prior curves (before any data): mean days to the milestone and share that gets it.
    prior_first_scan_days: float = 1.0
    prior_first_scan_share: float = 0.97
    prior_delivery_days: float = 8.0
    prior_delivery_share: float = 0.9
    #: A package whose tracking number looks malformed keeps this share of its probability.
    malformed_factor: float = 0.2
    #: A package whose aggregator stopped tracking it keeps this share of its probability.
    tracking_stopped_factor: float = 0.2
    #: A lane reaches "overdue"/"stalled" once this share of its eventual milestones has happened.
    overdue_share: float = 0.95
    #: The usual time to a milestone: when this share of the lane's eventual ones happened.
    usual_share: float = 0.8
    #: A service whose parcels get a delivery scan this rarely within ``partial_only_days``
    #: of their first scan is partial-only (whatever it is called) ...
    partial_only_share: float = 0.05
    partial_only_days: float = 14.0
    #: ... once this many (recency-weighted) parcels were observed that long.
    partial_only_min_exposure: float = 5.0
    #: Carrier health: silent once the scans expected during the silence reach this number
    #: (a Poisson count with this mean is 0 with probability e^-8, about 0.03%).
    silent_min_expected_scans: float = 8.0
    #: Probability factor for a silent carrier's parcels: halves every this many hours of silence.
    silent_half_life_hours: float = 12.0
    silent_min_factor: float = 0.05
    #: ... and never before this many hours without a scan (scans come in daily waves).
    silent_min_hours: float = 12.0
    #: Carrier health looks back this many hours for the usual rate (the last day excluded).
    health_baseline_hours: float = 7 * 24.0
    #: A pending package's probability is recomputed at least this often (time alone moves it).
    review_hours: float = 3.0
    #: Recent cohorts: packages that passed a given age within this many hours ...
    recent_hours: float = 48.0
    #: ... are shrunk towards the parent level's estimate with this many pseudo-packages ...
    recent_weight: float = 4.0
    #: ... and only their waiting beyond this many standard deviations of chance counts,
    #: and beyond what the median other seller of the carrier shows (a backlog), once at
    #: least this many other sellers' lanes had this many parcels pass that age recently.
    recent_z: float = 2.0
    peer_min_sellers: int = 3
    peer_min_parcels: float = 5.0
    #: Orders not confirmed yet are projected from this many days of recent volume ...
    projection_volume_days: int = 7
    #: ... with the health of the packages confirmed between these many hours ago: old
    #: enough to have had their first scan, recent enough to show today's carrier.
    projection_health_from_hours: float = 24.0
    projection_health_to_hours: float = 96.0
    #: Silences between scans are learnt from the scans of packages confirmed this many days ago or less.
    silence_history_days: int = 28
    #: Before any data: mean days to the next scan in transit, at the destination and out
    #: for delivery.
    prior_gap_transit_days: float = 2.0
    prior_gap_destination_days: float = 1.5
    prior_gap_last_mile_days: float = 0.5
    #: A parcel is never assumed less likely than this to be lost, whatever its lane's
    #: history says: its silence can then always speak.
    silence_min_dead: float = 0.01
    #: Parcels whose first scan is this many hours old or more show whether their lane's
    #: parcels are going silent (younger ones cannot have been silent long enough yet) ...
    silence_cohort_from_hours: float = 96.0
    #: ... up to this age: the lane as it is lately, not a month ago ...
    silence_cohort_to_hours: float = 10 * 24.0
    #: ... the newest weighing most: a parcel's weight halves every this many days of age.
    silence_cohort_half_life_days: float = 5.0


#: Before any data, the share of silences that end with another scan.
GAP_PRIOR_SHARE = 0.98


# -- survival curves -------------------------------------------------------------------


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

    def add(self, elapsed_hours: float, reached: bool, weight: float, baseline: bool = False) -> None:
        """One package: reached the milestone after ``elapsed_hours`` or, if not ``reached``,
        still waiting after that long (censored). Exposure is time at risk, in hours."""
        elapsed = max(0.0, elapsed_hours)
        last = bucket_of(elapsed)
        targets = [(self.events, self.exposure)]
        if baseline:
            targets.append((self.base_events, self.base_exposure))
        for events, exposure in targets:
            for bucket in range(min(last, BUCKETS)):
                exposure[bucket] += weight * WIDTHS[bucket]
            if last >= BUCKETS:
                continue
            exposure[last] += weight * (elapsed - BOUNDS[last])
            if reached:
                events[last] += weight

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

    def baseline(self) -> Histogram:
        return Histogram(self.base_events, self.base_exposure)

    def as_json(self) -> list[list[float]]:
        values = (self.events, self.exposure, self.crossed, self.waiting, self.base_events, self.base_exposure)
        return [[round(v, 4) for v in column] for column in values]

    @classmethod
    def from_json(cls, value: list[list[float]]) -> Histogram:
        return cls(*(list(map(float, values)) for values in value))


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
    def prior(cls, mean_days: float, share: float) -> Curve:
        """Exponential waiting time with ``mean_days``, reached by ``share`` of packages."""
        survival = [1.0 - share * (1.0 - math.exp(-bound / 24.0 / mean_days)) for bound in BOUNDS]
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


# -- carrier health --------------------------------------------------------------------


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


# -- the model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What one resolved or waiting package says about its lane."""

    lane: LaneKey
    milestone: Milestone
    elapsed_hours: float
    reached: bool
    weight: float
    #: Hours from the reference time (confirmation, or first scan) to now.
    age_hours: float = 0.0


def wilson_low(hits: float, count: float, z: float) -> float:
    """The lower end of the Wilson score interval of ``hits`` out of ``count`` (z standard
    deviations): a share that small samples cannot overstate."""
    if count <= 0:
        return 0.0
    share, z2 = hits / count, z * z
    centre = share + z2 / (2.0 * count)
    spread = z * math.sqrt(share * (1.0 - share) / count + z2 / (4.0 * count * count))
    return max(0.0, (centre - spread) / (1.0 + z2 / count))


#: From this many sellers of a carrier with recent parcels, the median peer includes the
#: seller asking (one rank more or less); below it, each seller is left out of its own.
PEERS_SHARED_FROM = 15
#: Entries a per-lane memo keeps before it starts over (a model serves every lane).
MEMO_SIZE = 200_000


def bounded_put(memo: dict[Any, float], key: Any, value: float) -> None:
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = value


def halving(age_hours: float, half_life_days: float) -> float:
    """Weight of something ``age_hours`` old when weights halve every ``half_life_days``."""
    return math.pow(0.5, max(0.0, age_hours) / 24.0 / half_life_days)


def recency_weight(age_hours: float, settings: ModelSettings) -> float:
    return halving(age_hours, settings.half_life_days)


def observations_of(
    lane: LaneKey,
    confirmed_at: datetime,
    first_scan_at: datetime | None,
    delivery_scan_at: datetime | None,
    now: datetime,
    settings: ModelSettings,
) -> list[Observation]:
    """One package's observations: its first scan, and once scanned its delivery scan.
    Partial-tracking parcels count for the delivery scan too: what a service does at the
    destination does not depend on the order's value."""
    age = _hours(now - confirmed_at)
    weight = recency_weight(age, settings)
    if first_scan_at is None or first_scan_at > now:
        return [Observation(lane, Milestone.FIRST_SCAN, age, False, weight, age)]
    reached = delivery_scan_at is not None and delivery_scan_at <= now
    end = delivery_scan_at if reached and delivery_scan_at is not None else now
    return [
        Observation(lane, Milestone.FIRST_SCAN, _hours(first_scan_at - confirmed_at), True, weight, age),
        Observation(
            lane, Milestone.DELIVERY, _hours(end - first_scan_at), reached, weight, _hours(now - first_scan_at)
        ),
    ]


def silence_observations(
    lane: LaneKey, scans: Sequence[tuple[str, datetime]], now: datetime, settings: ModelSettings
) -> list[Observation]:
    """One parcel's silences: from each physical scan (distinct, in time order) to the next,
    the last one still running (censored) unless it was a delivery scan, which ends them."""
    found: list[Observation] = []
    for index, (status, moment) in enumerate(scans):
        stage = STAGE_OF_SCAN.get(status)
        if stage is None or moment > now:
            break
        age = _hours(now - moment)
        following = scans[index + 1][1] if index + 1 < len(scans) else None
        if following is not None and following <= now:
            found.append(Observation(lane, stage, _hours(following - moment), True, recency_weight(age, settings), age))
        else:
            found.append(Observation(lane, stage, age, False, recency_weight(age, settings), age))
            break
    return found


@dataclass(frozen=True, slots=True)
class InFlight:
    """A scanned parcel of the recent cohort: whether its lane's parcels are going silent."""

    lane: LaneKey
    #: Hours since its first scan.
    age_hours: float
    delivered: bool
    #: The stage its last physical scan left it in, and hours since that scan.
    stage: Milestone | None
    silent_hours: float


def _hours(delta: Any) -> float:
    return float(delta.total_seconds()) / 3600.0


def _levels(lane: LaneKey) -> tuple[tuple[str, ...], ...]:
    """The keys of a lane from the most general to the most specific."""
    seller, carrier, service, origin, marketplace = lane
    return (
        ("all",),
        ("carrier", carrier, origin),
        ("lane", carrier, service, origin, marketplace),
        ("seller", seller, carrier, service, origin, marketplace),
    )


def _parent(level_key: tuple[str, ...]) -> tuple[str, ...] | None:
    kind = level_key[0]
    if kind == "seller":
        return ("lane", *level_key[2:])
    if kind == "lane":
        return ("carrier", level_key[1], level_key[3])
    if kind == "carrier":
        return ("all",)
    return None


@dataclass
class ModelState:
    """What the model is built from, small enough to store as one JSON document: the
    histograms per finest lane and milestone, and the carrier health."""

    histograms: dict[tuple[LaneKey, Milestone], Histogram] = field(default_factory=dict)
    health: dict[tuple[str, str], CarrierHealth] = field(default_factory=dict)
    computed_at: datetime | None = None
    recent_hours: float = 48.0
    #: Packages older than this make the baseline of the first scan's recent cohorts.
    baseline_after_hours: float = 96.0
    #: The recent cohort of scanned parcels per seller's lane (rebuilt at each refresh, not stored).
    in_flight: list[InFlight] = field(default_factory=list)

    def add(self, observation: Observation) -> None:
        key = (observation.lane, observation.milestone)
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = Histogram()
        if observation.milestone is not Milestone.FIRST_SCAN:
            # Only the first scan has recent cohorts and a baseline (:meth:`Model.dead_share`);
            # the rest need their curves alone: the cheap path.
            histogram.add(observation.elapsed_hours, observation.reached, observation.weight)
            return
        histogram.add(
            observation.elapsed_hours,
            observation.reached,
            observation.weight,
            baseline=observation.age_hours >= self.baseline_after_hours,
        )
        histogram.add_recent(observation.elapsed_hours, observation.reached, observation.age_hours, self.recent_hours)

    def lanes_only(self) -> ModelState:
        """The same state with every seller's histograms merged into their lane's: what is
        stored (small whatever the number of sellers); seller lanes are rebuilt from the
        packages at each refresh."""
        merged: dict[tuple[LaneKey, Milestone], Histogram] = {}
        for (lane, milestone), histogram in self.histograms.items():
            key = (("", *lane[1:]), milestone)
            target = merged.get(key)  # type: ignore[arg-type]
            if target is None:
                target = merged[key] = Histogram()  # type: ignore[index]
            target.merge(histogram)
        return ModelState(merged, dict(self.health), self.computed_at, self.recent_hours, self.baseline_after_hours)

    def as_json(self) -> dict[str, Any]:
        return {
            "computed_at": self.computed_at.isoformat() if self.computed_at else None,
            "histograms": [
                [list(lane), milestone.value, h.as_json()] for (lane, milestone), h in self.histograms.items()
            ],
            "health": [
                [h.carrier, h.origin, h.silent_hours, h.usual_rate, h.source_outage] for h in self.health.values()
            ],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ModelState:
        histograms = {
            (tuple(lane), Milestone(milestone)): Histogram.from_json(h)  # type: ignore[misc]
            for lane, milestone, h in value.get("histograms", [])
        }
        health = {
            (carrier, origin): CarrierHealth(carrier, origin, float(hours), float(rate), *outage)
            for carrier, origin, hours, rate, *outage in value.get("health", [])
        }
        computed = value.get("computed_at")
        return cls(histograms, health, datetime.fromisoformat(computed) if computed else None)


class Model:
    """Shrunk curves per lane and milestone, ready for :meth:`probability`."""

    def __init__(self, state: ModelState, settings: ModelSettings) -> None:
        self.state = state
        self.settings = settings
        self._curves: dict[tuple[tuple[str, ...], Milestone], Curve] = {}
        #: The first scan's curves from the older packages only (:meth:`dead_share`).
        self._base_curves: dict[tuple[str, ...], Curve] = {}
        self._memo: dict[tuple[Any, ...], float] = {}
        priors = {
            Milestone.FIRST_SCAN: Curve.prior(settings.prior_first_scan_days, settings.prior_first_scan_share),
            Milestone.DELIVERY: Curve.prior(settings.prior_delivery_days, settings.prior_delivery_share),
            Milestone.GAP_TRANSIT: Curve.prior(settings.prior_gap_transit_days, GAP_PRIOR_SHARE),
            Milestone.GAP_DESTINATION: Curve.prior(settings.prior_gap_destination_days, GAP_PRIOR_SHARE),
            Milestone.GAP_LAST_MILE: Curve.prior(settings.prior_gap_last_mile_days, GAP_PRIOR_SHARE),
        }
        merged: dict[tuple[tuple[str, ...], Milestone], Histogram] = defaultdict(Histogram)
        for (lane, milestone), histogram in state.histograms.items():
            for level in _levels(lane):
                merged[(level, milestone)].merge(histogram)
        # Parents before children: keys sorted by depth.
        for level_key, milestone in sorted(merged, key=lambda key: len(key[0])):
            parent_key = _parent(level_key)
            parent = priors[milestone] if parent_key is None else self._curves[(parent_key, milestone)]
            self._curves[(level_key, milestone)] = shrink(
                merged[(level_key, milestone)], parent, settings.shrinkage_weight
            )
            if milestone is Milestone.FIRST_SCAN:
                base_parent = priors[milestone] if parent_key is None else self._base_curves[parent_key]
                self._base_curves[level_key] = shrink(
                    merged[(level_key, milestone)].baseline(), base_parent, settings.shrinkage_weight
                )
        self._priors = priors
        self._merged = dict(merged)
        #: Every seller's first-scan histogram per (carrier, origin): the peers a seller's
        #: recent waiting is compared with (:meth:`median_peer`).
        self._first_scans_by_carrier: dict[tuple[str, str], list[tuple[LaneKey, Histogram]]] = defaultdict(list)
        for (lane, milestone), histogram in state.histograms.items():
            if milestone is Milestone.FIRST_SCAN and lane[0]:
                self._first_scans_by_carrier[(lane[1], lane[3])].append((lane, histogram))
        self._peer_memo: dict[tuple[str, str, int], tuple[list[float], dict[str, float]]] = {}
        #: Bounded memos of the per-lane answers (a model lives for one refresh).
        self._backlog_memo: dict[tuple[str, str, str, int, int], float] = {}
        self._dead_memo: dict[tuple[LaneKey, int], float] = {}
        self._usual: dict[tuple[LaneKey, Milestone], float] = {}
        self._going_silent = self._silent_shares(state.in_flight)

    def usual_hours(self, lane: LaneKey, milestone: Milestone) -> float:
        """Hours by which ``usual_share`` of the lane's parcels that ever reach the milestone
        have reached it: the age at which a recent cohort first shows a change."""
        key = (lane, milestone)
        found = self._usual.get(key)
        if found is None:
            curve = self.curve(lane, milestone)
            found = next((hours for hours in BOUNDS if curve.share_by(hours) >= self.settings.usual_share), BOUNDS[-1])
            self._usual[key] = found
        return found

    def dead_share(self, lane: LaneKey, hours: float) -> float:
        """Share of the lane's recent parcels that will never get their first scan beyond what
        its history explains: the packages that passed ``hours`` in the last two days
        and were still waiting then, against the share its long-term curve expects to wait.
        Estimated per level (carrier, lane, seller's lane) and shrunk from general to
        specific, so one seller's stopped parcels show within a day and a carrier that
        stopped for everyone shows for every seller. The first scan's only: after it,
        waiting longer than usual is as much a slower lane as a losing one, and the
        silences between scans tell them apart (:meth:`going_silent`)."""
        boundary = min(BUCKETS, bisect.bisect_left(BOUNDS, max(0.0, hours)))
        found = self._dead_memo.get((lane, boundary))
        if found is not None:
            return found
        peers = self.peer_backlog(lane, BOUNDS[boundary])
        estimate = 0.0
        for level in _levels(lane)[1:]:
            histogram = self._merged.get((level, Milestone.FIRST_SCAN))
            curve = self._base_curves.get(level)
            if histogram is None or curve is None:
                continue
            crossed = histogram.crossed[boundary]
            if crossed <= 0:
                continue
            # Waiting that the other sellers of the carrier share is a backlog, not a loss.
            expected = max(curve.survival[boundary], peers)
            # Only the excess beyond chance counts (z standard deviations of a binomial).
            noise = self.settings.recent_z * math.sqrt(crossed * expected * (1.0 - expected))
            excess = histogram.waiting[boundary] - crossed * expected - noise
            raw = 0.0 if expected >= 1.0 else max(0.0, min(1.0, excess / (crossed * (1.0 - expected))))
            weight = self.settings.recent_weight
            estimate = (crossed * raw + weight * estimate) / (crossed + weight)
        bounded_put(self._dead_memo, (lane, boundary), estimate)
        return estimate

    def median_peer(self, carrier: str, origin: str, seller: str, boundary: int) -> float:
        """The share of their recent parcels still waiting for a first scan at ``BOUNDS[boundary]``
        hours, for the median seller other than ``seller`` shipping with the carrier from the origin
        (0 when fewer than ``peer_min_sellers`` have ``peer_min_parcels`` parcels there),
        each seller's share taken at the low end of its confidence interval.

        A pickup backlog at the origin (a holiday, a peak, a warehouse move) delays every
        seller's parcels at once, and the late first scans do come; a carrier that stops
        scanning one seller's parcels, or a seller whose parcels are never handed over,
        leaves the others as they were. Waiting up to what the median peer shows is
        therefore read as a delay, only the excess beyond it as parcels that will never be
        scanned. The median seller, not the mean parcel, so that a big failing peer does
        not hide a seller's own failure. A carrier that stopped scanning new parcels for
        everyone reads as a backlog here; its parcels still lose probability as they grow
        overdue against the lane's curve, and a carrier that sends nothing at all is caught
        by its health."""
        shares, by_seller = self._peer_shares(carrier, origin, boundary)
        own = by_seller.get(seller)
        count = len(shares) - (own is not None)
        if count < self.settings.peer_min_sellers:
            return 0.0
        # The median of the others: the sorted shares without this seller's own.
        middle = count // 2
        if own is not None and bisect.bisect_left(shares, own) <= middle:
            middle += 1
        return shares[middle]

    def _peer_shares(self, carrier: str, origin: str, boundary: int) -> tuple[list[float], dict[str, float]]:
        """Every seller's waiting share at the boundary (Wilson low end), sorted, and by seller:
        computed once per carrier, origin and boundary, then shared by all its sellers."""
        key = (carrier, origin, boundary)
        found = self._peer_memo.get(key)
        if found is None:
            per_seller: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for peer_lane, histogram in self._first_scans_by_carrier.get((carrier, origin), ()):
                totals = per_seller[peer_lane[0]]
                totals[0] += histogram.waiting[boundary]
                totals[1] += histogram.crossed[boundary]
            # Each seller's share at the low end of its confidence interval (a seller with 1
            # parcel of 7 waiting says little), then one vote per seller: one big failing
            # seller cannot make a backlog.
            by_seller = {
                seller: wilson_low(waiting, crossed, self.settings.recent_z)
                for seller, (waiting, crossed) in per_seller.items()
                if crossed >= self.settings.peer_min_parcels
            }
            found = self._peer_memo[key] = (sorted(by_seller.values()), by_seller)
        return found

    def backlog_factor(self, lane: LaneKey, elapsed_hours: float, curve: Curve) -> float:
        """How much likelier an unscanned parcel this old is to be scanned after all when
        the carrier's other sellers show a pickup backlog (:meth:`median_peer`).

        The curve alone says: of the parcels still waiting after ``elapsed_hours``
        (``curve.at``), the share ``never`` of all parcels will never be scanned, so a
        waiting parcel is dead with probability never / waiting. A backlog makes both
        numbers wrong: the lane's own recent parcels, still waiting, flatten its curve
        and inflate ``never``. When the median peer has more of its parcels waiting at
        that age than the lane's history (the curve of its older parcels) ever had, the
        parcels that will never be scanned are the history's share among those delayed:
        never (history) / waiting (peers). The factor turns the curve's answer into that
        one, keeping the curve's timing of the late scans; it is 1 without a backlog."""
        baseline = self.base_curve(lane)
        shared = self.peer_backlog(lane, elapsed_hours)
        if baseline is None or shared <= baseline.at(elapsed_hours):
            return 1.0
        waiting, never = curve.at(elapsed_hours), curve.survival[BUCKETS]
        alive_by_curve = 1.0 - never / waiting if waiting > never else 0.0
        alive_in_backlog = 1.0 - min(1.0, baseline.survival[BUCKETS] / shared)
        if alive_by_curve <= 1e-6:
            return 1.0
        return max(1.0, alive_in_backlog / alive_by_curve)

    def peer_backlog(self, lane: LaneKey, hours: float) -> float:
        """The share of the lane's parcels that would still wait for a first scan at
        ``hours`` if the backlog the carrier's other sellers show (:meth:`median_peer`)
        hits it too (0 without a backlog).

        At each age the peers' parcels passed lately, the backlog is the share of them
        waiting beyond what the carrier's history (its older parcels' curve) expects:
        delayed = (peers' waiting - history's) / (1 - history's), then applied to the
        lane's own history. The largest over the ages from ``recent_hours`` younger than
        ``hours`` up to ``hours`` counts: a parcel this old was confirmed when the peers'
        parcels that are now that much younger were, so a backlog that began since shows
        in them before any peer parcel is this old. Only ages by which the history has
        most parcels scanned tell (younger ones wait anyway). Never while the carrier is
        silent: a backlog is a carrier that scans, only late."""
        carrier, origin = lane[1], lane[3]
        history = self._base_curves.get(("carrier", carrier, origin))
        baseline = self.base_curve(lane)
        if history is None or baseline is None or self._silent(lane):
            return 0.0
        last = min(BUCKETS, bisect.bisect_left(BOUNDS, max(0.0, hours)))
        first = min(last, bisect.bisect_left(BOUNDS, max(0.0, hours - self.settings.recent_hours)))
        # Among many sellers one more or less barely moves the median: then every seller
        # shares one answer per carrier (the scorer asks for every unscanned package).
        sellers = len(self._peer_shares(carrier, origin, last)[0])
        excluded = lane[0] if sellers < PEERS_SHARED_FROM else ""
        key = (carrier, origin, excluded, first, last)
        delayed = self._backlog_memo.get(key)
        if delayed is None:
            delayed = 0.0
            for boundary in range(first, last + 1):
                usual = history.survival[boundary]
                if usual < 0.5:
                    peers = self.median_peer(carrier, origin, excluded, boundary)
                    delayed = max(delayed, (peers - usual) / (1.0 - usual))
            bounded_put(self._backlog_memo, key, delayed)
        if delayed <= 0.0:
            return 0.0
        usual = baseline.at(hours)
        return usual + delayed * (1.0 - usual)

    def base_curve(self, lane: LaneKey) -> Curve | None:
        """The most specific first-scan curve of the lane's older parcels (its history)."""
        for level in reversed(_levels(lane)):
            found = self._base_curves.get(level)
            if found is not None:
                return found
        return None

    def silence_survival(self, lane: LaneKey, stage: Milestone, silent_hours: float) -> float:
        """Share of the lane's parcels that are still on their way but stay silent this long
        after a scan of ``stage``: the gap curve, conditional on the next scan coming."""
        curve = self.curve(lane, stage)
        never = curve.survival[BUCKETS]
        if never >= 1.0 - 1e-6:
            return 1.0
        return max(0.0, min(1.0, (curve.at(silent_hours) - never) / (1.0 - never)))

    def lost_given_silence(
        self, lane: LaneKey, elapsed_hours: float, stage: Milestone | None, silent_hours: float, alive: float = 1.0
    ) -> tuple[float, float]:
        """For a scanned parcel without a delivery scan ``elapsed_hours`` after its first scan:
        (probability it will still get one at all, before its silence is considered;
        the factor its silence multiplies its probability by). Bayes: a parcel on its way
        shows this silence as often as the lane's gaps allow, a lost one always does."""
        delivery = self.curve(lane, Milestone.DELIVERY)
        waiting = delivery.at(elapsed_hours)
        ever = (waiting - delivery.survival[BUCKETS]) / waiting if waiting > 1e-12 else 0.0
        prior_alive = min(1.0 - self.settings.silence_min_dead, max(0.0, ever * alive))
        if stage is None:
            return prior_alive, 1.0
        shown = self.silence_survival(lane, stage, silent_hours)
        posterior = prior_alive * shown + (1.0 - prior_alive)
        return prior_alive, (shown / posterior if posterior > 0 else 0.0)

    def parcel_silence(self, lane: LaneKey, hours_since_last_scan: float) -> float:
        """How long a parcel has been silent while its carrier was scanning others: the hours
        since its last scan, less the hours since its carrier's newest scan from that origin.
        When no scan arrives at all (the carrier, or the webhook that brings its scans, is
        down), carrier health speaks for every parcel at once (``carrier_silent``); a
        parcel's own silence only counts while the others are heard from."""
        health = self.health(lane[1], lane[3])
        return max(0.0, hours_since_last_scan - (health.silent_hours if health is not None else 0.0))

    def going_silent(self, lane: LaneKey) -> float:
        """Share of the lane's recent scanned parcels that went silent for good, beyond what
        its history explains (see :meth:`_silent_shares`)."""
        for level in reversed(_levels(lane)[1:]):
            found = self._going_silent.get(level)
            if found is not None:
                return found
        return 0.0

    def _silent_shares(self, in_flight: Iterable[InFlight]) -> dict[tuple[str, ...], float]:
        """Per level (carrier, lane, seller's lane): the share of the recent scanned parcels
        that went silent for good, beyond what the lane's history explains.

        Each parcel of the cohort (first scan 4-10 days ago, the newest weighing most)
        counts with its probability of being lost given its own record (not delivered at
        its age, silent this long in its stage: :meth:`lost_given_silence`), against the
        same probability without its silence. The excess beyond ``recent_z`` standard
        errors is shrunk from general to specific, as :meth:`dead_share` does: a stall
        shows here about as soon as the stalled parcels are silent longer than their stage
        allows, days before they are overdue against the whole transit time. Parcels lost
        too recently to be silent long yet are not seen: the estimate lags a new stall by
        the lane's longest usual silence."""
        settings = self.settings
        sums: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0] * 6)
        for parcel in in_flight:
            if not settings.silence_cohort_from_hours <= parcel.age_hours <= settings.silence_cohort_to_hours:
                continue
            weight = halving(parcel.age_hours, settings.silence_cohort_half_life_days)
            if parcel.delivered:
                lost = expected = 0.0
            else:
                prior_alive, factor = self.lost_given_silence(
                    parcel.lane, parcel.age_hours, parcel.stage, self.parcel_silence(parcel.lane, parcel.silent_hours)
                )
                expected, lost = 1.0 - prior_alive, 1.0 - prior_alive * factor
            for level in _levels(parcel.lane)[1:]:
                totals = sums[level]
                totals[0] += 1.0
                totals[1] += weight
                totals[2] += weight * weight
                totals[3] += weight * (lost - expected)
                totals[4] += weight * expected
                totals[5] += weight * weight * expected * (1.0 - expected)
        shares: dict[tuple[str, ...], float] = {}
        for level, (count, total, squares, excess, expected, variance) in sorted(
            sums.items(), key=lambda item: len(item[0])
        ):
            parent_key = _parent(level)
            parent = shares.get(parent_key, 0.0) if parent_key is not None else 0.0
            usual = expected / total
            # Chance alone (z standard deviations of the weighted count), and never less than
            # one parcel: one stalled parcel of two is no trend.
            noise = max(settings.recent_z * math.sqrt(variance), total / count)
            raw = max(0.0, min(1.0, (excess - noise) / total / (1.0 - usual))) if usual < 1.0 else 0.0
            effective = total * total / squares
            shares[level] = (effective * raw + settings.recent_weight * parent) / (effective + settings.recent_weight)
        return shares

    def curve(self, lane: LaneKey, milestone: Milestone) -> Curve:
        """The most specific curve known for ``lane`` (a new seller gets the lane's, and so on)."""
        for level in reversed(_levels(lane)):
            found = self._curves.get((level, milestone))
            if found is not None:
                return found
        return self._priors[milestone]

    def lane_curve(self, lane: LaneKey, milestone: Milestone) -> Curve:
        """The curve of the lane across sellers (what a service does, whoever ships with it)."""
        _, carrier, service, origin, marketplace = lane
        return self.curve(("", carrier, service, origin, marketplace), milestone)

    def health(self, carrier: str, origin: str) -> CarrierHealth | None:
        return self.state.health.get((carrier, origin))

    def rarely_scans_delivery(self, lane: LaneKey) -> bool:
        """Full-tracking parcels of this service almost never get a delivery scan (learnt)."""
        curve = self.lane_curve(lane, Milestone.DELIVERY)
        hours = self.settings.partial_only_days * 24.0
        return (
            curve.known_at(hours) >= self.settings.partial_only_min_exposure
            and 1.0 - curve.at(hours) < self.settings.partial_only_share
        )

    def reach_first_scan_then_delivery(self, lane: LaneKey, elapsed_hours: float, deadline_hours: float) -> float:
        """Unscanned full-tracking package: first scan, then delivery, both before the deadline."""
        memo_key = (lane, round(elapsed_hours), round(deadline_hours))
        found = self._memo.get(memo_key)
        if found is not None:
            return found
        first = self.curve(lane, Milestone.FIRST_SCAN)
        delivery = self.curve(lane, Milestone.DELIVERY)
        waiting = first.at(elapsed_hours)
        total = 0.0
        if waiting > 1e-12 and deadline_hours > elapsed_hours:
            step = 6.0
            start = elapsed_hours
            while start < deadline_hours:
                end = min(deadline_hours, start + step)
                reached_here = (first.at(start) - first.at(end)) / waiting
                total += reached_here * delivery.reach_by(0.0, deadline_hours - (start + end) / 2)
                start = end
        bounded_put(self._memo, memo_key, total)
        return total

    def estimate(
        self,
        lane: LaneKey,
        *,
        full_tracking: bool,
        physical_scans: int,
        first_scan_at: datetime | None,
        confirmed_at: datetime,
        deadline: datetime,
        now: datetime,
        malformed: bool,
        last_scan_at: datetime | None = None,
        last_scan_status: str | None = None,
    ) -> tuple[float, Reason]:
        """Probability that a pending package is valid by ``deadline`` and the reason a seller
        reads for it. Times are naive UTC; the last physical scan (time and status) says
        how long a scanned parcel has been silent, and in which stage."""
        settings = self.settings
        outage = self.health(lane[1], lane[3])
        if outage is not None and outage.source_outage:
            # The push source has delivered nothing since its outage began (services/scorer/
            # sources.py): price the parcel as of then, not as if it had gone quiet itself.
            now = max(confirmed_at, now - timedelta(hours=outage.silent_hours))
        rarely = full_tracking and self.rarely_scans_delivery(lane)
        if physical_scans == 0 or first_scan_at is None:
            elapsed, until = _hours(now - confirmed_at), _hours(deadline - confirmed_at)
            first = self.curve(lane, Milestone.FIRST_SCAN)
            if full_tracking:
                probability = self.reach_first_scan_then_delivery(lane, elapsed, until)
                probability *= 1.0 - self.going_silent(lane)
            else:
                probability = first.reach_by(elapsed, until)
            probability = min(1.0, probability * self.backlog_factor(lane, elapsed, first))
            probability *= self._alive(lane, Milestone.FIRST_SCAN, elapsed, first)
            if malformed:
                reason = Reason.MALFORMED_TRACKING_NUMBER
            elif rarely:
                reason = Reason.SERVICE_RARELY_SCANS_DELIVERY
            elif first.share_by(elapsed) >= settings.overdue_share or (
                elapsed >= self.usual_hours(lane, Milestone.FIRST_SCAN)
                and self._alive(lane, Milestone.FIRST_SCAN, elapsed, first) < 0.5
            ):
                reason = Reason.OVERDUE_FIRST_SCAN
            else:
                reason = Reason.AWAITING_FIRST_SCAN
        else:
            # Full tracking, scanned, no delivery scan yet.
            elapsed, until = _hours(now - first_scan_at), _hours(deadline - first_scan_at)
            delivery = self.curve(lane, Milestone.DELIVERY)
            alive = self._alive(lane, Milestone.DELIVERY, elapsed, delivery)
            probability = delivery.reach_by(elapsed, until) * alive
            stage = STAGE_OF_SCAN.get(last_scan_status or "")
            silent = self.parcel_silence(lane, _hours(now - last_scan_at)) if last_scan_at is not None else 0.0
            _, silence = self.lost_given_silence(lane, elapsed, stage, silent, alive)
            probability *= silence
            if rarely:
                reason = Reason.SERVICE_RARELY_SCANS_DELIVERY
            elif delivery.share_by(elapsed) >= settings.overdue_share or silence < 0.5:
                reason = Reason.STALLED_IN_TRANSIT
            else:
                reason = Reason.AWAITING_DELIVERY_SCAN
        if malformed:
            probability *= settings.malformed_factor
        health = self.health(lane[1], lane[3])
        if health is not None and health.silent(settings):
            probability *= health.factor(settings)
            if reason in SILENCE_MASKS:
                reason = Reason.CARRIER_SILENT
        return round(min(1.0, max(0.0, probability)), 3), reason

    def _alive(self, lane: LaneKey, milestone: Milestone, elapsed: float, curve: Curve) -> float:
        """Probability that a package still waiting after ``elapsed`` hours is not one of the
        lane's recent dead parcels (see :meth:`dead_share`). Before the usual time the
        most recent informative cohort (the one that just passed the usual time) tells."""
        health = self.health(lane[1], lane[3])
        if health is not None and health.source_outage:
            return 1.0  # the recent cohorts wait for scans their push source withholds
        if milestone is Milestone.DELIVERY:
            # Between the first scan and the delivery, the recent cohorts' waiting cannot tell
            # a lane that got slower (a congested hub) from one that loses parcels; their
            # silences can (:meth:`going_silent`).
            dead = self.going_silent(lane)
            if elapsed < self.usual_hours(lane, milestone):
                return 1.0 - dead
        else:
            usual = self.usual_hours(lane, milestone)
            if elapsed < usual:
                return 1.0 - self.dead_share(lane, usual)
            dead = self.dead_share(lane, elapsed)
        if dead <= 0.0:
            return 1.0
        waiting = curve.at(elapsed)
        alive = (1.0 - dead) * waiting
        return alive / (alive + dead) if alive + dead > 0 else 0.0

    def changed_lanes(self, previous: Model | None, lanes: Iterable[LaneKey]) -> set[LaneKey]:
        """Lanes whose curves or carrier health moved enough to re-evaluate their packages."""
        if previous is None:
            return set(lanes)
        changed = set()
        for lane in lanes:
            if self._silent(lane) != previous._silent(lane) or (
                abs(self.going_silent(lane) - previous.going_silent(lane)) > 0.01
            ):
                changed.add(lane)
                continue
            for milestone in Milestone:
                mine, theirs = self.curve(lane, milestone), previous.curve(lane, milestone)
                if any(abs(mine.survival[b] - theirs.survival[b]) > 0.01 for b in CHANGE_PROBES):
                    changed.add(lane)
                    break
        return changed

    def _silent(self, lane: LaneKey) -> bool:
        health = self.health(lane[1], lane[3])
        return health is not None and health.silent(self.settings)
