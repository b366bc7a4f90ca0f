"""Amazon's VTR per seller x marketplace as the scorer keeps it (table ``amazon_vtr``,
migration 0008), and vtrwatch's counts over Amazon's reporting range (domain/amazon.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Column, Date, DateTime, Float, Integer, String, Table, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer import metrics
from services.scorer.domain.amazon import ALERT_POINTS, OwnCounts, comparison, difference_points
from services.scorer.storage.dialect import dialect_insert
from services.scorer.storage.schema import daily_counts, metadata
from shared.schemas import AmazonVtr, AmazonVtrStatus

amazon_vtr = Table(
    "amazon_vtr",
    metadata,
    Column("seller_id", String(128), primary_key=True),
    Column("marketplace", String(2), primary_key=True),
    Column("marketplace_id", String(32), nullable=False),
    Column("rate", Float, nullable=True),
    Column("shipment_count", Integer, nullable=True),
    Column("valid_tracking_count", Integer, nullable=True),
    Column("status", String(8), nullable=False),
    Column("target_value", Float, nullable=True),
    Column("reporting_from", Date, nullable=False),
    Column("reporting_to", Date, nullable=False),
    Column("report_id", String(128), nullable=False),
    Column("fetched_at", DateTime, nullable=False),
    Column("problems", String(400), nullable=False),
    #: When Amazon's status last turned BAD (None while it never was).
    Column("bad_since", DateTime, nullable=True),
)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def row_of(figure: AmazonVtr) -> dict[str, Any]:
    return {
        "seller_id": figure.seller_id,
        "marketplace": figure.marketplace,
        "marketplace_id": figure.marketplace_id,
        "rate": figure.rate,
        "shipment_count": figure.shipment_count,
        "valid_tracking_count": figure.valid_tracking_count,
        "status": figure.status.value,
        "target_value": figure.target_value,
        "reporting_from": figure.reporting_from,
        "reporting_to": figure.reporting_to,
        "report_id": figure.report_id,
        "fetched_at": _naive(figure.fetched_at),
        "problems": ",".join(figure.problems)[:400],
        "bad_since": _naive(figure.fetched_at) if figure.status is AmazonVtrStatus.BAD else None,
    }


async def keep(connection: AsyncConnection, figures: list[AmazonVtr]) -> None:
    """Upsert: the newest ``fetched_at`` of a seller x marketplace wins; ``bad_since`` keeps
    the time the status first turned BAD while it stays BAD."""
    newest: dict[tuple[str, str], AmazonVtr] = {}
    for figure in figures:
        key = (figure.seller_id, figure.marketplace)
        if key not in newest or figure.fetched_at > newest[key].fetched_at:
            newest[key] = figure
    if not newest:
        return
    statement = dialect_insert(connection, amazon_vtr)
    excluded = statement.excluded
    columns = [c.name for c in amazon_vtr.columns if c.name not in ("seller_id", "marketplace", "bad_since")]
    statement = statement.on_conflict_do_update(
        index_elements=[amazon_vtr.c.seller_id, amazon_vtr.c.marketplace],
        set_={
            **{name: excluded[name] for name in columns},
            "bad_since": case(
                (
                    excluded.status == AmazonVtrStatus.BAD.value,
                    func.coalesce(amazon_vtr.c.bad_since, excluded.bad_since),
                ),
                else_=None,
            ),
        },
        where=amazon_vtr.c.fetched_at < excluded.fetched_at,
    )
    await connection.execute(statement, [row_of(figure) for _, figure in sorted(newest.items())])


async def own_counts(
    connection: AsyncConnection, seller_id: str, marketplace: str, first: date, last: date
) -> OwnCounts:
    row = (
        await connection.execute(
            select(
                func.coalesce(func.sum(daily_counts.c.valid), 0),
                func.coalesce(func.sum(daily_counts.c.invalid), 0),
                func.coalesce(func.sum(daily_counts.c.pending), 0),
            ).where(
                daily_counts.c.seller_id == seller_id,
                daily_counts.c.marketplace == marketplace,
                daily_counts.c.promised_date.between(first, last),
            )
        )
    ).one()
    return OwnCounts(int(row[0]), int(row[1]), int(row[2]))


async def seller_comparisons(connection: AsyncConnection, seller_id: str) -> list[dict[str, Any]]:
    rows = (
        await connection.execute(
            select(amazon_vtr).where(amazon_vtr.c.seller_id == seller_id).order_by(amazon_vtr.c.marketplace)
        )
    ).all()
    return [
        comparison(row, await own_counts(connection, seller_id, row.marketplace, row.reporting_from, row.reporting_to))
        for row in rows
    ]


async def refresh_difference_gauges(engine: AsyncEngine) -> None:
    """The largest absolute difference, and how many seller x marketplaces exceed the alert
    threshold (no seller ids as labels)."""
    async with engine.connect() as connection:
        rows = (await connection.execute(select(amazon_vtr))).all()
        differences = []
        for row in rows:
            own = await own_counts(connection, row.seller_id, row.marketplace, row.reporting_from, row.reporting_to)
            difference = difference_points(own.rate, row.rate)
            if difference is not None:
                differences.append(abs(difference))
    metrics.AMAZON_VTR_MAX_DIFFERENCE.set(max(differences, default=0.0))
    metrics.AMAZON_VTR_OVER_THRESHOLD.set(sum(1 for d in differences if d > ALERT_POINTS))
    metrics.AMAZON_VTR_BAD.set(sum(1 for row in rows if row.status == AmazonVtrStatus.BAD.value))
