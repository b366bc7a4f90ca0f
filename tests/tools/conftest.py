"""Factories for the simulator tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from shared.schemas import CanonicalStatus
from tools.simulate.presets import small_config
from tools.simulate.scenario import Package, Parcel, Scan, Scenario, ScenarioConfig, generate

TODAY = date(2026, 11, 26)


@pytest.fixture
def small_scenario() -> Scenario:
    return generate(small_config(), seed=11, today=TODAY)


ScanFactory = Callable[..., Scan]


@pytest.fixture
def make_scan() -> ScanFactory:
    def make(status: CanonicalStatus, day: date = TODAY - timedelta(days=10), hour: int = 12) -> Scan:
        return Scan(status, datetime(day.year, day.month, day.day, hour, tzinfo=UTC), "Shenzhen")

    return make


PackageFactory = Callable[..., tuple[Scenario, Package]]


@pytest.fixture
def one_package() -> PackageFactory:
    """A scenario holding one package with the given scans (defaults: a valid US ePacket order)."""

    def make(
        scans: tuple[Scan, ...] = (),
        *,
        marketplace: str = "US",
        value: str = "4.99",
        service_key: str = "china-post/epacket",
        promised: date = TODAY - timedelta(days=5),
        cancelled_at: datetime | None = None,
        confirmed_at: datetime | None = None,
        ship_from: str = "CN",
    ) -> tuple[Scenario, Package]:
        package = Package(
            order_id="O-1",
            seller_id="S1",
            marketplace=marketplace,
            category="Toys & Games",
            tracking_number="RR123456785CN",
            service_key=service_key,
            value=Decimal(value),
            currency="USD",
            confirmed_at=confirmed_at or datetime.combine(promised - timedelta(days=12), datetime.min.time(), UTC),
            promised_date=promised,
            ship_from=ship_from,
            cancelled_at=cancelled_at,
        )
        parcel = Parcel(package.tracking_number, service_key, marketplace, scans, "test")
        scenario = Scenario(7, TODAY, ScenarioConfig(sellers=()), (package,), {parcel.tracking_number: parcel})
        return scenario, package

    return make
