"""How a batch is cut from the buffered records, without a broker (like quix-streams'
tests of its PartitionBuffer)."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition

from shared.consumer.buffer import ALIGN_WAIT_SECONDS, Batch, BatchBuffer, batch_records


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stamped(tp: TopicPartition, offset: int, timestamp: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, timestamp, 0, b"k", b"v", None, 1, 1, [])


def _batch_offsets(batch: Batch) -> dict[TopicPartition, list[int]]:
    return {tp: [record.offset for record in records] for tp, records in batch.items()}


SHIP0, EVENT0 = TopicPartition("shipments", 0), TopicPartition("events", 0)
SHIP1, EVENT1 = TopicPartition("shipments", 1), TopicPartition("events", 1)


def test_a_batch_takes_the_records_of_one_moment_from_every_co_partitioned_topic() -> None:
    """Batches are cut by record time per partition group, so that a parcel's confirmation and
    its scans (same key, two topics) are applied in one batch rather than one batch each."""
    clock = Clock()
    buffer = BatchBuffer(max_batch_records=6, clock=clock)
    buffer.add(SHIP0, (_stamped(SHIP0, i, 100 + 10 * i) for i in range(5)))
    buffer.add(EVENT0, (_stamped(EVENT0, i, 105 + 10 * i) for i in range(2)))  # more of it still to fetch
    buffer.add(SHIP1, (_stamped(SHIP1, i, 100 + i) for i in range(3)))
    assert buffer.size(EVENT1) == 0  # nothing fetched yet, records still to fetch
    # Group 0 up to the newest event fetched (115); group 1 waits for its events.
    assert _batch_offsets(buffer.take({EVENT0, EVENT1})) == {SHIP0: [0, 1], EVENT0: [0, 1]}
    # Group 1 has waited ALIGN_WAIT_SECONDS: its shipments go without their events.
    clock.now += ALIGN_WAIT_SECONDS
    assert _batch_offsets(buffer.take({EVENT0, EVENT1})) == {SHIP1: [0, 1, 2]}
    # Nothing left to fetch: every group's records, oldest first, up to the batch size.
    buffer.add(SHIP1, (_stamped(SHIP1, i, 100 + i) for i in range(3, 6)))
    assert _batch_offsets(buffer.take(set())) == {SHIP0: [2, 3, 4], SHIP1: [3, 4, 5]}
    assert not buffer.records()

    buffer = BatchBuffer(max_batch_records=3, clock=clock)
    buffer.add(SHIP0, (_stamped(SHIP0, i, 100 + 10 * i) for i in range(3)))
    buffer.add(EVENT0, (_stamped(EVENT0, i, 105 + 10 * i) for i in range(3)))
    # Too many for one batch: the oldest across the group's topics, each topic's a prefix.
    assert _batch_offsets(buffer.take(set())) == {SHIP0: [0, 1], EVENT0: [0]}
    assert [r.offset for r in buffer.records(EVENT0)] == [1, 2]


def test_a_group_waits_at_most_the_align_wait_for_its_other_topic() -> None:
    clock = Clock()
    buffer = BatchBuffer(max_batch_records=4, clock=clock)
    buffer.add(SHIP0, (_stamped(SHIP0, i, 100 + i) for i in range(2)))
    buffer.add(SHIP1, (_stamped(SHIP1, i, 100 + i) for i in range(2)))
    assert buffer.size(EVENT0) == 0  # enrolled, nothing buffered, still to fetch
    assert _batch_offsets(buffer.take({EVENT0})) == {SHIP1: [0, 1]}
    clock.now += ALIGN_WAIT_SECONDS / 2
    assert buffer.take({EVENT0}) == {}
    clock.now += ALIGN_WAIT_SECONDS / 2
    assert _batch_offsets(buffer.take({EVENT0})) == {SHIP0: [0, 1]}


def test_groups_take_turns_at_being_first_and_a_dropped_partition_is_forgotten() -> None:
    def filled() -> BatchBuffer:
        buffer = BatchBuffer(max_batch_records=2)
        for tp in (SHIP0, SHIP1):
            buffer.add(tp, (_stamped(tp, i, 100 + i) for i in range(2)))
        return buffer

    assert _batch_offsets(filled().take(set(), rotation=0)) == {SHIP0: [0, 1]}
    assert _batch_offsets(filled().take(set(), rotation=1)) == {SHIP1: [0, 1]}
    buffer = filled()
    buffer.drop(SHIP0)
    assert [(r.topic, r.partition) for r in buffer.records()] == [("shipments", 1)] * 2
    taken = buffer.take(set())
    assert [(r.partition, r.offset) for r in batch_records(taken)] == [(1, 0), (1, 1)]
    assert buffer.records() == []
