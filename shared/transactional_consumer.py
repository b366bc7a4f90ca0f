"""Exactly-once consumption into a database: each fetched batch is applied in one
transaction that also stores the consumer's offsets.

Why not Kafka's own commits: a crash between "database committed" and "offset
committed" would re-apply a batch, and a crash the other way round would drop one. With
the offsets in the same transaction as the effects, the database is always consistent
with exactly the records before the stored offset, whatever crashes.

Fencing: on assignment an instance *claims* each partition by bumping its generation in
the offsets table and remembers that generation. Every batch updates the offset only
``WHERE owner = me AND generation = mine``; if another instance has claimed the
partition since (a rebalance this instance has not noticed yet, a long pause), the
update matches no row and the whole transaction rolls back. The partitions are then
paused until the group hands them back.

Offsets are also committed to Kafka after the database commit, as advice only, so that
standard lag tools (``kafka-consumer-groups``) show the group's position.

Batches are cut by time, not by fetch: fetched records wait in a per-partition buffer
(up to two batches' worth) and each batch takes the oldest of them by record timestamp, so
that a backlog's records about one parcel (its confirmation on one topic, its scans on
another) tend to land in the same batch and the package is written once instead of once
per batch. The buffer holds records *not yet applied*: every seek, rebalance, fence or
rolled-back batch drops the partition's buffered records and fetches again from the stored
offset, exactly as without a buffer.

Partition assignment uses the *range* assignor: the inputs are co-partitioned (same
key, same partition count), so partition *i* of every subscribed topic goes to the same
instance.

Tests and local runs: the local broker (Tansu) takes about 5 s to form a group and only
hands a dead member's partitions over after ``VTR_KAFKA_SESSION_TIMEOUT_MS``; tests set
it to ~3000 (and ``VTR_KAFKA_HEARTBEAT_INTERVAL_MS`` to ~300) to keep restarts quick.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Gauge
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import is_transient
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.schemas import DEADLETTER_CODEC, DeadLetter
from shared.settings import ServiceSettings
from shared.topics import DEADLETTER, deadletter_spec

log = logging.getLogger(__name__)

#: Stored when a partition has been claimed but no record of it applied yet.
NO_OFFSET = -1
#: A partition behind its high watermark whose position has not moved for this long is re-fetched.
STALL_SECONDS = 5.0
#: A batch that fails this many times in a row (not for a transient reason) is applied one
#: partition, then one record, at a time, so that one bad record cannot block the others.
BATCH_ATTEMPTS = 3
#: A record that fails this many times on its own is parked: dead-lettered, counted, logged, skipped.
RECORD_ATTEMPTS = 3

#: Longest a partition's buffered records wait for the records of the same moment on the
#: other input topics before they are applied without them.
ALIGN_WAIT_SECONDS = 1.0

#: How often owned partitions' stored offsets are compared with the broker's log range.
RANGE_CHECK_SECONDS = 30.0

#: With a batch cut ahead in hand the partition upkeep (reclaims, stalled fetches, range
#: checks: they seek) waits; at least this often no batch is cut ahead, so that it runs.
UPKEEP_SECONDS = 5.0

OFFSET_OUT_OF_RANGE = Gauge(
    "vtr_consumer_offset_out_of_range",
    "1 while a partition is stopped because its stored offset is beyond the log end or below its start.",
    ["group", "topic", "partition"],
)
PARKED_RECORDS = Counter(
    "vtr_consumer_parked_records_total",
    "Records that failed on their own after bounded retries and were parked on vtr.deadletter.v1.",
    ["group", "topic"],
)

ApplyBatch = Callable[[AsyncConnection, Sequence[ConsumerRecord[bytes, bytes]]], Awaitable[None]]
#: Work ahead on records of coming batches (see ``prepare_records``); never applies anything.
PrepareRecords = Callable[[Sequence[ConsumerRecord[bytes, bytes]]], Coroutine[Any, Any, None]]
#: Work ahead on the next batch, cut already, given with the batch being applied meanwhile
#: (see ``plan_ahead``); never applies anything.
PlanAhead = Callable[
    [Sequence[ConsumerRecord[bytes, bytes]], Sequence[ConsumerRecord[bytes, bytes]]], Coroutine[Any, Any, None]
]
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


def batch_records(batch: Batch) -> list[ConsumerRecord[bytes, bytes]]:
    """A batch's records in the order they are applied (partition by partition)."""
    return [record for records in batch.values() for record in records]


def consumer_offsets_table(metadata: MetaData, name: str = "consumer_offsets") -> Table:
    """The offsets table; add it to the service's MetaData so its migrations create it."""
    return Table(
        name,
        metadata,
        Column("group_id", String(200), primary_key=True),
        Column("topic", String(200), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        #: The offset of the next record to apply (Kafka's convention for committed offsets).
        Column("next_offset", BigInteger, nullable=False),
        Column("owner", String(100), nullable=False),
        Column("generation", BigInteger, nullable=False),
    )


class Fenced(RuntimeError):
    """Another instance owns some partitions of this batch now; the batch was rolled back."""

    def __init__(self, partitions: Sequence[TopicPartition]) -> None:
        super().__init__(", ".join(f"{tp.topic}:{tp.partition}" for tp in partitions) + " claimed by another instance")
        self.partitions = list(partitions)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: TransactionalConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._owner._on_assigned(assigned)


class TransactionalConsumer:
    """Consume ``topics`` in batches, applying each batch and its offsets atomically."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        engine: AsyncEngine,
        topics: Sequence[str],
        group_id: str,
        offsets: Table,
        apply_batch: ApplyBatch,
        lag_gauge: Gauge | None = None,
        max_batch_records: int = 5000,
        poll_timeout_ms: int = 200,
        group_instance_id: str | None = None,
        retry_delay_seconds: float = 1.0,
        on_batch_committed: Callable[[int, float], None] | None = None,
        reclaim_after_seconds: float | None = None,
        prepare_records: PrepareRecords | None = None,
        plan_ahead: PlanAhead | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._topics = list(topics)
        self._group_id = group_id
        self._offsets = offsets
        self._apply_batch = apply_batch
        self._lag_gauge = lag_gauge
        self._max_batch_records = max_batch_records
        self._poll_timeout_ms = poll_timeout_ms
        self._group_instance_id = group_instance_id
        self._retry_delay_seconds = retry_delay_seconds
        #: Called with (records, seconds from fetch to database commit) after each batch.
        self._on_batch_committed = on_batch_committed
        #: Called with the buffered records (the next batch's, mostly) while a batch is in
        #: its transaction, so that their CPU work (decoding) overlaps the database's. Only
        #: an optimisation: the records are applied, or not, exactly as without it.
        self._prepare_records = prepare_records
        #: Called with the next batch, cut while this one is in its transaction, so that its
        #: work that needs no writes (reads, evaluation) overlaps the database's. The next
        #: batch is then exactly those records, unless this one fails or a rebalance comes
        #: (it is then dropped and fetched again). Only an optimisation, like the above.
        self._plan_ahead = plan_ahead
        #: Per owned partition: (position, monotonic time it last moved), for the stall watchdog.
        self._progress: dict[TopicPartition, tuple[int, float]] = {}
        #: Unique per process, so a restarted instance never mistakes an old claim for its own.
        self.instance_id = f"{group_instance_id or 'member'}-{uuid.uuid4().hex[:12]}"
        self._generations: dict[TopicPartition, int] = {}
        self._next_offsets: dict[TopicPartition, int] = {}
        self._batch_lock = asyncio.Lock()
        #: Partitions this instance gave up after a fence while the group still lists them as
        #: ours: monotonic time of the fence (see ``_reclaim_abandoned``).
        self._fenced_at: dict[TopicPartition, float] = {}
        #: Default: twice the session timeout (``_reclaim_abandoned``).
        self.reclaim_after_seconds = (
            reclaim_after_seconds if reclaim_after_seconds is not None else 2 * settings.kafka_session_timeout_ms / 1000
        )
        #: Per partition, the first offset of a fetch that started past the stored offset and
        #: was fetched again to check (see ``_contiguous``).
        self._gap_checked: dict[TopicPartition, int] = {}
        self.gaps_refetched = 0
        self.partitions_reclaimed = 0
        #: Batches failed in a row for a reason that may lie in the records (see BATCH_ATTEMPTS).
        self._failed_batches = 0
        #: Partitions stopped because their stored offset lies outside the broker's log, and why.
        self.out_of_range: dict[TopicPartition, str] = {}
        self._range_checked_at = 0.0
        #: Bumped on every rebalance: a batch fetched before it may predate a seek and is dropped.
        self._assignment_epoch = 0
        #: Per partition, records fetched but not applied yet, in offset order (see ``_next_batch``).
        self._buffered: dict[TopicPartition, deque[ConsumerRecord[bytes, bytes]]] = {}
        #: Per partition number, since when (monotonic) its buffered records wait for another
        #: topic's records of the same moment (see ``_take_aligned``).
        self._aligning_since: dict[int, float] = {}
        self._consumer: AIOKafkaConsumer | None = None
        #: Started on the first parked record (see ``_deadletter_producer``).
        self._deadletters: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.records_applied = 0
        self.batches_applied = 0
        self.last_batch_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        options: dict[str, Any] = {"partition_assignment_strategy": (RangePartitionAssignor,)}
        if self._group_instance_id:
            options["group_instance_id"] = self._group_instance_id
        self._consumer = make_consumer(self._settings, group_id=self._group_id, **options)
        for topic in self._topics:  # the series exists (at 0) before anything is parked
            PARKED_RECORDS.labels(self._group_id, topic)
        self._consumer.subscribe(self._topics, listener=_Listener(self))
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume:{self._group_id}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()
        self._consumer = None
        if self._deadletters is not None:
            await self._deadletters.stop()
            self._deadletters = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def assigned_partitions(self) -> set[TopicPartition]:
        return set(self._generations)

    def partition_lags(self) -> dict[TopicPartition, int]:
        """Records behind the high watermark per owned partition (0 until first fetched)."""
        lags: dict[TopicPartition, int] = {}
        if self._consumer is None:
            return lags
        for tp in self._generations:
            highwater = self._consumer.highwater(tp)
            position = self._next_offsets.get(tp, NO_OFFSET)
            if highwater is None or position == NO_OFFSET:
                lags[tp] = 0 if highwater is None else highwater
            else:
                lags[tp] = max(0, highwater - position)
        return lags

    def total_lag(self) -> int:
        return sum(self.partition_lags().values())

    def caught_up(self, max_lag: int) -> bool:
        """Running, every owned partition fetched at least once, and at most ``max_lag`` behind.

        Until a partition's first fetch its high watermark is unknown, so "no lag" would be
        a guess; that counts as not caught up.
        """
        if not self.running or self._consumer is None or self.out_of_range:
            return False
        if any(self._consumer.highwater(tp) is None for tp in self._generations):
            return False
        return self.total_lag() <= max_lag

    # -- rebalance -------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let the batch in flight finish (it holds the lock) before another instance takes over.
        async with self._batch_lock:
            self._assignment_epoch += 1
            self._buffered.clear()
            self._aligning_since.clear()
            for tp in revoked:
                self._forget(tp)
                self._next_offsets.pop(tp, None)
                self._fenced_at.pop(tp, None)
                if self._lag_gauge is not None:
                    with contextlib.suppress(KeyError):
                        self._lag_gauge.remove(tp.topic, str(tp.partition))

    def _forget(self, tp: TopicPartition) -> None:
        """This instance no longer applies ``tp`` (revoked, or fenced by another instance):
        drop what it tracked about it, so a stale stop or gap check outlives neither."""
        self._generations.pop(tp, None)
        self._buffered.pop(tp, None)
        self._gap_checked.pop(tp, None)
        self.out_of_range.pop(tp, None)
        with contextlib.suppress(KeyError):
            OFFSET_OUT_OF_RANGE.remove(self._group_id, tp.topic, str(tp.partition))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        async with self._batch_lock:
            self._assignment_epoch += 1
            self._buffered.clear()
            self._aligning_since.clear()
            claims = await self._claim_until_done(sorted(assigned))
            for tp, (next_offset, generation) in claims.items():
                self._generations[tp] = generation
                self._next_offsets[tp] = next_offset
                self._fenced_at.pop(tp, None)
                await self._rewind(tp)
            if assigned:
                self._consumer.resume(*assigned)
            for tp in assigned:  # a series per owned partition, 0 while its offset is in range
                OFFSET_OUT_OF_RANGE.labels(self._group_id, tp.topic, str(tp.partition)).set(0)
            self._range_checked_at = 0.0  # check the new partitions' offsets before fetching
            log.info(
                "partitions assigned",
                extra={"group": self._group_id, "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)},
            )

    async def _claim(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
        """Take ownership of ``partitions`` in the database; returns (next offset, generation).

        One ``UPDATE .. RETURNING`` per partition, in a fixed order: on PostgreSQL it waits
        for a batch of the previous owner that is still committing and then returns the
        offset that batch stored (a separate read could return the older one).
        """
        table = self._offsets
        claims: dict[TopicPartition, tuple[int, int]] = {}
        async with self._engine.begin() as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            if partitions:
                await connection.execute(
                    dialect.insert(table).on_conflict_do_nothing(),
                    [
                        {
                            "group_id": self._group_id,
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "next_offset": NO_OFFSET,
                            "owner": "",
                            "generation": 0,
                        }
                        for tp in partitions
                    ],
                )
            for tp in partitions:
                row = (
                    await connection.execute(
                        update(table)
                        .where(
                            table.c.group_id == self._group_id,
                            table.c.topic == tp.topic,
                            table.c.partition == tp.partition,
                        )
                        .values(owner=self.instance_id, generation=table.c.generation + 1)
                        .returning(table.c.next_offset, table.c.generation)
                    )
                ).one()
                claims[tp] = (int(row.next_offset), int(row.generation))
        return claims

    async def _claim_until_done(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
        """Claim, retrying on database errors: a partition assigned but not claimed would
        silently never be consumed (the client swallows errors raised in a rebalance callback)."""
        while True:
            try:
                return await self._claim(partitions)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming partitions failed; retrying", extra={"group": self._group_id})
                await asyncio.sleep(self._retry_delay_seconds)

    # -- consuming -------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        #: The next batch, cut while the last one was applied, and the epoch it was cut in.
        ahead: tuple[int, Batch] | None = None
        upkept_at = 0.0
        while not self._stopping:
            if ahead is None:
                # Between batches, so that no fetched batch is in hand when these seek.
                await self._reclaim_abandoned()
                await self._restart_stalled_fetches()
                if time.monotonic() - self._range_checked_at > RANGE_CHECK_SECONDS:
                    await self._check_offset_ranges()
                upkept_at = time.monotonic()
                epoch = self._assignment_epoch
                try:
                    batches = await self._next_batch(consumer, epoch)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("fetch failed; retrying", extra={"group": self._group_id})
                    await asyncio.sleep(self._retry_delay_seconds)
                    continue
            else:
                (epoch, batches), ahead = ahead, None
            if batches:
                fetched_at = time.perf_counter()
                if time.monotonic() - upkept_at < UPKEEP_SECONDS:
                    ahead = await self._cut_ahead(consumer, epoch)
                planning = self._plan(ahead[1], batches) if ahead is not None else None
                preparing = self._prepare_buffered()
                if planning is not None:
                    await asyncio.sleep(0)  # the planning starts before this batch is applied
                applied = 0
                try:
                    applied = await self._apply(batches, epoch)
                finally:
                    await self._finish_preparing(preparing)
                    await self._finish_preparing(planning)
                    if ahead is not None and (not applied or self._stopping):
                        # This batch was not applied (and its partitions rewound): the one
                        # after it must not be either; fetched again, in order.
                        await self._drop_ahead(*ahead)
                        ahead = None
                if applied and self._on_batch_committed is not None:
                    self._on_batch_committed(applied, time.perf_counter() - fetched_at)
            self._export_lag()

    async def _cut_ahead(self, consumer: AIOKafkaConsumer, epoch: int) -> tuple[int, Batch] | None:
        """The next batch, from what is buffered already (never waits), or None."""
        if self._plan_ahead is None or epoch != self._assignment_epoch:
            return None
        owned = [tp for tp in sorted(self._generations) if tp not in self.out_of_range]
        stale = await self._top_up(consumer, owned, epoch)
        if stale is not None:  # a rebalance ran meanwhile: as _apply does with such records
            for tp in stale:
                if tp in self._generations:
                    await self._rewind(tp)
            return None
        following = self._take_aligned(await self._still_to_fetch(consumer, owned))
        if epoch != self._assignment_epoch:
            await self._drop_ahead(self._assignment_epoch, following)
            return None
        return (epoch, following) if following else None

    def _plan(self, following: Batch, current: Batch) -> asyncio.Task[None] | None:
        if self._plan_ahead is None:
            return None
        return asyncio.create_task(self._plan_ahead(batch_records(following), batch_records(current)))

    async def _drop_ahead(self, epoch: int, batch: Batch) -> None:
        """Give back a batch cut ahead that will not be applied: its partitions are fetched
        again from their stored offsets (after a rebalance its seeks did that already)."""
        if epoch != self._assignment_epoch:
            return
        for tp in batch:
            if tp in self._generations:
                await self._rewind(tp)

    def _prepare_buffered(self) -> asyncio.Task[None] | None:
        """Start working ahead on the records still buffered while this batch is applied."""
        if self._prepare_records is None:
            return None
        ahead = [record for records in self._buffered.values() for record in records]
        return asyncio.create_task(self._prepare_records(ahead)) if ahead else None

    async def _finish_preparing(self, preparing: asyncio.Task[None] | None) -> None:
        if preparing is None:
            return
        if self._stopping:
            preparing.cancel()
        try:
            await preparing
        except asyncio.CancelledError:
            if not preparing.cancelled():
                raise
        except Exception:  # only an optimisation: the batch decodes its records itself
            log.exception("preparing records ahead failed", extra={"group": self._group_id})

    async def _next_batch(
        self, consumer: AIOKafkaConsumer, epoch: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """The next batch: buffered records of every partition group, cut at a common time.

        Each owned partition's buffer is topped up to its share of two batches from what
        the client has already fetched (no waiting); only when no group has anything to
        take does this wait for the broker (up to the poll timeout), and if even then the
        groups are not aligned the oldest records are taken as they are: progress first.
        Records fetched across a rebalance are never buffered: the callbacks have re-sought
        every owned partition to its stored offset, so they are fetched again.
        """
        owned = [tp for tp in sorted(self._generations) if tp not in self.out_of_range]
        stale = await self._top_up(consumer, owned, epoch)
        if stale is not None:
            return stale
        batch = self._take_aligned(await self._still_to_fetch(consumer, owned))
        if not batch:
            waited: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
                timeout_ms=self._poll_timeout_ms, max_records=self._max_batch_records
            )
            if epoch != self._assignment_epoch:
                return waited
            for tp, records in waited.items():
                # Revoked or fenced while fetched: dropped, as _apply drops them (a reclaim rewinds).
                if tp in self._generations:
                    self._buffered.setdefault(tp, deque()).extend(records)
            batch = self._take_aligned(await self._still_to_fetch(consumer, owned)) or self._take_aligned(set())
        # Refill now, so that the records prepared while this batch is applied cover the next one.
        stale = await self._top_up(consumer, owned, epoch)
        if stale is not None:
            return {**stale, **batch}
        return batch

    async def _top_up(
        self, consumer: AIOKafkaConsumer, owned: Sequence[TopicPartition], epoch: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] | None:
        """Fill each owned partition's buffer up to its share of two batches from what the
        client has fetched already (never waits). Returns the records fetched after a
        rebalance instead of buffering them (``_apply``'s epoch check rewinds their partitions)."""
        share = max(1, 2 * self._max_batch_records // max(1, len(owned)))
        assignment = consumer.assignment()
        for tp in owned:
            buffer = self._buffered.setdefault(tp, deque())
            if len(buffer) < share and tp in assignment:
                fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
                    tp, timeout_ms=0, max_records=share - len(buffer)
                )
                if epoch != self._assignment_epoch:
                    return fetched
                buffer.extend(fetched.get(tp, ()))
        return None

    @staticmethod
    async def _still_to_fetch(consumer: AIOKafkaConsumer, owned: Sequence[TopicPartition]) -> set[TopicPartition]:
        """Owned partitions whose fetch position is behind the end of what can be fetched:
        records of theirs exist that are not buffered yet. The end is the last stable offset
        (the consumer reads committed records only: an open producer transaction's records
        cannot be fetched yet, and must not hold the other topics back), else the high
        watermark. The fetch position, not the last record's offset, so that transaction
        markers at a log's end do not count as records to come."""
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

    def _take_aligned(
        self, still_to_fetch: set[TopicPartition]
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Up to ``max_batch_records`` buffered records, a prefix of each partition's buffer.

        Partitions with the same number form a group (the inputs are co-partitioned: one
        key's records on every topic are in one group). A group's records are taken up to a
        cut-off time no later than the newest buffered record of each of its partitions in
        ``still_to_fetch``, so a record is not applied while the records of the same moment
        on the group's other topics are still to be fetched; a group with such a partition
        and nothing buffered for it waits (an empty ``still_to_fetch`` waits for nothing).
        Record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime);
        either way only the grouping depends on them. Grouping decides only which batch a
        record lands in, never whether it is applied.
        """
        groups: dict[int, list[TopicPartition]] = {}
        for tp in self._buffered:
            groups.setdefault(tp.partition, []).append(tp)
        room = self._max_batch_records
        taken: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for partition in sorted(groups, key=lambda number: (number - self.batches_applied) % (len(groups) or 1)):
            if room <= 0:
                break
            members = sorted(groups[partition])
            if not any(self._buffered[tp] for tp in members):
                self._aligning_since.pop(partition, None)
                continue
            cutoff: int | None = None
            for tp in members:
                buffer = self._buffered[tp]
                if tp in still_to_fetch:
                    if not buffer:
                        cutoff = -1
                        break
                    newest = buffer[-1].timestamp
                    cutoff = newest if cutoff is None else min(cutoff, newest)
            if cutoff == -1:
                # Waiting keeps one batch's parcels together; it must never hold records up
                # for long (a partition whose fetches stall until the watchdog re-fetches it).
                since = self._aligning_since.setdefault(partition, time.monotonic())
                if time.monotonic() - since < ALIGN_WAIT_SECONDS:
                    continue
                cutoff = None
            self._aligning_since.pop(partition, None)
            stamps = sorted(
                record.timestamp
                for tp in members
                for record in self._buffered[tp]
                if cutoff is None or record.timestamp <= cutoff
            )
            if not stamps:
                continue
            if len(stamps) > room:
                cutoff = stamps[room - 1]
            for tp in members:
                buffer = self._buffered[tp]
                prefix: list[ConsumerRecord[bytes, bytes]] = []
                while buffer and room > 0 and (cutoff is None or buffer[0].timestamp <= cutoff):
                    prefix.append(buffer.popleft())
                    room -= 1
                if prefix:
                    taken[tp] = prefix
        if not taken and not still_to_fetch:  # timestamps out of order: take each buffer's head
            for tp, buffer in sorted(self._buffered.items()):
                count = min(len(buffer), room)
                if count > 0:
                    taken[tp] = [buffer.popleft() for _ in range(count)]
                    room -= count
        return taken

    async def _rewind(self, tp: TopicPartition) -> None:
        """Fetch ``tp`` again from its stored offset (the next record to apply)."""
        assert self._consumer is not None
        self._buffered.pop(tp, None)  # fetched from the old position: they come again
        position = self._next_offsets.get(tp, NO_OFFSET)
        if position == NO_OFFSET:
            await self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, position)

    async def _contiguous(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> list[ConsumerRecord[bytes, bytes]] | None:
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
        assert self._consumer is not None
        position = self._next_offsets.get(tp, NO_OFFSET)
        fresh = [record for record in records if record.offset >= position]
        if not fresh:
            return fresh
        first = fresh[0].offset
        expected = position
        if position == NO_OFFSET and first > 0:
            expected = (await self._consumer.beginning_offsets([tp]))[tp]
        if first <= max(expected, 0) or self._gap_checked.get(tp) == first:
            if self._gap_checked.pop(tp, None) == first and first > expected:
                log.warning(
                    "offsets missing from the partition; applying from the first one the broker returns",
                    extra={"partition": f"{tp.topic}:{tp.partition}", "stored": position, "first": first},
                )
            return fresh
        log.warning(
            "fetch started past the stored offset; fetching the partition again from the stored offset",
            extra={"partition": f"{tp.topic}:{tp.partition}", "stored": position, "first": first},
        )
        self._gap_checked[tp] = first
        self.gaps_refetched += 1
        await self._rewind(tp)
        return None

    async def _apply(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], epoch: int) -> int:
        """Apply the batch; returns how many records were applied (0 when it was rewound).

        Every path that does not apply a fetched record rewinds its partition to the stored
        offset (or gives the partition up), so no record is ever skipped: the fetch position
        has moved past the records getmany() returned.
        """
        assert self._consumer is not None
        async with self._batch_lock:
            if epoch != self._assignment_epoch:
                # A rebalance ran while this batch was fetched. The records may come from
                # after the rebalance's seek, so dropping them would skip them: rewind every
                # partition still owned to its stored offset so they come again in order.
                for tp in batches:
                    if tp in self._generations:
                        await self._rewind(tp)
                return 0
            owned: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
            for tp, records in batches.items():
                if tp not in self._generations:  # revoked or fenced meanwhile
                    continue
                fresh = await self._contiguous(tp, records)
                if fresh:
                    owned[tp] = fresh
            if not owned:
                return 0
            try:
                await self._apply_in_transaction(owned)
            except Fenced as fenced:
                await self._give_up(fenced, owned)
                return 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("batch failed and was rolled back; retrying", extra={"group": self._group_id})
                # Counted across calls: after a rewind the next fetch may come back empty.
                self._failed_batches = 0 if is_transient(error) else self._failed_batches + 1
                failed = True
                if self._failed_batches >= BATCH_ATTEMPTS:
                    # A record that can never be applied must not stop its partition, nor the
                    # others: one partition, then one record at a time, parking what still fails.
                    try:
                        await self._apply_isolating(owned)
                        self._failed_batches = 0
                        failed = False
                    except asyncio.CancelledError:
                        raise
                    except Fenced as fenced:  # another instance took a partition meanwhile
                        await self._give_up(fenced, owned)
                        return 0
                    except Exception:
                        log.exception("isolating the bad record failed; retrying", extra={"group": self._group_id})
                if failed:
                    # Nothing (more) was committed: rewind so the same records come again, in order.
                    for tp in owned:
                        await self._rewind(tp)
            else:
                self._failed_batches = 0
                failed = False
        if failed:
            await asyncio.sleep(self._retry_delay_seconds)
            return 0
        await self._commit_to_kafka()
        return sum(len(records) for records in owned.values())

    async def _give_up(self, fenced: Fenced, owned: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Only the fenced partitions are someone else's now: give those up, and rewind the
        others of the rolled-back batch so that they are applied again."""
        assert self._consumer is not None
        log.warning("fenced by another instance; pausing those partitions", extra={"detail": str(fenced)})
        now = time.monotonic()
        for tp in fenced.partitions:
            self._forget(tp)
            self._fenced_at[tp] = now
        self._consumer.pause(*fenced.partitions)
        for tp in owned:
            if tp not in fenced.partitions:
                await self._rewind(tp)

    async def _apply_isolating(self, owned: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """A batch that keeps failing: apply it one partition at a time, and a failing
        partition one record at a time; a record that still fails after RECORD_ATTEMPTS
        tries is parked so the rest of its partition, and every other partition, go on.
        Transient failures and fences propagate (the caller retries; nothing is parked)."""
        for tp, records in sorted(owned.items()):
            try:
                await self._apply_in_transaction({tp: records})
                continue
            except Fenced:
                raise
            except Exception as error:
                if is_transient(error):
                    raise
            for record in records:
                if record.offset < self._next_offsets.get(tp, NO_OFFSET):
                    continue
                last_error: Exception | None = None
                for _ in range(RECORD_ATTEMPTS):
                    try:
                        await self._apply_in_transaction({tp: [record]})
                        last_error = None
                        break
                    except Fenced:
                        raise
                    except Exception as error:
                        if is_transient(error):
                            raise
                        last_error = error
                if last_error is not None:
                    await self._park(tp, record, last_error)

    async def _deadletter_producer(self) -> AIOKafkaProducer:
        """One producer for the instance's dead letters, started (and the topic made sure of,
        sized like the ingest's) on the first parked record."""
        if self._deadletters is None:
            await ensure_topics(self._settings, [deadletter_spec()])
            producer = make_producer(self._settings)
            await producer.start()
            self._deadletters = producer
        return self._deadletters

    async def _park(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        """Dead-letter one record (raw bytes, for replay after a fix), then move past it.
        The dead letter is acknowledged before the offset moves: never skipped silently."""
        reason = f"{self._group_id} could not apply {tp.topic}:{tp.partition}@{record.offset}: {type(error).__name__}"
        letter = DeadLetter(
            origin=self._group_id,
            reason=f"{reason}: {str(error)[:500]}",
            raw_base64=base64.b64encode(record.value or b"").decode("ascii"),
            content_type="application/octet-stream",
            received_at=datetime.now(UTC),
            headers={"topic": tp.topic, "partition": str(tp.partition), "offset": str(record.offset)},
        )
        producer = await self._deadletter_producer()
        await producer.send_and_wait(DEADLETTER, DEADLETTER_CODEC.encode(letter), key=self._group_id.encode())
        await self._apply_in_transaction({tp: [record]}, apply=False)
        PARKED_RECORDS.labels(self._group_id, tp.topic).inc()
        log.error(
            "record parked on the dead-letter topic after repeated failures",
            extra={
                "group": self._group_id,
                "partition": f"{tp.topic}:{tp.partition}",
                "offset": record.offset,
                "error": type(error).__name__,
            },
        )

    async def _apply_in_transaction(
        self, owned: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], apply: bool = True
    ) -> None:
        table = self._offsets
        records = batch_records(owned)
        new_offsets = {tp: partition_records[-1].offset + 1 for tp, partition_records in owned.items()}
        async with self._engine.begin() as connection:
            if apply:
                await self._apply_batch(connection, records)
            # Same row order as claims, so a claim and a batch never deadlock each other.
            fenced: list[TopicPartition] = []
            for tp, next_offset in sorted(new_offsets.items()):
                result = await connection.execute(
                    update(table)
                    .where(
                        and_(
                            table.c.group_id == self._group_id,
                            table.c.topic == tp.topic,
                            table.c.partition == tp.partition,
                            table.c.owner == self.instance_id,
                            table.c.generation == self._generations[tp],
                        )
                    )
                    .values(next_offset=next_offset)
                )
                if result.rowcount != 1:
                    fenced.append(tp)
            if fenced:
                raise Fenced(fenced)
        self._next_offsets.update(new_offsets)
        self.records_applied += len(records)
        self.batches_applied += 1
        self.last_batch_at = time.time()

    async def _check_offset_ranges(self) -> None:
        """Compare each owned partition's stored offset with the broker's log (after every
        assignment, then every RANGE_CHECK_SECONDS; the client's own reset to the earliest
        offset is harmless meanwhile: records below the stored offset are dropped, never
        applied, and the check stops the partition before it is read further): beyond its
        end (the broker lost records: restarted empty, unclean leader election, topic
        re-created) or below its start (retention passed a stopped consumer), the
        partition is stopped, counted in ``vtr_consumer_offset_out_of_range`` and logged
        with the command that moves the offset deliberately. Never skipped silently.
        A stopped partition whose stored offset was moved (the ``offsets reset`` command)
        back into range resumes from there."""
        assert self._consumer is not None
        self._range_checked_at = time.monotonic()
        partitions = [tp for tp in self._generations if self._next_offsets.get(tp, NO_OFFSET) != NO_OFFSET]
        partitions += [tp for tp in self.out_of_range if tp not in partitions]
        if not partitions:
            return
        try:
            async with self._batch_lock:
                await self._reload_stopped_offsets()
                starts = await self._consumer.beginning_offsets(partitions)
                for tp in partitions:
                    if tp not in self._generations:
                        continue
                    stored = self._next_offsets.get(tp, NO_OFFSET)
                    # The log end as the last fetch response told it (ListOffsets is not
                    # trusted for the end: the local broker answers a batch's base offset).
                    # Until this partition was fetched once, its end is not judged.
                    start, end = starts.get(tp), self._consumer.highwater(tp)
                    if stored == NO_OFFSET or start is None:
                        continue
                    if end is None:
                        self._range_checked_at = time.monotonic() - RANGE_CHECK_SECONDS + 1.0
                        end = stored
                    if stored > end:
                        self._stop_partition(tp, f"stored offset {stored} is beyond the log end {end}")
                    elif stored < start:
                        self._stop_partition(tp, f"stored offset {stored} is below the log start {start}")
                    elif tp in self.out_of_range:
                        self._resume_partition(tp, stored)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the broker is away: the next check tries again
            log.warning("offset range check failed", extra={"group": self._group_id, "error": type(error).__name__})

    async def _reload_stopped_offsets(self) -> None:
        """Stopped partitions: the operator may have moved the stored offset meanwhile."""
        stopped = list(self.out_of_range)
        if not stopped:
            return
        table = self._offsets
        async with self._engine.connect() as connection:
            for tp in stopped:
                row = (
                    await connection.execute(
                        select(table.c.next_offset).where(
                            table.c.group_id == self._group_id,
                            table.c.topic == tp.topic,
                            table.c.partition == tp.partition,
                        )
                    )
                ).first()
                if row is not None and tp in self._generations:
                    self._next_offsets[tp] = int(row.next_offset)

    def _stop_partition(self, tp: TopicPartition, reason: str) -> None:
        assert self._consumer is not None
        self._consumer.pause(tp)
        self._buffered.pop(tp, None)
        first = tp not in self.out_of_range
        self.out_of_range[tp] = reason
        OFFSET_OUT_OF_RANGE.labels(self._group_id, tp.topic, str(tp.partition)).set(1)
        if first:
            service = self._settings.service_name
            log.error(
                "partition stopped: its stored offset is outside the broker's log; records may have been lost "
                "or not yet applied. Decide where to resume and move the offset deliberately",
                extra={
                    "group": self._group_id,
                    "partition": f"{tp.topic}:{tp.partition}",
                    "reason": reason,
                    "run": f"python -m services.{service} offsets reset --to earliest|latest|<ISO time> "
                    f"--partition {tp.topic}:{tp.partition}",
                },
            )

    def _resume_partition(self, tp: TopicPartition, stored: int) -> None:
        assert self._consumer is not None
        del self.out_of_range[tp]
        OFFSET_OUT_OF_RANGE.labels(self._group_id, tp.topic, str(tp.partition)).set(0)
        self._buffered.pop(tp, None)
        self._consumer.seek(tp, stored)
        self._consumer.resume(tp)
        log.warning(
            "partition resumed from its moved offset",
            extra={"group": self._group_id, "partition": f"{tp.topic}:{tp.partition}", "offset": stored},
        )

    async def _restart_stalled_fetches(self) -> None:
        """Re-seek a partition that is behind but has not moved for ``STALL_SECONDS``.

        Seen with the local broker after rebalances: an owned, unpaused partition whose
        fetches stopped returning records although its high watermark was ahead. Seeking
        to the stored position restarts its fetch; on a healthy partition this never fires.
        """
        assert self._consumer is not None
        now = time.monotonic()
        lags = self.partition_lags()
        for tp, lag in lags.items():
            if tp in self.out_of_range:
                continue
            position = self._next_offsets.get(tp, NO_OFFSET)
            last_position, since = self._progress.get(tp, (position, now))
            if lag == 0 or position != last_position:
                self._progress[tp] = (position, now)
            elif now - since > STALL_SECONDS:
                log.warning(
                    "partition stalled; fetching it again from its stored offset",
                    extra={"partition": f"{tp.topic}:{tp.partition}", "lag": lag},
                )
                self._consumer.resume(tp)
                await self._rewind(tp)
                self._progress[tp] = (position, now)
        for tp in set(self._progress) - set(lags):
            del self._progress[tp]

    async def _reclaim_abandoned(self) -> None:
        """Claim again a partition given up after a fence that the group still lists as ours.

        A fence means another instance claimed the partition after this one. Normally the
        group tells this instance within a heartbeat that the partition is gone (on Apache
        Kafka the other instance cannot even be assigned it before this one has rejoined).
        But if no rebalance reaches this instance for ``reclaim_after_seconds`` (default
        twice the session timeout), nobody may be consuming the partition at all (a claim by
        an instance that has since lost the partition, or a broker that handed it to two
        members and then settled on this one without telling it again): claim it again.
        Fencing keeps this safe if the other instance does own it (at worst the two take
        turns until the group settles).
        """
        if not self._fenced_at:
            return
        assert self._consumer is not None
        due_after = self.reclaim_after_seconds
        now = time.monotonic()
        if all(now - fenced_at < due_after for fenced_at in self._fenced_at.values()):
            return
        async with self._batch_lock:
            assignment = self._consumer.assignment()
            for tp in [tp for tp in self._fenced_at if tp not in assignment]:
                del self._fenced_at[tp]
            due = sorted(tp for tp, fenced_at in self._fenced_at.items() if now - fenced_at >= due_after)
            if not due:
                return
            claims = await self._claim_until_done(due)
            for tp, (next_offset, generation) in claims.items():
                self._generations[tp] = generation
                self._next_offsets[tp] = next_offset
                del self._fenced_at[tp]
                await self._rewind(tp)
            self._consumer.resume(*due)
            self.partitions_reclaimed += len(due)
            log.warning(
                "partitions given up after a fence are still assigned to this instance; claimed them again",
                extra={"group": self._group_id, "partitions": [f"{tp.topic}:{tp.partition}" for tp in due]},
            )

    async def _commit_to_kafka(self) -> None:
        """Advisory: the database is the source of truth; this only feeds lag tools."""
        assert self._consumer is not None
        offsets = {
            tp: OffsetAndMetadata(offset, "")
            for tp, offset in self._next_offsets.items()
            if offset != NO_OFFSET and tp in self._generations
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as error:  # a rebalance in progress or a broker hiccup; next batch retries
            log.debug("advisory Kafka commit failed", extra={"error": repr(error)})

    def _export_lag(self) -> None:
        if self._lag_gauge is None:
            return
        for tp, lag in self.partition_lags().items():
            self._lag_gauge.labels(tp.topic, str(tp.partition)).set(lag)
