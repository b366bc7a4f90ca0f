"""Fetched records not applied yet, per partition, and how a batch is cut from them.

Batches are cut by time, not by fetch: fetched records wait here (up to two batches'
worth) and each batch takes the oldest of them by record timestamp, so that a backlog's
records about one parcel (its confirmation on one topic, its scans on another) tend to
land in the same batch and the package is written once instead of once per batch. The
buffer holds records *not yet applied*: every seek, rebalance, fence or rolled-back batch
drops the partition's buffered records, which are then fetched again from the stored offset.

No I/O here: the consumer's fetcher (``fetch.py``) fills the buffer and says which
partitions still have records to fetch; this module only decides what the next batch is.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeAlias

from aiokafka import ConsumerRecord, TopicPartition

#: Longest a partition's buffered records wait for the records of the same moment on the
#: other input topics before they are applied without them.
ALIGN_WAIT_SECONDS = 1.0

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch: TypeAlias = dict[TopicPartition, list[Record]]

#: A group's cut-off while one of its partitions still to fetch has nothing buffered.
_WAITING = -1


def batch_records(batch: Batch) -> list[Record]:
    """A batch's records in the order they are applied (partition by partition)."""
    return [record for records in batch.values() for record in records]


class BatchBuffer:
    """Per partition, records fetched but not applied yet, in offset order."""

    def __init__(self, max_batch_records: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_batch_records = max_batch_records
        self._clock = clock
        self._records: dict[TopicPartition, deque[Record]] = {}
        #: Per partition number, since when its records wait for another topic's records
        #: of the same moment (see ``take``).
        self._aligning_since: dict[int, float] = {}

    def size(self, tp: TopicPartition) -> int:
        """How many records of ``tp`` are buffered. Asking enrols the partition in its
        group, so that a partition with nothing buffered yet can hold its group back."""
        return len(self._records.setdefault(tp, deque()))

    def add(self, tp: TopicPartition, records: Iterable[Record]) -> None:
        self._records.setdefault(tp, deque()).extend(records)

    def drop(self, tp: TopicPartition) -> None:
        """Forget ``tp``'s records: they are fetched again from its stored offset."""
        self._records.pop(tp, None)

    def clear(self) -> None:
        self._records.clear()
        self._aligning_since.clear()

    def records(self, tp: TopicPartition | None = None) -> list[Record]:
        """The buffered records of ``tp``, or of every partition."""
        if tp is not None:
            return list(self._records.get(tp, ()))
        return [record for records in self._records.values() for record in records]

    def take(self, still_to_fetch: set[TopicPartition], rotation: int = 0) -> Batch:
        """Up to ``max_batch_records`` buffered records, a prefix of each partition's buffer.

        Partitions with the same number form a group (the inputs are co-partitioned: one
        key's records on every topic are in one group). A group's records are taken up to a
        cut-off time no later than the newest buffered record of each of its partitions in
        ``still_to_fetch``, so a record is not applied while the records of the same moment
        on the group's other topics are still to be fetched; a group with such a partition
        and nothing buffered for it waits (an empty ``still_to_fetch`` waits for nothing),
        at most ``ALIGN_WAIT_SECONDS``. Groups take turns at being first (``rotation``, the
        number of batches applied so far), so a full batch does not always favour one.
        Record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime);
        either way only the grouping depends on them. Grouping decides only which batch a
        record lands in, never whether it is applied.
        """
        groups: dict[int, list[TopicPartition]] = {}
        for tp in self._records:
            groups.setdefault(tp.partition, []).append(tp)
        room = self.max_batch_records
        taken: Batch = {}
        for number in sorted(groups, key=lambda number: (number - rotation) % (len(groups) or 1)):
            if room <= 0:
                break
            room = self._take_group(number, sorted(groups[number]), still_to_fetch, room, taken)
        if not taken and not still_to_fetch:  # timestamps out of order: take each buffer's head
            for tp, buffer in sorted(self._records.items()):
                count = min(len(buffer), room)
                if count > 0:
                    taken[tp] = [buffer.popleft() for _ in range(count)]
                    room -= count
        return taken

    def _take_group(
        self, number: int, members: list[TopicPartition], still_to_fetch: set[TopicPartition], room: int, taken: Batch
    ) -> int:
        """Move one group's records of the batch into ``taken``; returns the room left."""
        if not any(self._records[tp] for tp in members):
            self._aligning_since.pop(number, None)
            return room
        cutoff = self._cutoff(members, still_to_fetch)
        if cutoff == _WAITING:
            # Waiting keeps one batch's parcels together; it must never hold records up
            # for long (a partition whose fetches stall until the watchdog re-fetches it).
            since = self._aligning_since.setdefault(number, self._clock())
            if self._clock() - since < ALIGN_WAIT_SECONDS:
                return room
            cutoff = None
        self._aligning_since.pop(number, None)
        stamps = sorted(
            record.timestamp
            for tp in members
            for record in self._records[tp]
            if cutoff is None or record.timestamp <= cutoff
        )
        if not stamps:
            return room
        if len(stamps) > room:
            cutoff = stamps[room - 1]
        for tp in members:
            buffer = self._records[tp]
            prefix: list[Record] = []
            while buffer and room > 0 and (cutoff is None or buffer[0].timestamp <= cutoff):
                prefix.append(buffer.popleft())
                room -= 1
            if prefix:
                taken[tp] = prefix
        return room

    def _cutoff(self, members: list[TopicPartition], still_to_fetch: set[TopicPartition]) -> int | None:
        """The newest time every member still to fetch has buffered (None: no limit)."""
        cutoff: int | None = None
        for tp in members:
            if tp in still_to_fetch:
                buffer = self._records[tp]
                if not buffer:
                    return _WAITING
                newest = buffer[-1].timestamp
                cutoff = newest if cutoff is None else min(cutoff, newest)
        return cutoff
