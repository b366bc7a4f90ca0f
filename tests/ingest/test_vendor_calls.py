"""The pieces the registrar and the Yanwen poller share (services/ingest/vendor_calls.py):
rate limit, retry with back-off, and the run-until-signal main."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from services.ingest.registration import run_registrar
from services.ingest.vendor_calls import RateLimiter, Retryable, RetryPolicy, call_with_retries
from tools.localstack import free_port

REPO = Path(__file__).resolve().parents[2]


async def test_rate_limiter_spaces_calls() -> None:
    limiter = RateLimiter(20)
    started = time.monotonic()
    for _ in range(6):
        await limiter.acquire()
    assert time.monotonic() - started >= 5 / 20 * 0.9


def test_back_off_doubles_up_to_its_ceiling() -> None:
    policy = RetryPolicy(attempts=6, backoff_seconds=2.0, backoff_max_seconds=10.0)
    assert [policy.delay(attempt) for attempt in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]


async def test_retryable_failures_are_retried_after_the_back_off_then_succeed() -> None:
    waits: list[float] = []
    retried: list[int] = []
    answers: list[Exception | str] = [Retryable("503"), Retryable("429"), "ok"]

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = await call_with_retries(
        call,
        limiter=RateLimiter(1000),
        policy=RetryPolicy(attempts=5, backoff_seconds=1.0, backoff_max_seconds=300.0),
        sleep=sleep,
        on_retry=lambda attempt, error: retried.append(attempt),
    )
    assert result == "ok"
    assert waits == [1.0, 2.0]
    assert retried == [1, 2]


async def test_the_last_attempts_failure_reaches_the_caller_and_other_errors_are_not_retried() -> None:
    calls = 0
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def always_503() -> None:
        nonlocal calls
        calls += 1
        raise Retryable(f"503 #{calls}")

    policy = RetryPolicy(attempts=3, backoff_seconds=0.5, backoff_max_seconds=300.0)
    with pytest.raises(Retryable, match="503 #3"):
        await call_with_retries(always_503, limiter=RateLimiter(1000), policy=policy, sleep=sleep)
    assert calls == 3
    assert waits == [0.5, 1.0]  # no wait after the last attempt

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug, not a vendor hiccup")

    calls = 0
    with pytest.raises(ValueError):
        await call_with_retries(broken, limiter=RateLimiter(1000), policy=policy, sleep=sleep)
    assert calls == 1


def test_run_until_signal_stops_the_worker_on_sigterm_and_exits_0(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    program = f"""
import asyncio, sys
from services.ingest.vendor_calls import run_until_signal

async def worker(settings, stop):
    print("ready", flush=True)
    await stop.wait()
    open({str(marker)!r}, "w").write("clean")

sys.exit(run_until_signal(worker))
"""
    process = subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=REPO,
        stdout=subprocess.PIPE,
        # Its metrics endpoint on a free port: the default may be taken on a shared machine.
        env={**os.environ, "VTR_ENV": "dev", "VTR_WORKER_METRICS_PORT": str(free_port())},
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert marker.read_text() == "clean"


async def test_an_unconfigured_registrar_idles_until_stopped(make_settings: Any) -> None:
    """Under a Deployment a process that exits is restarted in a loop: with no
    VTR_REGISTER_* the registrar waits for its stop instead of returning at once."""
    stop = asyncio.Event()
    registrar = asyncio.create_task(run_registrar(make_settings(), stop))
    await asyncio.sleep(1.0)
    assert not registrar.done()
    stop.set()
    await asyncio.wait_for(registrar, timeout=10)
