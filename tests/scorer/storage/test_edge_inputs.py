"""Issue 14, section 1: requests that once got a 500 from the scorer's read API."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.app import create_app
from services.scorer.domain.evaluator import Evaluator
from services.scorer.settings import ScorerSettings
from services.scorer.storage.plan import apply_records
from tests.scorer.conftest import TODAY, record, shipment

AUTH = {"Authorization": "Bearer test-key"}


@pytest.fixture
async def client(
    scorer_engine: AsyncEngine, database_url: str, evaluator: Evaluator
) -> AsyncIterator[httpx.AsyncClient]:
    # One known seller, so the filters reach the database.
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(shipment())], TODAY)
    settings = ScorerSettings(database_url=database_url, api_keys="test-key")  # type: ignore[arg-type]
    app = create_app(settings, today=lambda: TODAY, background=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://scorer") as client:
        yield client
    await app.state.service.engine.dispose()


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        "category=to%00ys",
        "category=%FF%FE",
        "marketplace=U%00",
        "cursor=" + cursor_of("9" * 30),
        "cursor=" + cursor_of("²"),
        "cursor=%00",
    ],
)
async def test_bad_query_strings_get_a_4xx_that_names_the_problem(query: str, client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/sellers/seller-1/shipments?{query}", headers=AUTH)
    assert 400 <= response.status_code < 500, (query, response.text)
    assert response.json()["detail"]


async def test_a_nul_in_the_path_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sellers/sel%00ler/vtr", headers=AUTH)
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["detail"]
