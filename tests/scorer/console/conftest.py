"""A seeded seller for the console tests: real scorer database (SQLite and PostgreSQL),
real records applied by the scorer's own store, and the scorer app serving the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.app import create_app
from services.scorer.domain.evaluator import Evaluator
from services.scorer.settings import ScorerSettings
from services.scorer.storage.plan import apply_records
from shared.console_links import ConsoleLinks
from shared.schemas import CanonicalStatus, ShipmentCancelled, ShipmentConfirmed, TrackingEvent
from tests.scorer.conftest import NOW, TODAY, event, record, shipment

SELLER = "A1CONSOLE"
OTHER_SELLER = "B2OTHER"
STAFF_KEY = "test-staff-key"
SECRET = "test-console-secret"
#: Parcels per promised day in the seller's AE Home & Kitchen category.
AE_PER_DAY = 8


def seed_messages() -> list[ShipmentConfirmed | TrackingEvent | ShipmentCancelled]:
    """Three categories of SELLER and one of OTHER_SELLER, promised over the last 45 days
    and the next 10.

    - AE Home & Kitchen: eight parcels a day; the carrier stopped scanning nine days ago,
      so the window is still healthy but the forecast falls as the unscanned parcels enter
      it (the most urgent category, with a package list of several pages).
    - US toys: three parcels a day, one in 25 never scanned (about 96%: WATCH).
    - SG Books: a dozen parcels, all delivered (OK).
    """
    messages: list[ShipmentConfirmed | TrackingEvent | ShipmentCancelled] = []
    silent_since = NOW - timedelta(days=9)
    for day in range(-45, 10):
        promised = TODAY + timedelta(days=day)
        for n in range(AE_PER_DAY):
            confirmed = NOW + timedelta(days=day - 10, hours=n)
            number = f"YT{day + 50:04d}{n:012d}"
            messages.append(
                shipment(
                    f"ae-{day + 50:03d}-{n}",
                    seller_id=SELLER,
                    marketplace="AE",
                    category="Home & Kitchen",
                    tracking_number=number,
                    carrier="yunexpress",
                    carrier_name="YunExpress",
                    service="云途全球专线挂号",
                    amount="15.00",
                    currency="AED",
                    promised=promised,
                    confirmed_at=confirmed,
                )
            )
            scanned_at = confirmed + timedelta(days=1)
            if scanned_at < silent_since and (day * AE_PER_DAY + n) % 40 != 7:
                messages.append(event(tracking_number=number, occurred_at=scanned_at))
        for n in range(3):
            confirmed = NOW + timedelta(days=day - 10)
            number = f"YT{day + 50:04d}{n + 100:012d}"
            messages.append(
                shipment(
                    f"toy-{day + 50:03d}-{n}",
                    seller_id=SELLER,
                    tracking_number=number,
                    carrier="yunexpress",
                    carrier_name="YunExpress",
                    service="YunExpress Standard",
                    promised=promised,
                    confirmed_at=confirmed,
                )
            )
            if (day * 3 + n) % 25 != 0 and confirmed + timedelta(days=2) < NOW:
                messages.append(event(tracking_number=number, occurred_at=confirmed + timedelta(days=2)))
    for k in range(12):
        number = f"YT{k + 9000:016d}"
        confirmed = NOW - timedelta(days=20 + k)
        messages.append(
            shipment(
                f"book-{k}",
                seller_id=SELLER,
                marketplace="SG",
                category="Books",
                tracking_number=number,
                carrier="yunexpress",
                carrier_name="YunExpress",
                amount="3.00",
                currency="SGD",
                promised=TODAY - timedelta(days=5 + k),
                confirmed_at=confirmed,
            )
        )
        messages.append(event(tracking_number=number, occurred_at=confirmed + timedelta(days=1)))
        messages.append(
            event(CanonicalStatus.DELIVERED, tracking_number=number, occurred_at=confirmed + timedelta(days=6))
        )
    for k in range(15):
        number = f"YT{k + 8000:016d}"
        messages.append(
            shipment(
                f"other-{k}",
                seller_id=OTHER_SELLER,
                category="secret-category-of-another-seller",
                tracking_number=number,
                carrier="yunexpress",
                promised=TODAY - timedelta(days=3 + k),
            )
        )
    return messages


async def seed(engine: AsyncEngine, evaluator: Evaluator) -> None:
    messages = seed_messages()
    async with engine.begin() as connection:
        for start in range(0, len(messages), 2000):
            await apply_records(connection, evaluator, [record(m) for m in messages[start : start + 2000]], TODAY)


def console_settings(database_url: str) -> ScorerSettings:
    return ScorerSettings(
        database_url=database_url,
        api_keys=STAFF_KEY,  # type: ignore[arg-type]
        console_secret=SECRET,  # type: ignore[arg-type]
    )


def links(base: str) -> ConsoleLinks:
    return ConsoleLinks(base=base, secret=SECRET.encode())


@dataclass
class Console:
    app: FastAPI
    client: httpx.AsyncClient

    def link(self, seller_id: str = SELLER, now: datetime | None = None, **scope: str) -> str:
        return links("http://scorer").link(seller_id, now or datetime.now(UTC), **scope)


@pytest.fixture
async def console(scorer_engine: AsyncEngine, database_url: str, evaluator: Evaluator) -> AsyncIterator[Console]:
    await seed(scorer_engine, evaluator)
    app = create_app(console_settings(database_url), today=lambda: TODAY, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scorer") as client:
        yield Console(app, client)
    await app.state.service.engine.dispose()
