"""The commit order on both databases, without a broker: effects and offsets commit
together, a fence rolls both back, and a parked record moves the offset alone."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from shared.consumer.commit import Checkpoint
from shared.consumer.context import ConsumerContext
from shared.consumer.fetch import Fetcher
from shared.consumer.offsets import Fenced, OffsetsStore
from shared.consumer.rebalance import Rebalance
from shared.consumer.upkeep import Upkeep
from shared.settings import ServiceSettings
from tests.shared.consumer.helpers import Recorder, count_applied, migrated_engine, offsets

TP = TopicPartition("test.commit", 0)


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TP.topic, TP.partition, offset, 0, 0, b"k", f"v{offset}".encode(), None, 1, 1, [])


async def test_a_commit_stores_effects_and_offsets_together_and_a_fence_rolls_both_back(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    store = OffsetsStore(engine, offsets, "group")
    context = ConsumerContext(
        settings=ServiceSettings(), store=store, instance_id="me", max_batch_records=10, retry_delay_seconds=0.0
    )
    upkeep = Upkeep(context, reclaim_after_seconds=60.0)
    checkpoint = Checkpoint(
        context,
        Recorder(),
        Fetcher(context, poll_timeout_ms=0, cuts_ahead=False),
        Rebalance(context, upkeep, lag_gauge=None),
    )
    [(next_offset, generation)] = (await store.claim([TP], owner="me")).values()
    context.partitions.claimed(TP, next_offset, generation)

    await checkpoint.commit({TP: [_record(0), _record(1)]})
    assert await count_applied(engine) == 2
    assert await store.stored() == {TP: 2}
    assert context.partitions.position(TP) == 2
    assert (context.counters.records_applied, context.counters.batches_applied) == (2, 1)

    # A parked record: the offset moves over it, nothing is applied.
    await checkpoint.commit({TP: [_record(2)]}, apply=False)
    assert await count_applied(engine) == 2
    assert await store.stored() == {TP: 3}

    # Another instance claims the partition: the next batch rolls back, effects and all.
    await store.claim([TP], owner="other")
    with pytest.raises(Fenced) as fenced:
        await checkpoint.commit({TP: [_record(3)]})
    assert fenced.value.partitions == [TP]
    assert await count_applied(engine) == 2
    assert await store.stored() == {TP: 3}
    assert context.partitions.position(TP) == 3
    assert context.counters.batches_applied == 2
    await engine.dispose()
