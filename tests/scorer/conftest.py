"""Factories for the scorer tests: shipment and event messages, consumer records, and a
migrated scorer database on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.policy import Policy, load_policy
from services.scorer.store import Evaluator
from shared.db import create_engine, upgrade_database
from shared.schemas import (
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


@pytest.fixture(scope="session")
def evaluator(policy: Policy) -> Evaluator:
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
