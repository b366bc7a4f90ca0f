"""What the forecast model learns from, read as columns (services/scorer/domain/model/batch.py):
the packages of the learning period grouped by lane, and the physical scans of the recent
ones grouped by status and source.

On PostgreSQL each group comes back as one row of arrays (``array_agg``), times as integer
microseconds, so that a million packages cost a few arrays, not a million Python rows; on
SQLite (``make run``, tests) the same groups are built from plain rows, more slowly."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, case, func, literal, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.model.batch import MISSING, PackageColumns, ScanColumns
from services.scorer.domain.model.lanes import LaneKey
from services.scorer.domain.packages import counted_deadline, service_key
from services.scorer.domain.policy import STRUCTURAL_REASONS
from services.scorer.domain.sources import CarrierOrigin
from services.scorer.storage.dialect import driver_connection, uses_copy
from services.scorer.storage.schema import packages, scans
from shared.schemas import PHYSICAL_SCAN_STATUSES, PackageState

_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


@dataclass
class LaneGroup:
    """The packages of one (seller, carrier, service, origin, marketplace) as read."""

    lane: tuple[str, str, str | None, str, str]
    confirmed: list[int]
    first: list[int]
    delivery: list[int]
    last: list[int]
    deadline: list[int]
    #: Not structural and not valid without a first scan: the model learns from it.
    learns: list[bool]
    #: Tracking numbers of the packages recent enough to teach silences (None for the others).
    numbers: list[str | None]


@dataclass
class ScanGroup:
    status: str
    source: str
    numbers: list[str]
    moments: list[int]


@dataclass
class ModelInput:
    """The columns the model's state is computed from."""

    packages: PackageColumns
    scans: ScanColumns
    #: The packages whose scans teach silences (one per tracking number).
    silence_learners: np.ndarray
    #: Recent physical scans per carrier x origin and push source (domain/sources.py).
    source_counts: dict[CarrierOrigin, Counter[str]]
    #: Packages of the learning period read (structural ones included).
    read: int


def micros(moment: datetime | None) -> int:
    return int(MISSING) if moment is None else (moment - _EPOCH) // _MICROSECOND


async def read_model_groups(
    connection: AsyncConnection, since: datetime, silence_since: datetime, now: datetime
) -> tuple[list[LaneGroup], list[ScanGroup]]:
    """The packages confirmed since ``since`` (not cancelled, with a carrier) and the
    physical scans up to ``now`` of the tracking numbers confirmed since ``silence_since``;
    :func:`model_input_of` makes the columns of them."""
    if uses_copy(connection):
        return await _read_postgresql(connection, since, silence_since, now)
    return await _read_generic(connection, since, silence_since, now)


def model_input_of(lanes: Sequence[LaneGroup], scan_groups: Sequence[ScanGroup], now: datetime) -> ModelInput:
    """The columns of what was read (pure arithmetic, run in a worker thread)."""
    now_us = micros(now)
    lane_keys: list[LaneKey] = []
    carriers: dict[tuple[str, str], int] = {}
    sellers: dict[str, int] = {}
    lane_index, carrier_index, seller_index = [], [], []
    for group in lanes:
        seller, carrier, service, origin, marketplace = group.lane
        size = len(group.confirmed)
        lane_index.append(np.full(size, len(lane_keys), dtype=np.int64))
        lane_keys.append((seller, carrier, service_key(service), origin, marketplace))
        carrier_index.append(np.full(size, carriers.setdefault((carrier, origin), len(carriers)), dtype=np.int64))
        seller_index.append(np.full(size, sellers.setdefault(seller, len(sellers)), dtype=np.int64))

    def column(name: str, dtype: Any = np.int64) -> np.ndarray:
        values = [np.asarray(getattr(group, name), dtype=dtype) for group in lanes]
        return np.concatenate(values) if values else np.zeros(0, dtype=dtype)

    confirmed, first, delivery, last, deadline = (
        column(name) for name in ("confirmed", "first", "delivery", "last", "deadline")
    )
    learns = column("learns", bool)
    numbers: list[str | None] = [number for group in lanes for number in group.numbers]
    seller_of = np.concatenate(seller_index) if lanes else np.zeros(0, dtype=np.int64)
    # Per seller, the first deadline from which its data holds every package whatever its
    # outcome (observations.selected_from): the earliest of a package with a delivery scan.
    complete = np.full(len(sellers), np.iinfo(np.int64).max, dtype=np.int64)
    delivered = delivery != MISSING
    np.minimum.at(complete, seller_of[delivered], deadline[delivered])
    has_complete = np.zeros(len(sellers), dtype=bool)
    has_complete[seller_of[delivered]] = True
    selected_waiting = has_complete[seller_of] & (deadline < complete[seller_of])
    # Tracking number -> the first learner with it (silences), and the last package with it
    # (the carrier its scans count for, per push source).
    learner_of: dict[str, int] = {}
    carrier_of: dict[str, int] = {}
    learner_rows = np.flatnonzero(learns).tolist()
    position = np.cumsum(learns) - 1
    scanned = (first != MISSING) & (first <= now_us)
    carrier_all = np.concatenate(carrier_index) if lanes else np.zeros(0, dtype=np.int64)
    for row, number in enumerate(numbers):
        if number is not None:
            carrier_of[number] = int(carrier_all[row])
    for row in reversed(learner_rows):
        number = numbers[row]
        if number is not None and scanned[row]:
            learner_of[number] = int(position[row])
    carrier_names = list(carriers)
    source_counts: dict[CarrierOrigin, Counter[str]] = defaultdict(Counter)
    scan_package, scan_moment, scan_status, statuses = [], [], [], []
    for scan_group in scan_groups:
        carriers_seen = Counter(carrier_of[number] for number in scan_group.numbers if number in carrier_of)
        for index, count in carriers_seen.items():
            source_counts[carrier_names[index]][scan_group.source] += count
        owners = [learner_of.get(number, -1) for number in scan_group.numbers]
        owner = np.asarray(owners, dtype=np.int64)
        keep = owner >= 0
        if not keep.any():
            continue
        if scan_group.status not in statuses:
            statuses.append(scan_group.status)
        scan_package.append(owner[keep])
        scan_moment.append(np.asarray(scan_group.moments, dtype=np.int64)[keep])
        scan_status.append(np.full(int(keep.sum()), statuses.index(scan_group.status), dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    package_columns = PackageColumns(
        lane=(np.concatenate(lane_index) if lanes else empty)[learns],
        confirmed=confirmed[learns],
        first=first[learns],
        delivery=delivery[learns],
        last=last[learns],
        deadline=deadline[learns],
        selected_waiting=selected_waiting[learns],
        carrier=carrier_all[learns],
        lanes=lane_keys,
        carriers=carrier_names,
    )
    silence_learners = np.zeros(int(learns.sum()), dtype=bool)
    silence_learners[list(learner_of.values())] = True
    scan_columns = ScanColumns(
        package=np.concatenate(scan_package) if scan_package else empty,
        moment=np.concatenate(scan_moment) if scan_moment else empty,
        status=np.concatenate(scan_status) if scan_status else empty,
        statuses=statuses,
    )
    return ModelInput(package_columns, scan_columns, silence_learners, dict(source_counts), len(confirmed))


_STRUCTURAL = sorted(reason.value for reason in STRUCTURAL_REASONS)
_PHYSICAL = sorted(PHYSICAL_SCAN_STATUSES)


def _micros_sql(column: str) -> str:
    return f"COALESCE((EXTRACT(EPOCH FROM {column}) * 1000000)::int8, {int(MISSING)})"


#: Built from constants of this module only (no input): hence the ``noqa: S608``.
_POSTGRESQL_PACKAGES = f"""
SELECT seller_id, carrier, service, ship_from_country, marketplace,
       array_agg({_micros_sql("confirmed_at")}), array_agg({_micros_sql("first_scan_at")}),
       array_agg({_micros_sql("delivery_scan_at")}), array_agg({_micros_sql("last_scan_at")}),
       array_agg({_micros_sql("promised_date + 2")}),
       array_agg(NOT (COALESCE(reason, '') = ANY($3::text[]) OR (state = 'valid' AND first_scan_at IS NULL))),
       array_agg(CASE WHEN confirmed_at >= $2 THEN tracking_number END)
FROM packages
WHERE confirmed_at >= $1 AND carrier IS NOT NULL AND state <> '{PackageState.CANCELLED.value}'
GROUP BY seller_id, carrier, service, ship_from_country, marketplace
"""  # noqa: S608
_POSTGRESQL_SCANS = f"""
SELECT status, source, array_agg(tracking_number), array_agg({_micros_sql("occurred_at")})
FROM scans
WHERE tracking_number IN (SELECT tracking_number FROM packages WHERE confirmed_at >= $1)
  AND status = ANY($2::text[]) AND occurred_at <= $3
GROUP BY status, source
"""  # noqa: S608


async def _read_postgresql(
    connection: AsyncConnection, since: datetime, silence_since: datetime, now: datetime
) -> tuple[list[LaneGroup], list[ScanGroup]]:
    driver = await driver_connection(connection)
    lanes = [
        LaneGroup(tuple(row[:5]), *row[5:])  # type: ignore[arg-type]
        for row in await driver.fetch(_POSTGRESQL_PACKAGES, since, silence_since, _STRUCTURAL)
    ]
    scan_groups = [ScanGroup(*row) for row in await driver.fetch(_POSTGRESQL_SCANS, silence_since, _PHYSICAL, now)]
    return lanes, scan_groups


async def _read_generic(
    connection: AsyncConnection, since: datetime, silence_since: datetime, now: datetime
) -> tuple[list[LaneGroup], list[ScanGroup]]:
    c = packages.c
    learns = not_(
        or_(
            func.coalesce(c.reason, "").in_(_STRUCTURAL),
            and_(c.state == PackageState.VALID.value, c.first_scan_at.is_(None)),
        )
    )
    rows = await connection.execute(
        select(
            c.seller_id, c.carrier, c.service, c.ship_from_country, c.marketplace, c.confirmed_at, c.first_scan_at,
            c.delivery_scan_at, c.last_scan_at, c.promised_date, case((learns, literal(True)), else_=literal(False)),
            case((c.confirmed_at >= silence_since, c.tracking_number), else_=None),
        ).where(c.confirmed_at >= since, c.carrier.is_not(None), c.state != PackageState.CANCELLED.value)
    )  # fmt: skip
    groups: dict[tuple[Any, ...], LaneGroup] = {}
    for (
        seller,
        carrier,
        service,
        origin,
        marketplace,
        confirmed,
        first,
        delivery,
        last,
        promised,
        learn,
        number,
    ) in rows:
        key = (seller, carrier, service, origin, marketplace)
        group = groups.get(key)
        if group is None:
            group = groups[key] = LaneGroup(key, [], [], [], [], [], [], [])  # type: ignore[arg-type]
        group.confirmed.append(micros(confirmed))
        group.first.append(micros(first))
        group.delivery.append(micros(delivery))
        group.last.append(micros(last))
        group.deadline.append(micros(counted_deadline(promised)))
        group.learns.append(bool(learn))
        group.numbers.append(number)
    scan_rows = await connection.execute(
        select(scans.c.status, scans.c.source, scans.c.tracking_number, scans.c.occurred_at).where(
            scans.c.tracking_number.in_(select(c.tracking_number).where(c.confirmed_at >= silence_since)),
            scans.c.status.in_(_PHYSICAL),
            scans.c.occurred_at <= now,
        )
    )
    scan_groups: dict[tuple[str, str], ScanGroup] = {}
    for status, source, number, occurred in scan_rows:
        found = scan_groups.get((status, source))
        if found is None:
            found = scan_groups[(status, source)] = ScanGroup(status, source, [], [])
        found.numbers.append(number)
        found.moments.append(micros(occurred))
    return list(groups.values()), list(scan_groups.values())
