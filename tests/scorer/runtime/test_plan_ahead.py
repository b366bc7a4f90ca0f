"""The next batch planned while this one is written (``BatchApplier.plan_ahead``, PostgreSQL):
applying batches that way leaves exactly what applying them one after the other leaves, when
consecutive batches share parcels, and when a package changes under a plan."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import metrics
from services.scorer.domain.evaluator import Evaluator
from services.scorer.runtime.service import ScorerService
from services.scorer.settings import ScorerSettings
from services.scorer.storage.plan import apply_records
from services.scorer.storage.schema import cancellations, daily_counts, daily_reasons, outbox, packages, scans
from shared.db import create_engine
from tests.scorer.conftest import NOW, TODAY, event, generate, migrate, record, shipment

pytestmark = pytest.mark.postgres

Records = list[ConsumerRecord[bytes, bytes]]


def planned(outcome: str) -> float:
    return metrics.BATCHES_PLANNED_AHEAD.labels(outcome)._value.get()  # type: ignore[no-any-return]


async def engine_for(new_postgres_database: Callable[[], str]) -> AsyncEngine:
    url = await asyncio.to_thread(new_postgres_database)
    await asyncio.to_thread(migrate, url)
    return create_engine(url)


def service_on(engine: AsyncEngine) -> ScorerService:
    settings = ScorerSettings(database_url=engine.url.render_as_string(hide_password=False))
    service = ScorerService(settings, engine, today=lambda: TODAY, now=lambda: NOW.replace(tzinfo=None))
    # Only ``batches_applied`` of the consumer is read; the batches are applied by hand here.
    service.consumer = SimpleNamespace(batches_applied=0)  # type: ignore[assignment]
    return service


async def apply_planned_ahead(service: ScorerService, batches: Sequence[Records]) -> None:
    """As the consumer does: the next batch is planned before this one is written (the
    plan's snapshot then misses all of this batch's writes: the hardest case)."""
    for index, batch in enumerate(batches):
        if index + 1 < len(batches):
            await service.batches.plan_ahead(batches[index + 1], batch)
        async with service.engine.begin() as connection:
            await service.batches.apply_batch(connection, batch)
        service.consumer.batches_applied += 1  # type: ignore[union-attr]


async def apply_one_by_one(engine: AsyncEngine, evaluator: Evaluator, batches: Sequence[Records]) -> None:
    for batch in batches:
        async with engine.begin() as connection:
            await apply_records(connection, evaluator, batch, TODAY, NOW.replace(tzinfo=None))


async def contents(engine: AsyncEngine) -> dict[str, Any]:
    p = packages.c
    async with engine.connect() as connection:
        return {
            "packages": sorted(
                (await connection.execute(select(*[c for c in packages.c if c.name not in ("id", "review_at")]))).all()
            ),
            "versions": sorted((await connection.execute(select(p.seller_id, p.order_id, p.version))).all()),
            "scans": sorted((await connection.execute(select(scans))).all()),
            "cancellations": sorted((await connection.execute(select(cancellations))).all()),
            "counts": sorted((await connection.execute(select(daily_counts))).all()),
            "reasons": sorted(row for row in (await connection.execute(select(daily_reasons))).all() if row.count != 0),
            "outbox": sorted(
                (await connection.execute(select(outbox.c.seller_id, outbox.c.marketplace, outbox.c.category))).all()
            ),
        }


def cut(records: Records, rnd: random.Random) -> list[Records]:
    batches: list[Records] = []
    start = 0
    while start < len(records):
        size = rnd.randint(1, 60)
        batches.append(records[start : start + size])
        start += size
    return batches


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_planned_ahead_leave_what_one_by_one_leaves(
    seed: int, new_postgres_database: Callable[[], str], evaluator: Evaluator
) -> None:
    """Random parcels (shared tracking numbers, duplicates, cancellations, events before their
    shipment) in random order and random batch sizes: consecutive batches share parcels, so
    plans are used, split (the shared parcels planned in the transaction) and dropped."""
    rnd = random.Random(seed)
    messages, _ = generate(seed, TODAY, NOW, parcels=150, sellers=("seller-1", "seller-2", "seller-3"))
    rnd.shuffle(messages)
    batches = cut([record(message) for message in messages], rnd)
    ahead_engine = await engine_for(new_postgres_database)
    reference_engine = await engine_for(new_postgres_database)
    used = planned("used")
    try:
        await apply_planned_ahead(service_on(ahead_engine), batches)
        await apply_one_by_one(reference_engine, evaluator, batches)
        assert await contents(ahead_engine) == await contents(reference_engine)
    finally:
        await ahead_engine.dispose()
        await reference_engine.dispose()
    assert planned("used") - used >= len(batches) // 2  # the plans were used, not dropped


async def test_a_package_changed_under_a_plan_is_planned_again_in_the_transaction(
    new_postgres_database: Callable[[], str], evaluator: Evaluator
) -> None:
    """Another writer (a clock job) changes a package after the plan read it: the plan's
    version-checked write finds it, the plan's writes are undone, and the batch is planned
    again in its transaction with the package as it is now."""
    first = [record(shipment("o-1", tracking_number="LP00000001CN")), record(shipment("o-2", tracking_number="LP2"))]
    second = [record(event(tracking_number="LP00000001CN")), record(event(tracking_number="LP2"))]
    engine = await engine_for(new_postgres_database)
    reference = await engine_for(new_postgres_database)
    conflicts = planned("conflict")
    try:
        service = service_on(engine)
        await apply_one_by_one(engine, evaluator, [first])
        await service.batches.plan_ahead(second, [])
        service.consumer.batches_applied += 1  # type: ignore[union-attr]  # the batch written meanwhile
        async with engine.begin() as connection:
            # As the clock job would: a new version of the package, written elsewhere.
            await connection.execute(
                update(packages).where(packages.c.order_id == "o-1").values(version=packages.c.version + 1)
            )
        async with engine.begin() as connection:
            await service.batches.apply_batch(connection, second)
        await apply_one_by_one(reference, evaluator, [first, second])
        async with reference.begin() as connection:
            await connection.execute(
                update(packages).where(packages.c.order_id == "o-1").values(version=packages.c.version + 1)
            )
        assert planned("conflict") == conflicts + 1
        got, want = await contents(engine), await contents(reference)
        assert got == want
        async with engine.connect() as connection:
            states = dict((await connection.execute(text("SELECT order_id, state FROM packages"))).all())
        assert states == {"o-1": "valid", "o-2": "valid"}  # the scans were applied, once
    finally:
        await engine.dispose()
        await reference.dispose()
