"""When to rebuild the forecast model, and whether it has learnt a category's lanes (pure).

A model built before a seller's history arrived prices that history from priors: the
first thing a new deployment, a newly onboarded seller or a replay would show. So the
clock job does not only rebuild on its timer (``VTR_MODEL_REFRESH_SECONDS``) but as soon
as the input changed enough since the last build (:func:`refresh_reason`), and every
score says which model priced it (``ScoreSnapshot.model``); while a category's lanes are
not learnt its level is capped (``services/scorer/domain/levels.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

#: carrier x service (normalised) x origin x marketplace: what a lane is to the model,
#: across sellers.
LaneId = tuple[str, str, str, str]


class RefreshReason(StrEnum):
    """Why the clock job rebuilds the model now (the ``reason`` label of its metric)."""

    FIRST = "first"
    TIMER = "timer"
    #: The consumer was behind and has caught up, with packages the model has not seen.
    BACKLOG_DRAINED = "backlog_drained"
    #: Records applied since the build reached a share of the packages it was built from.
    NEW_PACKAGES = "new_packages"
    #: Asked for by hand (``run_clock_once(refresh=True)``: tests, ``make evaluate``).
    FORCED = "forced"
    #: A lane the build had too few packages of has enough now.
    NEW_LANES = "new_lanes"


@dataclass(frozen=True)
class FreshnessRules:
    #: Rebuild once the records applied since the last build reach this share of its packages.
    new_share: float = 0.1
    #: A lane is learnt once the build saw this many of its packages (across sellers).
    lane_min_packages: int = 20
    #: No rebuild by a trigger sooner than this after the last build (a consumer hovering
    #: at its lag threshold would otherwise rebuild at every catch-up), unless that build
    #: had nothing to learn from.
    min_gap_seconds: float = 60.0


@dataclass(frozen=True)
class ModelBuild:
    """What one build of the model saw."""

    built_at: datetime | None = None
    #: Packages of the learning period the build read.
    packages: int = 0
    #: The highest package id the build saw: packages above it are new to the model.
    newest_package_id: int = 0
    lane_packages: Mapping[LaneId, int] = field(default_factory=dict)

    def learnt(self, lane: LaneId, rules: FreshnessRules) -> bool:
        return self.lane_packages.get(lane, 0) >= rules.lane_min_packages


@dataclass(frozen=True)
class InputChange:
    """What arrived since a build: the packages added per lane, and the records applied
    (confirmations, cancellations and scans: a scan changes what the model learns too)."""

    new_by_lane: Mapping[LaneId, int] = field(default_factory=dict)
    records: int = 0

    @property
    def new_packages(self) -> int:
        return sum(self.new_by_lane.values())

    @property
    def changes(self) -> int:
        return max(self.records, self.new_packages)


def lanes_now_learnable(build: ModelBuild, change: InputChange, rules: FreshnessRules) -> list[LaneId]:
    """Lanes the build had not learnt that have enough packages with the new ones."""
    return sorted(
        lane
        for lane, added in change.new_by_lane.items()
        if not build.learnt(lane, rules) and build.lane_packages.get(lane, 0) + added >= rules.lane_min_packages
    )


def refresh_reason(
    build: ModelBuild,
    change: InputChange,
    rules: FreshnessRules,
    *,
    now: datetime,
    timer_due: bool,
    caught_up: bool,
    just_caught_up: bool,
) -> RefreshReason | None:
    """Whether to rebuild now, and why (None: not yet).

    While the consumer is behind (a backfill, a restart after an outage) only the timer
    rebuilds: the numbers are still moving and the snapshots say ``caught_up: false``. The
    moment it has caught up, anything new since the build rebuilds at once; afterwards a
    share of new packages, or a lane that has become learnable, does.
    """
    if build.built_at is None:
        return RefreshReason.FIRST
    if timer_due:
        return RefreshReason.TIMER
    if not caught_up:
        return None
    if build.packages and (now - build.built_at).total_seconds() < rules.min_gap_seconds:
        return None
    if just_caught_up and change.changes > 0:
        return RefreshReason.BACKLOG_DRAINED
    if lanes_now_learnable(build, change, rules):
        return RefreshReason.NEW_LANES
    if change.changes > 0 and change.changes >= rules.new_share * build.packages:
        return RefreshReason.NEW_PACKAGES
    return None


@dataclass(frozen=True)
class LaneCoverage:
    """How much of a category's pending packages rest on lanes the build has learnt."""

    pending: int = 0
    unlearnt_pending: int = 0

    @property
    def learnt(self) -> bool:
        return self.unlearnt_pending == 0


def coverage(build: ModelBuild, pending_by_lane: Iterable[tuple[LaneId, int]], rules: FreshnessRules) -> LaneCoverage:
    pending = unlearnt = 0
    for lane, count in pending_by_lane:
        pending += count
        if not build.learnt(lane, rules):
            unlearnt += count
    return LaneCoverage(pending, unlearnt)
