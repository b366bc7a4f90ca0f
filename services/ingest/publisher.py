"""The Kafka adapter: every accepted record is acknowledged by all in-sync replicas
(acks=all) before the HTTP request gets its 2xx, or the request gets a 503.

Records are appended straight into the producer's record batches (one open batch per
partition, shared by every request in flight) instead of going through ``send()`` one by
one: ``send()`` costs a coroutine, a metadata check, a partitioner call and a future per
record, which was most of the ingest's CPU time on 100-event pushes. Each request then
waits for the delivery of the few batches its records went into; a batch is acknowledged
as a whole (acks=all), so every record of the request is on Kafka when they resolve.

A broker that comes back empty (a rebuilt cluster, or the in-memory local broker after a
restart) is repaired: after a failed produce, the next produce first re-runs the
idempotent topic creation, so records only ever go to topics known to exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition

from services.ingest.metrics import PRODUCE_LATENCY
from services.ingest.settings import IngestSettings
from shared.kafka import ensure_topics, make_producer
from shared.topics import AMAZON_STATE_TOPIC, AMAZON_VTR_TOPIC, INPUT_TOPICS, TopicSpec, deadletter_spec

log = logging.getLogger(__name__)

#: First and longest wait between connection attempts while the broker is down at start-up.
CONNECT_BACKOFF_SECONDS = (0.5, 30.0)
#: Seconds between two topic checks while the broker keeps failing.
REPAIR_INTERVAL_SECONDS = 1.0
#: No linger: the producer keeps one request in flight per broker, and records that arrive
#: meanwhile join the open batches, so batches fill under load without waiting on a timer.
#: A linger only added its delay to every request's acknowledgement (and, with batches
#: lingering out of step per partition, split one round trip into several).
LINGER_MS = 0
_MURMUR_SEED = 0x9747B28C
_MURMUR_M = 0x5BD1E995
_U32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as aiokafka's
    default partitioner computes it, with the 4-byte words read in one unpack instead of
    byte by byte (a third of the cost per key; equality is tested)."""
    length = len(data)
    m = _MURMUR_M
    h = _MURMUR_SEED ^ length
    whole = length & ~3
    for word in struct.unpack_from(f"<{length >> 2}I", data):
        k = (word * m) & _U32
        k = ((k ^ (k >> 24)) * m) & _U32
        h = ((h * m) & _U32) ^ k
    extra = length & 3
    if extra:
        if extra >= 3:
            h ^= data[whole + 2] << 16
        if extra >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * m) & _U32
    h = ((h ^ (h >> 13)) * m) & _U32
    return h ^ (h >> 15)


def key_partition(key: bytes, partitions: Sequence[int]) -> int:
    """The partition aiokafka's default partitioner picks for ``key`` (partitions sorted)."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


#: Room for the record envelope on top of the largest dead-letter value.
_REQUEST_OVERHEAD_BYTES = 64 * 1024


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes


class BrokerUnavailable(Exception):
    """The broker did not acknowledge every record within the deadline."""


class _Waiter:
    """One ``publish()`` call waiting for the batches its records went into."""

    __slots__ = ("future", "remaining")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.remaining = 0


class _OpenBatch:
    """A record batch of one partition that still takes records, its delivery, and the
    calls waiting for it. Each waiter has a future of its own, settled when the delivery
    ends: a caller that stops waiting (deadline, cancellation) cancels only its own
    future, never the batch other requests share. (One future per call settled from a
    list costs a third of what an ``asyncio.shield()`` per call did.)"""

    __slots__ = ("builder", "delivery", "waiters")

    def __init__(self, builder: BatchBuilder) -> None:
        self.builder = builder
        self.waiters: list[_Waiter] = []
        self.delivery: asyncio.Task[None] | None = None

    def settle(self, delivery: asyncio.Task[None]) -> None:
        """The delivery's done callback: every waiter learns the outcome."""
        # Retrieved here even when every waiter has given up, so no stray "exception never
        # retrieved" log: the failure already reached them as BrokerUnavailable.
        error: BaseException | None = (
            KafkaError("batch delivery cancelled") if delivery.cancelled() else delivery.exception()
        )
        for waiter in self.waiters:
            future = waiter.future
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
                continue
            waiter.remaining -= 1
            if not waiter.remaining:
                future.set_result(None)
        self.waiters = []


def topic_specs(settings: IngestSettings) -> tuple[TopicSpec, ...]:
    # The dead-letter topic stays last: the producer's largest request is sized from it.
    return (*INPUT_TOPICS, AMAZON_VTR_TOPIC, AMAZON_STATE_TOPIC, deadletter_spec(settings.largest_body_bytes()))


class Publisher:
    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self._specs = topic_specs(settings)
        self._deadline = settings.produce_deadline_seconds
        self._producer: AIOKafkaProducer | None = None
        self._repair: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._last_repair = 0.0
        self._topics_verified = False
        #: topic -> its partition ids, sorted; forgotten after a failure (topics may be re-created).
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[TopicPartition, _OpenBatch] = {}
        self._latency = {spec.name: PRODUCE_LATENCY.labels(spec.name) for spec in self._specs}

    @property
    def connected(self) -> bool:
        """Whether the producer is up (the readiness check reports it)."""
        return self._producer is not None

    async def start(self) -> None:
        """Connect now if the broker answers; otherwise keep trying in the background with
        backoff while requests get 503 + Retry-After and ``/readyz`` says not ready (the
        process no longer exits and relies on a restart)."""
        try:
            await self._connect()
        except Exception as error:
            log.warning(
                "broker unreachable at start-up; retrying in the background",
                extra={"error": type(error).__name__, "bootstrap": self._settings.kafka_bootstrap},
            )
            self._connecting = asyncio.create_task(self._connect_with_backoff(), name="ingest-connect")

    async def _connect(self) -> None:
        await ensure_topics(self._settings, self._specs)
        self._topics_verified = True
        largest_value = int(self._specs[-1].config["max.message.bytes"])
        producer = make_producer(
            self._settings, max_request_size=largest_value + _REQUEST_OVERHEAD_BYTES, linger_ms=LINGER_MS
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def _connect_with_backoff(self) -> None:
        delay = CONNECT_BACKOFF_SECONDS[0]
        while True:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = min(delay * 2, CONNECT_BACKOFF_SECONDS[1])
                log.warning("broker still unreachable", extra={"error": type(error).__name__, "retry_in": delay})
                continue
            log.info("connected to the broker", extra={"bootstrap": self._settings.kafka_bootstrap})
            return

    async def stop(self) -> None:
        """Flush what is buffered, then close (called after in-flight requests drained)."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
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
        waiter = _Waiter(asyncio.get_running_loop().create_future())
        try:
            partition_of = self._known_partitions(records)
            checked = False
            if partition_of is None or not self._topics_verified:
                checked = True
                async with asyncio.timeout(self._deadline):
                    if not self._topics_verified:
                        await self._await_repair()
                    partition_of = await self._partitioner(producer, records)
            for record in records:
                batch = self._append(producer, record, partition_of[record.topic, record.key])
                waiters = batch.waiters
                # The waiter joins each batch once. Nothing else runs during this loop, so
                # a batch it already joined still has it last.
                if not waiters or waiters[-1] is not waiter:
                    waiters.append(waiter)
                    waiter.remaining += 1
            if not waiter.remaining:
                return
            if checked:
                # The checks used part of this request's deadline: wait only for the rest
                # (this call's own future: the batches go on for the others).
                remaining = self._deadline - (time.perf_counter() - started)
                await asyncio.wait_for(waiter.future, remaining)
            else:
                # Every batch enforces the deadline itself (one timer per batch instead of
                # one per request).
                await waiter.future
        except (TimeoutError, KafkaError) as error:
            # After any failure the topics are checked again before the next record goes
            # out: a broker that lost its state must not silently take records for topics
            # it no longer has (or auto-create them with the wrong partition count).
            self._topics_verified = False
            self._partitions.clear()
            self._open.clear()
            raise BrokerUnavailable(type(error).__name__) from error
        elapsed = time.perf_counter() - started
        for topic in {record.topic for record in records}:
            self._latency[topic].observe(elapsed)

    def _append(self, producer: AIOKafkaProducer, record: Record, partition: int) -> _OpenBatch:
        """Add ``record`` to its partition's open batch (a new one when there is none, it
        is full, or the sender took it) and return that batch."""
        partition_key = TopicPartition(record.topic, partition)
        current = self._open.get(partition_key)
        if (
            current is not None
            and current.delivery is not None
            and not current.delivery.done()
            and current.builder.append(timestamp=None, key=record.key, value=record.value) is not None
        ):
            return current
        builder = producer.create_batch()
        # An empty batch takes any first record, even one larger than the batch size.
        builder.append(timestamp=None, key=record.key, value=record.value)
        batch = _OpenBatch(builder)
        delivery = asyncio.ensure_future(self._deliver(producer, builder, partition_key))
        delivery.add_done_callback(batch.settle)
        batch.delivery = delivery
        self._open[partition_key] = batch
        return batch

    async def _deliver(self, producer: AIOKafkaProducer, builder: BatchBuilder, partition_key: TopicPartition) -> None:
        # Queued while still open: records appended until the sender drains it go out with
        # it, when the producer's one request in flight per broker comes back. A record
        # that joins later waits less than the deadline, never more.
        async with asyncio.timeout(self._deadline):
            acknowledged = await producer.send_batch(builder, partition_key.topic, partition=partition_key.partition)
            await acknowledged

    def _known_partitions(self, records: Sequence[Record]) -> dict[tuple[str, bytes], int] | None:
        """The partition of each (topic, key), chosen exactly as the default partitioner
        does (murmur2), but once per key instead of once per record (a push's events
        usually share one tracking number); None when a topic's partitions are not known."""
        chosen: dict[tuple[str, bytes], int] = {}
        for record in records:
            if (record.topic, record.key) in chosen:
                continue
            partitions = self._partitions.get(record.topic)
            if partitions is None:
                return None
            chosen[record.topic, record.key] = key_partition(record.key, partitions)
        return chosen

    async def _partitioner(self, producer: AIOKafkaProducer, records: Sequence[Record]) -> dict[tuple[str, bytes], int]:
        """:meth:`_known_partitions`, after asking the producer for the partitions it lacks."""
        for topic in {record.topic for record in records} - self._partitions.keys():
            self._partitions[topic] = sorted(await producer.partitions_for(topic))
        chosen = self._known_partitions(records)
        assert chosen is not None  # every topic's partitions are known now
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
