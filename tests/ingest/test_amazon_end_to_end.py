"""Issue 22 end to end: a seller connects Amazon through the callback, the Amazon worker
reads its orders and performance report from a local server answering as Amazon
documents (fake_amazon.py), and the real scorer (a subprocess on PostgreSQL and the real
broker) scores its merchant-fulfilled packages with Amazon's promised date, marketplace
and catalogue category, once each although the seller's ERP posts the same
confirmations; ``GET /v1/sellers/{id}/amazon`` answers with both sides."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.scorer.storage.schema import packages
from shared.db import create_engine
from tests.ingest.conftest import AUTH, SettingsFactory, running_ingest
from tests.ingest.fake_amazon import amazon_server, catalog_item, mfn_order, performance_report
from tests.ingest.test_amazon import JP, UK, US, amazon_settings, connect, running_worker
from tests.scorer.conftest import migrate
from tests.scorer.processes import Scorer
from tools.localstack import TansuBroker

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SCORER_KEY = "amazon-e2e-key"


@pytest.fixture
def scorer(
    fresh_broker: TansuBroker, new_postgres_database: Callable[[], str], tmp_path: Path
) -> Iterator[tuple[Scorer, str]]:
    database_url = new_postgres_database()
    migrate(database_url)
    env = {
        **os.environ,
        "VTR_KAFKA_BOOTSTRAP": fresh_broker.bootstrap,
        "VTR_DATABASE_URL": database_url,
        "VTR_API_KEYS": SCORER_KEY,
        "VTR_LOG_LEVEL": "WARNING",
        "VTR_GAUGES_INTERVAL_SECONDS": "1",
    }
    process = Scorer(env, tmp_path / "scorer.log")
    yield process, database_url
    process.stop()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_connected_seller_is_scored_once_with_amazons_dates_and_categories_and_compared(
    make_settings: SettingsFactory, fresh_broker: TansuBroker, scorer: tuple[Scorer, str]
) -> None:
    process, database_url = scorer
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    seller = f"amz-{uuid.uuid4().hex[:8]}"
    shipped = now - timedelta(days=12)
    # Promised (latest instant of deliverByWindow) 5 days ago at 07:00Z: the day before in
    # Los Angeles, the same day in London, and at 18:00Z the next day in Tokyo.
    base = datetime.combine(today - timedelta(days=5), datetime.min.time(), UTC)
    orders: dict[str, dict[str, Any]] = {
        "us": mfn_order(
            f"{seller}-us",
            marketplace_id=US,
            carrier="Yun Express",
            tracking_number=f"YT{uuid.uuid4().int % 10**16:016d}",
            ship_time=_iso(shipped),
            deliver_by_latest=_iso(base + timedelta(hours=7)),
            asin="B0TOYUS001",
            total=("12.00", "USD"),
            updated=_iso(now - timedelta(hours=1)),
        ),
        "uk": mfn_order(
            f"{seller}-uk",
            marketplace_id=UK,
            carrier="Royal Mail",
            tracking_number="RR123456785GB",
            ship_time=_iso(shipped),
            deliver_by_latest=_iso(base + timedelta(hours=7)),
            asin="B0HOMEUK01",
            updated=_iso(now - timedelta(hours=1)),
        ),
        "jp": mfn_order(
            f"{seller}-jp",
            marketplace_id=JP,
            carrier="China Post",
            tracking_number="RR473124829CN",
            ship_time=_iso(shipped),
            deliver_by_latest=_iso(base + timedelta(hours=18)),
            asin="B0ODDJP001",
            total=("2000", "JPY"),
            updated=_iso(now - timedelta(hours=1)),
        ),
    }
    expected = {
        f"{seller}-us": ("US", today - timedelta(days=6), "Toys & Games"),
        f"{seller}-uk": ("UK", today - timedelta(days=5), "Home & Kitchen"),
        f"{seller}-jp": ("JP", today - timedelta(days=4), "Uncategorised"),
    }
    reporting = {
        "reportingDateFrom": _iso(base - timedelta(days=25))[:-4] + "Z",
        "reportingDateTo": (today - timedelta(days=1)).isoformat() + "T23:59Z",
    }
    async with amazon_server() as amazon:
        amazon.order_pages = [[orders["us"]], [orders["uk"], orders["jp"]]]
        amazon.catalog = {
            "B0TOYUS001": catalog_item("B0TOYUS001", US, "toy_display_on_website"),
            "B0HOMEUK01": catalog_item("B0HOMEUK01", UK, "kitchen_display_on_website"),
            "B0ODDJP001": catalog_item("B0ODDJP001", JP, None),
        }
        amazon.report = performance_report(
            {
                US: {
                    "reportingDateRange": reporting,
                    "shipmentCount": 40,
                    "validTrackingCount": 37,
                    "status": "BAD",
                    "rate": 0.925,
                    "targetValue": 0.95,
                    "targetCondition": "GREATER_THAN",
                },
            }
        )
        settings = amazon_settings(make_settings, amazon, kafka_bootstrap=fresh_broker.bootstrap)
        async with running_ingest(settings) as ingest:
            process.start()
            await connect(ingest, amazon, seller)
            async with running_worker(settings):
                engine = create_engine(database_url)
                try:
                    stored = await _until(engine, seller, len(expected))
                    # The seller's ERP posts the same confirmations afterwards (its own category
                    # for the UK order): still one package per order.
                    erp = [
                        {
                            "order_id": order["orderId"],
                            "seller_id": seller,
                            "marketplace": expected[order["orderId"]][0],
                            "category": "Kitchen (ERP)" if name == "uk" else expected[order["orderId"]][2],
                            "carrier": order["packages"][0]["carrier"],
                            "tracking_number": order["packages"][0]["trackingNumber"],
                            "order_value": {"amount": "12.00", "currency": "USD"},
                            "confirmed_at": _iso(now),
                            "promised_delivery_date": expected[order["orderId"]][1].isoformat(),
                        }
                        for name, order in orders.items()
                    ]
                    answer = await ingest.post("/v1/shipments", json=erp, headers=AUTH)
                    assert answer.status_code == 202, answer.text
                    await asyncio.sleep(3)
                    stored = await _until(engine, seller, len(expected), category_of_uk="Kitchen (ERP)")
                finally:
                    await engine.dispose()
                assert len(stored) == len(expected)  # one package per order, whoever confirmed it
                assert {row.order_id: (row.marketplace, row.promised_date) for row in stored} == {
                    order: (marketplace, promised) for order, (marketplace, promised, _) in expected.items()
                }
                categories = {row.order_id: row.category for row in stored}
                assert categories[f"{seller}-us"] == "Toys & Games"
                assert categories[f"{seller}-jp"] == "Uncategorised"
                assert categories[f"{seller}-uk"] == "Kitchen (ERP)"  # the seller's own category wins

                comparison = await _amazon_answer(process.port, seller)
        (us,) = comparison["marketplaces"]
        assert us["marketplace"] == "US"
        assert us["amazon"] == {
            **us["amazon"],
            "rate": 0.925,
            "shipment_count": 40,
            "valid_tracking_count": 37,
            "status": "BAD",
        }
        assert us["amazon"]["bad_since"] is not None
        assert us["vtrwatch"]["shipment_count"] == 1  # the one US package, in Amazon's range
        assert us["reporting_range"]["to"] == (today - timedelta(days=1)).isoformat()
        own = us["vtrwatch"]["rate"]
        assert us["difference_points"] == round((own - 0.925) * 100, 2)


async def _until(
    engine: Any, seller: str, count: int, category_of_uk: str | None = None, within: float = 60
) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + within
    rows: list[Any] = []
    while asyncio.get_running_loop().time() < deadline:
        async with engine.connect() as connection:
            rows = list((await connection.execute(select(packages).where(packages.c.seller_id == seller))).all())
        uk = [row for row in rows if row.order_id.endswith("-uk")]
        if len(rows) >= count and (category_of_uk is None or (uk and uk[0].category == category_of_uk)):
            return rows
        await asyncio.sleep(0.5)
    return rows


async def _amazon_answer(port: int, seller: str, within: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while True:
            response = await client.get(
                f"/v1/sellers/{seller}/amazon", headers={"Authorization": f"Bearer {SCORER_KEY}"}
            )
            if response.status_code == 200 or asyncio.get_running_loop().time() > deadline:
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                return body
            await asyncio.sleep(0.5)
