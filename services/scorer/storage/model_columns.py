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
    ids: list[int]
    confirmed: list[int]
    first: list[int]
    delivery: list[int]
    last: list[int]
    deadline: list[int]
    #: Not structural and not valid without a first scan: the model learns from it.
    learns: list[bool]


@dataclass
class ScanGroup:
    """Physical scans of one status from one source: for each, the package its tracking
    number counts for (carrier health per source) and the one that learns its silences
    (0: none)."""

    status: str
    source: str
    counted: list[int]
    learner: list[int]
    moments: list[int]


@dataclass
class ModelRead:
    """What :func:`read_model_groups` read."""

    lanes: list[LaneGroup]
    scans: list[ScanGroup]
    #: Ids of the silence learners that share a tracking number (one parcel, several orders):
    #: the parcel's silences are learnt once, by the lowest id.
    shared: list[list[int]]


@dataclass
class ModelInput:
    """The columns the model's state is computed from."""

    packages: PackageColumns
    scans: ScanColumns
    #: The packages whose scans teach silences (one per tracking number).
    silence_learners: np.ndarray
    #: Recent physical scans per carrier x origin and push source (domain/sources.py).
    source_counts: dict[CarrierOrigin, Counter[str]]


def micros(moment: datetime | None) -> int:
    return int(MISSING) if moment is None else (moment - _EPOCH) // _MICROSECOND


async def read_model_groups(
    connection: AsyncConnection, since: datetime, silence_since: datetime, now: datetime
) -> ModelRead:
    """The packages confirmed since ``since`` (not cancelled, with a carrier) and the
    physical scans up to ``now`` of the tracking numbers confirmed since ``silence_since``;
    :func:`model_input_of` makes the columns of them."""
    if uses_copy(connection):
        return await _read_postgresql(connection, since, silence_since, now)
    return await _read_generic(connection, since, silence_since, now)


def _concatenated(parts: Sequence[Any], dtype: Any = np.int64) -> np.ndarray:
    return np.concatenate([np.asarray(part, dtype=dtype) for part in parts]) if parts else np.zeros(0, dtype=dtype)


def model_input_of(read: ModelRead, silence_since: datetime, now: datetime) -> ModelInput:
    """The columns of what was read (pure arithmetic, run in a worker thread)."""
    now_us = micros(now)
    lanes = read.lanes
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
    ids, confirmed, first, delivery, last, deadline = (
        _concatenated([getattr(group, name) for group in lanes])
        for name in ("ids", "confirmed", "first", "delivery", "last", "deadline")
    )
    learns = _concatenated([group.learns for group in lanes], bool)
    lane_of, carrier_of, seller_of = (_concatenated(parts) for parts in (lane_index, carrier_index, seller_index))
    # Per seller, the first deadline from which its data holds every package whatever its
    # outcome (observations.selected_from): the earliest of a package with a delivery scan.
    complete = np.full(len(sellers), np.iinfo(np.int64).max, dtype=np.int64)
    delivered = delivery != MISSING
    np.minimum.at(complete, seller_of[delivered], deadline[delivered])
    has_complete = np.zeros(len(sellers), dtype=bool)
    has_complete[seller_of[delivered]] = True
    selected_waiting = has_complete[seller_of] & (deadline < complete[seller_of])
    # Learners are numbered among the learning packages only.
    position = np.cumsum(learns) - 1
    by_id = np.argsort(ids, kind="stable")

    def rows_of(wanted: np.ndarray) -> np.ndarray:
        """Row of each package id (ids that were read)."""
        return by_id[np.searchsorted(ids[by_id], wanted)]

    scanned = (first != MISSING) & (first <= now_us)
    silence_rows = learns & scanned & (confirmed >= micros(silence_since))
    duplicates = [sorted(group)[1:] for group in read.shared]
    others = _concatenated(duplicates) if duplicates else np.zeros(0, dtype=np.int64)
    if len(others):
        silence_rows[rows_of(others)] = False
    carrier_names = list(carriers)
    source_counts: dict[CarrierOrigin, Counter[str]] = defaultdict(Counter)
    scan_package, scan_moment, scan_status, statuses = [], [], [], []
    for scan_group in read.scans:
        counted = np.asarray(scan_group.counted, dtype=np.int64)
        counted = counted[counted > 0]
        per_carrier = np.bincount(carrier_of[rows_of(counted)], minlength=len(carrier_names))
        for index in np.flatnonzero(per_carrier).tolist():
            source_counts[carrier_names[index]][scan_group.source] += int(per_carrier[index])
        learner = np.asarray(scan_group.learner, dtype=np.int64)
        keep = learner > 0
        if not keep.any():
            continue
        if scan_group.status not in statuses:
            statuses.append(scan_group.status)
        scan_package.append(position[rows_of(learner[keep])])
        scan_moment.append(np.asarray(scan_group.moments, dtype=np.int64)[keep])
        scan_status.append(np.full(int(keep.sum()), statuses.index(scan_group.status), dtype=np.int64))
    package_columns = PackageColumns(
        lane=lane_of[learns],
        confirmed=confirmed[learns],
        first=first[learns],
        delivery=delivery[learns],
        last=last[learns],
        deadline=deadline[learns],
        selected_waiting=selected_waiting[learns],
        carrier=carrier_of[learns],
        lanes=lane_keys,
        carriers=carrier_names,
    )
    scan_columns = ScanColumns(
        package=_concatenated(scan_package),
        moment=_concatenated(scan_moment),
        status=_concatenated(scan_status),
        statuses=statuses,
    )
    return ModelInput(package_columns, scan_columns, silence_rows[learns], dict(source_counts))


_STRUCTURAL = sorted(reason.value for reason in STRUCTURAL_REASONS)
_PHYSICAL = sorted(PHYSICAL_SCAN_STATUSES)


def _micros_sql(column: str) -> str:
    return f"COALESCE((EXTRACT(EPOCH FROM {column}) * 1000000)::int8, {int(MISSING)})"


#: Built from constants of this module only (no input): hence the ``noqa: S608``.


def _learns(structural: str) -> str:
    """SQL: the package is learnt from (``structural``: the placeholder of the structural reasons)."""
    valid = PackageState.VALID.value
    return f"NOT (COALESCE(reason, '') = ANY({structural}::text[]) OR (state = '{valid}' AND first_scan_at IS NULL))"


_KEPT = f"carrier IS NOT NULL AND state <> '{PackageState.CANCELLED.value}'"
_POSTGRESQL_PACKAGES = f"""
SELECT seller_id, carrier, service, ship_from_country, marketplace, array_agg(id),
       array_agg({_micros_sql("confirmed_at")}), array_agg({_micros_sql("first_scan_at")}),
       array_agg({_micros_sql("delivery_scan_at")}), array_agg({_micros_sql("last_scan_at")}),
       array_agg({_micros_sql("promised_date + 2")}), array_agg({_learns("$2")})
FROM packages
WHERE confirmed_at >= $1 AND {_KEPT}
GROUP BY seller_id, carrier, service, ship_from_country, marketplace
"""  # noqa: S608
#: A silence learner: learns, confirmed since $2, first scanned by $4.
_LEARNER = f"{_KEPT} AND {_learns('$3')} AND confirmed_at >= $2 AND first_scan_at <= $4"
_POSTGRESQL_SHARED = f"""
SELECT array_agg(id) FROM packages
WHERE confirmed_at >= $1 AND {_LEARNER}
GROUP BY tracking_number HAVING count(*) > 1
"""  # noqa: S608
#: The scans of the tracking numbers confirmed since $2, each with the package (lowest id)
#: its carrier counts for and the one that learns its silences.
_POSTGRESQL_SCANS = f"""
WITH numbers AS (
    SELECT tracking_number, min(id) FILTER (WHERE {_KEPT}) AS counted,
           min(id) FILTER (WHERE {_LEARNER}) AS learner
    FROM packages WHERE confirmed_at >= $1
    GROUP BY tracking_number HAVING max(confirmed_at) >= $2
)
SELECT s.status, s.source, array_agg(COALESCE(n.counted, 0)), array_agg(COALESCE(n.learner, 0)),
       array_agg({_micros_sql("s.occurred_at")})
FROM scans s JOIN numbers n ON n.tracking_number = s.tracking_number
WHERE s.status = ANY($5::text[]) AND s.occurred_at <= $4
GROUP BY s.status, s.source
"""  # noqa: S608


async def _read_postgresql(
    connection: AsyncConnection, since: datetime, silence_since: datetime, now: datetime
) -> ModelRead:
    driver = await driver_connection(connection)
    lanes = [
        LaneGroup(tuple(row[:5]), *row[5:])  # type: ignore[arg-type]
        for row in await driver.fetch(_POSTGRESQL_PACKAGES, since, _STRUCTURAL)
    ]
    arguments = (since, silence_since, _STRUCTURAL, now)
    shared = [list(row[0]) for row in await driver.fetch(_POSTGRESQL_SHARED, *arguments)]
    scan_groups = [ScanGroup(*row) for row in await driver.fetch(_POSTGRESQL_SCANS, *arguments, _PHYSICAL)]
    return ModelRead(lanes, scan_groups, shared)


async def _read_generic(
    connection: AsyncConnection, since: datetime, silence_since: datetime, now: datetime
) -> ModelRead:
    """The same as plain rows (SQLite): the groups and the lowest ids built here."""
    c = packages.c
    learns = not_(
        or_(
            func.coalesce(c.reason, "").in_(_STRUCTURAL),
            and_(c.state == PackageState.VALID.value, c.first_scan_at.is_(None)),
        )
    )
    rows = await connection.execute(
        select(
            c.id, c.seller_id, c.carrier, c.service, c.ship_from_country, c.marketplace, c.confirmed_at,
            c.first_scan_at, c.delivery_scan_at, c.last_scan_at, c.promised_date,
            case((learns, literal(True)), else_=literal(False)), c.tracking_number, c.state,
        ).where(c.confirmed_at >= since)
    )  # fmt: skip
    groups: dict[tuple[Any, ...], LaneGroup] = {}
    counted: dict[str, int] = {}
    learners: dict[str, list[int]] = defaultdict(list)
    recent: set[str] = set()
    for (id_, seller, carrier, service, origin, marketplace, confirmed, first, delivery, last, promised, learn,
         number, state) in rows:  # fmt: skip
        if confirmed >= silence_since:
            recent.add(number)
        if carrier is None or state == PackageState.CANCELLED.value:
            continue
        counted[number] = min(counted.get(number, id_), id_)
        if learn and confirmed >= silence_since and first is not None and first <= now:
            learners[number].append(id_)
        key = (seller, carrier, service, origin, marketplace)
        group = groups.get(key)
        if group is None:
            group = groups[key] = LaneGroup(key, [], [], [], [], [], [], [])  # type: ignore[arg-type]
        group.ids.append(id_)
        group.confirmed.append(micros(confirmed))
        group.first.append(micros(first))
        group.delivery.append(micros(delivery))
        group.last.append(micros(last))
        group.deadline.append(micros(counted_deadline(promised)))
        group.learns.append(bool(learn))
    scan_rows = await connection.execute(
        select(scans.c.status, scans.c.source, scans.c.tracking_number, scans.c.occurred_at).where(
            scans.c.tracking_number.in_(select(c.tracking_number).where(c.confirmed_at >= silence_since)),
            scans.c.status.in_(_PHYSICAL),
            scans.c.occurred_at <= now,
        )
    )
    scan_groups: dict[tuple[str, str], ScanGroup] = {}
    for status, source, number, occurred in scan_rows:
        if number not in recent:
            continue
        found = scan_groups.get((status, source))
        if found is None:
            found = scan_groups[(status, source)] = ScanGroup(status, source, [], [], [])
        found.counted.append(counted.get(number, 0))
        found.learner.append(min(learners[number]) if number in learners else 0)
        found.moments.append(micros(occurred))
    shared = [ids for ids in learners.values() if len(ids) > 1]
    return ModelRead(list(groups.values()), list(scan_groups.values()), shared)
