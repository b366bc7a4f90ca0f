"""The read API against a real database: numbers, packages, auth and bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.app import create_app
from services.scorer.domain.evaluator import Evaluator
from services.scorer.settings import ScorerSettings
from services.scorer.storage.plan import apply_records
from shared.schemas import PACKAGE_PAGE_CODEC, CanonicalStatus, Money, PackageState, Reason
from tests.scorer.conftest import NOW, TODAY, event, record, shipment

AUTH = {"Authorization": "Bearer test-key"}


@pytest.fixture
async def client(
    scorer_engine: AsyncEngine, database_url: str, evaluator: Evaluator
) -> AsyncIterator[httpx.AsyncClient]:
    # 19 valid and 1 invalid package in the window (95%), 2 pending ones entering it, one
    # impossible (carrier not integrated) upcoming, and one cancelled-free books category.
    messages = [shipment(f"ok-{i}", tracking_number=f"YT{i:016d}", carrier="yunexpress") for i in range(19)]
    messages += [event(tracking_number=f"YT{i:016d}") for i in range(19)]
    messages.append(shipment("bad-1", tracking_number="YT9999999999999999", carrier="yunexpress"))
    # Confirmed yesterday: still within the first-scan grace, so they keep the prior.
    recently = NOW - timedelta(days=1)
    messages.append(
        shipment(
            "soon-1", tracking_number="YT8888888888888888", carrier="yunexpress", promised=TODAY, confirmed_at=recently
        )
    )
    messages.append(
        shipment(
            "soon-2",
            tracking_number="YT7777777777777777",
            carrier="yunexpress",
            promised=TODAY + timedelta(days=1),
            amount="9.00",
            confirmed_at=recently,
        )
    )
    messages.append(
        shipment(
            "lost-1", tracking_number="FC1", carrier=None, carrier_name="Fast Cargo", promised=TODAY + timedelta(days=2)
        )
    )
    messages.append(shipment("b-1", category="books", tracking_number="YT6666666666666666", carrier="yunexpress"))
    messages.append(
        event(CanonicalStatus.DELIVERED, tracking_number="YT6666666666666666", occurred_at=NOW - timedelta(days=1))
    )
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(m) for m in messages], TODAY)
    settings = ScorerSettings(database_url=database_url, api_keys="test-key")  # type: ignore[arg-type]
    app = create_app(settings, today=lambda: TODAY, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scorer") as client:
        yield client
    await app.state.service.engine.dispose()


async def test_vtr_numbers(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sellers/seller-1/vtr", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["as_of"] == TODAY.isoformat()
    toys = next(c for c in body["categories"] if c["category"] == "toys")
    assert (toys["total"], toys["valid"], toys["invalid"], toys["vtr"], toys["headroom"]) == (20, 19, 1, 0.95, 0)
    assert (toys["window_from"], toys["window_to"]) == (str(TODAY - timedelta(days=30)), str(TODAY - timedelta(days=1)))
    assert toys["reasons"] == {"no_physical_scan": 1}
    assert len(toys["forecast"]) == 14
    # Tomorrow a pending partial-tracking package enters, the day after a full-tracking one,
    # each with the model's probability (no history here: the prior curves).
    soon_1, soon_2 = await probabilities(client, "soon-1", "soon-2")
    assert 0 < soon_2 < soon_1 < 1
    assert toys["forecast"][0]["vtr"] == pytest.approx((19 + soon_1) / 21, abs=1e-6)
    assert toys["forecast"][1]["vtr"] == pytest.approx((19 + soon_1 + soon_2) / 22, abs=1e-6)
    # 21 packages need 20 valid: a breach unless soon-1 turns valid; 22 need 21: unless both do.
    first, second = toys["forecast"][0], toys["forecast"][1]
    assert first["p10"] <= first["p50"] <= first["p90"]
    assert first["breach_probability"] < 0.5 <= second["breach_probability"]
    assert toys["days_to_breach"] == 2
    assert toys["breach_probability"] == max(day["breach_probability"] for day in toys["forecast"])
    assert toys["level"] == "AT_RISK"
    books = next(c for c in body["categories"] if c["category"] == "books")
    assert (books["total"], books["valid"], books["vtr"], books["level"]) == (1, 1, 1.0, "OK")


async def probabilities(client: httpx.AsyncClient, *order_ids: str) -> list[float]:
    response = await client.get("/v1/sellers/seller-1/shipments", params={"state": "pending"}, headers=AUTH)
    by_order = {p.order_id: p.probability_valid for p in PACKAGE_PAGE_CODEC.decode(response.content).packages}
    return [by_order[order_id] for order_id in order_ids]


async def test_past_as_of_is_recomputed(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/sellers/seller-1/vtr", params={"as_of": str(TODAY - timedelta(days=1))}, headers=AUTH
    )
    assert response.status_code == 200
    books = next(c for c in response.json()["categories"] if c["category"] == "books")
    # The books order's only scan occurred today-1 08:00, before the end of that day: still counted,
    # but its promised date (today-3) is in that day's window too.
    assert (books["total"], books["valid"]) == (1, 1)
    earlier = await client.get(
        "/v1/sellers/seller-1/vtr", params={"as_of": str(TODAY - timedelta(days=2))}, headers=AUTH
    )
    books_earlier = next(c for c in earlier.json()["categories"] if c["category"] == "books")
    assert (books_earlier["total"], books_earlier["valid"], books_earlier["invalid"]) == (1, 0, 1)


async def test_shipments_pages_and_filters(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sellers/seller-1/shipments", params={"state": "invalid"}, headers=AUTH)
    assert response.status_code == 200
    page = PACKAGE_PAGE_CODEC.decode(response.content)
    assert {p.order_id for p in page.packages} == {"bad-1", "lost-1"}
    lost = next(p for p in page.packages if p.order_id == "lost-1")
    assert (lost.state, lost.reason, lost.probability_valid) == (
        PackageState.INVALID,
        Reason.CARRIER_NOT_INTEGRATED,
        0.0,
    )
    assert "integrat" in lost.action
    assert (lost.physical_scans, lost.last_scan_at) == (0, None)
    assert lost.full_tracking_threshold == Money("5", "USD")  # US, straight from policy.toml
    valid = PACKAGE_PAGE_CODEC.decode(
        (await client.get("/v1/sellers/seller-1/shipments", params={"state": "valid"}, headers=AUTH)).content
    )
    assert len(valid.packages) == 20
    assert all(p.physical_scans == 1 and p.last_scan_at is not None for p in valid.packages)
    pending = PACKAGE_PAGE_CODEC.decode(
        (await client.get("/v1/sellers/seller-1/shipments", params={"state": "pending"}, headers=AUTH)).content
    )
    assert {p.order_id for p in pending.packages} == {"soon-1", "soon-2"}
    at_risk = PACKAGE_PAGE_CODEC.decode(
        (await client.get("/v1/sellers/seller-1/shipments", params={"state": "at_risk"}, headers=AUTH)).content
    )
    # Both are below the 0.9 at-risk probability (no scan yet, a day after confirmation).
    assert {p.order_id for p in at_risk.packages} == {p.order_id for p in pending.packages if p.probability_valid < 0.9}
    assert "soon-2" in {p.order_id for p in at_risk.packages}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "7", "marketplace": "US", "category": "toys", **({"cursor": cursor} if cursor else {})}
        page = PACKAGE_PAGE_CODEC.decode(
            (await client.get("/v1/sellers/seller-1/shipments", params=params, headers=AUTH)).content
        )
        seen += [p.order_id for p in page.packages]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 23


BAD_REQUESTS = [
    ("/v1/sellers/nobody/vtr", {}, 404),
    ("/v1/sellers/nobody/shipments", {}, 404),
    ("/v1/sellers/seller-1/vtr", {"as_of": "2026-13-01"}, 422),
    ("/v1/sellers/seller-1/vtr", {"as_of": "yesterday"}, 422),
    ("/v1/sellers/seller-1/vtr", {"as_of": str(TODAY + timedelta(days=1))}, 422),
    ("/v1/sellers/seller-1/vtr", {"as_of": "0001-01-02"}, 422),
    ("/v1/sellers/seller-1/shipments", {"state": "lost"}, 422),
    ("/v1/sellers/seller-1/shipments", {"limit": "0"}, 422),
    ("/v1/sellers/seller-1/shipments", {"limit": "501"}, 422),
    ("/v1/sellers/seller-1/shipments", {"limit": "abc"}, 422),
    ("/v1/sellers/seller-1/shipments", {"cursor": "!!!"}, 422),
    ("/v1/sellers/seller-1/shipments", {"cursor": "bm90LWEtbnVtYmVy"}, 422),
    ("/v1/sellers/seller-1/shipments", {"marketplace": "usa"}, 422),
    ("/v1/sellers/" + "x" * 200 + "/vtr", {}, 422),
    ("/v1/sellers/bad%20seller/vtr", {}, 422),
]


async def test_bad_requests_get_a_4xx_that_names_the_problem(client: httpx.AsyncClient) -> None:
    for path, params, expected in BAD_REQUESTS:
        response = await client.get(path, params=params, headers=AUTH)
        assert response.status_code == expected, (path, params, response.text)
        assert response.json()["detail"], (path, params)


async def test_bearer_token_required(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        assert (await client.get("/v1/sellers/seller-1/vtr", headers=headers)).status_code == 401
        assert (await client.get("/v1/sellers/seller-1/shipments", headers=headers)).status_code == 401


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert "vtr_scorer_records_total" in metrics
