"""The shared Kafka and database helpers against a real broker and real databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from shared.db import create_engine, ping
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.settings import ServiceSettings
from shared.topics import INPUT_TOPICS, SHIPMENTS, deadletter_spec
from tools.localstack import TansuBroker


async def test_topic_creation_is_idempotent_and_co_partitions_the_inputs(fresh_broker: TansuBroker) -> None:
    settings = ServiceSettings(kafka_bootstrap=fresh_broker.bootstrap, kafka_topic_partitions=4)
    specs = [*INPUT_TOPICS, deadletter_spec(1 << 20)]
    first = await ensure_topics(settings, specs)
    second = await ensure_topics(settings, specs)
    assert first == second
    assert set(first.values()) == {4}


async def test_producer_and_consumer_round_trip(kafka_broker: TansuBroker) -> None:
    settings = ServiceSettings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings, INPUT_TOPICS)
    producer = make_producer(settings)
    await producer.start()
    try:
        marker = b"round-trip-marker"
        await producer.send_and_wait(SHIPMENTS, marker, key=b"RR123456785CN")
    finally:
        await producer.stop()
    consumer = make_consumer(settings, SHIPMENTS, group_id=None)
    await consumer.start()
    try:
        found = False
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=500)
            if any(record.value == marker for records in batches.values() for record in records):
                found = True
                break
            await asyncio.sleep(0)
        assert found
    finally:
        await consumer.stop()


async def test_engine_answers_on_both_databases(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await ping(engine)
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 40 + 2"))).scalar_one() == 42
    finally:
        await engine.dispose()
