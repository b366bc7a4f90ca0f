"""Issue 14, section 1: subscription bodies that once got a 500 (or reached the database
and silenced other sellers' alerts) are refused with a 4xx that says what is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from tests.notifier.conftest import FakeClock

AUTH = {"Authorization": "Bearer test-key"}
PATH = "/v1/sellers/A1SELLER/subscription"


@pytest.fixture
async def api(notifier_db: str, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = NotifierSettings(database_url=notifier_db, api_keys="test-key")  # type: ignore[arg-type]
    app = create_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        yield client
    await app.state.engine.dispose()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"emails": ["ops\\u0000@example.com"]}', "application/json"),
        (b'{"emails": ["ops@exa\x00mple.com"]}', "application/json"),
        (b'{"emails": ["o@e.co"], "slack_webhook_url": "https://hooks.slack.com/\\u0000x"}', "application/json"),
        (b'{"emails": 1e999}', "application/json"),
        (b'{"emails": ["\xff\xfe@example.com"]}', "application/json"),
        (b"\xff\xfe not utf-8", "text/plain"),
        (b'{"emails": ["a@b.c"], "language": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
        (b'{"emails": ["\\ud800@example.com"]}', "application/json"),
    ],
    ids=["escaped-nul", "raw-nul", "nul-in-url", "infinity", "bad-utf8", "text-plain-bad-utf8", "deep", "surrogate"],
)
async def test_bodies_that_cannot_be_stored_get_a_4xx(body: bytes, content_type: str, api: httpx.AsyncClient) -> None:
    response = await api.put(PATH, content=body, headers={**AUTH, "content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    if b"\x00" in body or b"\\u0000" in body or b"\\ud800" in body:
        # Well-formed, but can never be stored or sent: 422, saying so.
        assert response.status_code == 422, response.text
        assert "cannot be stored" in response.json()["detail"]
    assert response.json()["detail"]
    assert (await api.get(PATH, headers=AUTH)).status_code == 404


async def test_a_nul_in_the_seller_id_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/sellers/A1%00SELLER/notifications", headers=AUTH)
    assert response.status_code == 400, response.text
