"""SIGTERM while pushes are in flight: the real process drains them and flushes the
producer, so every push that got a 2xx has its events on the topic."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from services.ingest.settings import IngestSettings
from tests.ingest.conftest import keyed, read_topic
from tests.ingest.samples import SAMPLE_PUSHES, unique_number
from tools.localstack import TansuBroker, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


async def test_sigterm_drains_in_flight_pushes(kafka_broker: TansuBroker, ingest_settings: IngestSettings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "VTR_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "VTR_HTTP_PORT": str(port),
        "VTR_LOG_LEVEL": "WARNING",
        "VTR_KAFKA_TOPIC_PARTITIONS": str(ingest_settings.kafka_topic_partitions),
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.ingest", cwd=ROOT, env=env)
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30.0)
        numbers = [unique_number() for _ in range(200)]
        pushes = [SAMPLE_PUSHES["17track"](ingest_settings, number) for number in numbers]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:

            async def send(index: int) -> int | None:
                push = pushes[index]
                try:
                    response = await client.post(push.path, content=push.body, headers=push.headers)
                except httpx.HTTPError:
                    return None
                return response.status_code

            in_flight = [asyncio.create_task(send(index)) for index in range(len(pushes))]
            # Terminate once the server is answering, with most pushes still in flight.
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            process.send_signal(signal.SIGTERM)
            statuses = await asyncio.gather(*in_flight)
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    acknowledged = [number for number, status in zip(numbers, statuses, strict=True) if status == 200]
    assert acknowledged, statuses
    assert all(status in (200, None) for status in statuses), statuses
    records = await read_topic(ingest_settings, "vtr.tracking-events.v1", keyed(*acknowledged), 3 * len(acknowledged))
    assert {record.key.decode() for record in records} == set(acknowledged)
