"""Factories for the ingest tests: settings, a running app (lifespan included) behind an
httpx client, and a reader of what reached the topics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.kafka import make_consumer
from tools.localstack import TansuBroker

API_KEY = "test-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

SettingsFactory = Callable[..., IngestSettings]


@pytest.fixture(scope="session")
def make_settings(kafka_broker: TansuBroker) -> SettingsFactory:
    def make(**overrides: Any) -> IngestSettings:
        options: dict[str, Any] = {
            "kafka_bootstrap": kafka_broker.bootstrap,
            "api_keys": API_KEY,
            "produce_deadline_seconds": 5.0,
        }
        options.update(overrides)
        return IngestSettings(**options)

    return make


@asynccontextmanager
async def running_ingest(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (topics, producer) and an in-process client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as client:
            yield client


@pytest.fixture(scope="session")
def ingest_settings(make_settings: SettingsFactory) -> IngestSettings:
    return make_settings()


@pytest.fixture(scope="session")
async def ingest(ingest_settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_ingest(ingest_settings) as client:
        yield client


@pytest.fixture(scope="session")
def ingest_factory() -> Callable[[IngestSettings], AbstractAsyncContextManager[httpx.AsyncClient]]:
    return running_ingest


async def read_topic(
    settings: IngestSettings,
    topic: str,
    accept: Callable[[ConsumerRecord[bytes, bytes]], bool],
    expected: int,
    timeout_seconds: float = 10.0,
    settle_seconds: float = 0.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of ``topic`` (from the start) that ``accept`` keeps; waits until at least
    ``expected`` arrived, then ``settle_seconds`` more to catch extra ones."""
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_seconds
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(record for record in records if accept(record))
            if len(found) >= expected:
                settle_until = settle_until or time.monotonic() + settle_seconds
                if time.monotonic() >= settle_until:
                    break
        return found
    finally:
        await consumer.stop()


def keyed(*keys: str) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    wanted = {key.encode() for key in keys}
    return lambda record: record.key in wanted


async def eventually(check: Callable[[], Any], timeout_seconds: float = 20.0) -> Any:
    """Retry an async callable until it returns a truthy value."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.3)
