"""What the consumer's parts share: the Kafka client, the partitions' states, the
buffer, the batch lock, the assignment epoch and the counters; and the two moves every
part makes: claiming partitions and rewinding one to its stored offset."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.consumer.buffer import BatchBuffer
from shared.consumer.offsets import NO_OFFSET, OffsetsStore
from shared.consumer.partition import Partitions
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Counters:
    records_applied: int = 0
    batches_applied: int = 0
    #: Wall-clock time of the last committed batch.
    last_batch_at: float | None = None
    #: Fetches that started past the stored offset and were fetched again.
    gaps_refetched: int = 0
    #: Partitions claimed back after a fence (see ``upkeep.Upkeep.reclaim_abandoned``).
    partitions_reclaimed: int = 0


class ConsumerContext:
    def __init__(
        self,
        *,
        settings: ServiceSettings,
        store: OffsetsStore,
        instance_id: str,
        max_batch_records: int,
        retry_delay_seconds: float,
    ) -> None:
        self.settings = settings
        self.store = store
        self.group_id = store.group_id
        #: Unique per process, so a restarted instance never mistakes an old claim for its own.
        self.instance_id = instance_id
        self.retry_delay_seconds = retry_delay_seconds
        self.partitions = Partitions()
        self.buffer = BatchBuffer(max_batch_records)
        self.counters = Counters()
        #: Held while a batch is applied, a rebalance handled or partitions sought by upkeep.
        self.batch_lock = asyncio.Lock()
        #: Bumped on every rebalance: a batch fetched before it may predate a seek and is dropped.
        self.epoch = 0
        self.kafka: AIOKafkaConsumer | None = None

    @property
    def client(self) -> AIOKafkaConsumer:
        assert self.kafka is not None, "the consumer is not started"
        return self.kafka

    def new_epoch(self) -> None:
        """A rebalance: every buffered record may predate its partition's seek."""
        self.epoch += 1
        self.buffer.clear()

    def lags(self) -> dict[TopicPartition, int]:
        """Records behind the high watermark per owned partition (0 until first fetched)."""
        lags: dict[TopicPartition, int] = {}
        if self.kafka is None:
            return lags
        for tp in self.partitions.owned():
            highwater = self.kafka.highwater(tp)
            position = self.partitions.position(tp)
            if highwater is None or position == NO_OFFSET:
                lags[tp] = 0 if highwater is None else highwater
            else:
                lags[tp] = max(0, highwater - position)
        return lags

    async def rewind(self, tp: TopicPartition) -> None:
        """Fetch ``tp`` again from its stored offset (the next record to apply)."""
        self.buffer.drop(tp)  # fetched from the old position: they come again
        position = self.partitions.position(tp)
        if position == NO_OFFSET:
            await self.client.seek_to_beginning(tp)
        else:
            self.client.seek(tp, position)

    async def claim(self, partitions: Sequence[TopicPartition]) -> None:
        """Claim ``partitions`` in the database and fetch each from its stored offset.

        Retries on database errors: a partition assigned but not claimed would silently
        never be consumed (the client swallows errors raised in a rebalance callback)."""
        while True:
            try:
                claims = await self.store.claim(partitions, self.instance_id)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming partitions failed; retrying", extra={"group": self.group_id})
                await asyncio.sleep(self.retry_delay_seconds)
        for tp, (next_offset, generation) in claims.items():
            self.partitions.claimed(tp, next_offset, generation)
            await self.rewind(tp)
