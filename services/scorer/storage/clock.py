"""The clock job's steps in the database: re-evaluating pending packages whose review is due
or whose promised date passed, the daily window slide, pruning old counters.

A step takes ``(connection, evaluator, today, limit, now)`` and returns how many packages
it wrote; the clock job runs it in transactions of its own until it writes fewer than
``limit``."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.packages import NOON, PACKAGE_COLUMNS, package_from_row
from services.scorer.storage.dialect import dialect_insert
from services.scorer.storage.outbox import mark_changed
from services.scorer.storage.packages import reevaluate
from services.scorer.storage.schema import (
    clock_state,
    daily_counts,
    daily_reasons,
    packages,
)
from shared.schemas import (
    PackageState,
)


async def _reevaluate_pending(
    connection: AsyncConnection,
    evaluator: Evaluator,
    today: date,
    limit: int,
    now: datetime | None,
    *conditions: Any,
) -> int:
    """Re-evaluate up to ``limit`` pending packages matching ``conditions`` (clock-driven
    work); each one is written, so its ``review_at`` moves on."""
    columns = [packages.c[name] for name in PACKAGE_COLUMNS]
    query = (
        select(*columns)
        # Written out, not a parameter: the partial indexes on pending packages (migration
        # 0006) then serve the query whatever plan the server keeps for the prepared statement.
        .where(packages.c.state == literal_column(f"'{PackageState.PENDING.value}'"), *conditions)
        .order_by(packages.c.id)
        .limit(limit)
    )
    if connection.dialect.name == "postgresql":
        # Another scorer instance's clock job takes other rows instead of waiting for these.
        query = query.with_for_update(skip_locked=True)
    rows = [package_from_row(row) for row in await connection.execute(query)]
    return await reevaluate(connection, evaluator, [(row, row.clone()) for row in rows], today, now, rewrite=True)


async def expire_pending(
    connection: AsyncConnection, evaluator: Evaluator, today: date, limit: int, now: datetime | None = None
) -> int:
    """Re-evaluate up to ``limit`` pending packages whose promised date has passed."""
    return await _reevaluate_pending(connection, evaluator, today, limit, now, packages.c.promised_date < today)


async def review_due(
    connection: AsyncConnection, evaluator: Evaluator, today: date, limit: int, now: datetime | None = None
) -> int:
    """Recompute up to ``limit`` upcoming pending packages whose review is due: time alone
    moves their probability (a first scan that should have come by now), and so does a
    refreshed model (:func:`refresh_model` makes the affected packages due at once)."""
    moment = now if now is not None else datetime.combine(today, NOON)
    return await _reevaluate_pending(
        connection,
        evaluator,
        today,
        limit,
        moment,
        packages.c.promised_date >= today,
        or_(packages.c.review_at.is_(None), packages.c.review_at <= moment),
    )


async def mark_window_slide(connection: AsyncConnection, today: date, lag_days: int, forecast_days: int) -> bool:
    """Once per day (across instances): mark every seller-category whose window moved."""
    result = await connection.execute(
        update(clock_state).where(clock_state.c.name == "window", clock_state.c.day < today).values(day=today)
    )
    if result.rowcount == 0:
        exists = (await connection.execute(select(clock_state.c.day).where(clock_state.c.name == "window"))).first()
        if exists is not None:
            return False
        inserted = await connection.execute(
            dialect_insert(connection, clock_state)
            .values(name="window", day=today)
            .on_conflict_do_nothing()
            .returning(clock_state.c.name)
        )
        if inserted.first() is None:
            return False
    # Every seller-category with a package that was or will be in a window around today.
    first = today - timedelta(days=31 + lag_days)
    last = today + timedelta(days=forecast_days)
    scopes = await connection.execute(
        select(daily_counts.c.seller_id, daily_counts.c.marketplace, daily_counts.c.category)
        .where(daily_counts.c.promised_date.between(first, last))
        .distinct()
    )
    await mark_changed(connection, sorted((s, m, c) for s, m, c in scopes))
    return True


async def prune_counters(connection: AsyncConnection, before: date) -> None:
    """Drop counter rows promised before ``before``: no window reads them any more (a past
    ``as_of`` is recomputed from packages), and they would slow the per-seller reads."""
    await connection.execute(delete(daily_reasons).where(daily_reasons.c.promised_date < before))
    await connection.execute(delete(daily_counts).where(daily_counts.c.promised_date < before))
