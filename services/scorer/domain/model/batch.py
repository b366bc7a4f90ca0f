"""The model's state from whole columns of packages and scans at once (NumPy): the same
observations as :func:`~services.scorer.domain.model.observations.observations_of` and
:func:`~services.scorer.domain.model.observations.silence_observations` added as
:meth:`ModelState.add` adds them, without a Python loop per package.

Times are integer microseconds since the epoch (naive UTC), so that the hours between two
moments are the same floats :func:`~services.scorer.domain.model.observations.hours_of`
gives; the sums per bucket are added in another order than one package after the other,
so they equal the per-package ones within float rounding (tests/scorer/storage/test_model_columns.py
checks both against each other on random histories)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.scorer.domain.model.carrier_health import CarrierHealth
from services.scorer.domain.model.curves import BOUNDS, BUCKETS, Histogram
from services.scorer.domain.model.lanes import STAGE_OF_SCAN, LaneKey, Milestone, promise_clock
from services.scorer.domain.model.observations import InFlight, halving_many, in_silence_cohort
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.state import ModelState
from shared.schemas import DELIVERY_SCAN_STATUSES

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]

#: Moments unknown (no first scan yet, ...): below any real one.
MISSING = np.iinfo(np.int64).min
_BOUNDS = np.array(BOUNDS, dtype=np.float64)
_PROMISE_OFFSET = promise_clock(0.0)
_WIDTHS = np.diff(_BOUNDS)
_GAPS = tuple(dict.fromkeys(STAGE_OF_SCAN.values()))


@dataclass(frozen=True)
class PackageColumns:
    """The packages a model learns from, one entry per package (the rows
    :func:`~services.scorer.storage.model_state.build_model_state` keeps: not cancelled,
    with a carrier, not structural, not valid without a first scan), in row order."""

    #: Index into ``lanes`` (the seller's lane of each package).
    lane: Ints
    confirmed: Ints
    #: :data:`MISSING` where the package has no such scan.
    first: Ints
    delivery: Ints
    last: Ints
    #: :func:`~services.scorer.domain.packages.counted_deadline` of its promised date.
    deadline: Ints
    #: In the data only because it was still waiting (:func:`selected_from`).
    selected_waiting: Flags
    #: Index into ``carriers`` (carrier x origin, for the carrier health).
    carrier: Ints
    lanes: Sequence[LaneKey]
    carriers: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class ScanColumns:
    """The physical scans of the packages that teach silences: ``package`` indexes
    :class:`PackageColumns` (one package per tracking number), ``status`` indexes
    ``statuses``."""

    package: Ints
    moment: Ints
    status: Ints
    statuses: Sequence[str]


def hours(delta_us: Ints) -> Floats:
    """Hours of a difference of microseconds: the float ``timedelta.total_seconds() / 3600``
    gives (an exact integer divided once, then by 3600)."""
    return delta_us.astype(np.float64) / 1e6 / 3600.0


def state_of_columns(
    packages: PackageColumns,
    scans: ScanColumns,
    silence_learners: Flags,
    now_us: int,
    settings: ModelSettings,
    settled: Settled | None = None,
) -> ModelState:
    """The state :meth:`ModelState.add` builds from each package's observations and silences,
    and its recent cohort of scanned parcels (only the parcels of the silence cohort's ages:
    :meth:`~services.scorer.domain.model.estimator.Model._silent_shares` reads no other).
    ``silence_learners`` marks the packages whose scans teach silences.

    With ``settled`` (the sums a scorer keeps between refreshes, :class:`Settled`), the
    packages and silences whose observations can no longer change but for their recency
    weight are added to its sums once, and only the others are computed again: the result
    is the same within float rounding, and its cost grows with what is still moving."""
    state = ModelState(recent_hours=settings.recent_hours)
    gap_lane_of, gap_lanes = _gap_lanes(packages.lanes)
    accumulator = _Accumulator(len(packages.lanes), len(gap_lanes))
    scanned = (packages.first != MISSING) & (packages.first <= now_us)
    learners = silence_learners & scanned
    live = np.ones(len(packages.confirmed), dtype=bool)
    live_learners = learners
    if settled is not None:
        settled.sums.resize(len(packages.lanes), len(gap_lanes), now_us, settings)
        live = settled.settle_packages(packages, now_us, settings)
        live_learners = learners & ~settled.silences
    weight = package_weight(packages, live, now_us, settings)
    _add_package_observations(accumulator, _subset(packages, live), scanned[live], now_us, settings, weight)
    _add_recent_cohorts(accumulator, packages, scanned, now_us, state.recent_hours)
    cohort = learners & in_silence_cohort(_hours_since_first(packages, now_us), settings)
    ordered = _ordered(scans, live_learners | cohort, now_us)
    if settled is not None:
        live_learners = settled.settle_silences(packages, scans.statuses, ordered, live_learners, gap_lane_of,
                                                now_us, settings)  # fmt: skip
        accumulator.include(settled.sums.accumulator, settled.sums.scale(now_us, settings))
    _add_silences(accumulator, packages, scans.statuses, _of_packages(ordered, live_learners), gap_lane_of, now_us,
                  settings)  # fmt: skip
    state.histograms = accumulator.histograms(packages.lanes, gap_lanes)
    state.in_flight = _in_flight(packages, scans.statuses, _of_packages(ordered, cohort), cohort, now_us, settings)
    return state


#: Milestones timed per seller's lane (the silences are timed per lane across sellers).
_PACKAGE_MILESTONES = (Milestone.FIRST_SCAN, Milestone.DELIVERY, Milestone.DELIVERY_BY_PROMISE)
#: Columns one boundary wider than the buckets (the recent cohorts).
_BOUNDARY_COLUMNS = ("crossed", "waiting")
#: ``ModelState.baseline_after_hours``: packages older than this make the first scan's baseline.
_BASELINE_AFTER_HOURS = ModelState().baseline_after_hours
#: Beyond the grid's last boundary an observation no longer changes as it ages.
_GRID_END = BOUNDS[-1]


def halving_weight(age_hours: Floats, settings: ModelSettings) -> Floats:
    """``observations.recency_weight`` of each age (negative ages allowed: a weight relative
    to a moment before the observation, :class:`SettledSums`)."""
    return halving_many(age_hours, settings.half_life_days)


def package_weight(packages: PackageColumns, chosen: Flags, now_us: int, settings: ModelSettings) -> Floats:
    return halving_weight(np.maximum(0.0, hours(now_us - packages.confirmed[chosen])), settings)


def _hours_since_first(packages: PackageColumns, now_us: int) -> Floats:
    return hours(now_us - np.where(packages.first == MISSING, now_us, packages.first))


def _subset(packages: PackageColumns, chosen: Flags, selected_waiting: Flags | None = None) -> PackageColumns:
    """The packages ``chosen`` (the same lanes and carriers)."""
    return PackageColumns(
        lane=packages.lane[chosen],
        confirmed=packages.confirmed[chosen],
        first=packages.first[chosen],
        delivery=packages.delivery[chosen],
        last=packages.last[chosen],
        deadline=packages.deadline[chosen],
        selected_waiting=packages.selected_waiting[chosen] if selected_waiting is None else selected_waiting,
        carrier=packages.carrier[chosen],
        lanes=packages.lanes,
        carriers=packages.carriers,
    )


def _of_packages(ordered: tuple[Ints, Ints, Ints], chosen: Flags) -> tuple[Ints, Ints, Ints]:
    """The scans of :func:`_ordered` of the ``chosen`` packages only (still in order)."""
    package, moment, status = ordered
    mine = chosen[package]
    return package[mine], moment[mine], status[mine]


class _Accumulator:
    """Dense per-lane histograms of each milestone while the columns are added (the
    package milestones per seller's lane, the silences per lane across sellers), and how
    many observations each lane has (a lane has a histogram once it has one)."""

    def __init__(self, lanes: int, gap_lanes: int) -> None:
        self.lanes = lanes
        self.gap_lanes = gap_lanes
        self.columns: dict[tuple[Milestone, str], Floats] = {}
        self.observed: dict[Milestone, Ints] = {}

    def _rows(self, milestone: Milestone) -> int:
        return self.lanes if milestone in _PACKAGE_MILESTONES else self.gap_lanes

    def column(self, milestone: Milestone, name: str) -> Floats:
        found = self.columns.get((milestone, name))
        if found is None:
            width = BUCKETS + 1 if name in _BOUNDARY_COLUMNS else BUCKETS
            found = self.columns[(milestone, name)] = np.zeros(self._rows(milestone) * width, dtype=np.float64)
        return found

    def resize(self, lanes: int, gap_lanes: int) -> None:
        """Room for lanes added since (lanes are only ever appended)."""
        lanes, gap_lanes = max(lanes, self.lanes), max(gap_lanes, self.gap_lanes)
        if (lanes, gap_lanes) == (self.lanes, self.gap_lanes):
            return
        self.lanes, self.gap_lanes = lanes, gap_lanes
        for (milestone, name), values in self.columns.items():
            width = BUCKETS + 1 if name in _BOUNDARY_COLUMNS else BUCKETS
            grown = np.zeros(self._rows(milestone) * width, dtype=np.float64)
            grown[: len(values)] = values
            self.columns[(milestone, name)] = grown
        for milestone, counts in self.observed.items():
            grown_counts = np.zeros(self._rows(milestone), dtype=np.int64)
            grown_counts[: len(counts)] = counts
            self.observed[milestone] = grown_counts

    def _observe(self, milestone: Milestone, lane: Ints, sign: int) -> None:
        rows = self._rows(milestone)
        counts = self.observed.get(milestone)
        if counts is None:
            counts = self.observed[milestone] = np.zeros(rows, dtype=np.int64)
        counts += sign * np.bincount(lane, minlength=rows)
        if sign < 0:
            # A lane whose observations were all taken back holds nothing, exactly (not
            # what is left of adding and subtracting the same floats).
            empty = counts == 0
            for (of, name), values in self.columns.items():
                if of is milestone:
                    width = BUCKETS + 1 if name in _BOUNDARY_COLUMNS else BUCKETS
                    values.reshape(-1, width)[empty] = 0.0

    def add(
        self,
        milestone: Milestone,
        lane: Ints,
        entry_hours: Floats,
        elapsed_hours: Floats,
        reached: Flags,
        weight: Floats,
        targets: Sequence[tuple[str, Flags | None]] = (("", None),),
        sign: int = 1,
    ) -> None:
        """:meth:`Histogram.add` for each observation: into the plain columns, and into the
        ``base``/``fold`` ones where their mask says so (``sign`` -1: taken back)."""
        rows = self._rows(milestone)
        elapsed = np.maximum(0.0, elapsed_hours)
        entry = np.minimum(elapsed, np.maximum(0.0, entry_hours))
        for prefix, mask in targets:
            chosen = slice(None) if mask is None else mask
            events, exposure = _spans(
                lane[chosen], entry[chosen], elapsed[chosen], reached[chosen], sign * weight[chosen], rows
            )
            self.column(milestone, prefix + "events")[:] += events
            self.column(milestone, prefix + "exposure")[:] += exposure
        self._observe(milestone, lane, sign)

    def add_recent(self, lane: Ints, elapsed_hours: Floats, reached: Flags, age_hours: Floats,
                   recent_hours: float) -> None:  # fmt: skip
        """:meth:`Histogram.add_recent` for each first-scan observation."""
        low = np.searchsorted(_BOUNDS, age_hours - recent_hours, side="left")
        high = np.searchsorted(_BOUNDS, age_hours, side="right")
        count = np.maximum(0, high - low)
        owner = np.repeat(np.arange(len(lane)), count)
        boundary = low[owner] + (np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count))
        waits = ~reached[owner] | (elapsed_hours[owner] > _BOUNDS[boundary])
        cells = lane[owner] * (BUCKETS + 1) + boundary
        size = self.lanes * (BUCKETS + 1)
        self.column(Milestone.FIRST_SCAN, "crossed")[:] += np.bincount(cells, minlength=size)
        self.column(Milestone.FIRST_SCAN, "waiting")[:] += np.bincount(cells[waits], minlength=size)

    def include(self, other: _Accumulator, scale: float) -> None:
        """Add ``other``'s sums times ``scale`` (its counts as they are)."""
        for (milestone, name), values in other.columns.items():
            self.column(milestone, name)[: len(values)] += values * scale
        for milestone, counts in other.observed.items():
            mine = self.observed.setdefault(milestone, np.zeros(self._rows(milestone), dtype=np.int64))
            mine[: len(counts)] += counts

    def histograms(
        self, lanes: Sequence[LaneKey], gap_lanes: Sequence[LaneKey]
    ) -> dict[tuple[LaneKey, Milestone], Histogram]:
        found: dict[tuple[LaneKey, Milestone], Histogram] = {}
        names = ("events", "exposure", "crossed", "waiting", "base_events", "base_exposure", "fold_events",
                 "fold_exposure")  # fmt: skip
        for milestone, counts in self.observed.items():
            keys = lanes if milestone in _PACKAGE_MILESTONES else gap_lanes
            arrays = {
                name: self.columns[(milestone, name)].reshape(-1, BUCKETS + 1 if name in _BOUNDARY_COLUMNS else BUCKETS)
                for name in names
                if (milestone, name) in self.columns
            }
            for index in np.flatnonzero(counts > 0).tolist():
                columns = [
                    arrays[name][index].tolist()
                    if name in arrays
                    else [0.0] * (BUCKETS + 1 if name in _BOUNDARY_COLUMNS else BUCKETS)
                    for name in names
                ]
                histogram = Histogram(*columns)
                # Two stored spellings of one service are one lane (service_key): one histogram.
                previous = found.get((keys[index], milestone))
                if previous is not None:
                    previous.merge(histogram)
                else:
                    found[(keys[index], milestone)] = histogram
        return found


@dataclass
class SettledSums:
    """The histograms' sums of the observations that no longer change but for their recency
    weight, weighted relative to ``origin_us`` instead of now: the weight halves with age,
    so at any later moment each of them is its weight at ``origin_us`` times one factor
    (:meth:`scale`), and the sums are scaled at once instead of added again."""

    origin_us: int
    accumulator: _Accumulator

    @classmethod
    def empty(cls, origin_us: int) -> SettledSums:
        return cls(origin_us, _Accumulator(0, 0))

    def scale(self, now_us: int, settings: ModelSettings) -> float:
        return float(halving_weight(hours(np.array([now_us - self.origin_us], dtype=np.int64)), settings)[0])

    def resize(self, lanes: int, gap_lanes: int, now_us: int, settings: ModelSettings) -> None:
        self.accumulator.resize(lanes, gap_lanes)
        # Weights relative to an origin far in the past grow as 2^(days / half-life): moved
        # to now once in a while, before they lose the small ones' precision.
        if now_us - self.origin_us > _REBASE_AFTER_US:
            factor = self.scale(now_us, settings)
            for values in self.accumulator.columns.values():
                values *= factor
            self.origin_us = now_us

    def add_packages(self, packages: PackageColumns, now_us: int, settings: ModelSettings, sign: int = 1) -> None:
        """The observations of ``packages`` (settled ones: see :func:`settles`), or taken back."""
        self.accumulator.resize(max(self.accumulator.lanes, len(packages.lanes)), self.accumulator.gap_lanes)
        scanned = (packages.first != MISSING) & (packages.first <= now_us)
        weight = halving_weight(hours(self.origin_us - packages.confirmed), settings)
        _add_package_observations(self.accumulator, packages, scanned, now_us, settings, weight, sign)

    def add_silences(
        self,
        packages: PackageColumns,
        statuses: Sequence[str],
        ordered: tuple[Ints, Ints, Ints],
        gap_lane_of: Ints,
        now_us: int,
        settings: ModelSettings,
        sign: int = 1,
    ) -> None:
        """The silences of the parcels of ``ordered`` (stopped ones: see :class:`Settled`), or taken back."""
        self.accumulator.resize(max(self.accumulator.lanes, len(packages.lanes)),
                                max(self.accumulator.gap_lanes, int(gap_lane_of.max(initial=-1)) + 1))  # fmt: skip
        _add_silences(self.accumulator, packages, statuses, ordered, gap_lane_of, now_us, settings,
                      weight_origin_us=self.origin_us, sign=sign)  # fmt: skip

    def take_back_silences(self, packages: PackageColumns, scans: ScanColumns, now_us: int,
                           settings: ModelSettings) -> None:  # fmt: skip
        """Take back the silences of ``packages`` (settled learners), ``scans`` being their scans."""
        gap_lane_of, _ = _gap_lanes(packages.lanes)
        ordered = _ordered(scans, np.ones(len(packages.confirmed), dtype=bool), now_us)
        self.add_silences(packages, scans.statuses, ordered, gap_lane_of, now_us, settings, sign=-1)


#: 28 days: weights relative to an origin that old reach 2^4 (half-life 7 days).
_REBASE_AFTER_US = 28 * 24 * 3600 * 1_000_000


@dataclass
class Settled:
    """What a scorer keeps between refreshes beside its rows: the sums of the settled
    observations and, per learning package (in :class:`PackageColumns` order, updated in
    place), whether its observations are in them, with which ``selected_waiting``, whether
    its silences are, and whether its silences may settle (its tracking number is its own
    and has no scan timed in the future: nothing but a write can change them)."""

    sums: SettledSums
    packages: Flags
    waiting: Flags
    silences: Flags
    stable: Flags

    def settle_packages(self, packages: PackageColumns, now_us: int, settings: ModelSettings) -> Flags:
        """Take back the settled packages whose ``selected_waiting`` changed (a seller's first
        complete day moved), add the ones settled since; returns the others (computed anew)."""
        moved = self.packages & (self.waiting != packages.selected_waiting)
        if moved.any():
            self.sums.add_packages(_subset(packages, moved, self.waiting[moved]), now_us, settings, sign=-1)
            self.packages &= ~moved
        newly = ~self.packages & settles(packages, now_us)
        if newly.any():
            self.sums.add_packages(_subset(packages, newly), now_us, settings)
            self.packages |= newly
            self.waiting[newly] = packages.selected_waiting[newly]
        live: Flags = ~self.packages
        return live

    def settle_silences(
        self,
        packages: PackageColumns,
        statuses: Sequence[str],
        ordered: tuple[Ints, Ints, Ints],
        candidates: Flags,
        gap_lane_of: Ints,
        now_us: int,
        settings: ModelSettings,
    ) -> Flags:
        """Add the silences of the ``candidates`` whose silences all ended (a scan of no
        stage came: a delivery scan ends them all) and may settle; returns the others."""
        package, _, status = _of_packages(ordered, candidates)
        stage_of = np.array([_stage_index(name) for name in statuses], dtype=np.int64)
        stopped = np.zeros(len(candidates), dtype=bool)
        if len(status):
            stopped[package[stage_of[status] < 0]] = True
        newly = candidates & stopped & self.stable
        if newly.any():
            self.sums.add_silences(packages, statuses, _of_packages(ordered, newly), gap_lane_of, now_us, settings)
            self.silences |= newly
        live: Flags = candidates & ~newly
        return live


def settles(packages: PackageColumns, now_us: int) -> Flags:
    """The packages whose observations (:func:`_add_package_observations`) stay what they
    are now whatever the time but for their recency weight: in the baseline, no scan timed
    in the future, and each milestone reached or waited for past the grid's last boundary
    (the first scan's recent cohorts are not among them: :func:`_add_recent_cohorts`)."""
    age = hours(now_us - packages.confirmed)
    has_first, has_delivery = packages.first != MISSING, packages.delivery != MISSING
    future = (has_first & (packages.first > now_us)) | (has_delivery & (packages.delivery > now_us))
    scanned = has_first & ~future
    delivered = has_delivery & ~future
    in_transit = hours(now_us - packages.first) >= _GRID_END
    past_promise = promise_offset_hours(packages.deadline, now_us) >= _GRID_END
    first_fixed = scanned | (age >= _GRID_END)
    delivery_fixed = ~scanned | delivered | (in_transit & past_promise)
    fixed: Flags = (age >= _BASELINE_AFTER_HOURS) & ~future & first_fixed & delivery_fixed
    return fixed


def promise_offset_hours(deadline: Ints, end_us: Ints | int) -> Floats:
    """Where ``end_us`` is on the promise clock (before clamping at 0)."""
    offset: Floats = _PROMISE_OFFSET - hours(deadline - end_us)
    return offset


def _spans(
    lane: Ints, entry: Floats, elapsed: Floats, reached: Flags, weight: Floats, rows: int
) -> tuple[Floats, Floats]:
    """``curves._add_span`` for each observation (entry and elapsed already clamped):
    events and exposure per (lane, bucket), flattened. The hours at risk in a bucket are
    the hours it holds up to ``elapsed`` less those up to ``entry``, and the hours a bucket
    holds up to a moment are its width if the moment is past it, the part of it before the
    moment if inside: two sums per bucket over all observations, whatever their spans."""
    size = rows * BUCKETS
    last = np.searchsorted(_BOUNDS, elapsed, side="right") - 1
    exposure = _held(lane, elapsed, last, weight, rows)
    entered = entry > 0.0
    if entered.any():
        first = np.searchsorted(_BOUNDS, entry[entered], side="right") - 1
        exposure -= _held(lane[entered], entry[entered], first, weight[entered], rows)
    hits = reached & (elapsed > entry) & (last < BUCKETS)
    events = np.bincount(lane[hits] * BUCKETS + last[hits], weights=weight[hits], minlength=size).astype(np.float64)
    return events, exposure


def _held(lane: Ints, moment: Floats, bucket: Ints, weight: Floats, rows: int) -> Floats:
    """Per (lane, bucket), the weighted hours of the bucket before each ``moment``."""
    passed = np.bincount(lane * (BUCKETS + 1) + bucket, weights=weight, minlength=rows * (BUCKETS + 1))
    passed = passed.reshape(rows, BUCKETS + 1)
    # Weight of the observations whose moment is past each bucket (in a later one).
    later = np.cumsum(passed[:, ::-1], axis=1)[:, ::-1][:, 1:]
    inside = bucket < BUCKETS
    partial = np.bincount(
        lane[inside] * BUCKETS + bucket[inside],
        weights=weight[inside] * (moment[inside] - _BOUNDS[bucket[inside]]),
        minlength=rows * BUCKETS,
    ).reshape(rows, BUCKETS)
    held: Floats = (later * _WIDTHS + partial).reshape(-1)
    return held


def _add_package_observations(
    accumulator: _Accumulator,
    packages: PackageColumns,
    scanned: Flags,
    now_us: int,
    settings: ModelSettings,
    weight: Floats,
    sign: int = 1,
) -> None:
    """Each package's first scan, delivery and promise-clock observations (``observations_of``),
    weighing ``weight`` (its recency weight, or its weight at another moment: :class:`SettledSums`)."""
    age = hours(now_us - packages.confirmed)
    waiting = packages.selected_waiting
    # First scan: reached after picked_up hours, or still waiting after ``age``.
    picked_up = np.where(scanned, hours(packages.first - packages.confirmed), age)
    entry = np.where(waiting, picked_up, 0.0)
    baseline = age >= _BASELINE_AFTER_HOURS
    accumulator.add(
        Milestone.FIRST_SCAN, packages.lane, entry, picked_up, scanned, weight, (("", None), ("base_", baseline)), sign
    )
    # Delivery, on the clock from the first scan and on the promise's.
    lane, weight = packages.lane[scanned], weight[scanned]
    first, delivery, deadline = packages.first[scanned], packages.delivery[scanned], packages.deadline[scanned]
    waiting = waiting[scanned]
    reached = (delivery != MISSING) & (delivery <= now_us)
    end = np.where(reached, delivery, now_us)
    transit = hours(end - first)
    fold = (np.floor_divide(packages.confirmed[scanned], 1_000_000) % 2) == 1
    targets = (("", None), ("fold_", fold))
    accumulator.add(Milestone.DELIVERY, lane, np.where(waiting, transit, 0.0), transit, reached, weight, targets, sign)
    entered = np.maximum(0.0, _PROMISE_OFFSET - hours(deadline - first))
    ended = np.maximum(0.0, promise_offset_hours(deadline, end))
    accumulator.add(
        Milestone.DELIVERY_BY_PROMISE, lane, np.where(waiting, ended, entered), ended, reached, weight, targets, sign
    )


def _add_recent_cohorts(
    accumulator: _Accumulator, packages: PackageColumns, scanned: Flags, now_us: int, recent_hours: float
) -> None:
    """The first scan's recent cohorts (``Histogram.add_recent``) of the packages not
    selected for waiting: only those young enough to have passed a boundary of the grid in
    the last ``recent_hours`` count (unweighted), so only they are looked at."""
    age = hours(now_us - packages.confirmed)
    picked_up = np.where(scanned, hours(packages.first - packages.confirmed), age)
    recent = ~packages.selected_waiting | (picked_up <= 0.0)
    chosen = recent & (age - recent_hours <= _GRID_END)
    accumulator.add_recent(packages.lane[chosen], picked_up[chosen], scanned[chosen], age[chosen], recent_hours)


def _gap_lanes(lanes: Sequence[LaneKey]) -> tuple[Ints, list[LaneKey]]:
    """Each seller's lane's lane across sellers (silences are learnt there)."""
    index: dict[LaneKey, int] = {}
    of = np.array([index.setdefault(("", *lane[1:]), len(index)) for lane in lanes], dtype=np.int64)  # type: ignore[arg-type]
    return of, list(index)


def _ordered(scans: ScanColumns, learners: Flags, now_us: int) -> tuple[Ints, Ints, Ints]:
    """The learners' distinct scans, each parcel's in time order (a delivery scan after any
    other of the same moment, then by status): (package, moment, status)."""
    statuses = list(scans.statuses)
    rank = np.argsort(np.argsort(np.array(statuses, dtype=object))) if statuses else np.zeros(0, dtype=np.int64)
    delivery_like = np.array([status in DELIVERY_SCAN_STATUSES for status in statuses], dtype=bool)
    keep = learners[scans.package] & (scans.moment <= now_us)
    package, moment, status = scans.package[keep], scans.moment[keep], scans.status[keep]
    # Ties of a moment: a delivery scan last, then by status (one key for both).
    tie = delivery_like[status] * len(statuses) + rank[status]
    order = np.lexsort((tie, moment, package))
    package, moment, status = package[order], moment[order], status[order]
    if len(package):
        distinct = np.ones(len(package), dtype=bool)
        distinct[1:] = (package[1:] != package[:-1]) | (moment[1:] != moment[:-1]) | (status[1:] != status[:-1])
        package, moment, status = package[distinct], moment[distinct], status[distinct]
    return package, moment, status


def _add_silences(
    accumulator: _Accumulator,
    packages: PackageColumns,
    statuses: Sequence[str],
    ordered: tuple[Ints, Ints, Ints],
    gap_lane_of: Ints,
    now_us: int,
    settings: ModelSettings,
    weight_origin_us: int | None = None,
    sign: int = 1,
) -> None:
    """``silence_observations`` for every learner (``ordered``: their scans, see
    :func:`_ordered`): from each scan of a stage to the next, the last one still running,
    none after a scan of no stage. Weighed as of ``weight_origin_us`` when given (:class:`SettledSums`)."""
    package, moment, status = ordered
    stage_of = np.array([_stage_index(name) for name in statuses], dtype=np.int64)
    stage = stage_of[status] if len(status) else np.zeros(0, dtype=np.int64)
    starts = np.ones(len(package), dtype=bool)
    starts[1:] = package[1:] != package[:-1]
    group = np.cumsum(starts) - 1
    # A scan of no stage ends the parcel's silences: only the scans before the first such one count.
    stopped = np.cumsum(stage < 0)
    before = stopped - np.concatenate(([0], stopped))[np.flatnonzero(starts)][group] if len(package) else stopped
    counted = before == 0
    following = np.ones(len(package), dtype=bool)
    following[:-1] = ~starts[1:]
    following[-1:] = False
    age = hours(now_us - moment)
    if weight_origin_us is None:
        weight = halving_weight(np.maximum(0.0, age), settings)
    else:
        weight = halving_weight(hours(weight_origin_us - moment), settings)
    next_moment = np.concatenate((moment[1:], [0]))
    elapsed = np.where(following, hours(next_moment - moment), age)
    lane = gap_lane_of[packages.lane[package]]
    for index, milestone in enumerate(_GAPS):
        chosen = counted & (stage == index)
        accumulator.add(
            milestone, lane[chosen], np.zeros(int(chosen.sum())), elapsed[chosen], following[chosen], weight[chosen],
            sign=sign,
        )  # fmt: skip


def _stage_index(status: str) -> int:
    stage = STAGE_OF_SCAN.get(status)
    return -1 if stage is None else _GAPS.index(stage)


def _in_flight(
    packages: PackageColumns,
    statuses: Sequence[str],
    ordered: tuple[Ints, Ints, Ints],
    learners: Flags,
    now_us: int,
    settings: ModelSettings,
) -> list[InFlight]:
    """The recent cohort: each learner's age, whether delivered, its last scan's stage and
    how long since, for the parcels of the silence cohort's ages."""
    age = hours(now_us - np.where(packages.first == MISSING, now_us, packages.first))
    chosen = learners & in_silence_cohort(age, settings)
    package, moment, status = ordered
    mine = chosen[package]
    package, moment, status = package[mine], moment[mine], status[mine]
    last_moment = packages.first.copy()
    last_status = np.full(len(packages.confirmed), -1, dtype=np.int64)
    if len(package):
        ends = np.ones(len(package), dtype=bool)
        ends[:-1] = package[1:] != package[:-1]
        last_moment[package[ends]] = moment[ends]
        last_status[package[ends]] = status[ends]
    silent = hours(now_us - last_moment)
    until = hours(packages.deadline - packages.first)
    delivered = (packages.delivery != MISSING) & (packages.delivery <= now_us)
    stages = [STAGE_OF_SCAN.get(name) for name in statuses]
    return [
        InFlight(
            packages.lanes[packages.lane[index]],
            float(age[index]),
            bool(delivered[index]),
            stages[last_status[index]] if last_status[index] >= 0 else None,
            float(silent[index]),
            float(until[index]),
        )
        for index in np.flatnonzero(chosen).tolist()
    ]


def carrier_health_of(
    packages: PackageColumns, now_us: int, settings: ModelSettings
) -> dict[tuple[str, str], CarrierHealth]:
    """:func:`~services.scorer.domain.model.carrier_health.carrier_health` of the packages'
    first, delivery and last scans (each distinct moment of a package once)."""
    moments = [packages.first]
    moments.append(np.where(packages.delivery == packages.first, MISSING, packages.delivery))
    moments.append(
        np.where((packages.last == packages.first) | (packages.last == packages.delivery), MISSING, packages.last)
    )
    carrier = np.concatenate([packages.carrier] * 3)
    moment = np.concatenate(moments)
    known = (moment != MISSING) & (moment <= now_us)
    carrier, moment = carrier[known], moment[known]
    age = hours(now_us - moment)
    baseline = settings.health_baseline_hours
    size = len(packages.carriers)
    in_baseline = np.bincount(carrier[(age >= 24.0) & (age < 24.0 + baseline)], minlength=size)
    newest = np.full(size, MISSING, dtype=np.int64)
    np.maximum.at(newest, carrier, moment)
    found: dict[tuple[str, str], CarrierHealth] = {}
    silent = hours(now_us - newest)
    for index, key in enumerate(packages.carriers):
        if newest[index] == MISSING:
            continue
        rate = int(in_baseline[index]) / baseline if baseline else 0.0
        found[key] = CarrierHealth(key[0], key[1], float(silent[index]), rate)
    return found
