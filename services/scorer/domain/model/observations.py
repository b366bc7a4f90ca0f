"""What one package says about its lane: its milestones on each clock (with delayed entry),
the silences between its scans, and whether it belongs to the recent in-flight cohort."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from services.scorer.domain.model.lanes import STAGE_OF_SCAN, LaneKey, Milestone, promise_clock
from services.scorer.domain.model.parameters import ModelSettings


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
    #: Hours after the reference time from which the package is observed (delayed entry).
    entry_hours: float = 0.0
    #: The half of the data the package belongs to (0 or 1), for out-of-sample comparisons.
    fold: int = 0


def halving(age_hours: float, half_life_days: float) -> float:
    """Weight of something ``age_hours`` old when weights halve every ``half_life_days``."""
    return math.pow(0.5, max(0.0, age_hours) / 24.0 / half_life_days)


def halving_many(age_hours: npt.NDArray[np.float64], half_life_days: float) -> npt.NDArray[np.float64]:
    """:func:`halving` of each age, on a column. Negative ages are not clipped (a weight
    relative to a moment before the observation: ``batch.SettledSums``); clip them first
    where :func:`halving` would."""
    weight: npt.NDArray[np.float64] = np.power(0.5, age_hours / 24.0 / half_life_days)
    return weight


def recency_weight(age_hours: float, settings: ModelSettings) -> float:
    return halving(age_hours, settings.half_life_days)


def observations_of(
    lane: LaneKey,
    confirmed_at: datetime,
    first_scan_at: datetime | None,
    delivery_scan_at: datetime | None,
    now: datetime,
    settings: ModelSettings,
    deadline: datetime | None = None,
    selected_waiting: bool = False,
) -> list[Observation]:
    """One package's observations: its first scan, and once scanned its delivery scan, on
    the clock from its first scan and (given its ``deadline``) on its promise's clock.
    Partial-tracking parcels count for the delivery scan too: what a service does at the
    destination does not depend on the order's value.

    ``selected_waiting``: the package is in the data only because it was still waiting
    (a backfill of the orders still open, beyond the period it covers in full): it enters
    every clock now, so it adds nothing (a sample of the unfinished says nothing about how
    often packages finish)."""
    age = hours_of(now - confirmed_at)
    weight = recency_weight(age, settings)
    # Out-of-sample halves: by the second of confirmation, a property of the package alone.
    fold = int(confirmed_at.timestamp()) % 2
    if first_scan_at is None or first_scan_at > now:
        entry = age if selected_waiting else 0.0
        return [Observation(lane, Milestone.FIRST_SCAN, age, False, weight, age, entry)]
    reached = delivery_scan_at is not None and delivery_scan_at <= now
    end = delivery_scan_at if reached and delivery_scan_at is not None else now
    transit = hours_of(end - first_scan_at)
    picked_up = hours_of(first_scan_at - confirmed_at)
    found = [
        Observation(lane, Milestone.FIRST_SCAN, picked_up, True, weight, age, picked_up if selected_waiting else 0.0),
        Observation(
            lane,
            Milestone.DELIVERY,
            transit,
            reached,
            weight,
            hours_of(now - first_scan_at),
            transit if selected_waiting else 0.0,
            fold,
        ),
    ]
    if deadline is not None:
        scanned = promise_clock(hours_of(deadline - first_scan_at))
        ended = promise_clock(hours_of(deadline - end))
        found.append(
            Observation(
                lane,
                Milestone.DELIVERY_BY_PROMISE,
                ended,
                reached,
                weight,
                hours_of(now - first_scan_at),
                ended if selected_waiting else scanned,
                fold,
            )
        )
    return found


def selected_from(promised_dates: Iterable[tuple[str, Any, bool]]) -> dict[str, Any]:
    """Per seller, the first promised date from which its data holds every package whatever
    its outcome: the earliest promised date of a package that reached its delivery scan.

    A backfill selected by promised date (the orders promised in the last weeks, plus the
    ones still open) holds, before that date, only packages still waiting: they were
    selected by their outcome, and :func:`observations_of` lets them enter late
    (``selected_waiting``). Fed live, the date is simply the oldest in the learning period.
    Each item is (seller, promised date, reached its delivery scan)."""
    found: dict[str, Any] = {}
    for seller, promised, delivered in promised_dates:
        if delivered and (seller not in found or promised < found[seller]):
            found[seller] = promised
    return found


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
        age = hours_of(now - moment)
        following = scans[index + 1][1] if index + 1 < len(scans) else None
        if following is not None and following <= now:
            found.append(
                Observation(lane, stage, hours_of(following - moment), True, recency_weight(age, settings), age)
            )
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
    #: Hours from its first scan to its deadline (None: unknown, timed from the first scan only).
    until_hours: float | None = None


def in_silence_cohort(age_hours: Any, settings: ModelSettings) -> Any:
    """Whether a parcel first scanned ``age_hours`` ago is of the cohort that shows whether
    its lane's parcels are going silent (a float, or an array of them)."""
    return (settings.silence_cohort_from_hours <= age_hours) & (age_hours <= settings.silence_cohort_to_hours)


def hours_of(delta: Any) -> float:
    return float(delta.total_seconds()) / 3600.0
