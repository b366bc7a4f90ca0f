"""The console's overview shows Amazon's own VTR beside vtrwatch's, with the same numbers
as ``GET /v1/sellers/{id}/amazon`` (issue 22)."""

from __future__ import annotations

import html as html_module
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec

from services.scorer.app import create_app
from services.scorer.storage.amazon import keep
from services.scorer.storage.plan import apply_records
from shared.console_links import Verdict, verify
from shared.schemas import CATEGORY_NOT_MAPPED, SOURCE_AMAZON, AmazonVtr, AmazonVtrStatus, ShipmentConfirmed
from tests.scorer.conftest import NOW, TODAY, record, shipment
from tests.scorer.console.conftest import SECRET, SELLER, Console, console_settings
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


async def test_packages_say_who_confirmed_them_and_why_an_order_is_uncategorised(console: Console) -> None:
    """The shipments API and the console's package rows show the source, and an Amazon
    order in the "Uncategorised" bucket says why, in the seller's language."""

    def amazon(order_id: str, tracking_number: str) -> ShipmentConfirmed:
        message = shipment(
            order_id,
            seller_id=SELLER,
            category="Uncategorised",
            tracking_number=tracking_number,
            promised=TODAY + timedelta(days=3),
            confirmed_at=NOW - timedelta(days=2),
            risk_flags=(CATEGORY_NOT_MAPPED,),
        )
        return msgspec.structs.replace(message, source=SOURCE_AMAZON)

    by_erp_too = shipment(
        "amz-2",
        seller_id=SELLER,
        category="Uncategorised",  # the ERP's own category name: no note, it is the seller's
        tracking_number="LP00000000000002",
        promised=TODAY + timedelta(days=1),
        confirmed_at=NOW - timedelta(days=1),
    )
    messages = [amazon("amz-1", "YT0000000000000001"), amazon("amz-2", "YT0000000000000002"), by_erp_too]
    service = console.app.state.service
    async with service.engine.begin() as connection:
        await apply_records(connection, service.evaluator, [record(m) for m in messages], TODAY)

    page = await api(console, f"/v1/sellers/{SELLER}/shipments", marketplace="US", category="Uncategorised")
    listed = {p["order_id"]: p for p in page["packages"]}
    assert (listed["amz-1"]["source"], listed["amz-1"]["risk_flags"]) == ("amazon", ["category_not_mapped"])
    # Amazon's record (its number) with the ERP's category; the catalogue's flag no longer applies.
    assert (listed["amz-2"]["source"], listed["amz-2"]["risk_flags"]) == ("amazon+erp", [])
    assert listed["amz-2"]["tracking_number"] == "YT0000000000000002"

    for language, source, note in (
        ("en", "Amazon", "Amazon's category for this product is not in vtrwatch's table"),
        ("zh-CN", "亚马逊", "此商品的亚马逊品类尚未在 vtrwatch 的对照表中"),
    ):
        response = await console.client.get(
            f"/console/{SELLER}/category",
            params={"marketplace": "US", "category": "Uncategorised", "state": "all", "lang": language},
            headers=STAFF,
        )
        assert response.status_code == 200, response.text
        html = response.text.replace("&#39;", "'")
        rows = {line.split('"')[1]: line for line in html.splitlines() if line.startswith("<tr data-order=")}
        assert f'data-source="amazon">{source}<br>' in rows["amz-1"] and note in rows["amz-1"]
        assert 'data-source="amazon+erp"' in rows["amz-2"] and "category-note" not in rows["amz-2"]


async def test_the_overview_offers_connect_amazon_with_a_signed_link_when_the_ingest_is_known(
    console: Console, database_url: str
) -> None:
    page = await console.client.get(f"/console/{SELLER}", headers=STAFF)
    assert 'id="connect-amazon"' not in page.text  # VTR_INGEST_PUBLIC_URL not set: no button

    settings = console_settings(database_url).model_copy(update={"ingest_public_url": "https://ingest.example/"})
    app = create_app(settings, today=lambda: TODAY, background=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scorer") as client:
            html = (await client.get(f"/console/{SELLER}", params={"lang": "zh-CN"}, headers=STAFF)).text
    finally:
        await app.state.service.engine.dispose()
    assert 'id="connect-amazon"' in html and "连接亚马逊" in html
    links = re.findall(r'<a class="button" href="([^"]+)" rel="noopener" data-region="(\w+)">', html)
    assert [region for _, region in links] == ["na", "eu", "fe"]
    for url, region in links:
        parts = urlsplit(html_module.unescape(url))
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "ingest.example", "/v1/amazon/authorize")
        query = parse_qs(parts.query)
        assert query["seller_id"] == [SELLER] and query["region"] == [region]
        # A link the ingest accepts for this seller only (tests/ingest/test_amazon.py checks the route).
        now = datetime.now(UTC)
        assert verify(SECRET.encode(), SELLER, query["t"][0], now) is Verdict.VALID
        assert verify(SECRET.encode(), "B2OTHER", query["t"][0], now) is Verdict.INVALID
        assert verify(SECRET.encode(), SELLER, query["t"][0], now + timedelta(hours=2)) is Verdict.EXPIRED
