"""Data the scorer benchmarks put straight onto the input topics (the ingest's output shape)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from aiokafka import AIOKafkaProducer

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

SELLER_PREFIX = "BENCH"
CATEGORIES = ("Toys & Games", "Home & Kitchen", "Electronics", "Beauty")


def seller_id(index: int) -> str:
    return f"{SELLER_PREFIX}{index:06d}"


def records(sellers: int, today: date, seed: int = 1) -> Iterator[tuple[str, bytes, bytes]]:
    """One confirmed package and one acceptance scan per seller x category, in the window."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    for index in range(sellers):
        for category_index, category in enumerate(CATEGORIES):
            number = f"BN{index:07d}{category_index}{rng.randrange(10**6):06d}CN"
            promised = today - timedelta(days=rng.randint(1, 30))
            confirmed = datetime.combine(promised - timedelta(days=12), datetime.min.time(), UTC)
            shipment = ShipmentConfirmed(
                order_id=f"BO-{index}-{category_index}",
                seller_id=seller_id(index),
                marketplace="US",
                category=category,
                carrier_name="4PX",
                carrier="4px",
                tracking_number=number,
                order_value=Money("3.50", "USD"),
                confirmed_at=confirmed,
                promised_delivery_date=promised,
                received_at=now,
                service="4PX Standard",
            )
            yield SHIPMENTS, number.encode(), SHIPMENT_CODEC.encode(shipment)
            if rng.random() < 0.97:
                occurred = confirmed + timedelta(hours=20)
                event = TrackingEvent(
                    event_id=tracking_event_id("4px", number, "InTransit_PickedUp", occurred, "Shenzhen"),
                    carrier="4px",
                    tracking_number=number,
                    status=CanonicalStatus.ACCEPTED,
                    carrier_code="InTransit_PickedUp",
                    occurred_at=occurred,
                    received_at=now,
                    source="17track",
                    location="Shenzhen",
                )
                yield TRACKING_EVENTS, number.encode(), TRACKING_EVENT_CODEC.encode(event)


async def produce(producer: AIOKafkaProducer, items: Iterator[tuple[str, bytes, bytes]]) -> int:
    count = 0
    pending = []
    for topic, key, value in items:
        pending.append(await producer.send(topic, value, key=key))
        count += 1
        if len(pending) >= 5000:
            for future in pending:
                await future
            pending.clear()
    for future in pending:
        await future
    return count
