"""Issue 14, section 6: the notifier's database turns read-only (a failover to a replica,
a full disk remounted read-only). Snapshots and notifications are delayed, not lost: the
consumer retries the batch without parking it, the outbox worker sends nothing it cannot
mark, and once the database takes writes again every recipient gets the alert once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import ConsumerRecord

from services.notifier.__main__ import MIGRATIONS_DIR
from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.db import is_transient, upgrade_database
from shared.schemas import SCORE_CODEC, Level
from tests.faults.conftest import set_read_only
from tests.faults.pg_cluster import PostgresCluster, postgres_bin_dir
from tests.notifier.conftest import FakeClock, SmtpServer, make_snapshot

pytestmark = pytest.mark.skipif(postgres_bin_dir() is None, reason="no PostgreSQL binaries to run a server")
AUTH = {"Authorization": "Bearer k"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


async def test_a_read_only_database_delays_alerts_without_losing_or_parking_them(
    cluster: PostgresCluster, empty_database: str, smtp: SmtpServer
) -> None:
    await asyncio.to_thread(upgrade_database, MIGRATIONS_DIR, empty_database)
    clock = FakeClock()
    app = create_app(
        NotifierSettings(
            database_url=empty_database,
            api_keys="k",  # type: ignore[arg-type]
            smtp_url=smtp.url,  # type: ignore[arg-type]
            debounce_seconds=0,
            scorer_wait_seconds=0,
            scorer_url="http://127.0.0.1:9",
            retry_base_seconds=1,
            retry_max_seconds=2,
        ),
        clock=clock,
    )
    runtime, engine = app.state.runtime, app.state.engine
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as api:
        subscribed = await api.put(
            "/v1/sellers/A1SELLER/subscription", json={"emails": ["ops@example.com"]}, headers=AUTH
        )
        assert subscribed.status_code == 200, subscribed.text

        await set_read_only(cluster, True)
        value = SCORE_CODEC.encode(make_snapshot(Level.BREACH, computed_at=clock.now))
        record = ConsumerRecord("vtr.scores.v1", 0, 0, 0, 0, b"A1SELLER", value, None, 8, len(value), [])
        with pytest.raises(Exception) as refused:
            async with engine.begin() as connection:
                await runtime.processor.apply_batch(connection, [record])
        # The consumer's verdict on this failure: retry the batch, never park it.
        assert is_transient(refused.value), repr(refused.value)
        # The API says so instead of failing: the write is refused, nothing half-stored.
        again = await api.put("/v1/sellers/A1SELLER/subscription", json={"emails": ["x@example.com"]}, headers=AUTH)
        assert again.status_code == 503, again.text

        await set_read_only(cluster, False)
        async with engine.begin() as connection:
            await runtime.processor.apply_batch(connection, [record])  # the batch, retried
        await runtime.processor.tick(engine)

        await set_read_only(cluster, True)  # now the outbox cannot mark what it would send
        with pytest.raises(Exception) as refused_outbox:
            await runtime.worker.run_once()
        assert is_transient(refused_outbox.value)
        assert smtp.messages_to("ops@example.com") == []  # nothing sent that cannot be marked

        await set_read_only(cluster, False)
        clock.advance(300)  # the lease of a claim (if any) and the backoff have passed
        sent = 0
        for _ in range(5):
            sent += await runtime.worker.run_once()
            clock.advance(300)
        listed = (await api.get("/v1/sellers/A1SELLER/notifications", headers=AUTH)).json()
    await engine.dispose()
    assert len(smtp.messages_to("ops@example.com")) == 1
    assert [(row["status"], row["attempts"]) for row in listed] == [("sent", 1)]
