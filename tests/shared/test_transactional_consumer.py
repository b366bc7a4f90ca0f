"""Exactly-once effects of the transactional consumer, with a real broker and real databases."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import create_engine
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.schemas import DEADLETTER_CODEC, DeadLetter
from shared.settings import ServiceSettings
from shared.topics import DEADLETTER, TopicSpec
from shared.transactional_consumer import (
    ALIGN_WAIT_SECONDS,
    PARKED_RECORDS,
    TransactionalConsumer,
    consumer_offsets_table,
)
from tools.localstack import TansuBroker

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


async def _engine(database_url: str) -> AsyncEngine:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return engine


async def _produce(settings: ServiceSettings, topic: str, count: int, start: int = 0) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"v{i}".encode(), key=f"k{i % 7}".encode()) for i in range(start, start + count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(applied))).scalar_one())


async def _wait_for_count(engine: AsyncEngine, expected: int, within_seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_seconds
    while await _count(engine) < expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {await _count(engine)} of {expected} records applied")
        await asyncio.sleep(0.1)


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


def _consumer(
    settings: ServiceSettings, engine: AsyncEngine, topic: str, group: str, recorder: Recorder
) -> TransactionalConsumer:
    return TransactionalConsumer(
        settings=settings,
        engine=engine,
        topics=[topic],
        group_id=group,
        offsets=offsets,
        apply_batch=recorder,
        max_batch_records=50,
        retry_delay_seconds=0.05,
    )


@pytest.fixture
def topic_and_group(kafka_broker: TansuBroker) -> tuple[ServiceSettings, str, str]:
    settings = ServiceSettings(
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topic_partitions=3,
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
    )
    suffix = uuid.uuid4().hex[:8]
    return settings, f"test.tx.{suffix}", f"group-{suffix}"


async def test_failed_batches_roll_back_and_restart_resumes_without_duplicates(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await _engine(database_url)
    await _produce(settings, topic, 300)

    recorder = Recorder()
    recorder.failures_left = 2  # the primary key would reject a second application after a partial commit
    first = _consumer(settings, engine, topic, group, recorder)
    await first.start()
    await _wait_for_count(engine, 300)
    assert recorder.calls > 2
    await first.stop()

    # A new instance (a restart) picks up from the stored offsets: new records only.
    await _produce(settings, topic, 120, start=300)
    second = _consumer(settings, engine, topic, group, Recorder())
    committed_batches: list[int] = []
    second._on_batch_committed = lambda records, _seconds: committed_batches.append(records)
    assert not second.caught_up(max_lag=0)  # not running yet
    await second.start()
    await _wait_for_count(engine, 420)
    await asyncio.sleep(0.5)
    assert await _count(engine) == 420
    assert second.total_lag() == 0
    assert second.caught_up(max_lag=0)
    assert sum(committed_batches) == 120
    await second.stop()
    await engine.dispose()


async def _rows_in(engine: AsyncEngine, tp: TopicPartition) -> int:
    async with engine.connect() as connection:
        query = (
            select(func.count())
            .select_from(applied)
            .where(applied.c.topic == tp.topic, applied.c.partition == tp.partition)
        )
        return int((await connection.execute(query)).scalar_one())


async def test_a_fenced_partition_is_given_up_the_others_go_on_and_it_is_claimed_back(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await _engine(database_url)
    stale = _consumer(settings, engine, topic, group, Recorder())
    stale.reclaim_after_seconds = 3600.0  # phase 1: no claiming back yet
    await stale.start()
    await _produce(settings, topic, 30)
    await _wait_for_count(engine, 30)
    owned = sorted(stale.assigned_partitions())
    assert len(owned) == 3
    taken, kept = owned[0], owned[1:]
    rows_before = await _rows_in(engine, taken)
    assert rows_before > 0  # the keys reach every partition, so the taken one gets new records too

    # Another instance claims one partition in the database (as after a rebalance the stale
    # instance has not noticed yet): batches that include it roll back, that partition is
    # given up, and the stale instance's other partitions are still consumed in full.
    usurper = _consumer(settings, engine, topic, f"{group}-unused", Recorder())
    usurper._group_id = group
    await usurper._claim([taken])
    await _produce(settings, topic, 60, start=30)
    deadline = asyncio.get_running_loop().time() + 30
    while stale.assigned_partitions() != set(kept) or any(stale.partition_lags()[tp] for tp in kept):
        assert asyncio.get_running_loop().time() < deadline, "the kept partitions were not consumed"
        await asyncio.sleep(0.1)
    assert await _rows_in(engine, taken) == rows_before
    for tp in kept:
        assert stale._consumer is not None
        assert await _rows_in(engine, tp) == stale._consumer.highwater(tp)

    # Phase 2: the usurper never joined the group, so no rebalance tells the stale instance
    # anything; the group still lists the partition as its own. Past reclaim_after_seconds
    # it claims the partition back and applies the rest of it, each record once (the
    # primary key of ``applied`` rejects a second application).
    stale.reclaim_after_seconds = 0.5
    deadline = asyncio.get_running_loop().time() + 30
    while taken not in stale.assigned_partitions() or stale.partition_lags()[taken]:
        assert asyncio.get_running_loop().time() < deadline, "the fenced partition was not claimed back"
        await asyncio.sleep(0.1)
    assert stale.partitions_reclaimed == 1
    assert stale._consumer is not None
    assert await _rows_in(engine, taken) == stale._consumer.highwater(taken) > rows_before
    assert await _count(engine) == 90
    await stale.stop()
    await engine.dispose()


async def test_a_fetch_that_starts_past_the_stored_offset_is_fetched_again(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    """If the fetch position ever gets ahead of the stored offset (a seek lost in a
    rebalance), the records in between are fetched again instead of being skipped."""
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await _engine(database_url)
    consumer = _consumer(settings, engine, topic, group, Recorder())
    await consumer.start()
    await _produce(settings, topic, 30)
    await _wait_for_count(engine, 30)
    assert consumer._consumer is not None
    tp = min(consumer.assigned_partitions())
    stored = consumer._next_offsets[tp]
    assert stored == await _rows_in(engine, tp) > 0
    consumer._consumer.pause(tp)
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, f"late{i}".encode(), partition=tp.partition) for i in range(20)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    consumer._consumer.seek(tp, stored + 5)  # five records the consumer would otherwise skip
    consumer._consumer.resume(tp)
    await _wait_for_count(engine, 50)
    assert await _rows_in(engine, tp) == stored + 20
    assert consumer._next_offsets[tp] == stored + 20
    assert consumer.gaps_refetched >= 1
    await consumer.stop()
    await engine.dispose()


async def test_range_assignor_keeps_co_partitioned_topics_together(
    topic_and_group: tuple[ServiceSettings, str, str], tmp_path: object
) -> None:
    settings, topic, group = topic_and_group
    shipments, events = f"{topic}.shipments", f"{topic}.events"
    await ensure_topics(settings, [TopicSpec(shipments), TopicSpec(events)])
    engine = await _engine(f"sqlite+aiosqlite:///{tmp_path}/range.db")
    members = [
        TransactionalConsumer(
            settings=settings,
            engine=engine,
            topics=[shipments, events],
            group_id=group,
            offsets=offsets,
            apply_batch=Recorder(),
        )
        for _ in range(2)
    ]
    await asyncio.gather(*(member.start() for member in members))
    deadline = asyncio.get_running_loop().time() + 30
    while sum(len(member.assigned_partitions()) for member in members) != 6 or not all(
        member.assigned_partitions() for member in members
    ):
        assert asyncio.get_running_loop().time() < deadline, "the group never settled"
        await asyncio.sleep(0.2)
    for member in members:
        by_topic: dict[str, set[int]] = {}
        for tp in member.assigned_partitions():
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
        assert by_topic[shipments] == by_topic[events]
    await asyncio.gather(*(member.stop() for member in members))
    await engine.dispose()


async def test_a_claim_waits_for_the_previous_owners_commit_and_sees_its_offset(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    settings, topic, group = topic_and_group
    engine = await _engine(database_url)
    tp = TopicPartition(topic, 0)
    previous = _consumer(settings, engine, topic, group, Recorder())
    assert await previous._claim([tp]) == {tp: (-1, 1)}

    # The previous owner's batch is still committing (its transaction holds the row) when
    # the new owner claims: the claim must return the offset that batch stores, not the old one.
    newcomer = _consumer(settings, engine, topic, group, Recorder())
    async with engine.connect() as batch:
        await batch.begin()
        await batch.execute(update(offsets).where(offsets.c.topic == topic).values(next_offset=100))
        claim = asyncio.create_task(newcomer._claim([tp]))
        await asyncio.sleep(0.5)
        assert not claim.done()
        await batch.commit()
    assert await asyncio.wait_for(claim, 30) == {tp: (100, 2)}
    await engine.dispose()


async def test_a_record_that_always_fails_is_parked_and_everything_else_goes_on(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str], parking_allowed: None
) -> None:
    """Issue 14, 1b: bounded retries, then the record is dead-lettered (raw bytes),
    counted and skipped; the rest of its partition and the other partitions are applied."""
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await _engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    await _produce(settings, topic, 60)
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
    await _produce(settings, topic, 60, start=60)
    parked_before = PARKED_RECORDS.labels(group, topic)._value.get()

    consumer = _consumer(settings, engine, topic, group, Recorder())
    await consumer.start()
    try:
        await _wait_for_count(engine, 120, within_seconds=60)
        deadline = asyncio.get_running_loop().time() + 30
        while PARKED_RECORDS.labels(group, topic)._value.get() < parked_before + len(poisons):
            assert asyncio.get_running_loop().time() < deadline, "the poison records were not parked"
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    assert await _count(engine) == 120
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


def _stamped(tp: TopicPartition, offset: int, timestamp: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, timestamp, 0, b"k", b"v", None, 1, 1, [])


def _batch_offsets(batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> dict[TopicPartition, list[int]]:
    return {tp: [record.offset for record in records] for tp, records in batch.items()}


def test_a_batch_takes_the_records_of_one_moment_from_every_co_partitioned_topic() -> None:
    """Batches are cut by record time per partition group, so that a parcel's confirmation and
    its scans (same key, two topics) are applied in one batch rather than one batch each."""
    consumer = TransactionalConsumer(
        settings=ServiceSettings(),
        engine=None,  # type: ignore[arg-type]  # never started: only the batch cutting is tested
        topics=["shipments", "events"],
        group_id="group",
        offsets=offsets,
        apply_batch=Recorder(),
        max_batch_records=6,
    )
    ship0, event0 = TopicPartition("shipments", 0), TopicPartition("events", 0)
    ship1, event1 = TopicPartition("shipments", 1), TopicPartition("events", 1)
    consumer._buffered = {
        ship0: deque(_stamped(ship0, i, 100 + 10 * i) for i in range(5)),
        event0: deque(_stamped(event0, i, 105 + 10 * i) for i in range(2)),  # more of it still to fetch
        ship1: deque(_stamped(ship1, i, 100 + i) for i in range(3)),
        event1: deque(),  # nothing fetched yet, records still to fetch
    }
    # Group 0 up to the newest event fetched (115); group 1 waits for its events.
    assert _batch_offsets(consumer._take_aligned({event0, event1})) == {ship0: [0, 1], event0: [0, 1]}
    # Group 1 has waited longer than ALIGN_WAIT_SECONDS: its shipments go without their events.
    consumer._aligning_since[1] -= ALIGN_WAIT_SECONDS
    assert _batch_offsets(consumer._take_aligned({event0, event1})) == {ship1: [0, 1, 2]}
    # Nothing left to fetch: every group's records, oldest first, up to the batch size.
    consumer._buffered[ship1].extend(_stamped(ship1, i, 100 + i) for i in range(3, 6))
    assert _batch_offsets(consumer._take_aligned(set())) == {ship0: [2, 3, 4], ship1: [3, 4, 5]}
    assert not any(consumer._buffered.values())

    consumer._max_batch_records = 3
    consumer._buffered = {
        ship0: deque(_stamped(ship0, i, 100 + 10 * i) for i in range(3)),
        event0: deque(_stamped(event0, i, 105 + 10 * i) for i in range(3)),
    }
    # Too many for one batch: the oldest across the group's topics, each topic's a prefix.
    assert _batch_offsets(consumer._take_aligned(set())) == {ship0: [0, 1], event0: [0]}
    assert [r.offset for r in consumer._buffered[event0]] == [1, 2]


async def _two_topic_backlog(
    database_url: str, settings: ServiceSettings, topic: str, per_topic: int
) -> tuple[AsyncEngine, list[str]]:
    """An engine on a migrated database and two input topics with ``per_topic`` records each."""
    topics = [f"{topic}.shipments", f"{topic}.events"]
    await ensure_topics(settings, [TopicSpec(name) for name in topics])
    engine = await _engine(database_url)
    for name in topics:
        await _produce(settings, name, per_topic)
    return engine, topics


def _small_batches(
    settings: ServiceSettings,
    engine: AsyncEngine,
    topics: list[str],
    group: str,
    recorder: Recorder,
    **hooks: Any,
) -> TransactionalConsumer:
    """A consumer of ``topics`` in batches of 50 that retries fast (``hooks``: work ahead)."""
    return TransactionalConsumer(
        settings=settings,
        engine=engine,
        topics=topics,
        group_id=group,
        offsets=offsets,
        apply_batch=recorder,
        max_batch_records=50,
        retry_delay_seconds=0.05,
        **hooks,
    )


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
    consumer = _small_batches(settings, engine, topics, group, recorder, prepare_records=prepare)
    await consumer.start()
    await _wait_for_count(engine, 400)
    await asyncio.sleep(0.5)
    assert await _count(engine) == 400
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
    consumer = _small_batches(settings, engine, topics, group, recorder, plan_ahead=plan)
    await consumer.start()
    await _wait_for_count(engine, 600)
    await asyncio.sleep(0.5)
    assert await _count(engine) == 600
    await consumer.stop()
    await engine.dispose()
    # recorder.batches holds the attempts that did not fail (a failing one raises first).
    assert offered, "no batch was cut ahead"
    used = [batch for batch in offered if batch in recorder.batches]
    assert len(used) >= len(offered) - 3, (len(used), len(offered))  # at most the ones after a failure, and the last
