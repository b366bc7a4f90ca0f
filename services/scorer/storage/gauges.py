"""Whole-table aggregates for the dashboards' gauges; read rarely (they scan the counters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.storage.outbox import outbox_size
from services.scorer.storage.schema import daily_counts, daily_reasons, score_levels


@dataclass(frozen=True)
class GaugeReadings:
    valid: int
    invalid: int
    pending: int
    #: (state, reason, packages)
    reasons: list[tuple[str, str, int]]
    #: (level, marketplace, seller-categories)
    levels: list[tuple[str, str, int]]
    outbox_backlog: int


async def read_gauges(connection: AsyncConnection, first: date, last: date, reasons_last: date) -> GaugeReadings:
    """Counters promised ``first .. last``; reasons up to ``reasons_last`` (the forecast's end)."""
    totals = (
        await connection.execute(
            select(
                func.coalesce(func.sum(daily_counts.c.valid), 0),
                func.coalesce(func.sum(daily_counts.c.invalid), 0),
                func.coalesce(func.sum(daily_counts.c.pending), 0),
            ).where(daily_counts.c.promised_date.between(first, last))
        )
    ).one()
    reasons = await connection.execute(
        select(daily_reasons.c.state, daily_reasons.c.reason, func.sum(daily_reasons.c.count))
        .where(daily_reasons.c.promised_date.between(first, reasons_last))
        .group_by(daily_reasons.c.state, daily_reasons.c.reason)
    )
    levels = await connection.execute(
        select(score_levels.c.level, score_levels.c.marketplace, func.count()).group_by(
            score_levels.c.level, score_levels.c.marketplace
        )
    )
    return GaugeReadings(
        valid=int(totals[0]),
        invalid=int(totals[1]),
        pending=int(totals[2]),
        reasons=[(state, reason, int(count or 0)) for state, reason, count in reasons],
        levels=[(level, marketplace, int(count)) for level, marketplace, count in levels],
        outbox_backlog=await outbox_size(connection),
    )
