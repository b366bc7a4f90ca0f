"""Fetching: keeping each owned partition's buffer topped up from what the client has
fetched, cutting the next batch from the buffer (also ahead, while a batch is in its
transaction), and checking that a batch's records start at the stored offset.

Records fetched across a rebalance are never buffered: the rebalance callbacks have
re-sought every owned partition to its stored offset, so they are fetched again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import TopicPartition

from shared.consumer.buffer import Batch, Record
from shared.consumer.context import ConsumerContext
from shared.consumer.offsets import NO_OFFSET

log = logging.getLogger(__name__)


class Fetcher:
    def __init__(self, context: ConsumerContext, *, poll_timeout_ms: int, cuts_ahead: bool) -> None:
        self._context = context
        self._poll_timeout_ms = poll_timeout_ms
        self._cuts_ahead = cuts_ahead

    async def next_batch(self, epoch: int) -> Batch:
        """The next batch: buffered records of every partition group, cut at a common time.

        Each owned partition's buffer is topped up to its share of two batches from what
        the client has already fetched (no waiting); only when no group has anything to
        take does this wait for the broker (up to the poll timeout), and if even then the
        groups are not aligned the oldest records are taken as they are: progress first.
        """
        context = self._context
        owned = context.partitions.fetchable()
        stale = await self._top_up(owned, epoch)
        if stale is not None:
            return stale
        batch = await self._take(owned)
        if not batch:
            waited: Batch = await context.client.getmany(
                timeout_ms=self._poll_timeout_ms, max_records=context.buffer.max_batch_records
            )
            if epoch != context.epoch:
                return waited
            for tp, records in waited.items():
                # Revoked or fenced while fetched: dropped, as the commit drops them (a reclaim rewinds).
                if context.partitions.owns(tp):
                    context.buffer.add(tp, records)
            batch = await self._take(owned) or self._take_buffered(set())
        # Refill now, so that the records prepared while this batch is applied cover the next one.
        stale = await self._top_up(owned, epoch)
        if stale is not None:
            return {**stale, **batch}
        return batch

    async def cut_ahead(self, epoch: int) -> tuple[int, Batch] | None:
        """The batch after the one about to be applied, from what is buffered already
        (never waits), with the epoch it was cut in; or None."""
        context = self._context
        if not self._cuts_ahead or epoch != context.epoch:
            return None
        owned = context.partitions.fetchable()
        stale = await self._top_up(owned, epoch)
        if stale is not None:  # a rebalance ran meanwhile: as the commit does with such records
            for tp in stale:
                if context.partitions.owns(tp):
                    await context.rewind(tp)
            return None
        following = await self._take(owned)
        if epoch != context.epoch:
            await self.drop_ahead(context.epoch, following)
            return None
        return (epoch, following) if following else None

    async def drop_ahead(self, epoch: int, batch: Batch) -> None:
        """Give back a batch cut ahead that will not be applied: its partitions are fetched
        again from their stored offsets (after a rebalance its seeks did that already)."""
        context = self._context
        if epoch != context.epoch:
            return
        for tp in batch:
            if context.partitions.owns(tp):
                await context.rewind(tp)

    async def records_to_apply(self, tp: TopicPartition, records: list[Record]) -> list[Record] | None:
        """The records of ``tp`` to apply, or None when the partition was rewound instead.

        Records below the stored offset are dropped: they are applied already (a broker may
        return a whole record batch that starts before the fetch offset). If the first
        record left starts *past* the stored offset, applying it would store an offset
        beyond records that were never applied: the fetch position and the stored offset
        disagree (a seek lost in a rebalance, a fetch answered for an older position). The
        partition is then fetched again from the stored offset; only if the broker returns
        the same first offset again do the offsets in between not exist (a compacted topic,
        transaction markers), and the records are applied. Invariant: a partition's stored
        offset only ever moves over records that were applied.
        """
        context = self._context
        state = context.partitions.state(tp)
        position = state.next_offset
        fresh = [record for record in records if record.offset >= position]
        if not fresh:
            return fresh
        first = fresh[0].offset
        expected = position
        if position == NO_OFFSET and first > 0:
            expected = (await context.client.beginning_offsets([tp]))[tp]
        checked = state.gap_checked
        if first <= max(expected, 0) or checked == first:
            state.gap_checked = None
            if checked == first and first > expected:
                log.warning(
                    "offsets missing from the partition; applying from the first one the broker returns",
                    extra={"partition": f"{tp.topic}:{tp.partition}", "stored": position, "first": first},
                )
            return fresh
        log.warning(
            "fetch started past the stored offset; fetching the partition again from the stored offset",
            extra={"partition": f"{tp.topic}:{tp.partition}", "stored": position, "first": first},
        )
        state.gap_checked = first
        context.counters.gaps_refetched += 1
        await context.rewind(tp)
        return None

    async def _take(self, owned: Sequence[TopicPartition]) -> Batch:
        return self._take_buffered(await self._still_to_fetch(owned))

    def _take_buffered(self, still_to_fetch: set[TopicPartition]) -> Batch:
        return self._context.buffer.take(still_to_fetch, rotation=self._context.counters.batches_applied)

    async def _top_up(self, owned: Sequence[TopicPartition], epoch: int) -> Batch | None:
        """Fill each owned partition's buffer up to its share of two batches from what the
        client has fetched already (never waits). Returns the records fetched after a
        rebalance instead of buffering them (the commit's epoch check rewinds their partitions)."""
        context = self._context
        buffer = context.buffer
        share = max(1, 2 * buffer.max_batch_records // max(1, len(owned)))
        assignment = context.client.assignment()
        for tp in owned:
            held = buffer.size(tp)
            if held < share and tp in assignment:
                fetched: Batch = await context.client.getmany(tp, timeout_ms=0, max_records=share - held)
                if epoch != context.epoch:
                    return fetched
                buffer.add(tp, fetched.get(tp, ()))
        return None

    async def _still_to_fetch(self, owned: Sequence[TopicPartition]) -> set[TopicPartition]:
        """Owned partitions whose fetch position is behind the end of what can be fetched:
        records of theirs exist that are not buffered yet. The end is the last stable offset
        (the consumer reads committed records only: an open producer transaction's records
        cannot be fetched yet, and must not hold the other topics back), else the high
        watermark. The fetch position, not the last record's offset, so that transaction
        markers at a log's end do not count as records to come."""
        consumer = self._context.client
        behind: set[TopicPartition] = set()
        assignment = consumer.assignment()
        for tp in owned:
            if tp not in assignment:
                continue
            end = consumer.last_stable_offset(tp)
            if end is None or end < 0:
                end = consumer.highwater(tp)
            if end is None:  # not fetched yet since the assignment: its first answer is on its way
                behind.add(tp)
                continue
            with contextlib.suppress(Exception):  # no position yet (a reset in progress): not waited for
                if await asyncio.wait_for(consumer.position(tp), 0.01) < end:
                    behind.add(tp)
        return behind
