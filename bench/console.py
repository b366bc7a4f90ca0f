"""The console's figure: overview latency for a seller with 20 categories and 5,000 open
packages (issue 12: p95 under 100 ms), and the category page's for comparison.

The scorer runs as in production (``python -m services.scorer``, PostgreSQL, a local
broker); the seller's packages are written with the scorer's own store (the same rows the
consumer writes, without the Kafka round trip, so the fill takes seconds). Requests go one
at a time, as a person's browser sends them, with a staff bearer token.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import ConsumerRecord

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.policy import load_policy
from services.scorer.storage.plan import apply_records
from shared.db import create_engine
from shared.schemas import (
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    CanonicalStatus,
    Money,
    ShipmentConfirmed,
    TrackingEvent,
    tracking_event_id,
)
from shared.topics import SHIPMENTS, TRACKING_EVENTS
from tools.localstack import TansuBroker
from tools.simulate.stack import ServiceProcess

SELLER = "BENCHCONSOLE"
CATEGORIES = 20
OPEN_PACKAGES = 5_000
#: Resolved packages per category in the window (the VTR's denominator).
RESOLVED_PER_CATEGORY = 300
MARKETPLACES = ("US", "UK", "DE", "JP", "AU")


def _record(message: ShipmentConfirmed | TrackingEvent, offset: int) -> ConsumerRecord[bytes, bytes]:
    if isinstance(message, TrackingEvent):
        topic, value = TRACKING_EVENTS, TRACKING_EVENT_CODEC.encode(message)
    else:
        topic, value = SHIPMENTS, SHIPMENT_CODEC.encode(message)
    key = message.tracking_number.encode()
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), [])


def seller_messages(today: date) -> list[ShipmentConfirmed | TrackingEvent]:
    now = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=8)
    messages: list[ShipmentConfirmed | TrackingEvent] = []
    per_category_open = OPEN_PACKAGES // CATEGORIES
    n = 0
    for c in range(CATEGORIES):
        marketplace = MARKETPLACES[c % len(MARKETPLACES)]
        category = f"category-{c:02d}"
        for k in range(RESOLVED_PER_CATEGORY + per_category_open):
            n += 1
            number = f"YT{n:016d}"
            open_package = k >= RESOLVED_PER_CATEGORY
            promised = today + timedelta(days=k % 14) if open_package else today - timedelta(days=1 + k % 30)
            confirmed = now - timedelta(days=2 if open_package else 12)
            messages.append(
                ShipmentConfirmed(
                    order_id=f"order-{n}",
                    seller_id=SELLER,
                    marketplace=marketplace,
                    category=category,
                    carrier_name="YunExpress",
                    carrier="yunexpress",
                    tracking_number=number,
                    order_value=Money("4.99", "USD"),
                    confirmed_at=confirmed,
                    promised_delivery_date=promised,
                    received_at=confirmed,
                    service="YunExpress Standard",
                )
            )
            # Resolved ones: one in 30 never scanned (invalid); open ones: some scanned, none delivered.
            if (not open_package and k % 30 != 0) or (open_package and k % 3 == 0):
                occurred = confirmed + timedelta(days=1)
                messages.append(
                    TrackingEvent(
                        event_id=tracking_event_id("yunexpress", number, "accepted", occurred, ""),
                        carrier="yunexpress",
                        tracking_number=number,
                        status=CanonicalStatus.ACCEPTED,
                        carrier_code="accepted",
                        occurred_at=occurred,
                        received_at=occurred,
                        source="yunexpress",
                    )
                )
    return messages


async def fill(database_url: str, today: date) -> int:
    engine = create_engine(database_url)
    evaluator = Evaluator(load_policy())
    messages = seller_messages(today)
    try:
        for start in range(0, len(messages), 5000):
            chunk = [_record(m, start + i) for i, m in enumerate(messages[start : start + 5000])]
            async with engine.begin() as connection:
                await apply_records(connection, evaluator, chunk, today)
    finally:
        await engine.dispose()
    return len(messages)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def timed(client: httpx.Client, path: str, params: dict[str, str], count: int, warmup: int) -> list[float]:
    latencies: list[float] = []
    for i in range(warmup + count):
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
        if i >= warmup:
            latencies.append(elapsed)
    return latencies


def bench_console(report: Any, workdir: Path, database_url: str, api_key: str, requests: int = 300) -> None:
    with TansuBroker(log_path=workdir / "tansu-console.log") as broker:
        env = {
            "VTR_KAFKA_BOOTSTRAP": broker.bootstrap,
            "VTR_LOG_LEVEL": "WARNING",
            "VTR_DATABASE_URL": database_url,
            "VTR_API_KEYS": api_key,
        }
        scorer = ServiceProcess("scorer", env, workdir / "scorer-console.log").start(ready_timeout_seconds=120)
        try:
            started = time.perf_counter()
            records = asyncio.run(fill(database_url, datetime.now(UTC).date()))
            print(f"  (wrote {records:,} records for one seller in {time.perf_counter() - started:.1f}s)", flush=True)
            headers = {"Authorization": f"Bearer {api_key}"}
            with httpx.Client(base_url=scorer.url, headers=headers, timeout=30) as client:
                body = client.get(f"/v1/sellers/{SELLER}/vtr").json()
                categories = len(body["categories"])
                overview = timed(client, f"/console/{SELLER}", {}, requests, warmup=20)
                first = body["categories"][0]
                scope = {"marketplace": first["marketplace"], "category": first["category"]}
                category = timed(client, f"/console/{SELLER}/category", scope, max(30, requests // 10), warmup=3)
            report.line(
                f"console overview p95 ({categories} categories, {OPEN_PACKAGES:,} open packages)",
                percentile(overview, 0.95),
                "ms",
                target_ms=100,
                p50_ms=percentile(overview, 0.5),
                p99_ms=percentile(overview, 0.99),
                requests=len(overview),
            )
            report.line("console overview p50", percentile(overview, 0.5), "ms")
            report.line(
                "console category page p95 (30-day history, 50 packages)",
                percentile(category, 0.95),
                "ms",
                p50_ms=percentile(category, 0.5),
                requests=len(category),
            )
        finally:
            scorer.stop()
