"""Exactly-once effects of the transactional consumer, with a real broker and real databases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.kafka import ensure_topics, make_producer
from shared.settings import ServiceSettings
from shared.topics import TopicSpec
from tests.shared.consumer.helpers import (
    Recorder,
    count_applied,
    migrated_engine,
    produce,
    rows_in,
    small_batches,
    wait_for_count,
)


async def test_failed_batches_roll_back_and_restart_resumes_without_duplicates(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await migrated_engine(database_url)
    await produce(settings, topic, 300)

    recorder = Recorder()
    recorder.failures_left = 2  # the primary key would reject a second application after a partial commit
    first = small_batches(settings, engine, [topic], group, recorder)
    await first.start()
    await wait_for_count(engine, 300)
    assert recorder.calls > 2
    await first.stop()

    # A new instance (a restart) picks up from the stored offsets: new records only.
    await produce(settings, topic, 120, start=300)
    committed_batches: list[int] = []
    second = small_batches(
        settings,
        engine,
        [topic],
        group,
        Recorder(),
        on_batch_committed=lambda records, _seconds: committed_batches.append(records),
    )
    assert not second.caught_up(max_lag=0)  # not running yet
    await second.start()
    await wait_for_count(engine, 420)
    await asyncio.sleep(0.5)
    assert await count_applied(engine) == 420
    assert second.total_lag() == 0
    assert second.caught_up(max_lag=0)
    assert sum(committed_batches) == 120
    await second.stop()
    await engine.dispose()


async def test_a_fetch_that_starts_past_the_stored_offset_is_fetched_again(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    """If the fetch position ever gets ahead of the stored offset (a seek lost in a
    rebalance), the records in between are fetched again instead of being skipped."""
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await migrated_engine(database_url)
    consumer = small_batches(settings, engine, [topic], group, Recorder())
    await consumer.start()
    await produce(settings, topic, 30)
    await wait_for_count(engine, 30)
    client = consumer.kafka_client
    assert client is not None
    tp = min(consumer.assigned_partitions())
    stored = consumer.stored_offset(tp)
    assert stored == await rows_in(engine, tp) > 0
    client.pause(tp)
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, f"late{i}".encode(), partition=tp.partition) for i in range(20)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    client.seek(tp, stored + 5)  # five records the consumer would otherwise skip
    client.resume(tp)
    await wait_for_count(engine, 50)
    assert await rows_in(engine, tp) == stored + 20
    assert consumer.stored_offset(tp) == stored + 20
    assert consumer.gaps_refetched >= 1
    await consumer.stop()
    await engine.dispose()


async def _two_topic_backlog(
    database_url: str, settings: ServiceSettings, topic: str, per_topic: int
) -> tuple[AsyncEngine, list[str]]:
    """An engine on a migrated database and two input topics with ``per_topic`` records each."""
    topics = [f"{topic}.shipments", f"{topic}.events"]
    await ensure_topics(settings, [TopicSpec(name) for name in topics])
    engine = await migrated_engine(database_url)
    for name in topics:
        await produce(settings, name, per_topic)
    return engine, topics


async def test_records_prepared_ahead_change_nothing_even_when_preparing_fails_or_batches_roll_back(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    settings, topic, group = topic_and_group
    engine, topics = await _two_topic_backlog(database_url, settings, topic, 200)

    prepared: list[ConsumerRecord[bytes, bytes]] = []

    async def prepare(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        prepared.extend(records)
        if len(prepared) == len(records):
            raise RuntimeError("simulated failure while preparing ahead")
        await asyncio.sleep(0)

    recorder = Recorder()
    recorder.failures_left = 2  # the primary key rejects a record applied twice
    consumer = small_batches(settings, engine, topics, group, recorder, prepare_records=prepare)
    await consumer.start()
    await wait_for_count(engine, 400)
    await asyncio.sleep(0.5)
    assert await count_applied(engine) == 400
    assert prepared  # the buffered records were offered ahead of their batches
    await consumer.stop()
    await engine.dispose()


async def test_batches_cut_ahead_are_the_next_batches_and_are_dropped_when_one_rolls_back(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    """The next batch is cut and offered while one is in its transaction (``plan_ahead``);
    it is then exactly the batch applied next. When the batch in its transaction rolls back,
    the one cut after it is given back and fetched again: every record applied once."""
    settings, topic, group = topic_and_group
    engine, topics = await _two_topic_backlog(database_url, settings, topic, 300)

    offered: list[list[tuple[str, int, int]]] = []

    async def plan(
        records: Sequence[ConsumerRecord[bytes, bytes]], in_flight: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        assert not {(r.topic, r.partition, r.offset) for r in records} & {
            (r.topic, r.partition, r.offset) for r in in_flight
        }
        offered.append([(r.topic, r.partition, r.offset) for r in records])
        await asyncio.sleep(0.01)  # the batch in its transaction goes on meanwhile

    class AppliedBatches(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[list[tuple[str, int, int]]] = []

        async def __call__(self, connection: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            await super().__call__(connection, records)
            self.batches.append([(r.topic, r.partition, r.offset) for r in records])

    recorder = AppliedBatches()
    recorder.failures_left = 2  # the primary key rejects a record applied twice
    consumer = small_batches(settings, engine, topics, group, recorder, plan_ahead=plan)
    await consumer.start()
    await wait_for_count(engine, 600)
    await asyncio.sleep(0.5)
    assert await count_applied(engine) == 600
    await consumer.stop()
    await engine.dispose()
    # recorder.batches holds the attempts that did not fail (a failing one raises first).
    assert offered, "no batch was cut ahead"
    used = [batch for batch in offered if batch in recorder.batches]
    assert len(used) >= len(offered) - 3, (len(used), len(offered))  # at most the ones after a failure, and the last
