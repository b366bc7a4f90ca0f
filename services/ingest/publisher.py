"""The Kafka adapter: every accepted record is acknowledged by all in-sync replicas
(acks=all) before the HTTP request gets its 2xx, or the request gets a 503.

A broker that comes back empty (a rebuilt cluster, or the in-memory local broker after a
restart) is repaired: after a failed produce the publisher re-runs the idempotent topic
creation in the background, so the next retry of the carrier succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.ingest.metrics import PRODUCE_LATENCY
from services.ingest.settings import IngestSettings
from shared.kafka import ensure_topics, make_producer
from shared.topics import INPUT_TOPICS, TopicSpec, deadletter_spec

log = logging.getLogger(__name__)

#: Seconds between two background topic repairs while the broker keeps failing.
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
        self._latency = {spec.name: PRODUCE_LATENCY.labels(spec.name) for spec in self._specs}

    async def start(self) -> None:
        await ensure_topics(self._settings, self._specs)
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
                if self._repair is not None and not self._repair.done():
                    # Producing while topics are being re-created could race an empty
                    # broker's auto-creation; let the repair finish first.
                    await asyncio.shield(self._repair)
                pending = [await producer.send(record.topic, record.value, key=record.key) for record in records]
                await asyncio.gather(*pending)
        except (TimeoutError, KafkaError) as error:
            self._schedule_repair()
            raise BrokerUnavailable(type(error).__name__) from error
        elapsed = time.perf_counter() - started
        for topic in {record.topic for record in records}:
            self._latency[topic].observe(elapsed)

    def _schedule_repair(self) -> None:
        now = time.monotonic()
        if (self._repair is not None and not self._repair.done()) or now - self._last_repair < REPAIR_INTERVAL_SECONDS:
            return
        self._last_repair = now
        self._repair = asyncio.create_task(self._repair_topics())

    async def _repair_topics(self) -> None:
        try:
            await asyncio.wait_for(ensure_topics(self._settings, self._specs), timeout=10)
        except Exception as error:  # the broker is still away; the next failure tries again
            log.info("topic repair failed", extra={"error": type(error).__name__})
