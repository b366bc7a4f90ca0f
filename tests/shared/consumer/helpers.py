"""What the consumer's tests share: a table of applied records, an ``apply_batch`` that
records (and fails on request), producing, counting and waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.consumer.consumer import TransactionalConsumer
from shared.consumer.offsets import consumer_offsets_table
from shared.db import create_engine
from shared.kafka import make_producer
from shared.settings import ServiceSettings

metadata = MetaData()
offsets = consumer_offsets_table(metadata)
# The primary key makes a double application fail loudly instead of passing silently (and
# tests/conftest.py's ``nothing_parked`` fails a test in which such a failure was parked).
applied = Table(
    "applied",
    metadata,
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", Integer, primary_key=True),
    Column("value", String(100), nullable=False),
)


async def migrated_engine(database_url: str) -> AsyncEngine:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return engine


async def produce(settings: ServiceSettings, topic: str, count: int, start: int = 0) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"v{i}".encode(), key=f"k{i % 7}".encode()) for i in range(start, start + count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_applied(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(applied))).scalar_one())


async def wait_for_count(engine: AsyncEngine, expected: int, within_seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_seconds
    while await count_applied(engine) < expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {await count_applied(engine)} of {expected} records applied")
        await asyncio.sleep(0.1)


async def rows_in(engine: AsyncEngine, tp: TopicPartition) -> int:
    async with engine.connect() as connection:
        query = (
            select(func.count())
            .select_from(applied)
            .where(applied.c.topic == tp.topic, applied.c.partition == tp.partition)
        )
        return int((await connection.execute(query)).scalar_one())


class Recorder:
    """apply_batch that stores every record and can be told to fail a number of times."""

    def __init__(self) -> None:
        self.failures_left = 0
        self.calls = 0

    async def __call__(self, connection: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        self.calls += 1
        await connection.execute(
            insert(applied),
            [
                {"topic": r.topic, "partition": r.partition, "offset": r.offset, "value": r.value.decode()}
                for r in records
            ],
        )
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("simulated crash after writing, before commit")


def small_batches(
    settings: ServiceSettings,
    engine: AsyncEngine,
    topics: Sequence[str],
    group: str,
    recorder: Recorder,
    **options: Any,
) -> TransactionalConsumer:
    """A consumer of ``topics`` in batches of 50 that retries fast (``options``: hooks, work ahead)."""
    return TransactionalConsumer(
        settings=settings,
        engine=engine,
        topics=topics,
        group_id=group,
        offsets=offsets,
        apply_batch=recorder,
        max_batch_records=50,
        retry_delay_seconds=0.05,
        **options,
    )
