"""Issue 14, 1b: bounded retries, then a record that always fails is dead-lettered (raw
bytes), counted and skipped; the rest of its partition and the other partitions are applied."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import REGISTRY

from shared.consumer.failures import PARKED_RECORDS
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.schemas import DEADLETTER_CODEC, DeadLetter
from shared.settings import ServiceSettings
from shared.topics import DEADLETTER, TopicSpec
from tests.shared.consumer.helpers import (
    Recorder,
    count_applied,
    migrated_engine,
    produce,
    small_batches,
    wait_for_count,
)


def _parked(group: str, topic: str) -> float:
    PARKED_RECORDS.labels(group, topic)  # the series exists at 0 before anything is parked
    value = REGISTRY.get_sample_value("vtr_consumer_parked_records_total", {"group": group, "topic": topic})
    assert value is not None
    return value


async def test_a_record_that_always_fails_is_parked_and_everything_else_goes_on(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str], parking_allowed: None
) -> None:
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await migrated_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    await produce(settings, topic, 60)
    # Never applicable: not UTF-8 (both databases); a NUL (PostgreSQL cannot store it).
    poisons = [b"\xffpoison-" + uuid.uuid4().hex.encode()]
    if postgres:
        poisons.append(b"nul\x00" + uuid.uuid4().hex[:8].encode())
    producer = make_producer(settings)
    await producer.start()
    try:
        for poison in poisons:
            await producer.send_and_wait(topic, poison, key=b"k1")
    finally:
        await producer.stop()
    await produce(settings, topic, 60, start=60)
    parked_before = _parked(group, topic)

    consumer = small_batches(settings, engine, [topic], group, Recorder())
    await consumer.start()
    try:
        await wait_for_count(engine, 120, within_seconds=60)
        deadline = asyncio.get_running_loop().time() + 30
        while _parked(group, topic) < parked_before + len(poisons):
            assert asyncio.get_running_loop().time() < deadline, "the poison records were not parked"
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    assert await count_applied(engine) == 120
    letters = await _dead_letters(settings, group, len(poisons))
    assert sorted(letter.raw for letter in letters) == sorted(poisons)
    assert all(topic in letter.reason and letter.headers["topic"] == topic for letter in letters)
    await engine.dispose()


async def _dead_letters(settings: ServiceSettings, origin: str, expected: int) -> list[DeadLetter]:
    consumer = make_consumer(settings, DEADLETTER, group_id=None)
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(
                    letter
                    for record in records
                    if record.key == origin.encode() and (letter := DEADLETTER_CODEC.decode(record.value)).origin
                )
    finally:
        await consumer.stop()
    return found
