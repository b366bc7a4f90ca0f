"""The console's overview shows Amazon's own VTR beside vtrwatch's, with the same numbers
as ``GET /v1/sellers/{id}/amazon`` (issue 22)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scorer.storage.amazon import keep
from shared.schemas import AmazonVtr, AmazonVtrStatus
from tests.scorer.conftest import TODAY
from tests.scorer.console.conftest import SELLER, Console
from tests.scorer.console.test_console import STAFF, api


async def test_overview_shows_amazons_vtr_beside_vtrwatchs(console: Console) -> None:
    figure = AmazonVtr(
        seller_id=SELLER,
        marketplace="US",
        marketplace_id="ATVPDKIKX0DER",
        rate=0.9,
        shipment_count=60,
        valid_tracking_count=54,
        status=AmazonVtrStatus.BAD,
        target_value=0.95,
        reporting_from=TODAY - timedelta(days=30),
        reporting_to=TODAY - timedelta(days=1),
        report_id="R1",
        fetched_at=datetime.now(UTC),
    )
    async with console.app.state.service.engine.begin() as connection:
        await keep(connection, [figure])
    body = await api(console, f"/v1/sellers/{SELLER}/amazon")
    (us,) = body["marketplaces"]
    assert us["vtrwatch"]["shipment_count"] > 0  # the seeded US toys, counted over Amazon's range
    for language, heading in (("en", "Amazon's own VTR beside vtrwatch's"), ("zh-CN", "亚马逊自己的有效追踪率")):
        page = await console.client.get(f"/console/{SELLER}", params={"lang": language}, headers=STAFF)
        assert page.status_code == 200
        html = page.text
        assert heading in html.replace("&#39;", "'")
        assert 'id="amazon-vtr"' in html and 'data-marketplace="US" data-status="BAD"' in html
        assert f"{us['vtrwatch']['rate'] * 100:.1f}%" in html and "90.0%" in html
        assert f"{us['difference_points']:+.1f}" in html
    assert (await console.client.get("/v1/sellers/nobody/amazon", headers=STAFF)).status_code == 404
