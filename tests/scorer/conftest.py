"""Factories for the scorer tests: shipment and event messages, consumer records, and a
migrated scorer database on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.policy import Policy, ShipmentFacts, load_policy
from shared.db import create_engine, upgrade_database
from shared.schemas import (
    DELIVERY_SCAN_STATUSES,
    PHYSICAL_SCAN_STATUSES,
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    CanonicalStatus,
    Money,
    ShipmentCancelled,
    ShipmentConfirmed,
    TrackingEvent,
    tracking_event_id,
)
from shared.topics import SHIPMENTS, TRACKING_EVENTS

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "scorer" / "migrations"
#: A fixed evaluation day for deterministic DB tests.
TODAY = date(2026, 6, 15)
NOW = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)

_offsets = itertools.count()


def shipment(
    order_id: str = "o-1",
    *,
    seller_id: str = "seller-1",
    marketplace: str = "US",
    category: str = "toys",
    carrier_name: str = "China Post",
    carrier: str | None = "china-post",
    service: str | None = "ePacket",
    tracking_number: str = "RR123456785CN",
    amount: str = "4.99",
    currency: str = "USD",
    promised: date = TODAY - timedelta(days=3),
    confirmed_at: datetime = NOW - timedelta(days=10),
    ship_from: str = "CN",
    buy_shipping: bool = False,
    risk_flags: tuple[str, ...] = (),
) -> ShipmentConfirmed:
    return ShipmentConfirmed(
        order_id=order_id,
        seller_id=seller_id,
        marketplace=marketplace,
        category=category,
        carrier_name=carrier_name,
        carrier=carrier,
        tracking_number=tracking_number,
        order_value=Money(amount, currency),
        confirmed_at=confirmed_at,
        promised_delivery_date=promised,
        received_at=confirmed_at + timedelta(seconds=5),
        service=service,
        ship_from_country=ship_from,
        buy_shipping=buy_shipping,
        risk_flags=risk_flags,
    )


def event(
    status: CanonicalStatus | str = CanonicalStatus.ACCEPTED,
    *,
    tracking_number: str = "RR123456785CN",
    occurred_at: datetime = NOW - timedelta(days=9),
    event_id: str | None = None,
    source: str = "china-post",
) -> TrackingEvent:
    status = CanonicalStatus(status)
    return TrackingEvent(
        event_id=event_id or tracking_event_id(source, tracking_number, status.value, occurred_at, ""),
        carrier="china-post",
        tracking_number=tracking_number,
        status=status,
        carrier_code="203",
        occurred_at=occurred_at,
        received_at=occurred_at + timedelta(minutes=1),
        source=source,
    )


def cancellation(tracking_number: str = "RR123456785CN", **fields: Any) -> ShipmentCancelled:
    fields.setdefault("cancelled_at", NOW - timedelta(days=8))
    fields.setdefault("received_at", fields["cancelled_at"])
    return ShipmentCancelled(tracking_number=tracking_number, **fields)


def record(
    message: TrackingEvent | ShipmentConfirmed | ShipmentCancelled, partition: int = 0
) -> ConsumerRecord[bytes, bytes]:
    if isinstance(message, TrackingEvent):
        topic, value = TRACKING_EVENTS, TRACKING_EVENT_CODEC.encode(message)
        key = message.tracking_number.encode()
    else:
        topic, value = SHIPMENTS, SHIPMENT_CODEC.encode(message)
        key = message.tracking_number.encode()
    return ConsumerRecord(topic, partition, next(_offsets), 0, 0, key, value, None, len(key), len(value), [])


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture
def evaluator(policy: Policy) -> Evaluator:
    """A new one per test: refreshing the model replaces the evaluator's model, and a test
    that priced packages with a model another test built would depend on the order of tests."""
    return Evaluator(policy)


def migrate(url: str) -> None:
    upgrade_database(MIGRATIONS, url)


@pytest.fixture
async def scorer_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated scorer database (SQLite and PostgreSQL)."""
    await asyncio.to_thread(migrate, database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


EngineFactory = Callable[[], AsyncEngine]


# -- a random data set and its expected counters, computed by plain rules ----------------

STATUSES = [CanonicalStatus.INFO_RECEIVED, CanonicalStatus.ACCEPTED, CanonicalStatus.IN_TRANSIT,
            CanonicalStatus.DELIVERED, CanonicalStatus.ATTEMPTED_DELIVERY]  # fmt: skip

Message = TrackingEvent | ShipmentConfirmed | ShipmentCancelled
Expected = dict[tuple[str, str, str, date], tuple[int, int, int]]


def generate(
    seed: int, today: date, now: datetime, parcels: int = 40, sellers: tuple[str, ...] = ("seller-1",)
) -> tuple[list[Message], Expected]:
    """Random shipments (some sharing a tracking number, some cancelled) and events (some
    duplicated), and the counters (seller, marketplace, category, promised date) ->
    (valid, invalid, pending) they must produce on ``today``."""
    rnd = random.Random(seed)
    messages: list[Message] = []
    expected: dict[tuple[str, str, str, date], list[int]] = defaultdict(lambda: [0, 0, 0])
    for n in range(parcels):
        number = f"YT{seed:04d}{n:012d}"
        seller = rnd.choice(sellers)
        promised = today + timedelta(days=rnd.randint(-35, 10))
        amount = rnd.choice(["3.00", "12.00"])
        category = rnd.choice(["toys", "books"])
        events = [
            event(
                rnd.choice(STATUSES), tracking_number=number, occurred_at=now - timedelta(hours=rnd.randint(0, 30) * 7)
            )
            for _ in range(rnd.randint(0, 3))
        ]
        physical = {(e.status, e.occurred_at.replace(second=0)) for e in events if e.status in PHYSICAL_SCAN_STATUSES}
        delivered = any(status in DELIVERY_SCAN_STATUSES for status, _ in physical)
        valid = (len(physical) >= 2 and delivered) if amount == "12.00" else len(physical) >= 1
        cancelled = rnd.random() < 0.1
        for o in range(rnd.choice([1, 1, 1, 2])):
            messages.append(
                shipment(
                    f"{number}-{o}",
                    seller_id=seller,
                    tracking_number=number,
                    carrier="yunexpress",
                    carrier_name="YunExpress",
                    service=None,
                    amount=amount,
                    category=category,
                    promised=promised,
                    confirmed_at=now - timedelta(days=20),
                )
            )
            if not cancelled:
                state = 0 if valid else (1 if promised < today else 2)
                expected[(seller, "US", category, promised)][state] += 1
        if cancelled:
            messages.append(cancellation(number, cancelled_at=now - timedelta(days=1)))
        messages.extend(events)
        messages.extend(rnd.sample(events, k=min(len(events), 1)))  # delivered twice
    return messages, {key: (v[0], v[1], v[2]) for key, v in expected.items()}


def window_numbers(expected: Expected, today: date) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """(seller, marketplace, category) -> (total, valid, invalid) over window(today)."""
    numbers: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (seller, marketplace, category, promised), (valid, invalid, pending) in expected.items():
        if today - timedelta(days=30) <= promised <= today - timedelta(days=1):
            entry = numbers[(seller, marketplace, category)]
            entry[0] += valid + invalid + pending
            entry[1] += valid
            entry[2] += invalid + pending
    return {key: (v[0], v[1], v[2]) for key, v in numbers.items()}


#: A promised date ahead of TODAY, and a scan time before it (policy vectors).
FUTURE = TODAY + timedelta(days=5)
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def facts(
    marketplace: str,
    amount: str,
    currency: str,
    carrier: str | None,
    service: str | None = None,
    ship_from: str = "CN",
    tracking_number: str = "RR123456785CN",
) -> ShipmentFacts:
    return ShipmentFacts(marketplace, carrier, service, tracking_number, amount, currency, ship_from)


def last_mile_push(number: str) -> bytes:
    """A 17TRACK push for ``number`` whose last mile is USPS (the parcel was handed over)."""
    usps = {"key": 21051, "name": "USPS"}
    events = [
        {"time_utc": "2026-06-10T15:00:00Z", "description": "Out for delivery", "sub_status": "OutForDelivery_Other"}
    ]
    china_post = [{"time_utc": "2026-06-05T02:00:00Z", "description": "Posting", "sub_status": "InTransit_PickedUp"}]
    return orjson.dumps(
        {
            "event": "TRACKING_UPDATED",
            "data": {
                "number": number,
                "carrier": 3011,
                "track_info": {
                    "misc_info": {
                        "local_number": "9400111899223197428490",
                        "local_provider": "USPS",
                        "local_key": 21051,
                    },
                    "tracking": {
                        "providers": [
                            {"provider": usps, "events": events},
                            {"provider": {"key": 3011}, "events": china_post},
                        ]
                    },
                },
            },
        }
    )
