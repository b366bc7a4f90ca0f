"""The subscriptions and notifications API on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from services.notifier.__main__ import MIGRATIONS_DIR
from services.notifier.app import create_app
from services.notifier.db import outbox
from services.notifier.settings import NotifierSettings
from shared.db import upgrade_database
from tests.notifier.conftest import FIXED_TIME, FakeClock

AUTH = {"Authorization": "Bearer test-key"}
HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXsecret1234"


@contextlib.asynccontextmanager
async def api_client(database_url: str, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    await asyncio.to_thread(upgrade_database, MIGRATIONS_DIR, database_url)
    settings = NotifierSettings(database_url=database_url, api_keys="test-key")  # type: ignore[arg-type]
    app = create_app(settings, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client
    await app.state.engine.dispose()


@pytest.fixture
async def api(database_url: str, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """On SQLite and PostgreSQL."""
    async with api_client(database_url, clock) as client:
        yield client


@pytest.fixture
async def sqlite_api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """For checks that are answered before any database access (validation, auth)."""
    async with api_client(f"sqlite+aiosqlite:///{tmp_path}/api.db", clock) as client:
        yield client


async def test_put_get_delete_subscription_round_trip_with_masked_webhook(api: httpx.AsyncClient) -> None:
    body = {
        "emails": ["ops@example.com", " ops@example.com", "boss@example.cn"],
        "slack_webhook_url": HOOK,
        "language": "zh-CN",
        "min_level": "AT_RISK",
        "marketplaces": ["sg", "AE"],
    }
    created = await api.put("/v1/sellers/A1SELLER/subscription", json=body, headers=AUTH)
    assert created.status_code == 200, created.text
    shown = created.json()
    assert shown["emails"] == ["ops@example.com", "boss@example.cn"]
    assert shown["marketplaces"] == ["AE", "SG"]
    assert shown["slack_webhook_url"] == "https://hooks.slack.com/…1234"
    assert "secret" not in created.text
    fetched = await api.get("/v1/sellers/A1SELLER/subscription", headers=AUTH)
    assert fetched.json() == shown

    replaced = await api.put(
        "/v1/sellers/A1SELLER/subscription", json={"emails": ["new@example.com"], "language": "en"}, headers=AUTH
    )
    assert replaced.json()["slack_webhook_url"] is None
    assert replaced.json()["min_level"] == "WATCH" and replaced.json()["marketplaces"] is None

    assert (await api.delete("/v1/sellers/A1SELLER/subscription", headers=AUTH)).status_code == 204
    assert (await api.get("/v1/sellers/A1SELLER/subscription", headers=AUTH)).status_code == 404
    assert (await api.delete("/v1/sellers/A1SELLER/subscription", headers=AUTH)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"emails": ["not-an-address"]}, "emails", "not an e-mail address"),
        ({"emails": []}, "emails", "at least one"),
        ({"emails": ["a@b.co"], "language": "fr"}, "language", "zh-CN"),
        ({"emails": ["a@b.co"], "min_level": "OK"}, "min_level", "WATCH"),
        ({"emails": ["a@b.co"], "marketplaces": ["SGP"]}, "marketplaces", "two-letter"),
        ({"emails": ["a@b.co"], "marketplaces": []}, "marketplaces", "omit the field"),
        ({"emails": ["a@b.co"], "colour": "red"}, "colour", "Extra inputs"),
        ({"slack_webhook_url": "https://evil.example/hook"}, "slack_webhook_url", "must start with one of"),
        ({"slack_webhook_url": "https://hooks.slack.com.evil.example/x"}, "slack_webhook_url", "must start with"),
        ({"slack_webhook_url": "http://169.254.169.254/latest"}, "slack_webhook_url", "must start with"),
        ({"slack_webhook_url": "https://user:pw@hooks.slack.com/x"}, "slack_webhook_url", "without credentials"),
    ],
)
async def test_invalid_subscriptions_get_a_422_naming_the_field(
    sqlite_api: httpx.AsyncClient, body: dict[str, object], field: str, says: str
) -> None:
    response = await sqlite_api.put("/v1/sellers/A1SELLER/subscription", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    details = response.json()["detail"]
    assert any(field in detail["loc"] and says in detail["msg"] for detail in details), details
    assert "evil.example/hook" not in response.text  # a refused URL is not echoed either


async def test_bearer_token_is_required_and_seller_ids_are_checked(sqlite_api: httpx.AsyncClient) -> None:
    api = sqlite_api
    assert (await api.get("/v1/sellers/A1SELLER/subscription")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await api.get("/v1/sellers/A1SELLER/notifications", headers=wrong)).status_code == 401
    assert (await api.get("/v1/sellers/bad%20id/subscription", headers=AUTH)).status_code == 422


async def test_notifications_list_masks_webhooks_and_filters_by_status(api: httpx.AsyncClient) -> None:
    engine = api.app.state.engine  # type: ignore[attr-defined]
    common = {
        "seller_id": "A1SELLER",
        "marketplace": "SG",
        "category": "Toys",
        "kind": "escalated",
        "previous_level": "OK",
        "level": "AT_RISK",
        "notice_seq": 1,
        "language": "en",
        "snapshot": "{}",
        "attempts": 1,
        "created_at": FIXED_TIME,
        "next_attempt_at": FIXED_TIME,
        "last_error": None,
    }
    async with engine.begin() as connection:
        await connection.execute(
            insert(outbox),
            [
                {**common, "dedupe_key": "a", "channel": "email", "recipient": "ops@example.com", "status": "sent"},
                {
                    **common,
                    "dedupe_key": "b",
                    "channel": "slack",
                    "recipient": HOOK,
                    "status": "failed",
                    "last_error": "Slack 404 no_service",
                },
                {
                    **common,
                    "dedupe_key": "c",
                    "seller_id": "OTHER",
                    "channel": "email",
                    "recipient": "x@y.z",
                    "status": "sent",
                },
            ],
        )
    listed = await api.get("/v1/sellers/A1SELLER/notifications", headers=AUTH)
    assert listed.status_code == 200
    rows = listed.json()
    assert [row["channel"] for row in rows] == ["slack", "email"]
    assert rows[0]["recipient"] == "https://hooks.slack.com/…1234" and "secret" not in listed.text
    failed = await api.get("/v1/sellers/A1SELLER/notifications?status=failed", headers=AUTH)
    assert [row["last_error"] for row in failed.json()] == ["Slack 404 no_service"]
    assert (await api.get("/v1/sellers/A1SELLER/notifications?status=lost", headers=AUTH)).status_code == 422


async def test_a_put_racing_a_delete_answers_what_it_wrote(api: httpx.AsyncClient) -> None:
    """The fuzz suite once met a 500: a DELETE committed between the PUT's write and its
    read-back. The PUT now answers with the row it wrote."""
    body = {"emails": ["ops@example.com"], "language": "en", "min_level": "AT_RISK"}
    path = "/v1/sellers/A1RACE/subscription"
    for _ in range(30):
        replies = await asyncio.gather(
            *(api.put(path, json=body, headers=AUTH) for _ in range(3)),
            *(api.delete(path, headers=AUTH) for _ in range(3)),
        )
        assert all(reply.status_code in (200, 204, 404) for reply in replies), [r.text for r in replies]
        assert all(reply.json()["emails"] == ["ops@example.com"] for reply in replies[:3])
