"""Amazon's own VTR beside vtrwatch's (issue 22): the scorer keeps the newest figure of
each seller x marketplace from ``vtr.amazon-vtr.v1`` (the ingest's Amazon worker publishes
Amazon's seller performance report there) and answers ``GET /v1/sellers/{id}/amazon`` with
both sides over Amazon's own reporting range.

vtrwatch's side over that range is read from ``daily_counts`` exactly as the VTR window
is (packages by promised delivery date, every category of the marketplace, cancelled ones
left out; a package still pending after its promised date counts as invalid, as in the
window). The difference is vtrwatch's rate minus Amazon's, in percentage points.

The figures are kept by their own small consumer (group ``vtr-scorer-amazon``), outside
the package pipeline: an upsert where the newest ``fetched_at`` wins, so a re-read record
changes nothing. A status that turns ``BAD`` is remembered with the time it turned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiokafka.errors import KafkaError
from sqlalchemy import Column, Date, DateTime, Float, Integer, String, Table, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer import metrics
from services.scorer.schema import daily_counts, metadata
from services.scorer.store import dialect_insert
from shared.kafka import make_consumer
from shared.schemas import AMAZON_CODEC, AmazonVtr, AmazonVtrStatus, ContractError
from shared.settings import ServiceSettings
from shared.topics import AMAZON_VTR

log = logging.getLogger(__name__)

AMAZON_GROUP = "vtr-scorer-amazon"
#: A difference larger than this (percentage points) is worth an SRE's look (the alert).
ALERT_POINTS = 1.0

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


@dataclass(frozen=True)
class OwnCounts:
    valid: int
    invalid: int
    pending: int

    @property
    def total(self) -> int:
        return self.valid + self.invalid + self.pending

    @property
    def rate(self) -> float | None:
        return self.valid / self.total if self.total else None


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


def difference_points(own: float | None, amazon: float | None) -> float | None:
    """vtrwatch's rate minus Amazon's, in percentage points (None when either is missing)."""
    if own is None or amazon is None:
        return None
    return round((own - amazon) * 100, 2)


def comparison(row: Any, own: OwnCounts) -> dict[str, Any]:
    difference = difference_points(own.rate, row.rate)
    return {
        "marketplace": row.marketplace,
        "reporting_range": {"from": row.reporting_from.isoformat(), "to": row.reporting_to.isoformat()},
        "amazon": {
            "rate": row.rate,
            "shipment_count": row.shipment_count,
            "valid_tracking_count": row.valid_tracking_count,
            "status": row.status,
            "target_value": row.target_value,
            "report_id": row.report_id,
            "fetched_at": row.fetched_at.replace(tzinfo=UTC).isoformat(),
            "bad_since": row.bad_since.replace(tzinfo=UTC).isoformat() if row.bad_since else None,
            "problems": [p for p in row.problems.split(",") if p],
        },
        "vtrwatch": {
            "rate": round(own.rate, 6) if own.rate is not None else None,
            "shipment_count": own.total,
            "valid_tracking_count": own.valid,
            "invalid": own.invalid,
            "pending": own.pending,
        },
        "difference_points": difference,
        "over_alert_threshold": difference is not None and abs(difference) > ALERT_POINTS,
    }


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


async def refresh_difference_gauges_every(engine: AsyncEngine, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await refresh_difference_gauges(engine)
        except Exception:  # a gauge is refreshed next round; the API does not depend on it
            log.exception("Amazon VTR gauges not refreshed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def consume_amazon_vtr(settings: ServiceSettings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Keep every figure of ``vtr.amazon-vtr.v1``; commit offsets after they are stored."""
    while not stop.is_set():
        consumer = make_consumer(settings, AMAZON_VTR, group_id=AMAZON_GROUP)
        try:
            await consumer.start()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                figures = []
                for records in batches.values():
                    for record in records:
                        try:
                            message = AMAZON_CODEC.decode(record.value or b"")
                        except ContractError as error:
                            metrics.RECORDS.labels(AMAZON_VTR, "invalid").inc()
                            log.warning("Amazon VTR record skipped", extra={"problem": str(error)[:300]})
                            continue
                        if isinstance(message, AmazonVtr):  # connection notices are the notifier's
                            figures.append(message)
                if figures:
                    async with engine.begin() as connection:
                        await keep(connection, figures)
                    metrics.RECORDS.labels(AMAZON_VTR, "applied").inc(len(figures))
                if batches:
                    await consumer.commit()
        except asyncio.CancelledError:
            raise
        except (KafkaError, SQLAlchemyError, OSError) as error:
            # Offsets are committed after the figures are stored: a restart reads them again.
            log.warning("Amazon VTR consumer restarts", extra={"problem": type(error).__name__})
            await asyncio.sleep(2)
        finally:
            await consumer.stop()
