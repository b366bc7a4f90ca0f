"""The commit order: how a batch's effects and its offsets become durable together.

Why not Kafka's own commits: a crash between "database committed" and "offset
committed" would re-apply a batch, and a crash the other way round would drop one. With
the offsets in the same transaction as the effects, the database is always consistent
with exactly the records before the stored offset, whatever crashes. Offsets are also
committed to Kafka afterwards, as advice only, so that standard lag tools
(``kafka-consumer-groups``, KEDA) show the group's position.

``Checkpoint.apply`` is the whole order, step by step; every other module of the
consumer only fetches, recovers or keeps partitions, and calls in here to commit.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer.buffer import Batch, Record, batch_records
from shared.consumer.context import ConsumerContext
from shared.consumer.failures import Failures
from shared.consumer.fetch import Fetcher
from shared.consumer.offsets import NO_OFFSET, Fenced
from shared.consumer.rebalance import Rebalance

log = logging.getLogger(__name__)

ApplyBatch = Callable[[AsyncConnection, Sequence[Record]], Awaitable[None]]


class _Outcome(enum.Enum):
    COMMITTED = "committed"
    #: Rolled back and rewound: fetched again after the retry delay.
    RETRY = "retry"
    #: Nothing to apply, or partitions given up after a fence: nothing to wait for.
    NOTHING = "nothing"


class Checkpoint:
    def __init__(
        self, context: ConsumerContext, apply_batch: ApplyBatch, fetcher: Fetcher, rebalance: Rebalance
    ) -> None:
        self._context = context
        self._apply_batch = apply_batch
        self._fetcher = fetcher
        self._rebalance = rebalance
        self.failures = Failures(context, self.commit)

    async def apply(self, batch: Batch, epoch: int) -> int:
        """Apply a fetched batch; returns how many records were committed (0: none, and
        every partition not applied was rewound, so no record is ever skipped).

        1. Take the batch lock: a rebalance waits for the batch in flight, and upkeep
           does not seek meanwhile.
        2. Drop a batch fetched before a rebalance (its partitions rewound), records of
           partitions no longer owned, and records already applied; a fetch that starts
           past the stored offset is fetched again instead (``Fetcher.records_to_apply``).
        3. In one database transaction (``commit``): apply the records, write each
           partition's next offset fenced by owner and generation, commit.
        4. A fence rolled it all back: give up the fenced partitions, rewind the others.
           A failure rolled it all back: ``Failures.recover`` rewinds, or after repeated
           failures applies record by record and parks what still fails.
        5. Release the lock; after a failure, wait the retry delay.
        6. Commit the new offsets to Kafka, as advice for lag tools (a failure here is
           harmless: the database is the truth).
        7. The consuming loop then reports the batch (``on_batch_committed``).
        """
        context = self._context
        async with context.batch_lock:  # 1
            owned = await self._records_to_apply(batch, epoch)  # 2
            outcome = await self._commit_or_recover(owned) if owned else _Outcome.NOTHING  # 3, 4
        if outcome is _Outcome.RETRY:  # 5
            await asyncio.sleep(context.retry_delay_seconds)
        if outcome is not _Outcome.COMMITTED:
            return 0
        await self._advise_kafka()  # 6
        return sum(len(records) for records in owned.values())

    async def commit(self, owned: Batch, *, apply: bool = True) -> None:
        """Commit ``owned`` (records of owned partitions) and their offsets atomically;
        ``apply=False`` moves the offsets only (a parked record). Raises ``Fenced``, with
        nothing committed, if another instance claimed one of the partitions.

        1. Begin a database transaction.
        2. Apply the records (the service's ``apply_batch``).
        3. Write each partition's next offset where this instance's claim still holds.
        4. Any partition fenced: raise, and the transaction rolls back.
        5. Commit the transaction.
        6. Move the partitions' positions past the records.
        7. Count the batch.
        """
        context = self._context
        records = batch_records(owned)
        next_offsets = {tp: partition_records[-1].offset + 1 for tp, partition_records in owned.items()}
        generations = context.partitions.generations(owned)
        async with context.store.engine.begin() as connection:  # 1
            if apply:
                await self._apply_batch(connection, records)  # 2
            fenced = await context.store.write_fenced(connection, next_offsets, context.instance_id, generations)  # 3
            if fenced:
                raise Fenced(fenced)  # 4
        # 5: the transaction committed on leaving the block.
        context.partitions.advanced(next_offsets)  # 6
        counters = context.counters  # 7
        counters.records_applied += len(records)
        counters.batches_applied += 1
        counters.last_batch_at = time.time()

    async def _records_to_apply(self, batch: Batch, epoch: int) -> Batch:
        context = self._context
        if epoch != context.epoch:
            # A rebalance ran while this batch was fetched. The records may come from
            # after the rebalance's seek, so dropping them would skip them: rewind every
            # partition still owned to its stored offset so they come again in order.
            for tp in batch:
                if context.partitions.owns(tp):
                    await context.rewind(tp)
            return {}
        owned: Batch = {}
        for tp, records in batch.items():
            if not context.partitions.owns(tp):  # revoked or fenced meanwhile
                continue
            fresh = await self._fetcher.records_to_apply(tp, records)
            if fresh:
                owned[tp] = fresh
        return owned

    async def _commit_or_recover(self, owned: Batch) -> _Outcome:
        try:
            try:
                await self.commit(owned)
            except asyncio.CancelledError:
                raise
            except Fenced:
                raise
            except Exception as error:
                return _Outcome.COMMITTED if await self.failures.recover(error, owned) else _Outcome.RETRY
        except Fenced as fenced:
            await self._rebalance.give_up(fenced, owned)
            return _Outcome.NOTHING
        self.failures.succeeded()
        return _Outcome.COMMITTED

    async def _advise_kafka(self) -> None:
        """Advisory: the database is the source of truth; this only feeds lag tools."""
        context = self._context
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in context.partitions.owned():
            position = context.partitions.position(tp)
            if position != NO_OFFSET:
                offsets[tp] = OffsetAndMetadata(position, "")
        if not offsets:
            return
        try:
            await context.client.commit(offsets)
        except Exception as error:  # a rebalance in progress or a broker hiccup; next batch retries
            log.debug("advisory Kafka commit failed", extra={"error": repr(error)})
