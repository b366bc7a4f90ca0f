"""The shipments list names the last-mile carrier and number (issue 11 item 6), from the
newest scan whose source named it: a China Post parcel handed to USPS, as 17TRACK pushes it."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.carriers import seventeen_track
from services.scorer.app import create_app
from services.scorer.domain.evaluator import Evaluator
from services.scorer.settings import ScorerSettings
from services.scorer.storage.plan import apply_records
from shared.schemas import PACKAGE_PAGE_CODEC, ShipmentConfirmed, TrackingEvent
from tests.scorer.conftest import NOW, TODAY, last_mile_push, record, shipment

AUTH = {"Authorization": "Bearer test-key"}


async def test_the_shipments_list_names_the_last_mile(
    scorer_engine: AsyncEngine, database_url: str, evaluator: Evaluator
) -> None:
    handed_over, plain = "LK123456785CN", "RR123456785CN"
    messages: list[TrackingEvent | ShipmentConfirmed] = [
        shipment("o-1", tracking_number=handed_over, amount="5.00", promised=TODAY + timedelta(days=3)),
        shipment("o-2", tracking_number=plain, promised=TODAY + timedelta(days=3)),
        *seventeen_track.parse(last_mile_push(handed_over), NOW),
    ]
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(message) for message in messages], TODAY)
    settings = ScorerSettings(database_url=database_url, api_keys="test-key")  # type: ignore[arg-type]
    app = create_app(settings, today=lambda: TODAY, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scorer") as client:
        response = await client.get("/v1/sellers/seller-1/shipments", headers=AUTH)
    await app.state.service.engine.dispose()
    assert response.status_code == 200, response.text
    page = PACKAGE_PAGE_CODEC.decode(response.content)
    by_number = {package.tracking_number: package for package in page.packages}
    assert (by_number[handed_over].last_mile_carrier, by_number[handed_over].last_mile_tracking_number) == (
        "usps",
        "9400111899223197428490",
    )
    assert (by_number[plain].last_mile_carrier, by_number[plain].last_mile_tracking_number) == ("", "")
