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
from services.scorer.domain.model.observations import InFlight, in_silence_cohort
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
    packages: PackageColumns, scans: ScanColumns, silence_learners: Flags, now_us: int, settings: ModelSettings
) -> ModelState:
    """The state :meth:`ModelState.add` builds from each package's observations and silences,
    and its recent cohort of scanned parcels (only the parcels of the silence cohort's ages:
    :meth:`~services.scorer.domain.model.estimator.Model._silent_shares` reads no other).
    ``silence_learners`` marks the packages whose scans teach silences."""
    state = ModelState(recent_hours=settings.recent_hours)
    accumulator = _Accumulator(len(packages.lanes), len(_GAPS))
    scanned = (packages.first != MISSING) & (packages.first <= now_us)
    _add_package_observations(accumulator, packages, scanned, now_us, settings, state)
    gap_lane_of, gap_lanes = _gap_lanes(packages.lanes)
    learners = silence_learners & scanned
    ordered = _ordered(scans, learners, now_us)
    _add_silences(accumulator, packages, scans.statuses, ordered, gap_lane_of, now_us, settings)
    state.histograms = accumulator.histograms(packages.lanes, gap_lanes)
    state.in_flight = _in_flight(packages, scans.statuses, ordered, learners, now_us, settings)
    return state


class _Accumulator:
    """Dense per-lane histograms of each milestone while the columns are added."""

    def __init__(self, lanes: int, gaps: int) -> None:
        self.milestones: dict[Milestone, int] = {
            Milestone.FIRST_SCAN: lanes,
            Milestone.DELIVERY: lanes,
            Milestone.DELIVERY_BY_PROMISE: lanes,
        }
        self.columns: dict[tuple[Milestone, str], Floats] = {}
        #: Per milestone, the lane indexes with at least one observation, in the order they first came.
        self.seen: dict[Milestone, list[Ints]] = {}

    def column(self, milestone: Milestone, name: str, size: int) -> Floats:
        found = self.columns.get((milestone, name))
        if found is None:
            found = self.columns[(milestone, name)] = np.zeros(size, dtype=np.float64)
        return found

    def add(
        self,
        milestone: Milestone,
        rows: int,
        lane: Ints,
        entry_hours: Floats,
        elapsed_hours: Floats,
        reached: Flags,
        weight: Floats,
        targets: Sequence[tuple[str, Flags | None]] = (("", None),),
    ) -> None:
        """:meth:`Histogram.add` for each observation: into the plain columns, and into the
        ``base``/``fold`` ones where their mask says so."""
        self.seen.setdefault(milestone, []).append(lane)
        elapsed = np.maximum(0.0, elapsed_hours)
        entry = np.minimum(elapsed, np.maximum(0.0, entry_hours))
        for prefix, mask in targets:
            chosen = slice(None) if mask is None else mask
            events, exposure = _spans(
                lane[chosen], entry[chosen], elapsed[chosen], reached[chosen], weight[chosen], rows
            )
            self.column(milestone, prefix + "events", rows * BUCKETS)[:] += events
            self.column(milestone, prefix + "exposure", rows * BUCKETS)[:] += exposure

    def add_recent(self, rows: int, lane: Ints, elapsed_hours: Floats, reached: Flags, age_hours: Floats,
                   recent_hours: float) -> None:  # fmt: skip
        """:meth:`Histogram.add_recent` for each first-scan observation."""
        low = np.searchsorted(_BOUNDS, age_hours - recent_hours, side="left")
        high = np.searchsorted(_BOUNDS, age_hours, side="right")
        count = np.maximum(0, high - low)
        owner = np.repeat(np.arange(len(lane)), count)
        boundary = low[owner] + (np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count))
        waits = ~reached[owner] | (elapsed_hours[owner] > _BOUNDS[boundary])
        cells = lane[owner] * (BUCKETS + 1) + boundary
        size = rows * (BUCKETS + 1)
        self.column(Milestone.FIRST_SCAN, "crossed", size)[:] += np.bincount(cells, minlength=size)
        self.column(Milestone.FIRST_SCAN, "waiting", size)[:] += np.bincount(cells[waits], minlength=size)

    def histograms(
        self, lanes: Sequence[LaneKey], gap_lanes: Sequence[LaneKey]
    ) -> dict[tuple[LaneKey, Milestone], Histogram]:
        found: dict[tuple[LaneKey, Milestone], Histogram] = {}
        names = ("events", "exposure", "crossed", "waiting", "base_events", "base_exposure", "fold_events",
                 "fold_exposure")  # fmt: skip
        for milestone, seen in self.seen.items():
            keys = lanes if milestone in self.milestones else gap_lanes
            width = {"crossed": BUCKETS + 1, "waiting": BUCKETS + 1}
            arrays = {
                name: self.columns[(milestone, name)].reshape(-1, width.get(name, BUCKETS))
                for name in names
                if (milestone, name) in self.columns
            }
            order = np.concatenate(seen)
            _, first = np.unique(order, return_index=True)
            for index in order[np.sort(first)].tolist():
                columns = [
                    arrays[name][index].tolist() if name in arrays else [0.0] * width.get(name, BUCKETS)
                    for name in names
                ]
                found[(keys[index], milestone)] = Histogram(*columns)
        return found


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
    state: ModelState,
) -> None:
    """Each package's first scan, delivery and promise-clock observations (``observations_of``)."""
    rows = len(packages.lanes)
    age = hours(now_us - packages.confirmed)
    weight = np.power(0.5, np.maximum(0.0, age) / 24.0 / settings.half_life_days)
    waiting = packages.selected_waiting
    # First scan: reached after picked_up hours, or still waiting after ``age``.
    picked_up = np.where(scanned, hours(packages.first - packages.confirmed), age)
    entry = np.where(waiting, picked_up, 0.0)
    baseline = age >= state.baseline_after_hours
    accumulator.add(
        Milestone.FIRST_SCAN, rows, packages.lane, entry, picked_up, scanned, weight,
        (("", None), ("base_", baseline)),
    )  # fmt: skip
    recent = entry <= 0.0
    accumulator.add_recent(
        rows, packages.lane[recent], picked_up[recent], scanned[recent], age[recent], state.recent_hours
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
    accumulator.add(Milestone.DELIVERY, rows, lane, np.where(waiting, transit, 0.0), transit, reached, weight, targets)
    entered = np.maximum(0.0, _PROMISE_OFFSET - hours(deadline - first))
    ended = np.maximum(0.0, _PROMISE_OFFSET - hours(deadline - end))
    accumulator.add(
        Milestone.DELIVERY_BY_PROMISE, rows, lane, np.where(waiting, ended, entered), ended, reached, weight, targets
    )


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
) -> None:
    """``silence_observations`` for every learner (``ordered``: their scans, see
    :func:`_ordered`): from each scan of a stage to the next, the last one still running,
    none after a scan of no stage."""
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
    weight = np.power(0.5, np.maximum(0.0, age) / 24.0 / settings.half_life_days)
    next_moment = np.concatenate((moment[1:], [0]))
    elapsed = np.where(following, hours(next_moment - moment), age)
    lane = gap_lane_of[packages.lane[package]]
    gap_lanes = int(gap_lane_of.max()) + 1 if len(gap_lane_of) else 0
    for index, milestone in enumerate(_GAPS):
        chosen = counted & (stage == index)
        accumulator.add(
            milestone, gap_lanes, lane[chosen], np.zeros(int(chosen.sum())), elapsed[chosen], following[chosen],
            weight[chosen],
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
