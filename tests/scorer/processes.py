"""The scorer as a process (``python -m services.scorer``) fed through a real broker: the
harness of the scorer's integration tests and of the PostgreSQL fault tests."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

from services.scorer.settings import ScorerSettings
from shared.kafka import make_producer
from shared.schemas import SHIPMENT_CODEC, TRACKING_EVENT_CODEC, TrackingEvent
from shared.topics import SHIPMENTS, TRACKING_EVENTS, normalise_tracking_number
from tests.scorer.conftest import Message, generate, window_numbers
from tools.localstack import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


SELLERS = ("acme", "bolt", "cira")


API_KEY = "integration-key"


def real_today() -> date:
    return datetime.now(UTC).date()


async def produce(bootstrap: str, messages: list[Message]) -> None:
    settings = ScorerSettings(kafka_bootstrap=bootstrap)
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = []
        for message in messages:
            if isinstance(message, TrackingEvent):
                topic, value = TRACKING_EVENTS, TRACKING_EVENT_CODEC.encode(message)
            else:
                topic, value = SHIPMENTS, SHIPMENT_CODEC.encode(message)
            key = normalise_tracking_number(message.tracking_number).encode()
            futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class Scorer:
    """``python -m services.scorer`` as a subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "VTR_HTTP_PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Scorer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.scorer"], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        wait_for_port("127.0.0.1", self.port, timeout_seconds=60)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


async def api_numbers(port: int, today: date) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    numbers: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for seller in SELLERS:
            response = await client.get(f"/v1/sellers/{seller}/vtr", headers={"Authorization": f"Bearer {API_KEY}"})
            if response.status_code == 404:
                continue
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["as_of"] == today.isoformat()
            for category in body["categories"]:
                if category["total"]:
                    numbers[(seller, category["marketplace"], category["category"])] = (
                        category["total"],
                        category["valid"],
                        category["invalid"],
                    )
    return numbers


async def wait_for_numbers(port: int, expected: dict[tuple[str, str, str], tuple[int, int, int]]) -> None:
    today = real_today()
    deadline = asyncio.get_running_loop().time() + 60
    numbers: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    while asyncio.get_running_loop().time() < deadline:
        numbers = await api_numbers(port, today)
        if numbers == expected:
            return
        await asyncio.sleep(0.3)
    assert numbers == expected


def dataset(seed: int, parcels: int = 400) -> tuple[list[Message], dict[tuple[str, str, str], tuple[int, int, int]]]:
    today = real_today()
    now = datetime.now(UTC).replace(microsecond=0)
    messages, expected = generate(seed, today, now, parcels=parcels, sellers=SELLERS)
    return messages, window_numbers(expected, today)
