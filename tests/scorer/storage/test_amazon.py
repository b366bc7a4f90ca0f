"""Amazon's VTR kept beside vtrwatch's (issue 22): the newest figure of a seller x
marketplace wins whatever order they arrive in, ``bad_since`` stays while Amazon says BAD,
and the comparison counts vtrwatch's packages over Amazon's reporting range exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.storage.amazon import keep, seller_comparisons
from services.scorer.storage.schema import daily_counts
from shared.schemas import AmazonVtr, AmazonVtrStatus

FIRST, LAST = date(2026, 11, 7), date(2026, 12, 6)


def figure(status: AmazonVtrStatus, rate: float, hours: int, marketplace: str = "US") -> AmazonVtr:
    return AmazonVtr(
        seller_id="S1",
        marketplace=marketplace,
        marketplace_id={"US": "ATVPDKIKX0DER", "UK": "A1F83G8C2ARO7P"}[marketplace],
        rate=rate,
        shipment_count=40,
        valid_tracking_count=round(40 * rate),
        status=status,
        target_value=0.95,
        reporting_from=FIRST,
        reporting_to=LAST,
        report_id=f"R{hours}",
        fetched_at=datetime(2026, 12, 7, tzinfo=UTC) + timedelta(hours=hours),
    )


def counts(day: date, valid: int, invalid: int, pending: int, category: str = "Toys") -> dict[str, object]:
    return {
        "seller_id": "S1", "marketplace": "US", "category": category, "promised_date": day,
        "valid": valid, "invalid": invalid, "pending": pending, "expected_valid_micro": 0, "variance_micro": 0,
    }  # fmt: skip


async def test_newest_figure_wins_and_both_sides_are_counted_over_amazons_range(scorer_engine: AsyncEngine) -> None:
    async with scorer_engine.begin() as connection:
        await connection.execute(
            daily_counts.insert(),
            [
                counts(FIRST - timedelta(days=1), 50, 50, 0),  # before Amazon's range: not counted
                counts(FIRST, 20, 1, 0),
                counts(LAST, 15, 1, 1, category="Home"),  # another category of the marketplace counts
                counts(LAST + timedelta(days=1), 0, 9, 0),  # after the range: not counted
            ],
        )
        await keep(connection, [figure(AmazonVtrStatus.BAD, 0.925, 2), figure(AmazonVtrStatus.GOOD, 0.97, 1)])
    async with scorer_engine.begin() as connection:
        await keep(connection, [figure(AmazonVtrStatus.GOOD, 0.99, 0)])  # older, arrives late: ignored
        await keep(connection, [figure(AmazonVtrStatus.GOOD, 0.96, 1, marketplace="UK")])
    async with scorer_engine.connect() as connection:
        uk, us = await seller_comparisons(connection, "S1")  # by marketplace code
    assert us["amazon"]["rate"] == 0.925 and us["amazon"]["status"] == "BAD" and us["amazon"]["bad_since"]
    assert us["vtrwatch"] == {"rate": round(35 / 38, 6), "shipment_count": 38, "valid_tracking_count": 35,
                              "invalid": 2, "pending": 1}  # fmt: skip
    assert us["difference_points"] == round((35 / 38 - 0.925) * 100, 2)
    assert us["over_alert_threshold"] is False
    assert us["reporting_range"] == {"from": "2026-11-07", "to": "2026-12-06"}
    assert uk["vtrwatch"]["rate"] is None and uk["difference_points"] is None  # nothing of vtrwatch's there

    first_bad = us["amazon"]["bad_since"]
    async with scorer_engine.begin() as connection:
        await keep(connection, [figure(AmazonVtrStatus.BAD, 0.93, 3)])
    async with scorer_engine.connect() as connection:
        (_, us) = await seller_comparisons(connection, "S1")
    assert us["amazon"]["bad_since"] == first_bad  # still BAD since the first report that said so
    async with scorer_engine.begin() as connection:
        await keep(connection, [figure(AmazonVtrStatus.GOOD, 0.97, 4)])
    async with scorer_engine.connect() as connection:
        (_, us) = await seller_comparisons(connection, "S1")
    assert us["amazon"]["bad_since"] is None and us["amazon"]["status"] == "GOOD"
