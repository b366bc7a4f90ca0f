"""What the ingest's background workers share when they call a vendor's API.

The registrar (registration.py: 17TRACK, AfterShip) and the Yanwen poller
(yanwen_polling.py) both call rate-limited vendor APIs that answer 429, 5xx or nothing
at times, and both run as their own process until SIGTERM/SIGINT. This module is the one
way to do each of those: :class:`RateLimiter` spaces the calls, :func:`call_with_retries`
repeats a :class:`Retryable` failure with exponential back-off (the ``VTR_REGISTRATION_*``
settings), :func:`publisher_and_http` opens what both need to talk to Kafka and the
vendor, and :func:`run_until_signal` is their ``main`` (with the metrics and health
endpoint of worker_health.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx

from services.ingest.publisher import Publisher
from services.ingest.settings import IngestSettings
from services.ingest.worker_health import WORKER_LOOP, WorkerHealthServer
from shared.observability import configure_logging, wants_text_logs

T = TypeVar("T")


class Retryable(Exception):
    """The call failed in a way worth repeating (429, 5xx, network)."""


class RateLimiter:
    """At most ``rate`` calls per second, spaced evenly (a call waits its turn)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a vendor call is tried and how long to wait in between."""

    attempts: int
    backoff_seconds: float
    backoff_max_seconds: float

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> RetryPolicy:
        return cls(
            attempts=settings.registration_max_attempts,
            backoff_seconds=settings.registration_backoff_seconds,
            backoff_max_seconds=settings.registration_backoff_max_seconds,
        )

    def delay(self, failed_attempt: int) -> float:
        """The wait after attempt ``failed_attempt`` (1-based): doubled each time, capped."""
        return min(self.backoff_max_seconds, self.backoff_seconds * 2.0 ** (failed_attempt - 1))


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    limiter: RateLimiter,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[int, Retryable], None] = lambda attempt, error: None,
) -> T:
    """``call()`` after waiting its turn at ``limiter``; a :class:`Retryable` failure is
    tried again after the policy's back-off (``on_retry`` hears of each one first), up to
    ``policy.attempts`` times in all. The last attempt's :class:`Retryable` propagates:
    the caller decides what giving up means (park the numbers, ask again next round)."""
    attempt = 1
    while True:
        await limiter.acquire()
        # A worker busy with a long round of calls or back-offs is making progress: each
        # attempt keeps its liveness fresh (worker_health.py).
        WORKER_LOOP.tick()
        try:
            return await call()
        except Retryable as error:
            if attempt >= policy.attempts:
                raise
            on_retry(attempt, error)
        await sleep(policy.delay(attempt))
        attempt += 1


@asynccontextmanager
async def publisher_and_http(settings: IngestSettings) -> AsyncIterator[tuple[Publisher, httpx.AsyncClient]]:
    """A started Kafka publisher and an HTTP client with the vendor-call timeout; both
    are closed on the way out (the publisher last, so nothing produced is dropped)."""
    publisher = Publisher(settings)
    await publisher.start()
    try:
        async with httpx.AsyncClient(timeout=settings.registration_timeout_seconds) as http:
            yield publisher, http
    finally:
        await publisher.stop()


def run_until_signal(worker: Callable[[IngestSettings, asyncio.Event], Awaitable[None]]) -> int:
    """Run ``worker(settings, stop)`` with the environment's settings and JSON logs, and
    serve its metrics and health on ``VTR_HTTP_HOST:VTR_WORKER_METRICS_PORT`` meanwhile;
    SIGTERM or SIGINT sets ``stop`` so the worker finishes its round and closes cleanly."""
    settings = IngestSettings()
    configure_logging(settings.log_level, wants_text_logs(settings.log_format, settings.env))
    health = WorkerHealthServer(
        settings.http_host, settings.worker_metrics_port, WORKER_LOOP, settings.worker_stall_seconds
    )
    health.start()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await worker(settings, stop)

    try:
        asyncio.run(serve())
    finally:
        health.stop()
    return 0
