"""Kafka helpers: client configuration from settings, producer and consumer factories,
and idempotent topic creation.

Everything here speaks plain Apache Kafka; nothing depends on the local Tansu broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

from shared.settings import ServiceSettings
from shared.topics import TopicSpec

log = logging.getLogger(__name__)

#: Kafka error code for "topic already exists" in a CreateTopics response.
TOPIC_ALREADY_EXISTS = 36


def client_config(settings: ServiceSettings, client_id: str | None = None) -> dict[str, Any]:
    """Connection options shared by producers, consumers and the admin client."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": client_id or f"vtrwatch-{settings.service_name}",
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        config["ssl_context"] = create_ssl_context()
    if settings.kafka_security_protocol.startswith("SASL"):
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def make_producer(settings: ServiceSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that only reports success once every in-sync replica has the record."""
    options: dict[str, Any] = {
        **client_config(settings),
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": int(settings.kafka_produce_timeout_seconds * 1000),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: ServiceSettings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits; callers decide where offsets live."""
    options: dict[str, Any] = {
        **client_config(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def ensure_topics(settings: ServiceSettings, specs: Iterable[TopicSpec]) -> dict[str, int]:
    """Create the topics that are missing; return every topic's partition count.

    Idempotent: topics that exist are left as they are (a differing partition count is
    reported by the caller, never "fixed" here, because repartitioning moves keys).
    """
    specs = list(specs)
    admin = AIOKafkaAdminClient(**client_config(settings, "vtrwatch-admin"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=settings.kafka_topic_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        topic_configs=dict(spec.config),
                    )
                    for spec in missing
                ]
            )
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"could not create topic {name}: Kafka error code {code}")
                if code == 0:
                    log.info("created topic", extra={"topic": name, "partitions": settings.kafka_topic_partitions})
        # Metadata for a topic that was just created can take a moment to propagate.
        for _ in range(50):
            described = await admin.describe_topics([spec.name for spec in specs])
            counts = {topic["topic"]: len(topic["partitions"]) for topic in described if topic["error_code"] == 0}
            if all(counts.get(spec.name) for spec in specs):
                return counts
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topics not visible after creation: {[spec.name for spec in specs]}")
    finally:
        await admin.close()


async def broker_reachable(settings: ServiceSettings, timeout_seconds: float = 2.0) -> None:
    """Raise if the broker cannot be reached; used by readiness checks."""
    admin = AIOKafkaAdminClient(
        **client_config(settings, "vtrwatch-readiness"), request_timeout_ms=int(timeout_seconds * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_seconds)
        await asyncio.wait_for(admin.describe_cluster(), timeout_seconds)
    finally:
        await admin.close()
