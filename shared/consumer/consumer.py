"""``TransactionalConsumer``: consume topics in batches into a database, exactly once.

Each fetched batch is applied in one transaction that also stores the consumer's offsets
(``commit.py``: the commit order). Fencing: on assignment an instance *claims* each
partition by bumping its generation in the offsets table (``offsets.py``) and remembers
that generation. Every batch updates the offset only ``WHERE owner = me AND generation =
mine``; if another instance has claimed the partition since (a rebalance this instance
has not noticed yet, a long pause), the update matches no row and the whole transaction
rolls back. The partitions are then paused until the group hands them back
(``rebalance.py``), or claimed back if it never does (``upkeep.py``).

Batches are cut by time, not by fetch (``buffer.py``), and the next batch can be cut and
planned while one is in its transaction (``plan_ahead``).

Tests and local runs: the local broker (Tansu) takes about 5 s to form a group and only
hands a dead member's partitions over after ``VTR_KAFKA_SESSION_TIMEOUT_MS``; tests set
it to ~3000 (and ``VTR_KAFKA_HEARTBEAT_INTERVAL_MS`` to ~300) to keep restarts quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from prometheus_client import Gauge
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.consumer.buffer import Batch, Record, batch_records
from shared.consumer.commit import ApplyBatch, Checkpoint
from shared.consumer.context import ConsumerContext
from shared.consumer.fetch import Fetcher
from shared.consumer.offsets import NO_OFFSET, OffsetsStore
from shared.consumer.rebalance import Rebalance
from shared.consumer.upkeep import UPKEEP_SECONDS, Upkeep
from shared.kafka import make_consumer
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

#: Work ahead on records of coming batches (see ``prepare_records``); never applies anything.
PrepareRecords = Callable[[Sequence[Record]], Coroutine[Any, Any, None]]
#: Work ahead on the next batch, cut already, given with the batch being applied meanwhile
#: (see ``plan_ahead``); never applies anything.
PlanAhead = Callable[[Sequence[Record], Sequence[Record]], Coroutine[Any, Any, None]]


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
        self._topics = list(topics)
        self._group_id = group_id
        self._group_instance_id = group_instance_id
        self._lag_gauge = lag_gauge
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
        #: Unique per process, so a restarted instance never mistakes an old claim for its own.
        self.instance_id = f"{group_instance_id or 'member'}-{uuid.uuid4().hex[:12]}"
        self._context = ConsumerContext(
            settings=settings,
            store=OffsetsStore(engine, offsets, group_id),
            instance_id=self.instance_id,
            max_batch_records=max_batch_records,
            retry_delay_seconds=retry_delay_seconds,
        )
        #: Default for reclaiming fenced partitions: twice the session timeout.
        reclaim_after = reclaim_after_seconds
        if reclaim_after is None:
            reclaim_after = 2 * settings.kafka_session_timeout_ms / 1000
        self._upkeep = Upkeep(self._context, reclaim_after)
        self._rebalance = Rebalance(self._context, self._upkeep, lag_gauge)
        self._fetcher = Fetcher(self._context, poll_timeout_ms=poll_timeout_ms, cuts_ahead=plan_ahead is not None)
        self._checkpoint = Checkpoint(self._context, apply_batch, self._fetcher, self._rebalance)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        options: dict[str, Any] = {"partition_assignment_strategy": (RangePartitionAssignor,)}
        if self._group_instance_id:
            options["group_instance_id"] = self._group_instance_id
        consumer = make_consumer(self._settings, group_id=self._group_id, **options)
        self._context.kafka = consumer
        self._checkpoint.failures.open_series(self._topics)
        consumer.subscribe(self._topics, listener=self._rebalance.listener())
        await consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume:{self._group_id}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._context.kafka:
            await self._context.kafka.stop()
        self._context.kafka = None
        await self._checkpoint.failures.stop()

    # -- what it reports -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def kafka_client(self) -> AIOKafkaConsumer | None:
        """The Kafka client while started (its high watermarks, or a fault to simulate)."""
        return self._context.kafka

    @property
    def records_applied(self) -> int:
        return self._context.counters.records_applied

    @property
    def batches_applied(self) -> int:
        return self._context.counters.batches_applied

    @property
    def last_batch_at(self) -> float | None:
        return self._context.counters.last_batch_at

    @property
    def gaps_refetched(self) -> int:
        return self._context.counters.gaps_refetched

    @property
    def partitions_reclaimed(self) -> int:
        return self._context.counters.partitions_reclaimed

    @property
    def reclaim_after_seconds(self) -> float:
        """How long a partition given up after a fence waits before it is claimed back
        while the group still lists it as this instance's (``upkeep.Upkeep.reclaim_abandoned``)."""
        return self._upkeep.reclaim_after_seconds

    @reclaim_after_seconds.setter
    def reclaim_after_seconds(self, seconds: float) -> None:
        self._upkeep.reclaim_after_seconds = seconds

    @property
    def out_of_range(self) -> dict[TopicPartition, str]:
        """Partitions stopped because their stored offset lies outside the broker's log, and why."""
        return self._context.partitions.out_of_range()

    def assigned_partitions(self) -> set[TopicPartition]:
        return set(self._context.partitions.owned())

    def stored_offset(self, tp: TopicPartition) -> int:
        """The next offset of ``tp`` to apply, as this instance last stored it (``NO_OFFSET``: none)."""
        return self._context.partitions.position(tp) if self._context.partitions.owns(tp) else NO_OFFSET

    def partition_lags(self) -> dict[TopicPartition, int]:
        """Records behind the high watermark per owned partition (0 until first fetched)."""
        return self._context.lags()

    def total_lag(self) -> int:
        return sum(self.partition_lags().values())

    def caught_up(self, max_lag: int) -> bool:
        """Running, every owned partition fetched at least once, and at most ``max_lag`` behind.

        Until a partition's first fetch its high watermark is unknown, so "no lag" would be
        a guess; that counts as not caught up.
        """
        consumer = self._context.kafka
        if not self.running or consumer is None or self.out_of_range:
            return False
        if any(consumer.highwater(tp) is None for tp in self._context.partitions.owned()):
            return False
        return self.total_lag() <= max_lag

    # -- consuming -------------------------------------------------------------------

    async def _run(self) -> None:
        #: The next batch, cut while the last one was applied, and the epoch it was cut in.
        ahead: tuple[int, Batch] | None = None
        upkept_at = 0.0
        while not self._stopping:
            if ahead is None:
                # Between batches, so that no fetched batch is in hand when upkeep seeks.
                await self._upkeep.run()
                upkept_at = time.monotonic()
                epoch = self._context.epoch
                try:
                    batch = await self._fetcher.next_batch(epoch)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("fetch failed; retrying", extra={"group": self._group_id})
                    await asyncio.sleep(self._retry_delay_seconds)
                    continue
            else:
                (epoch, batch), ahead = ahead, None
            if batch:
                cut_ahead = time.monotonic() - upkept_at < UPKEEP_SECONDS
                ahead = await self._apply(batch, epoch, cut_ahead)
            self._export_lag()

    async def _apply(self, batch: Batch, epoch: int, cut_ahead: bool) -> tuple[int, Batch] | None:
        """Apply ``batch`` while the buffered records are prepared and (if ``cut_ahead``)
        the next batch is cut and planned; returns that next batch, if it is to be applied."""
        fetched_at = time.perf_counter()
        ahead = await self._fetcher.cut_ahead(epoch) if cut_ahead else None
        planning = self._plan(ahead[1], batch) if ahead is not None else None
        preparing = self._prepare_buffered()
        if planning is not None:
            await asyncio.sleep(0)  # the planning starts before this batch is applied
        applied = 0
        try:
            applied = await self._checkpoint.apply(batch, epoch)
        finally:
            await self._finish_preparing(preparing)
            await self._finish_preparing(planning)
            if ahead is not None and (not applied or self._stopping):
                # This batch was not applied (and its partitions rewound): the one after it
                # must not be either; fetched again, in order.
                await self._fetcher.drop_ahead(*ahead)
                ahead = None
        if applied and self._on_batch_committed is not None:
            self._on_batch_committed(applied, time.perf_counter() - fetched_at)
        return ahead

    def _plan(self, following: Batch, current: Batch) -> asyncio.Task[None] | None:
        if self._plan_ahead is None:
            return None
        return asyncio.create_task(self._plan_ahead(batch_records(following), batch_records(current)))

    def _prepare_buffered(self) -> asyncio.Task[None] | None:
        """Start working ahead on the records still buffered while this batch is applied."""
        if self._prepare_records is None:
            return None
        ahead = self._context.buffer.records()
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

    def _export_lag(self) -> None:
        if self._lag_gauge is None:
            return
        for tp, lag in self.partition_lags().items():
            self._lag_gauge.labels(tp.topic, str(tp.partition)).set(lag)
