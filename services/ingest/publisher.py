"""The Kafka adapter: every accepted record is acknowledged by all in-sync replicas
(acks=all) before the HTTP request gets its 2xx, or the request gets a 503.

A broker that comes back empty (a rebuilt cluster, or the in-memory local broker after a
restart) is repaired: after a failed produce, the next produce first re-runs the
idempotent topic creation, so records only ever go to topics known to exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from services.ingest.metrics import PRODUCE_LATENCY
from services.ingest.settings import IngestSettings
from shared.kafka import ensure_topics, make_producer
from shared.topics import INPUT_TOPICS, TopicSpec, deadletter_spec

log = logging.getLogger(__name__)

#: Seconds between two topic checks while the broker keeps failing.
REPAIR_INTERVAL_SECONDS = 1.0
#: Room for the record envelope on top of the largest dead-letter value.
_REQUEST_OVERHEAD_BYTES = 64 * 1024


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes


class BrokerUnavailable(Exception):
    """The broker did not acknowledge every record within the deadline."""


def topic_specs(settings: IngestSettings) -> tuple[TopicSpec, ...]:
    return (*INPUT_TOPICS, deadletter_spec(settings.largest_body_bytes()))


class Publisher:
    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self._specs = topic_specs(settings)
        self._deadline = settings.produce_deadline_seconds
        self._producer: AIOKafkaProducer | None = None
        self._repair: asyncio.Task[None] | None = None
        self._last_repair = 0.0
        self._topics_verified = False
        #: topic -> its partition ids, sorted; forgotten after a failure (topics may be re-created).
        self._partitions: dict[str, list[int]] = {}
        self._latency = {spec.name: PRODUCE_LATENCY.labels(spec.name) for spec in self._specs}

    async def start(self) -> None:
        await ensure_topics(self._settings, self._specs)
        self._topics_verified = True
        largest_value = int(self._specs[-1].config["max.message.bytes"])
        self._producer = make_producer(self._settings, max_request_size=largest_value + _REQUEST_OVERHEAD_BYTES)
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is buffered, then close (called after in-flight requests drained)."""
        if self._repair is not None:
            self._repair.cancel()
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.flush(), self._deadline)
            except (TimeoutError, KafkaError):
                log.warning("producer flush did not complete before shutdown")
            await self._producer.stop()
            self._producer = None

    async def publish(self, records: Sequence[Record]) -> None:
        """Return once the broker acknowledged every record; raise :class:`BrokerUnavailable`
        if it did not within the deadline (some records may still arrive: consumers dedupe)."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("producer not started")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                if not self._topics_verified:
                    await self._await_repair()
                partition_of = await self._partitioner(producer, records)
                # One send per record joins the partition's open batch; explicit batches
                # per request would queue behind each other (one batch per partition
                # per broker round trip) and starve under load.
                pending = [
                    await producer.send(
                        record.topic, record.value, key=record.key, partition=partition_of[record.topic, record.key]
                    )
                    for record in records
                ]
                await asyncio.gather(*pending)
        except (TimeoutError, KafkaError) as error:
            # After any failure the topics are checked again before the next record goes
            # out: a broker that lost its state must not silently take records for topics
            # it no longer has (or auto-create them with the wrong partition count).
            self._topics_verified = False
            self._partitions.clear()
            raise BrokerUnavailable(type(error).__name__) from error
        elapsed = time.perf_counter() - started
        for topic in {record.topic for record in records}:
            self._latency[topic].observe(elapsed)

    async def _partitioner(self, producer: AIOKafkaProducer, records: Sequence[Record]) -> dict[tuple[str, bytes], int]:
        """The partition of each (topic, key), chosen exactly as the default partitioner
        does (murmur2), but once per key instead of once per record: a push's events
        usually share one tracking number."""
        chosen: dict[tuple[str, bytes], int] = {}
        for record in records:
            if (record.topic, record.key) in chosen:
                continue
            partitions = self._partitions.get(record.topic)
            if partitions is None:
                partitions = self._partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
            chosen[record.topic, record.key] = DefaultPartitioner()(record.key, partitions, partitions)
        return chosen

    async def _await_repair(self) -> None:
        if self._repair is None or self._repair.done():
            if time.monotonic() - self._last_repair < REPAIR_INTERVAL_SECONDS and self._repair is not None:
                raise BrokerUnavailable("topics not verified since the last broker failure")
            self._last_repair = time.monotonic()
            self._repair = asyncio.create_task(self._repair_topics())
        # Shielded: a request that gives up does not cancel the repair others wait for.
        await asyncio.shield(self._repair)
        if not self._topics_verified:
            raise BrokerUnavailable("topics could not be verified")

    async def _repair_topics(self) -> None:
        try:
            await asyncio.wait_for(ensure_topics(self._settings, self._specs), timeout=10)
        except Exception as error:  # the broker is still away; the next request tries again
            log.info("topic check failed", extra={"error": type(error).__name__})
            return
        self._topics_verified = True
