"""The ingest workers' metrics and health endpoint (worker_health.py): served over real HTTP,
in-process with a hand-driven clock for the liveness rule, and by the real worker processes
(``python -m services.ingest registrar`` / ``poll-yanwen`` on the real broker) for what
Prometheus and the kubelet see."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.settings import IngestSettings
from services.ingest.worker_health import Heartbeat, WorkerHealthServer
from tests.ingest.conftest import AUTH, SettingsFactory, running_ingest
from tests.ingest.fake_amazon import CLIENT_SECRET, amazon_server
from tests.ingest.fake_vendors import TOKEN_YANWEN, yanwen_server
from tests.ingest.samples import unique_number
from tests.ingest.test_amazon import amazon_settings, connect
from tests.ingest.test_yanwen_polling import _confirmation
from tools.localstack import TansuBroker, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
STALL_SECONDS = 600.0


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def endpoint(clock: ManualClock) -> Iterator[tuple[str, Heartbeat]]:
    heartbeat = Heartbeat(clock=clock)
    server = WorkerHealthServer("127.0.0.1", free_port(), heartbeat, STALL_SECONDS)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", heartbeat
    finally:
        server.stop()


def sample(metrics_text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample of a Prometheus text exposition, or None when absent."""
    for family in text_string_to_metric_families(metrics_text):
        for metric in family.samples:
            if metric.name == name and (labels or {}).items() <= metric.labels.items():
                return float(metric.value)
    return None


def test_liveness_follows_the_loop_s_ticks_and_readiness_waits_for_the_first(
    endpoint: tuple[str, Heartbeat], clock: ManualClock
) -> None:
    url, heartbeat = endpoint
    # Started, not yet ticked: alive (start-up is short), not ready.
    assert httpx.get(url + "/healthz").status_code == 200
    starting = httpx.get(url + "/readyz")
    assert starting.status_code == 503 and starting.json()["status"] == "starting"
    heartbeat.tick()
    clock.now += STALL_SECONDS
    assert httpx.get(url + "/healthz").status_code == 200
    assert httpx.get(url + "/readyz").status_code == 200
    # One second beyond the limit without a tick: stalled, and no longer ready either.
    clock.now += 1
    stalled = httpx.get(url + "/healthz")
    assert stalled.status_code == 503
    assert stalled.json() == {"status": "stalled", "seconds_since_progress": STALL_SECONDS + 1}
    assert httpx.get(url + "/readyz").status_code == 503
    heartbeat.tick()
    assert httpx.get(url + "/healthz").status_code == 200


def test_a_worker_that_never_ticks_is_stalled_after_the_limit(
    endpoint: tuple[str, Heartbeat], clock: ManualClock
) -> None:
    url, _ = endpoint
    clock.now += STALL_SECONDS + 1
    assert httpx.get(url + "/healthz").status_code == 503


def test_metrics_are_the_process_s_prometheus_registry_and_other_paths_are_404(
    endpoint: tuple[str, Heartbeat],
) -> None:
    url, _ = endpoint
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"vtr_ingest_registrations", "vtr_ingest_yanwen_polls", "vtr_ingest_yanwen_open_parcels"} <= names
    assert httpx.get(url + "/").status_code == 404
    assert httpx.get(url + "/docs").status_code == 404


def test_the_stall_limit_must_outlast_a_back_off_and_a_call_timeout() -> None:
    with pytest.raises(ValueError, match="VTR_WORKER_STALL_SECONDS"):
        IngestSettings(worker_stall_seconds=300, registration_backoff_max_seconds=300)
    assert IngestSettings(worker_stall_seconds=311, registration_backoff_max_seconds=300).worker_stall_seconds == 311


@asynccontextmanager
async def worker_process(subcommand: str, environment: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """``python -m services.ingest <subcommand>`` with its endpoint on a free port; yields
    a client of the endpoint and, on the way out, checks that SIGTERM stops it cleanly."""
    port = free_port()
    env = {**os.environ, "VTR_LOG_LEVEL": "WARNING", "VTR_WORKER_METRICS_PORT": str(port), **environment}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ingest", *subcommand.split(), cwd=ROOT, env=env
    )
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30.0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def until_answer(client: httpx.AsyncClient, path: str, status: int = 200, timeout_seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while (answer := await client.get(path)).status_code != status:
        assert asyncio.get_running_loop().time() < deadline, f"{path}: {answer.status_code} {answer.text}"
        await asyncio.sleep(0.2)


async def test_an_idle_registrar_process_is_scraped_alive_and_ready(kafka_broker: TansuBroker) -> None:
    """With no VTR_REGISTER_* the registrar idles: alive and ready, not stalled."""
    async with worker_process("registrar", {"VTR_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}) as client:
        await until_answer(client, "/readyz")
        assert (await client.get("/healthz")).json()["status"] == "ok"
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "# TYPE vtr_ingest_registrations_total counter" in metrics.text


async def test_the_yanwen_poller_process_serves_the_metrics_of_its_polls(
    kafka_broker: TansuBroker, ingest: httpx.AsyncClient
) -> None:
    """A Yanwen shipment confirmed through the ingest; the poller process asks the local
    Yanwen about it, and its /metrics says so."""
    number = unique_number("UG")
    promised = datetime.now(UTC).date() + timedelta(days=5)
    confirmation = _confirmation(unique_number("SYW"), number, promised, "o-scraped")
    assert (await ingest.post("/v1/shipments", json=[confirmation], headers=AUTH)).status_code == 202
    async with yanwen_server() as vendor:
        environment = {
            "VTR_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "VTR_YANWEN_API_URL": vendor.url + "/api/tracking",
            "VTR_YANWEN_TOKEN": TOKEN_YANWEN,
            "VTR_YANWEN_POLL_RATE_PER_SECOND": "50",
        }
        async with worker_process("poll-yanwen", environment) as client:
            await until_answer(client, "/readyz")
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                metrics = (await client.get("/metrics")).text
                asked = any(number in numbers for _, _, numbers in vendor.requests)
                if asked and (sample(metrics, "vtr_ingest_yanwen_polls_total", {"outcome": "ok"}) or 0) >= 1:
                    break
                assert asyncio.get_running_loop().time() < deadline, "no counted poll of the parcel"
                await asyncio.sleep(0.2)
            assert (sample(metrics, "vtr_ingest_yanwen_open_parcels") or 0) >= 1
            assert (await client.get("/healthz")).status_code == 200


async def test_the_amazon_worker_process_serves_the_metrics_of_its_calls(make_settings: SettingsFactory) -> None:
    """A seller connected through the callback; ``amazon worker`` (its own process) reads its
    orders from the local Amazon, says so on /metrics, and stops cleanly on SIGTERM."""
    async with amazon_server() as amazon:
        settings = amazon_settings(make_settings, amazon)
        async with running_ingest(settings) as client:
            await connect(client, amazon, unique_number("SAMZ"))
        environment = {
            "VTR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "VTR_LWA_CLIENT_ID": settings.lwa_client_id,
            "VTR_LWA_CLIENT_SECRET": CLIENT_SECRET,
            "VTR_LWA_TOKEN_URL": settings.lwa_token_url,
            "VTR_SPAPI_ENDPOINT_NA": amazon.url,
            "VTR_REGISTRATION_BACKOFF_SECONDS": "0.05",
            "VTR_REGISTRATION_BACKOFF_MAX_SECONDS": "0.2",
        }
        async with worker_process("amazon worker", environment) as worker:
            await until_answer(worker, "/readyz")
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                metrics = (await worker.get("/metrics")).text
                searched = sample(
                    metrics, "vtr_ingest_amazon_calls_total", {"operation": "searchOrders", "outcome": "200"}
                )
                connected = sample(metrics, "vtr_ingest_amazon_connections", {"state": "connected"})
                if (searched or 0) >= 1 and (connected or 0) >= 1:
                    break
                assert asyncio.get_running_loop().time() < deadline, "no counted searchOrders call"
                await asyncio.sleep(0.2)
            assert (await worker.get("/healthz")).status_code == 200
