"""Turn a scenario into the ordered requests of a replay: one step per simulated day.

Each step sends, in order, the day's shipment confirmations, the carrier pushes, and the
day's cancellations. Carrier pushes are delivered *ahead* of the simulated clock: a
parcel's pushes go out on the day it is confirmed (late ones a few days after), each
re-sending the history up to one of its scan days. Scans count by when they occurred, so
the scorer's view of a past ``as_of`` is still exactly that day's state, and today's
numbers never show a replay artefact (a window full of parcels whose scans have not been
replayed yet) that would trip real alerts.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tools.simulate.catalog import Source
from tools.simulate.scenario import Package, Parcel, Scenario
from tools.simulate.webhooks import PARCELS_PER_PUSH, ParcelUpdate, Push, sendable

#: At most this many pushes per parcel (first, middle, last scan day), before duplicates.
PUSHES_PER_PARCEL = 3


@dataclass(frozen=True)
class Step:
    day: date
    shipments: tuple[Package, ...]
    pushes: tuple[Push, ...]
    cancellations: tuple[Package, ...]


def _cuts(days: list[date]) -> list[date]:
    if len(days) <= PUSHES_PER_PARCEL:
        return days
    return [days[0], days[len(days) // 2], days[-1]]


def parcel_updates(parcel: Parcel, known_at: datetime, rng: random.Random, shuffle_rate: float) -> list[ParcelUpdate]:
    """The history re-sent by each push of this parcel, for the scans known at ``known_at``."""
    source = parcel.service.source
    scans = [scan for scan in parcel.scans if scan.occurred_at <= known_at and sendable(source, scan)]
    updates = []
    for cut in _cuts(sorted({scan.occurred_at.date() for scan in scans})):
        history = [scan for scan in scans if scan.occurred_at.date() <= cut]
        if rng.random() < shuffle_rate:
            rng.shuffle(history)  # carriers do not promise any order
        updates.append(ParcelUpdate(parcel, tuple(history)))
    return updates


def replay_plan(scenario: Scenario, known_at: datetime) -> list[Step]:
    """Every request of the replay up to ``known_at``, grouped into daily steps."""
    config = scenario.config
    rng = random.Random(f"vtrwatch-plan:{scenario.seed}:{scenario.today.isoformat()}")
    last_day = max(scenario.today, known_at.date())
    shipments: dict[date, list[Package]] = defaultdict(list)
    cancellations: dict[date, list[Package]] = defaultdict(list)
    first_confirmed: dict[str, date] = {}
    for package in scenario.packages:
        if package.confirmed_at > known_at:
            continue
        shipments[package.confirmed_at.date()].append(package)
        first_confirmed.setdefault(package.tracking_number, package.confirmed_at.date())
        if package.cancelled_at is not None and package.cancelled_at <= known_at:
            cancellations[package.cancelled_at.date()].append(package)

    outages = {(outage.source, scenario.today + timedelta(days=outage.day)) for outage in config.outages}
    updates: dict[tuple[date, Source], list[ParcelUpdate]] = defaultdict(list)
    for tracking_number, confirmed_day in sorted(first_confirmed.items()):
        parcel = scenario.parcels[tracking_number]
        source = parcel.service.source
        for update in parcel_updates(parcel, known_at, rng, config.shuffle_events_rate):
            send_days = [confirmed_day]
            if rng.random() < config.late_push_rate:
                send_days = [confirmed_day + timedelta(days=rng.randint(1, 3))]
            if rng.random() < config.duplicate_push_rate:
                send_days.append(send_days[0] + timedelta(days=rng.randint(0, 2)))
            for day in send_days:
                while (source, day) in outages:
                    day += timedelta(days=1)  # the carrier's backlog arrives the next day
                updates[(min(day, last_day), source)].append(update)

    steps = []
    day = scenario.start
    while day <= last_day:
        pushes = _pushes_of(day, updates, rng)
        steps.append(Step(day, tuple(shipments.get(day, ())), tuple(pushes), tuple(cancellations.get(day, ()))))
        day += timedelta(days=1)
    return steps


def _pushes_of(day: date, updates: dict[tuple[date, Source], list[ParcelUpdate]], rng: random.Random) -> list[Push]:
    """One day's pushes of every source, in batches of the source's size, shuffled."""
    pushes = []
    for source in Source:
        pending = updates.get((day, source), [])
        size = PARCELS_PER_PUSH[source]
        for index in range(0, len(pending), size):
            pushes.append(Push(source, tuple(pending[index : index + size]), variant=rng.randrange(2)))
    rng.shuffle(pushes)
    return pushes
