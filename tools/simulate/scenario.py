"""The pure model: from a seed and a "today", a reproducible marketplace of sellers, orders,
parcels and every carrier scan they will ever get (future ones included).

Nothing here does I/O or reads the clock; :func:`generate` with the same arguments always
returns the same :class:`Scenario`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from shared.schemas import CanonicalStatus
from tools.simulate.catalog import MARKETPLACES, SERVICES, CarrierService, FailureRates, Marketplace, Source
from tools.simulate.numbers import make_tracking_number

Status = CanonicalStatus


@dataclass(frozen=True)
class ValueMix:
    """Shares of orders below, exactly at, and above the marketplace threshold."""

    below: float = 0.85
    at: float = 0.05
    above: float = 0.10


@dataclass(frozen=True)
class LanePhase:
    """From ``from_day`` (days relative to today, negative = past) the lane ships like this."""

    from_day: int
    services: tuple[tuple[str, float], ...]
    values: ValueMix = ValueMix()
    #: Failure rates of this lane's parcels from then on (None: the service's own).
    failures: FailureRates | None = None
    #: Orders per day from then on (None: the lane's).
    orders_per_day: float | None = None


@dataclass(frozen=True)
class Lane:
    """One seller's orders in one marketplace and category."""

    marketplace: str
    category: str
    orders_per_day: float
    services: tuple[tuple[str, float], ...]
    values: ValueMix = ValueMix()
    phases: tuple[LanePhase, ...] = ()
    ship_from: str = "CN"
    #: Failure rates of this lane's parcels (None: the service's own, or the scenario's override).
    failures: FailureRates | None = None

    def shipping_on(self, day_offset: int) -> tuple[tuple[tuple[str, float], ...], ValueMix]:
        services, values = self.services, self.values
        for phase in sorted(self.phases, key=lambda p: p.from_day):
            if day_offset >= phase.from_day:
                services, values = phase.services, phase.values
        return services, values

    def failures_on(self, day_offset: int) -> FailureRates | None:
        failures = self.failures
        for phase in sorted(self.phases, key=lambda p: p.from_day):
            if day_offset >= phase.from_day and phase.failures is not None:
                failures = phase.failures
        return failures

    def orders_on(self, day_offset: int) -> float:
        orders = self.orders_per_day
        for phase in sorted(self.phases, key=lambda p: p.from_day):
            if day_offset >= phase.from_day and phase.orders_per_day is not None:
                orders = phase.orders_per_day
        return orders


@dataclass(frozen=True)
class Seller:
    seller_id: str
    lanes: tuple[Lane, ...]
    #: What the seller is there to show (``healthy``, ``drifting``, ``surface``).
    role: str = "healthy"


@dataclass(frozen=True)
class CarrierStop:
    """A carrier that stops scanning one seller's parcels from a day on (days relative to today).

    Parcels handed over from then on only ever get their electronic label record.
    """

    seller_id: str
    service_key: str
    from_day: int
    #: Share of the parcels handed over from then on that are never scanned.
    share: float = 1.0


@dataclass(frozen=True)
class Blackout:
    """A carrier service records no scan at all from a moment on (hours from today 00:00
    UTC, negative = before), for every seller: parcels in flight go silent too."""

    service_key: str
    from_hour: float


@dataclass(frozen=True)
class Outage:
    """A webhook source that pushes nothing for one day; its pushes arrive a day late."""

    source: Source
    day: int


@dataclass(frozen=True)
class PromiseTransit:
    """Each parcel's transit follows its own promise, as where the promise reflects the
    destination (orders to farther regions get later promised dates and take longer): the
    promise lag is drawn from ``lag_days`` (inclusive), and the parcel is delivered
    ``early_days`` before its promised date, whatever its service's usual transit."""

    lag_days: tuple[int, int] = (8, 20)
    early_days: tuple[float, float] = (1.0, 4.0)
    #: Days from confirmation to the first scan (a wider spread than the services' own).
    pickup_days: tuple[float, float] = (0.12, 1.7)
    #: The services whose parcels follow their promise (empty: every service).
    services: tuple[str, ...] = ()
    #: A second destination region (its share of the orders, its promise lag): orders to two
    #: regions of one marketplace, far apart, on one service (None: one region).
    second_region: tuple[float, tuple[int, int]] | None = None

    def applies_to(self, service_key: str) -> bool:
        return not self.services or service_key in self.services

    def draw_lag(self, rng: random.Random) -> int:
        """A parcel's promise lag (days), from its region's range."""
        lags = self.lag_days
        # Drawn only with a second region, so the other scenarios keep their random streams.
        if self.second_region is not None and rng.random() < self.second_region[0]:
            lags = self.second_region[1]
        return rng.randint(*lags)


@dataclass(frozen=True)
class ScenarioConfig:
    sellers: tuple[Seller, ...]
    history_days: int = 45
    future_days: int = 14
    cancel_rate: float = 0.015
    #: Share of orders shipped in the same parcel as the seller's previous order.
    combined_rate: float = 0.03
    buy_shipping_rate: float = 0.05
    duplicate_push_rate: float = 0.06
    late_push_rate: float = 0.04
    shuffle_events_rate: float = 0.3
    stops: tuple[CarrierStop, ...] = ()
    outages: tuple[Outage, ...] = ()
    blackouts: tuple[Blackout, ...] = ()
    #: Failure rates that replace a service's own (service key, rates), to stress a check.
    failures: tuple[tuple[str, FailureRates], ...] = ()
    #: Transit that follows each parcel's promise (None: the service's own, independent of it).
    promise_transit: PromiseTransit | None = None
    #: History as a seller's backfill: only the orders promised in the last this many days,
    #: plus those still open (no delivery scan) today; None: every order since ``history_days``.
    backfill_days: int | None = None


@dataclass(frozen=True)
class Scan:
    status: CanonicalStatus
    occurred_at: datetime
    location: str
    #: The carrier's own code for an undocumented event (status UNKNOWN), else "".
    raw_code: str = ""


@dataclass(frozen=True)
class Parcel:
    tracking_number: str
    service_key: str
    destination: str
    scans: tuple[Scan, ...]
    #: How this parcel's tracking goes (``delivered``, ``no_pickup``, ``lost_in_transit``, ...).
    fate: str

    @property
    def service(self) -> CarrierService:
        return SERVICES[self.service_key]


@dataclass(frozen=True)
class Package:
    """One confirmed order (several may share a parcel)."""

    order_id: str
    seller_id: str
    marketplace: str
    category: str
    tracking_number: str
    service_key: str
    value: Decimal
    currency: str
    confirmed_at: datetime
    promised_date: date
    ship_from: str = "CN"
    buy_shipping: bool = False
    cancelled_at: datetime | None = None

    @property
    def service(self) -> CarrierService:
        return SERVICES[self.service_key]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.seller_id, self.marketplace, self.category)


@dataclass(frozen=True)
class Scenario:
    seed: int
    today: date
    config: ScenarioConfig
    packages: tuple[Package, ...]
    parcels: dict[str, Parcel] = field(hash=False)

    @property
    def start(self) -> date:
        return self.today - timedelta(days=self.config.history_days)

    def seller_categories(self) -> list[tuple[str, str, str]]:
        return sorted({package.key for package in self.packages})

    def role_of(self, seller_id: str) -> str:
        return next(seller.role for seller in self.config.sellers if seller.seller_id == seller_id)


ORIGIN_CITIES = ("Shenzhen", "Guangzhou", "Yiwu", "Shanghai", "Dongguan")
HUBS = ("Hong Kong", "Guangzhou Baiyun", "Shanghai Pudong")
DESTINATION_CITIES = {
    "US": "Los Angeles",
    "UK": "London",
    "DE": "Frankfurt",
    "JP": "Tokyo",
    "SG": "Singapore",
    "AE": "Dubai",
    "SA": "Riyadh",
    "MX": "Mexico City",
    "AU": "Sydney",
}
#: Undocumented China Post codes seen in the wild (carriers.md): UNKNOWN until mapped.
UNKNOWN_CODES = {
    Source.CHINA_POST_EMS: ("305", "516", "747"),
    Source.CHINA_POST_TRACES: ("305", "516", "747"),
    Source.YUNEXPRESS: ("SORT_CENTER_SCAN", "LINEHAUL_BOOKED"),
    Source.YANWEN: ("XX90", "WH15"),
}


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    keys = [key for key, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(keys, weights)[0]


def _quantize(value: Decimal, market: Marketplace) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-market.decimals))


def order_value(rng: random.Random, market: Marketplace, mix: ValueMix) -> Decimal:
    """A value below, at or above the threshold; never inside an FX-ambiguous band."""
    threshold, unit = market.threshold, Decimal(1).scaleb(-market.decimals)
    low_band, high_band = market.ambiguous_band
    kind = rng.choices(("below", "at", "above"), (mix.below, mix.at, mix.above))[0]
    if market.fx_derived:
        if kind == "below":
            return _quantize(low_band * Decimal(str(rng.uniform(0.25, 0.95))), market)
        return _quantize(high_band * Decimal(str(rng.uniform(1.05, 3.0))), market)
    if kind == "at":
        return threshold
    if kind == "below":
        if rng.random() < 0.15:
            return threshold - unit
        return max(unit, _quantize(threshold * Decimal(str(rng.uniform(0.2, 0.97))), market))
    return _quantize(threshold * Decimal(str(rng.uniform(1.02, 6.0))), market)


def _at(moment: datetime, days: float) -> datetime:
    return (moment + timedelta(days=days)).replace(microsecond=0)


def make_scans(
    rng: random.Random,
    service: CarrierService,
    destination: str,
    handed_over: datetime,
    stopped: bool,
    odds: FailureRates | None = None,
    promised: tuple[PromiseTransit, float] | None = None,
) -> tuple[tuple[Scan, ...], str]:
    """Every scan a parcel will ever get, and its fate. With ``promised`` (the promise
    model and the days from hand-over to the parcel's promised date), the pickup and the
    transit follow the promise instead of the service's own ranges."""
    origin, hub, city = rng.choice(ORIGIN_CITIES), rng.choice(HUBS), DESTINATION_CITIES[destination]
    scans = [Scan(Status.INFO_RECEIVED, _at(handed_over, -rng.uniform(0.02, 0.2)), origin)]
    unknown_codes = UNKNOWN_CODES.get(service.source, ())
    odds = odds or service.failures
    if unknown_codes and rng.random() < odds.unknown_code:
        scans.append(Scan(Status.UNKNOWN, _at(handed_over, rng.uniform(0.3, 3.0)), origin, rng.choice(unknown_codes)))
    if stopped:
        return tuple(scans), "carrier_stopped_scanning"
    draw = rng.random()
    if draw < odds.no_pickup:
        return tuple(scans), "no_pickup"
    late = rng.random() < odds.late_pickup
    pickup = rng.uniform(3.0, 8.0) if late else rng.uniform(0.15, 1.2)
    transit = rng.uniform(*service.transit_days) + (pickup if late else 0.0)
    if promised is not None:
        # Drawn only with a promise model, so the other scenarios keep their random streams.
        model, to_promise = promised
        pickup = rng.uniform(3.0, 8.0) if late else rng.uniform(*model.pickup_days)
        transit = max(pickup + 2.0, to_promise - rng.uniform(*model.early_days))
    scans += [
        Scan(Status.ACCEPTED, _at(handed_over, pickup), origin),
        Scan(Status.IN_TRANSIT, _at(handed_over, pickup + rng.uniform(0.3, 1.0)), hub),
    ]
    if not service.delivery_scans:
        # Surface / 平邮: the last scan is the export; nothing at destination.
        scans.append(Scan(Status.IN_TRANSIT, _at(handed_over, pickup + rng.uniform(1.5, 3.0)), hub))
        return tuple(scans), "surface_no_delivery_scan"
    scans.append(Scan(Status.IN_TRANSIT, _at(handed_over, transit * 0.45), hub))
    if draw < odds.no_pickup + odds.lost_in_transit:
        return tuple(scans), "lost_in_transit"
    if odds.hold_days > 0:
        # Drawn only when held, so the other scenarios keep their random streams.
        transit += odds.hold_days * rng.uniform(0.5, 1.5)
    arrival = transit * 0.75
    if odds.destination_hold_days > 0:
        # Drawn only when held, so the other scenarios keep their random streams.
        transit += odds.destination_hold_days * rng.uniform(0.5, 1.5)
    scans += [
        Scan(Status.ARRIVED_DESTINATION, _at(handed_over, arrival), city),
        Scan(Status.OUT_FOR_DELIVERY, _at(handed_over, transit - 0.25), city),
    ]
    if draw < odds.no_pickup + odds.lost_in_transit + odds.no_delivery_scan:
        return tuple(scans), "no_delivery_scan"
    if rng.random() < odds.attempt_first:
        scans += [
            Scan(Status.ATTEMPTED_DELIVERY, _at(handed_over, transit), city),
            Scan(Status.OUT_FOR_DELIVERY, _at(handed_over, transit + 0.8), city),
            Scan(Status.DELIVERED, _at(handed_over, transit + 1.0), city),
        ]
        return tuple(scans), "delivered_after_attempt"
    scans.append(Scan(Status.DELIVERED, _at(handed_over, transit), city))
    return tuple(scans), "late_pickup_delivered" if late else "delivered"


def generate(config: ScenarioConfig, seed: int, today: date) -> Scenario:
    """The whole scenario, from ``today - history_days`` to ``today + future_days``."""
    rng = random.Random(f"vtrwatch-sim:{seed}:{today.isoformat()}")
    stops = {(stop.seller_id, stop.service_key): stop for stop in config.stops}
    failures = dict(config.failures)
    blackouts = {
        blackout.service_key: datetime.combine(today, time(), UTC) + timedelta(hours=blackout.from_hour)
        for blackout in config.blackouts
    }
    packages: list[Package] = []
    parcels: dict[str, Parcel] = {}
    used_numbers: set[str] = set()
    order_serial = 0
    for seller in config.sellers:
        for lane in seller.lanes:
            market = MARKETPLACES[lane.marketplace]
            last_parcel: Package | None = None
            for offset in range(-config.history_days, config.future_days + 1):
                day = today + timedelta(days=offset)
                services, values = lane.shipping_on(offset)
                # Orders are confirmed in Chinese business hours (01:00-14:00 UTC).
                times = sorted(rng.uniform(1.0, 14.0) for _ in range(_poisson(rng, lane.orders_on(offset))))
                for hours in times:
                    order_serial += 1
                    confirmed_at = (datetime.combine(day, time(), UTC) + timedelta(hours=hours)).replace(microsecond=0)
                    combine = (
                        last_parcel is not None
                        and last_parcel.confirmed_at.date() == day
                        and rng.random() < config.combined_rate
                    )
                    if combine and last_parcel is not None:
                        service_key, tracking_number = last_parcel.service_key, last_parcel.tracking_number
                        promised = last_parcel.promised_date
                    else:
                        service_key = _weighted(rng, services)
                        service = SERVICES[service_key]
                        tracking_number = make_tracking_number(service.number_format, rng)
                        while tracking_number in used_numbers:
                            tracking_number = make_tracking_number(service.number_format, rng)
                        used_numbers.add(tracking_number)
                        promise_model = config.promise_transit
                        if promise_model is not None and not promise_model.applies_to(service_key):
                            promise_model = None
                        promised = day + timedelta(days=_promise_lag(rng, promise_model, service))
                        stop = stops.get((seller.seller_id, service_key))
                        stopped = stop is not None and offset >= stop.from_day
                        if stopped and stop is not None and stop.share < 1.0:
                            # Drawn only for partial stops, so full stops keep their random stream.
                            stopped = rng.random() < stop.share
                        scans, fate = make_scans(
                            rng,
                            service,
                            lane.marketplace,
                            confirmed_at,
                            stopped,
                            lane.failures_on(offset) or failures.get(service_key),
                            _promise_of(promise_model, confirmed_at, promised),
                        )
                        silent_from = blackouts.get(service_key)
                        if silent_from is not None and any(scan.occurred_at >= silent_from for scan in scans):
                            scans = tuple(scan for scan in scans if scan.occurred_at < silent_from)
                            fate = "carrier_blackout"
                        parcels[tracking_number] = Parcel(tracking_number, service_key, lane.marketplace, scans, fate)
                    cancelled_at = None
                    if rng.random() < config.cancel_rate:
                        # Cancelled within hours, before any delivery scan.
                        cancelled_at = _at(confirmed_at, rng.uniform(0.05, 1.5))
                    package = Package(
                        order_id=f"{seller.seller_id}-{order_serial:07d}",
                        seller_id=seller.seller_id,
                        marketplace=lane.marketplace,
                        category=lane.category,
                        tracking_number=tracking_number,
                        service_key=service_key,
                        value=order_value(rng, market, values),
                        currency=market.currency,
                        confirmed_at=confirmed_at,
                        promised_date=promised,
                        ship_from=lane.ship_from,
                        buy_shipping=rng.random() < config.buy_shipping_rate,
                        cancelled_at=cancelled_at,
                    )
                    packages.append(package)
                    last_parcel = package
    packages.sort(key=lambda p: (p.confirmed_at, p.order_id))
    if config.backfill_days is not None:
        packages, parcels = _backfilled(packages, parcels, today, config.backfill_days)
    return Scenario(seed=seed, today=today, config=config, packages=tuple(packages), parcels=parcels)


def _promise_lag(rng: random.Random, model: PromiseTransit | None, service: CarrierService) -> int:
    """Days from the confirmation to the promised date: the promise model's, else the service's."""
    return model.draw_lag(rng) if model is not None else rng.randint(*service.promise_days)


def _promise_of(
    model: PromiseTransit | None, confirmed_at: datetime, promised: date
) -> tuple[PromiseTransit, float] | None:
    """The promise model and the days from ``confirmed_at`` to the end of the promised date."""
    if model is None:
        return None
    end = datetime.combine(promised, time(), UTC) + timedelta(days=1)
    return model, (end - confirmed_at).total_seconds() / 86400.0


def _backfilled(
    packages: list[Package], parcels: dict[str, Parcel], today: date, days: int
) -> tuple[list[Package], dict[str, Parcel]]:
    """What a seller's backfill holds: the orders promised in the last ``days`` days (and
    later), plus the older ones still open today (no delivery scan before today 00:00 UTC).
    Selected by promised date, so the oldest confirmations are only the long promises and
    the open ones: a survival estimate needs delayed entry there."""
    start = datetime.combine(today, time(), UTC)
    first = today - timedelta(days=days)

    def open_today(package: Package) -> bool:
        scans = parcels[package.tracking_number].scans
        return package.cancelled_at is None and not any(
            scan.status in (Status.DELIVERED, Status.ATTEMPTED_DELIVERY) and scan.occurred_at < start for scan in scans
        )

    kept = [package for package in packages if package.promised_date >= first or open_today(package)]
    numbers = {package.tracking_number for package in kept}
    return kept, {number: parcel for number, parcel in parcels.items() if number in numbers}
