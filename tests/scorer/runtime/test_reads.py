"""The read path's cache of computed answers (services/scorer/runtime/reads.py) against a real
database: versions bumped by the outbox triggers, answers that follow every committed
change (made by another engine, as another instance would), the ASGI fast path answering
exactly what the FastAPI route answers, and the publisher filling the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.app import ScorerApp, create_app
from services.scorer.domain.evaluator import Evaluator
from services.scorer.settings import ScorerSettings
from services.scorer.storage.outbox import mark_changed, outbox_batch, outbox_remove
from services.scorer.storage.plan import apply_records
from services.scorer.storage.schema import score_versions
from services.scorer.storage.versions import tokens_by_seller
from shared.db import create_engine
from shared.kafka import ensure_topics, make_producer
from shared.topics import SCORES_TOPIC
from tests.scorer.conftest import NOW, TODAY, cancellation, event, record, shipment
from tools.localstack import TansuBroker

AUTH = {"Authorization": "Bearer test-key"}
SELLER = "/v1/sellers/seller-1/vtr"


async def apply(engine: AsyncEngine, evaluator: Evaluator, *messages) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as connection:
        await apply_records(connection, evaluator, [record(m) for m in messages], TODAY)


@pytest.fixture
async def app(scorer_engine: AsyncEngine, database_url: str, evaluator: Evaluator) -> AsyncIterator[ScorerApp]:
    # 9 valid packages and 1 without a scan, in the window.
    messages = [shipment(f"ok-{i}", tracking_number=f"YT{i:016d}", carrier="yunexpress") for i in range(9)]
    messages += [event(tracking_number=f"YT{i:016d}") for i in range(9)]
    messages.append(shipment("bad-1", tracking_number="YT9999999999999999", carrier="yunexpress"))
    await apply(scorer_engine, evaluator, *messages)
    settings = ScorerSettings(database_url=database_url, api_keys="test-key")  # type: ignore[arg-type]
    app = create_app(settings, today=lambda: TODAY, background=False)
    reads = app.state.service.reads
    await reads.start()  # the lifespan's job; httpx's ASGI transport does not run it
    yield app
    await reads.stop()
    await app.state.service.engine.dispose()


def client_of(app: ScorerApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scorer")


def toys(response: httpx.Response) -> tuple[int, int, int]:
    assert response.status_code == 200, response.text
    category = next(c for c in response.json()["categories"] if c["category"] == "toys")
    return category["total"], category["valid"], category["invalid"]


async def test_versions_grow_with_every_mark_and_survive_publication(scorer_engine: AsyncEngine) -> None:
    scope = ("s-1", "US", "toys")
    async with scorer_engine.begin() as connection:
        await mark_changed(connection, [scope, ("s-1", "US", "books"), ("s-2", "US", "toys")])
    async with scorer_engine.begin() as connection:
        first = await tokens_by_seller(connection, ["s-1", "s-2"])
        await outbox_remove(connection, await outbox_batch(connection, 100))  # published: marks gone
    async with scorer_engine.begin() as connection:
        assert await tokens_by_seller(connection, ["s-1", "s-2"]) == first == {"s-1": (2, 2), "s-2": (1, 1)}
        await mark_changed(connection, [scope])  # a new mark after publication: a new version
    async with scorer_engine.begin() as connection:
        await mark_changed(connection, [scope])  # and again while the mark is still there
    async with scorer_engine.connect() as connection:
        assert await tokens_by_seller(connection, ["s-1"]) == {"s-1": (2, 4)}
        query = select(score_versions.c.category, score_versions.c.version).where(score_versions.c.seller_id == "s-1")
        versions = dict((await connection.execute(query)).all())
    assert versions == {"toys": 3, "books": 1}


async def test_answers_follow_every_committed_change(app: ScorerApp, database_url: str, evaluator: Evaluator) -> None:
    reads = app.state.service.reads
    other_instance = create_engine(database_url)
    try:
        async with client_of(app) as client:
            assert toys(await client.get(SELLER, headers=AUTH)) == (10, 9, 1)
            assert toys(await client.get(SELLER, headers=AUTH)) == (10, 9, 1)
            assert (reads.hits, reads.misses) == (1, 1)
            # Another instance applies a batch: the scan makes the last package valid.
            await apply(other_instance, evaluator, event(tracking_number="YT9999999999999999"))
            assert toys(await client.get(SELLER, headers=AUTH)) == (10, 10, 0)
            # ... and a cancellation takes one out of the window.
            await apply(other_instance, evaluator, cancellation("YT0000000000000000", cancelled_at=NOW))
            assert toys(await client.get(SELLER, headers=AUTH)) == (9, 9, 0)
            assert toys(await client.get(SELLER, headers=AUTH)) == (9, 9, 0)
            assert (reads.hits, reads.misses) == (2, 3)
            # A past day is computed on every request, and never cached.
            past = await client.get(SELLER, params={"as_of": str(TODAY - timedelta(days=1))}, headers=AUTH)
            assert past.status_code == 200 and reads.misses == 4
    finally:
        await other_instance.dispose()


async def test_fast_path_answers_what_the_route_answers(app: ScorerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.vtr_fast_path is not None
    served: list[str] = []
    serve = app.vtr_fast_path.serve

    async def counting_serve(seller_id: str, scope: Any, send: Any) -> bool:
        answered = await serve(seller_id, scope, send)
        if answered:
            served.append(seller_id)
        return answered

    monkeypatch.setattr(app.vtr_fast_path, "serve", counting_serve)
    async with client_of(app) as client:
        fast = await client.get(SELLER, headers=AUTH)
        routed = await client.get(SELLER, params={"as_of": str(TODAY)}, headers=AUTH)  # a query string: FastAPI
        unknown = await client.get("/v1/sellers/nobody/vtr", headers=AUTH)
        refused = [
            (await client.get(SELLER, headers=headers)).status_code
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic test-key"})
        ]
        bad_id = await client.get("/v1/sellers/" + "x" * 129 + "/vtr", headers=AUTH)
        app.vtr_fast_path = None
        plain = await client.get(SELLER, headers=AUTH)
        plain_unknown = await client.get("/v1/sellers/nobody/vtr", headers=AUTH)
    assert fast.content == routed.content == plain.content
    assert fast.headers["content-type"] == plain.headers["content-type"] == "application/json"
    assert (unknown.status_code, unknown.json()) == (plain_unknown.status_code, plain_unknown.json())
    assert unknown.status_code == 404
    assert refused == [401, 401, 401]
    assert bad_id.status_code == 422
    # The fast path served the plain requests and the refusals (its key check is the
    # routes' own gate); the query string went to FastAPI.
    assert served == [SELLER.split("/")[3], "nobody", *[SELLER.split("/")[3]] * 3]


async def test_the_publisher_fills_the_cache(app: ScorerApp, kafka_broker: TansuBroker) -> None:
    service = app.state.service
    service.settings = service.settings.model_copy(update={"kafka_bootstrap": kafka_broker.bootstrap})
    await ensure_topics(service.settings, [SCORES_TOPIC])
    service.publisher.producer = make_producer(service.settings)
    await service.publisher.producer.start()
    try:
        assert await service.publisher.publish_once() >= 1
    finally:
        await service.publisher.producer.stop()
    reads = service.reads
    assert len(reads) == 1
    async with client_of(app) as client:
        assert toys(await client.get(SELLER, headers=AUTH)) == (10, 9, 1)
    assert (reads.hits, reads.misses) == (1, 0)
