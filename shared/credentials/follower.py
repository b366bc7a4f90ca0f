"""Keeps a :class:`CredentialRegistry` current: reads the compacted credentials topic from
its beginning at start-up, then follows it, so an issued or revoked key takes effect in
every instance of every service within about a second, without a restart and without any
call on the request path. Also reports, every ``VTR_CREDENTIAL_USAGE_FLUSH_SECONDS``, when
this instance last saw each key (the ``last_used_at`` the CLI lists).

The instance reads without a consumer group (every instance needs every record), so it
needs Read on the topic and nothing else; only the admin principal may write it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.credentials.registry import CredentialRegistry
from shared.credentials.tokens import CREDENTIAL_CODEC, CREDENTIAL_DECODER, CredentialRecord, UsageRecord
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.settings import ServiceSettings
from shared.topics import TopicSpec

log = logging.getLogger(__name__)

#: Compaction keeps the latest record of each key for ever: the topic is the key store.
COMPACTED = {"cleanup.policy": "compact", "retention.ms": "-1"}
#: Seconds between two attempts to (re)connect to the credentials topic.
RETRY_SECONDS = 2.0

RecordHook = Callable[[CredentialRecord], Awaitable[None]]


def credential_topics(settings: ServiceSettings) -> list[TopicSpec]:
    return [TopicSpec(settings.credentials_topic, COMPACTED), TopicSpec(settings.credential_usage_topic, COMPACTED)]


async def read_topic_to_end(
    consumer: AIOKafkaConsumer, topic: str, on_message: Callable[[bytes | None, bytes | None], None]
) -> list[TopicPartition]:
    """Assign every partition of ``topic``, read it from the beginning to the end offsets
    it has now, and return the partitions (the consumer is left positioned after them)."""
    await consumer.topics()  # refreshes the metadata, so the partitions are known
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not partitions:
        raise RuntimeError(f"topic {topic} has no partitions (not created yet?)")
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
        batches = await consumer.getmany(*partitions, timeout_ms=500)
        for messages in batches.values():
            for message in messages:
                on_message(message.key, message.value)
    return partitions


class CredentialFollower:
    def __init__(
        self,
        settings: ServiceSettings,
        registry: CredentialRegistry,
        on_record: RecordHook | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._on_record = on_record
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_hooks: list[CredentialRecord] = []

    @property
    def loaded(self) -> bool:
        return self._registry.loaded

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow_forever(), name="credentials-follower"),
            asyncio.create_task(self._report_usage_forever(), name="credentials-usage"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def ready(self) -> None:
        """Readiness: raises until the topic has been read to its end once."""
        if not self._registry.loaded:
            raise RuntimeError("credentials topic not read to its end yet")

    # -- following ------------------------------------------------------------------------

    def _receive(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key:
                self._registry.forget(key.decode("utf-8", "replace"))
            return
        try:
            record = CREDENTIAL_DECODER.decode(value)
        except msgspec.DecodeError as error:
            log.warning("credentials record skipped: not a credential", extra={"error": str(error)[:200]})
            return
        self._registry.apply(record)
        if self._on_record is not None:
            self._pending_hooks.append(record)

    async def _follow_forever(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    "credentials topic unavailable; retrying",
                    extra={"topic": self._settings.credentials_topic, "error": type(error).__name__},
                )
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        topic = self._settings.credentials_topic
        await ensure_topics(self._settings, credential_topics(self._settings))
        consumer = make_consumer(self._settings, group_id=None, fetch_max_wait_ms=200)
        await consumer.start()
        try:
            partitions = await read_topic_to_end(consumer, topic, self._receive)
            if not self._registry.loaded:
                self._registry.loaded = True
                log.info(
                    "credentials loaded",
                    extra={"keys": len(self._registry.records), "env_keys": self._registry.env_key_count},
                )
            await self._run_hooks()
            while True:
                batches = await consumer.getmany(*partitions, timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        self._receive(message.key, message.value)
                await self._run_hooks()
        finally:
            await consumer.stop()

    async def _run_hooks(self) -> None:
        if self._on_record is None or not self._pending_hooks:
            return
        while self._pending_hooks:
            record = self._pending_hooks[0]
            try:
                await self._on_record(record)
            except Exception as error:
                # Kept and retried on the next round; revocations meanwhile still apply.
                log.warning("credential record hook failed; retrying", extra={"error": type(error).__name__})
                return
            self._pending_hooks.pop(0)

    # -- usage ----------------------------------------------------------------------------

    async def _report_usage_forever(self) -> None:
        producer: AIOKafkaProducer | None = None
        try:
            while True:
                await asyncio.sleep(self._settings.credential_usage_flush_seconds)
                used = self._registry.take_usage()
                if not used:
                    continue
                try:
                    if producer is None:
                        producer = make_producer(self._settings)
                        await producer.start()
                    await self._send_usage(producer, used)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    for key_id, moment in used.items():  # put back: reported next round
                        self._registry.used[key_id] = max(moment, self._registry.used.get(key_id, 0.0))
                    log.warning("key usage not reported; retrying", extra={"error": type(error).__name__})
        finally:
            if producer is not None:
                await producer.stop()

    async def _send_usage(self, producer: AIOKafkaProducer, used: dict[str, float]) -> None:
        service = self._settings.service_name
        sends = [
            await producer.send(
                self._settings.credential_usage_topic,
                key=key_id.encode(),
                value=CREDENTIAL_CODEC.encode(UsageRecord(key_id, datetime.fromtimestamp(moment, UTC), service)),
            )
            for key_id, moment in used.items()
        ]
        await asyncio.gather(*sends)
