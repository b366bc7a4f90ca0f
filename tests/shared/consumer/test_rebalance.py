"""Ownership: fencing gives a partition up without stopping the others, a partition the
group still lists as ours is claimed back, and co-partitioned topics stay together."""

from __future__ import annotations

import asyncio

from shared.consumer.consumer import TransactionalConsumer
from shared.consumer.offsets import OffsetsStore
from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from shared.topics import TopicSpec
from tests.shared.consumer.helpers import (
    Recorder,
    count_applied,
    migrated_engine,
    offsets,
    produce,
    rows_in,
    small_batches,
    wait_for_count,
)


async def test_a_fenced_partition_is_given_up_the_others_go_on_and_it_is_claimed_back(
    database_url: str, topic_and_group: tuple[ServiceSettings, str, str]
) -> None:
    settings, topic, group = topic_and_group
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await migrated_engine(database_url)
    stale = small_batches(settings, engine, [topic], group, Recorder())
    stale.reclaim_after_seconds = 3600.0  # phase 1: no claiming back yet
    await stale.start()
    await produce(settings, topic, 30)
    await wait_for_count(engine, 30)
    owned = sorted(stale.assigned_partitions())
    assert len(owned) == 3
    taken, kept = owned[0], owned[1:]
    rows_before = await rows_in(engine, taken)
    assert rows_before > 0  # the keys reach every partition, so the taken one gets new records too

    # Another instance claims one partition in the database (as after a rebalance the stale
    # instance has not noticed yet): batches that include it roll back, that partition is
    # given up, and the stale instance's other partitions are still consumed in full.
    await OffsetsStore(engine, offsets, group).claim([taken], owner="usurper")
    await produce(settings, topic, 60, start=30)
    deadline = asyncio.get_running_loop().time() + 30
    while stale.assigned_partitions() != set(kept) or any(stale.partition_lags()[tp] for tp in kept):
        assert asyncio.get_running_loop().time() < deadline, "the kept partitions were not consumed"
        await asyncio.sleep(0.1)
    assert await rows_in(engine, taken) == rows_before
    client = stale.kafka_client
    assert client is not None
    for tp in kept:
        assert await rows_in(engine, tp) == client.highwater(tp)

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
    assert await rows_in(engine, taken) == client.highwater(taken) > rows_before
    assert await count_applied(engine) == 90
    await stale.stop()
    await engine.dispose()


async def test_range_assignor_keeps_co_partitioned_topics_together(
    topic_and_group: tuple[ServiceSettings, str, str], tmp_path: object
) -> None:
    settings, topic, group = topic_and_group
    shipments, events = f"{topic}.shipments", f"{topic}.events"
    await ensure_topics(settings, [TopicSpec(shipments), TopicSpec(events)])
    engine = await migrated_engine(f"sqlite+aiosqlite:///{tmp_path}/range.db")
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
