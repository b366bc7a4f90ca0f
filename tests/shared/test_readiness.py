"""Issue 14, section 4: ready means the schema is at the head revision. On a PostgreSQL
database that was never migrated (or is behind), the scorer and the notifier answer
``/readyz`` 503 naming the command to run, log that command at start-up, and their APIs
answer 503 instead of 500; once migrated, the same process becomes ready."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.notifier.app import MIGRATIONS_DIR as NOTIFIER_MIGRATIONS
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.scorer.app import MIGRATIONS_DIR as SCORER_MIGRATIONS
from services.scorer.app import create_app as create_scorer
from services.scorer.settings import ScorerSettings
from shared.db import upgrade_database
from tools.localstack import TansuBroker

pytestmark = [pytest.mark.postgres]
AUTH = {"Authorization": "Bearer k"}
CASES = [
    ("scorer", SCORER_MIGRATIONS, "/v1/sellers/seller-1/vtr", None),
    ("scorer", SCORER_MIGRATIONS, "/v1/sellers/seller-1/vtr", "0001"),
    ("notifier", NOTIFIER_MIGRATIONS, "/v1/sellers/A1SELLER/subscription", None),
    ("notifier", NOTIFIER_MIGRATIONS, "/v1/sellers/A1SELLER/notifications", "0001"),
]


@pytest.mark.parametrize(("service", "migrations", "path", "migrated_to"), CASES)
async def test_a_schema_not_at_head_is_not_ready_says_what_to_run_and_the_api_answers_503(
    service: str,
    migrations: Path,
    path: str,
    migrated_to: str | None,
    new_postgres_database: Callable[[], str],
    kafka_broker: TansuBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = await asyncio.to_thread(new_postgres_database)
    if migrated_to is not None:
        await asyncio.to_thread(upgrade_database, migrations, url, migrated_to)
    common = {"database_url": url, "api_keys": "k", "kafka_bootstrap": kafka_broker.bootstrap}
    if service == "scorer":
        app = create_scorer(ScorerSettings(**common), background=False)  # type: ignore[arg-type]
    else:
        app = create_notifier(
            NotifierSettings(
                **common,  # type: ignore[arg-type]
                consumer_group=f"readiness-{uuid.uuid4().hex[:8]}",
                kafka_session_timeout_ms=3000,
                kafka_heartbeat_interval_ms=300,
            )
        )
    command = f"python -m services.{service} migrate"
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503, ready.text
            schema = ready.json()["checks"]["schema"]
            assert command in schema and ("never migrated" in schema or "at revision" in schema), schema
            assert any(getattr(r, "run", None) == command for r in caplog.records), "start-up log names the command"
            if migrated_to is None:
                reply = await client.get(path, headers=AUTH)
                assert reply.status_code == 503, reply.text
                assert command in reply.json()["detail"]

            await asyncio.to_thread(upgrade_database, migrations, url)
            ready = await client.get("/readyz")
            assert ready.json()["checks"]["schema"] == "ok", ready.text
            assert (await client.get(path, headers=AUTH)).status_code < 500
