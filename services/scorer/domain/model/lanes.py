"""Lanes and milestones: what the model keys its curves by, and the levels of the hierarchy
a lane is shrunk along (everyone -> carrier x origin -> lane -> the seller's lane)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from shared.schemas import Reason

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
    #: The first delivery scan again, timed against the parcel's own promise instead of
    #: its first scan: hours relative to its deadline, shifted by :data:`PROMISE_OFFSET`
    #: (a parcel enters this clock at its first scan: delayed entry). Where each parcel's
    #: transit follows its promise, this clock is tight where the absolute one is wide.
    DELIVERY_BY_PROMISE = "delivery_by_promise"
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
#: The two clocks a delivery can be timed on; each lane uses the one its data favours.
DELIVERY_CLOCKS = (Milestone.DELIVERY, Milestone.DELIVERY_BY_PROMISE)
#: Hours before its deadline at which the promise clock starts (0 on it): the clock's grid
#: covers 20 days before a parcel's deadline to 10 days after it.
PROMISE_OFFSET = 20 * 24.0


def promise_clock(hours_to_deadline: float) -> float:
    """A moment on the promise clock, from the hours left until the parcel's deadline."""
    return max(0.0, PROMISE_OFFSET - hours_to_deadline)


#: (seller, carrier, service key, origin, marketplace): the finest lane.
LaneKey = tuple[str, str, str, str, str]

#: Before a lane has shown which clock its deliveries follow: the promise (a parcel's own
#: promised date is the best guess of its transit there is before any data).
DEFAULT_CLOCK = Milestone.DELIVERY_BY_PROMISE


def levels(lane: LaneKey) -> tuple[tuple[str, ...], ...]:
    """The keys of a lane from the most general to the most specific."""
    seller, carrier, service, origin, marketplace = lane
    return (
        ("all",),
        ("carrier", carrier, origin),
        ("lane", carrier, service, origin, marketplace),
        ("seller", seller, carrier, service, origin, marketplace),
    )


def parent_level(level_key: tuple[str, ...]) -> tuple[str, ...] | None:
    kind = level_key[0]
    if kind == "seller":
        return ("lane", *level_key[2:])
    if kind == "lane":
        return ("carrier", level_key[1], level_key[3])
    if kind == "carrier":
        return ("all",)
    return None


#: Entries a per-lane memo keeps before it starts over (a model serves every lane).
MEMO_SIZE = 200_000


def bounded_put(memo: dict[Any, float], key: Any, value: float) -> None:
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = value
