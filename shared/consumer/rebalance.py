"""Ownership changes: the group assigning and revoking partitions (claims in the
database on assignment), and this instance giving up partitions another instance fenced.

Partition assignment uses the *range* assignor: the inputs are co-partitioned (same
key, same partition count), so partition *i* of every subscribed topic goes to the same
instance.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from prometheus_client import Gauge

from shared.consumer.context import ConsumerContext
from shared.consumer.offsets import Fenced
from shared.consumer.upkeep import Upkeep, range_series_in_range, remove_range_series

log = logging.getLogger(__name__)


class Rebalance:
    def __init__(self, context: ConsumerContext, upkeep: Upkeep, lag_gauge: Gauge | None) -> None:
        self._context = context
        self._upkeep = upkeep
        self._lag_gauge = lag_gauge

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        context = self._context
        # Let the batch in flight finish (it holds the lock) before another instance takes over.
        async with context.batch_lock:
            context.new_epoch()
            for tp in revoked:
                self._forget(tp)
                context.partitions.drop(tp)
                if self._lag_gauge is not None:
                    with contextlib.suppress(KeyError):
                        self._lag_gauge.remove(tp.topic, str(tp.partition))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        context = self._context
        async with context.batch_lock:
            context.new_epoch()
            await context.claim(sorted(assigned))
            if assigned:
                context.client.resume(*assigned)
            for tp in assigned:
                range_series_in_range(context.group_id, tp)
            self._upkeep.check_ranges_soon()
            log.info(
                "partitions assigned",
                extra={
                    "group": context.group_id,
                    "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
                },
            )

    async def give_up(self, fenced: Fenced, rolled_back: Iterable[TopicPartition]) -> None:
        """Only the fenced partitions are someone else's now: give those up (paused until
        the group hands them back, or ``upkeep`` claims them back), and rewind the others
        of the rolled-back batch so that they are applied again."""
        context = self._context
        log.warning("fenced by another instance; pausing those partitions", extra={"detail": str(fenced)})
        now = time.monotonic()
        for tp in fenced.partitions:
            self._forget(tp)
            context.partitions.fenced(tp, now)
        context.client.pause(*fenced.partitions)
        for tp in rolled_back:
            if tp not in fenced.partitions:
                await context.rewind(tp)

    def _forget(self, tp: TopicPartition) -> None:
        """This instance no longer applies ``tp``: its buffered records and its
        out-of-range series go (the partition's state is the caller's)."""
        self._context.buffer.drop(tp)
        remove_range_series(self._context.group_id, tp)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, rebalance: Rebalance) -> None:
        self._rebalance = rebalance

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._rebalance.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._rebalance.on_assigned(assigned)
