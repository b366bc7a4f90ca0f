"""The load generator, run as its own process so it does not share an event loop (or a
GIL) with what it measures: ``python -m bench.load '<json spec>'`` prints a JSON result.

Request bodies are built (and signed) before the clock starts; then ``concurrency``
keep-alive connections send them as fast as answers come back, for ``seconds`` after a
``warmup``. Every request carries a different tracking number, so no duplicate shortcut
in the ingest flatters the figure.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from shared.schemas import CanonicalStatus
from tools.simulate.catalog import Source
from tools.simulate.scenario import Parcel, Scan
from tools.simulate.webhooks import ParcelUpdate, Push, WebhookSecrets, render


@dataclass(frozen=True)
class Prepared:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


STATUSES = (CanonicalStatus.ACCEPTED, CanonicalStatus.IN_TRANSIT, CanonicalStatus.ARRIVED_DESTINATION)


def _parcel(index: int, service_key: str, scans: int, base: datetime) -> Parcel:
    history = tuple(
        Scan(STATUSES[i % len(STATUSES)], base + timedelta(minutes=17 * i + index % 600), f"Hub {i}")
        for i in range(scans)
    )
    return Parcel(f"BENCH{index:012d}CN", service_key, "SG", history, "bench")


def prepare(spec: dict[str, Any]) -> list[Prepared]:
    kind, count = spec["kind"], int(spec["count"])
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    offset = int(spec.get("offset", 0))
    if kind == "single-event":
        secrets = WebhookSecrets.from_ingest_settings()
        prepared = []
        for index in range(offset, offset + count):
            parcel = _parcel(index, "4px/standard", 1, base)
            request = render(Push(Source.SEVENTEEN_TRACK, (ParcelUpdate(parcel, parcel.scans),)), secrets, base)
            prepared.append(Prepared("POST", request.path, request.headers, request.body))
        return prepared
    if kind == "hundred-events":
        secrets = WebhookSecrets.from_ingest_settings()
        prepared = []
        for index in range(offset, offset + count):
            parcels = [_parcel(index * 10 + i, "yanwen/line", 10, base) for i in range(10)]
            push = Push(Source.YANWEN, tuple(ParcelUpdate(parcel, parcel.scans) for parcel in parcels))
            request = render(push, secrets, base)
            prepared.append(Prepared("POST", request.path, request.headers, request.body))
        return prepared
    if kind == "get-vtr":
        rng = random.Random(5)
        headers = {"authorization": f"Bearer {spec['api_key']}"}
        return [
            Prepared(
                "GET", f"/v1/sellers/{spec['seller_prefix']}{rng.randrange(spec['sellers']):06d}/vtr", headers, None
            )
            for _ in range(count)
        ]
    raise ValueError(f"unknown kind {kind!r}")


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    requests = prepare(spec)
    concurrency, seconds, warmup = int(spec["concurrency"]), float(spec["seconds"]), float(spec.get("warmup", 2.0))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    position = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(spec["url"], connector=connector) as session:

        async def worker() -> None:
            nonlocal position
            while True:
                now = time.perf_counter()
                if now >= stop_at or position >= len(requests):
                    return
                request = requests[position]
                position += 1
                began = time.perf_counter()
                try:
                    async with session.request(
                        request.method, request.path, data=request.body, headers=request.headers
                    ) as response:
                        await response.read()
                        status = response.status
                except aiohttp.ClientError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                    continue
                ended = time.perf_counter()
                if status >= 300:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                elif began >= measure_from and ended <= stop_at:
                    latencies.append(ended - began)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = min(time.perf_counter(), stop_at) - measure_from
    latencies.sort()
    return {
        "kind": spec["kind"],
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "requests_per_second": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
        "ran_out_of_requests": position >= len(requests),
        "latencies_ms": [round(value * 1000, 3) for value in latencies] if spec.get("raw") else [],
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
