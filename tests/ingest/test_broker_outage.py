"""Broker stopped: every source answers 503 with Retry-After, and once the broker is back
the retried pushes are accepted; nothing that got a 2xx is missing from the topic.

Tansu keeps topics in memory, so the restarted broker is empty: the publisher must
re-create the topics itself (as it would after a cluster rebuild). For the same reason
only what was acknowledged after the restart can be checked on the topic."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx

from services.ingest.settings import IngestSettings
from shared.schemas import SHIPMENT_CODEC, TRACKING_EVENT_CODEC
from shared.topics import SHIPMENTS, TRACKING_EVENTS
from tests.ingest.conftest import API_KEY, AUTH, eventually, keyed, read_topic
from tests.ingest.samples import SAMPLE_PUSHES, unique_number
from tests.ingest.test_shipments import shipment
from tests.ingest.test_webhooks import number_for, post
from tools.localstack import TansuBroker

SOURCES = ("china-post", "china-post-traces", "yunexpress", "yanwen", "17track", "aftership")


async def test_outage_gives_503_then_accepts_again_and_loses_nothing(
    fresh_broker: TansuBroker,
    ingest_factory: Callable[[IngestSettings], AbstractAsyncContextManager[httpx.AsyncClient]],
) -> None:
    settings = IngestSettings(
        kafka_bootstrap=fresh_broker.bootstrap,
        api_keys=API_KEY,
        kafka_topic_partitions=2,
        produce_deadline_seconds=1.0,
        retry_after_seconds=3,
    )
    async with ingest_factory(settings) as client:
        for source in SOURCES:
            assert (await post(client, SAMPLE_PUSHES[source](settings, number_for(source)))).status_code == 200

        fresh_broker.stop()
        numbers = {source: number_for(source) for source in SOURCES}
        for source, number in numbers.items():
            response = await post(client, SAMPLE_PUSHES[source](settings, number))
            assert response.status_code == 503, source
            assert response.headers["Retry-After"] == "3"
        cancelled = await client.post(f"/v1/shipments/{unique_number()}/cancel", headers=AUTH)
        assert cancelled.status_code == 503
        assert cancelled.headers["Retry-After"] == "3"
        assert (await client.get("/readyz")).status_code == 503

        fresh_broker.start()

        for source, number in numbers.items():
            # The carrier retries (YunExpress re-signs with a fresh timestamp).
            async def retried(source: str = source, number: str = number) -> bool:
                return (await post(client, SAMPLE_PUSHES[source](settings, number))).status_code == 200

            assert await eventually(retried), source
        confirmed = shipment()
        assert (await client.post("/v1/shipments", json=confirmed, headers=AUTH)).status_code == 202

        expected = sum(len(SAMPLE_PUSHES[source](settings, number).expected) for source, number in numbers.items())
        records = await read_topic(settings, TRACKING_EVENTS, keyed(*numbers.values()), expected, timeout_seconds=15)
        events = [TRACKING_EVENT_CODEC.decode(record.value) for record in records]
        for source, number in numbers.items():
            got = {(event.carrier_code, event.status) for event in events if event.tracking_number == number}
            assert got == set(SAMPLE_PUSHES[source](settings, number).expected), source
        shipments = await read_topic(settings, SHIPMENTS, keyed(confirmed["tracking_number"]), 1)
        assert [SHIPMENT_CODEC.decode(record.value).tracking_number for record in shipments] == [
            confirmed["tracking_number"]
        ]


async def test_started_while_the_broker_is_down_it_waits_unready_then_serves(
    fresh_broker: TansuBroker,
    ingest_factory: Callable[[IngestSettings], AbstractAsyncContextManager[httpx.AsyncClient]],
) -> None:
    """Issue 14, section 6: the ingest no longer exits when the broker is down at start-up;
    it answers 503 + Retry-After and reports not ready, retries with backoff, and serves
    once the broker is reachable, without a restart."""
    fresh_broker.stop()
    settings = IngestSettings(
        kafka_bootstrap=fresh_broker.bootstrap,
        api_keys=API_KEY,
        kafka_topic_partitions=2,
        produce_deadline_seconds=1.0,
        retry_after_seconds=3,
    )
    async with ingest_factory(settings) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["producer"].startswith("failed")
        push = SAMPLE_PUSHES["17track"](settings, number_for("17track"))
        response = await post(client, push)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "3"

        fresh_broker.start()

        async def ready_now() -> bool:
            return (await client.get("/readyz")).status_code == 200

        assert await eventually(ready_now, timeout_seconds=30)
        number = number_for("17track")
        assert (await post(client, SAMPLE_PUSHES["17track"](settings, number))).status_code == 200
        records = await read_topic(settings, TRACKING_EVENTS, keyed(number), 3)
        assert len(records) == 3
