"""The counter reads behind a seller's scores: from the daily counters for today, recomputed
from packages for a past day."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Deltas, Evaluator
from services.scorer.domain.packages import MICRO, PACKAGE_COLUMNS, package_from_row
from services.scorer.domain.policy import (
    STRUCTURAL_REASONS,
    invalid_reason_for,
)
from services.scorer.domain.scores import ScopeCounts
from services.scorer.forecast import DayCounts
from services.scorer.storage.packages import load_cancellations, load_scans
from services.scorer.storage.schema import (
    daily_counts,
    daily_reasons,
    packages,
    projected_counts,
)
from shared.schemas import (
    PackageState,
    Reason,
)

Scope = tuple[str, str]


async def seller_exists(connection: AsyncConnection, seller_id: str) -> bool:
    row = await connection.execute(select(packages.c.id).where(packages.c.seller_id == seller_id).limit(1))
    return row.first() is not None


async def read_counts(
    connection: AsyncConnection,
    seller_id: str,
    first: date,
    last: date,
    window_first: date,
    window_last: date,
    scope: tuple[str, str] | None = None,
) -> dict[Scope, ScopeCounts]:
    """Counter rows of a seller for promised dates ``first .. last``, reasons over the window."""
    conditions = [daily_counts.c.seller_id == seller_id, daily_counts.c.promised_date.between(first, last)]
    if scope is not None:
        conditions += [daily_counts.c.marketplace == scope[0], daily_counts.c.category == scope[1]]
    found: dict[Scope, ScopeCounts] = {}
    result = await connection.execute(
        select(
            daily_counts.c.marketplace,
            daily_counts.c.category,
            daily_counts.c.promised_date,
            daily_counts.c.valid,
            daily_counts.c.invalid,
            daily_counts.c.pending,
            daily_counts.c.expected_valid_micro,
            daily_counts.c.variance_micro,
        ).where(*conditions)
    )
    for marketplace, category, promised, valid, invalid, pending, expected, variance in result:
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        entry.days[promised] = DayCounts(valid, invalid, pending, expected / MICRO, variance / MICRO)
    await add_projections(connection, found, seller_id, first, last, scope)
    reason_conditions = [
        daily_reasons.c.seller_id == seller_id,
        daily_reasons.c.promised_date.between(window_first, last),
        daily_reasons.c.state.in_([PackageState.INVALID.value, PackageState.PENDING.value]),
    ]
    if scope is not None:
        reason_conditions += [daily_reasons.c.marketplace == scope[0], daily_reasons.c.category == scope[1]]
    upcoming = daily_reasons.c.promised_date > window_last
    reasons = await connection.execute(
        select(
            daily_reasons.c.marketplace,
            daily_reasons.c.category,
            daily_reasons.c.reason,
            upcoming,
            func.sum(daily_reasons.c.count),
        )
        .where(*reason_conditions)
        .group_by(daily_reasons.c.marketplace, daily_reasons.c.category, daily_reasons.c.reason, upcoming)
    )
    for marketplace, category, reason, is_upcoming, count in reasons:
        if not count:
            continue
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        if is_upcoming:
            if reason not in STRUCTURAL_REASONS:
                entry.pending_reasons[reason] = entry.pending_reasons.get(reason, 0) + int(count)
            continue
        # In the window every promised date has passed: a still-pending reason is the invalid one.
        name = invalid_reason_for(Reason(reason)).value
        entry.reasons[name] = entry.reasons.get(name, 0) + int(count)
    return found


async def add_projections(
    connection: AsyncConnection,
    found: dict[Scope, ScopeCounts],
    seller_id: str,
    first: date,
    last: date,
    scope: tuple[str, str] | None = None,
) -> None:
    """Add the projected orders (not confirmed yet) of a seller to its per-day counts."""
    p = projected_counts.c
    conditions = [p.seller_id == seller_id, p.promised_date.between(first, last)]
    if scope is not None:
        conditions += [p.marketplace == scope[0], p.category == scope[1]]
    result = await connection.execute(
        select(
            p.marketplace, p.category, p.promised_date, p.expected_micro, p.expected_valid_micro, p.variance_micro
        ).where(*conditions)
    )
    for marketplace, category, promised, expected, expected_valid, variance in result:
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        counts = entry.days.get(promised, DayCounts())
        entry.days[promised] = replace(
            counts,
            projected=expected / MICRO,
            projected_valid=expected_valid / MICRO,
            projected_variance=variance / MICRO,
        )


async def recompute_counts(
    connection: AsyncConnection,
    evaluator: Evaluator,
    seller_id: str,
    as_of: date,
    first: date,
    last: date,
    window_first: date,
    window_last: date,
    scope: tuple[str, str] | None = None,
) -> dict[Scope, ScopeCounts]:
    """Counts as they were on ``as_of``: scans that occurred before the end of that day, all data known now."""
    columns = [packages.c[name] for name in PACKAGE_COLUMNS]
    conditions = [packages.c.seller_id == seller_id, packages.c.promised_date.between(first, last)]
    if scope is not None:
        conditions += [packages.c.marketplace == scope[0], packages.c.category == scope[1]]
    rows = [package_from_row(row) for row in await connection.execute(select(*columns).where(*conditions))]
    tracking_numbers = {row.tracking_number for row in rows}
    found_scans = await load_scans(connection, tracking_numbers)
    found_cancellations = await load_cancellations(connection, tracking_numbers)
    end_of_day = datetime.combine(as_of + timedelta(days=1), time())
    deltas = Deltas.empty()
    for row in rows:
        evaluated = evaluator.evaluate_in_place(
            row,
            found_scans.get(row.tracking_number, ()),
            found_cancellations.get(row.tracking_number, ()),
            as_of,
            occurred_before=end_of_day,
            now=end_of_day,
        )
        deltas.add(evaluated, +1)
    found: dict[Scope, ScopeCounts] = {}
    for (_, marketplace, category, promised), (valid, invalid, pending, expected, variance) in deltas.counts.items():
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        entry.days[promised] = DayCounts(valid, invalid, pending, expected / MICRO, variance / MICRO)
    for (_, marketplace, category, promised, state, reason), count in deltas.reasons.items():
        if not count:
            continue
        if window_first <= promised <= window_last:
            entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
            name = invalid_reason_for(Reason(reason)).value
            entry.reasons[name] = entry.reasons.get(name, 0) + count
        elif promised > window_last and state == PackageState.PENDING.value:
            entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
            entry.pending_reasons[reason] = entry.pending_reasons.get(reason, 0) + count
    return found


async def silent_lane_counts(
    connection: AsyncConnection, seller_id: str, as_of: date
) -> list[tuple[str, str, Any, str, int]]:
    """The seller's pending packages held by a silent carrier, promised from ``as_of`` on, per
    (marketplace, category, carrier, origin)."""
    c = packages.c
    rows = await connection.execute(
        select(c.marketplace, c.category, c.carrier, c.ship_from_country, func.count())
        .where(
            c.seller_id == seller_id,
            c.state == PackageState.PENDING.value,
            c.reason == Reason.CARRIER_SILENT.value,
            c.promised_date >= as_of,
        )
        .group_by(c.marketplace, c.category, c.carrier, c.ship_from_country)
    )
    return [
        (marketplace, category, carrier, origin, int(count)) for marketplace, category, carrier, origin, count in rows
    ]
