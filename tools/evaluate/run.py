"""Run one scenario through the scorer and compare its warnings with the ground truth.

The scenario's records are the canonical messages the ingest produces (confirmations,
cancellations, tracking events), applied by the scorer's own batch code to a real
database; then the clock job's model refresh, reviews and expiry run, and the scores are
read exactly as ``GET /v1/sellers/{id}/vtr`` computes them. ``order`` says which arrives
first: ``scans-first`` (carriers' history before the ERP's shipments) or
``shipments-first`` (an ERP export first, the carriers' history afterwards, with the clock
job running in between, as it would during a real backfill).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec
from aiokafka import ConsumerRecord
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.shipments import risk_flags
from services.scorer.domain.packages import NOON
from services.scorer.runtime.service import ScorerService
from services.scorer.settings import ScorerSettings
from services.scorer.storage.plan import apply_records
from services.scorer.storage.schema import metadata, packages
from shared.carriers import carrier_slug
from shared.db import create_engine
from shared.schemas import (
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    Level,
    Money,
    ShipmentCancelled,
    ShipmentConfirmed,
    TrackingEvent,
    tracking_event_id,
)
from shared.topics import SHIPMENTS, TRACKING_EVENTS
from tools.simulate.scenario import Package, Scenario
from tools.simulate.truth import FLOOR, package_valid, vtr_by_key

BATCH = 2000
#: Creating or dropping a scratch database waits this long for the server (a loaded machine).
ADMIN_TIMEOUT_SECONDS = 60
ORDERS = ("scans-first", "shipments-first")
WARNED = {Level.AT_RISK.value, Level.BREACH.value}


@dataclass
class Case:
    """One seller x marketplace x category, as the scorer saw it and as it really went."""

    family: str
    seed: int
    order: str
    seller_id: str
    marketplace: str
    category: str
    role: str
    #: Days from today to the first day whose true VTR is below the floor (None: not within 14).
    true_lead: int | None
    level: str
    days_to_breach: int | None
    breach_probability: float | None
    counts_match: bool
    total: int
    vtr: float | None = None
    #: The score's ``model`` block as read (``lanes_learnt``, ``today_level``, ...): whether
    #: the cap of docs/forecast.md section 7 applied, and what the notifier may escalate to.
    model: dict[str, object] | None = None

    @property
    def warned(self) -> bool:
        return self.level in WARNED


@dataclass
class Outcome:
    cases: list[Case] = field(default_factory=list)
    #: (probability, became valid in time) of every pending package.
    packages: list[tuple[float, bool]] = field(default_factory=list)
    #: The same, read live (``evaluate_scenario(live=True)``).
    live_packages: list[tuple[float, bool]] = field(default_factory=list)
    #: (probability, valid, group) of the pending packages read after a refresh by hand:
    #: the group is the truth of the package's category (``healthy`` or ``breaching``
    #: within 14 days) and its stage (:func:`stage_of`), for the split reliability table.
    details: list[tuple[float, bool, str]] = field(default_factory=list)


#: Pending reasons that say the parcel's carrier or the parcel itself went silent.
SILENT_REASONS = frozenset({"stalled_in_transit", "carrier_silent"})


def stage_of(first_scan_at: datetime | None, reason: str | None) -> str:
    """``unscanned`` (no first scan yet), ``silent`` (stalled or its carrier silent) or
    ``scanned`` (awaiting its delivery scan)."""
    if reason in SILENT_REASONS:
        return "silent"
    return "unscanned" if first_scan_at is None else "scanned"


def _record(
    message: TrackingEvent | ShipmentConfirmed | ShipmentCancelled, offset: int
) -> ConsumerRecord[bytes, bytes]:
    if isinstance(message, TrackingEvent):
        topic, value = TRACKING_EVENTS, TRACKING_EVENT_CODEC.encode(message)
    else:
        topic, value = SHIPMENTS, SHIPMENT_CODEC.encode(message)
    key = message.tracking_number.encode()
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), [])


def confirmation(package: Package) -> ShipmentConfirmed:
    service = package.service
    carrier = carrier_slug(service.carrier_name)
    return ShipmentConfirmed(
        order_id=package.order_id,
        seller_id=package.seller_id,
        marketplace=package.marketplace,
        category=package.category,
        carrier_name=service.carrier_name,
        carrier=carrier,
        tracking_number=package.tracking_number,
        order_value=Money(str(package.value), package.currency),
        confirmed_at=package.confirmed_at,
        promised_delivery_date=package.promised_date,
        received_at=package.confirmed_at,
        service=service.service,
        ship_from_country=package.ship_from,
        buy_shipping=package.buy_shipping,
        risk_flags=risk_flags(carrier, package.tracking_number),
    )


def messages(
    scenario: Scenario, known_at: datetime
) -> tuple[list[ShipmentConfirmed | ShipmentCancelled], list[TrackingEvent]]:
    """What the ingest would have put on the topics by ``known_at``."""
    shipments: list[ShipmentConfirmed | ShipmentCancelled] = []
    numbers: set[str] = set()
    for package in scenario.packages:
        if package.confirmed_at > known_at:
            continue
        shipments.append(confirmation(package))
        numbers.add(package.tracking_number)
        if package.cancelled_at is not None and package.cancelled_at <= known_at:
            shipments.append(
                ShipmentCancelled(
                    tracking_number=package.tracking_number,
                    cancelled_at=package.cancelled_at,
                    received_at=package.cancelled_at,
                    seller_id=package.seller_id,
                    order_id=package.order_id,
                )
            )
    # A push source in an outage (``ScenarioConfig.outages``, whole UTC days up to today)
    # has not delivered the scans that occurred since it began.
    down = {(outage.source, scenario.today + timedelta(days=outage.day)) for outage in scenario.config.outages}
    events = []
    for number in sorted(numbers):
        parcel = scenario.parcels[number]
        carrier = carrier_slug(parcel.service.carrier_name) or parcel.service.carrier_name
        for scan in parcel.scans:
            if scan.occurred_at > known_at or (parcel.service.source, scan.occurred_at.date()) in down:
                continue
            code = scan.raw_code or scan.status.value
            events.append(
                TrackingEvent(
                    event_id=tracking_event_id(carrier, number, code, scan.occurred_at, scan.location),
                    carrier=carrier,
                    tracking_number=number,
                    status=scan.status,
                    carrier_code=code,
                    occurred_at=scan.occurred_at,
                    received_at=known_at,
                    source=parcel.service.source.value,
                    location=scan.location,
                )
            )
    return shipments, events


@asynccontextmanager
async def scratch_database(admin_url: str | None, directory: str) -> AsyncIterator[str]:
    """A new empty database: on the PostgreSQL server at ``admin_url``, else a SQLite file."""
    if admin_url is None:
        yield f"sqlite+aiosqlite:///{directory}/evaluate-{uuid.uuid4().hex[:8]}.db"
        return
    name = f"vtrwatch_evaluate_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url, timeout=ADMIN_TIMEOUT_SECONDS)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
    finally:
        admin = await asyncpg.connect(admin_url, timeout=ADMIN_TIMEOUT_SECONDS)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def apply_messages(
    engine: AsyncEngine, service: ScorerService, items: Iterable[object], today: date, now: datetime
) -> None:
    """Apply the messages in batches, as the scorer's consumer does (and counts them)."""
    records = [_record(message, offset) for offset, message in enumerate(items, start=1)]  # type: ignore[arg-type]
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        async with engine.begin() as connection:
            await apply_records(connection, service.evaluator, batch, today, now)
        service.batches.records_applied += len(batch)


def true_leads(scenario: Scenario, today: date, horizon: int = 14) -> dict[tuple[str, str, str], int | None]:
    series = [vtr_by_key(scenario, today + timedelta(days=k)) for k in range(horizon + 1)]
    leads: dict[tuple[str, str, str], int | None] = {}
    for key in scenario.seller_categories():
        leads[key] = next(
            (k for k, tallies in enumerate(series) if (vtr := tallies[key].vtr if key in tallies else None) is not None
             and vtr < FLOOR),
            None,
        )  # fmt: skip
    return leads


#: How long after the last record a seller reads in the live mode (the issue's figure).
LIVE_READ_SECONDS = 80.0


def live_label(order: str) -> str:
    return f"{order}, live {LIVE_READ_SECONDS:.0f} s"


class VirtualClock:
    """The evaluated moment, moved forward by the live mode (naive UTC, as the scorer keeps it)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FeedingScorer(ScorerService):
    """The scorer fed in-process: ``behind`` stands for its consumer's lag (a backlog being
    applied), which in the services the transactional consumer reports."""

    behind = False

    def caught_up(self) -> bool:
        return not self.behind


async def evaluate_scenario(
    family: str, seed: int, scenario: Scenario, order: str, database_url: str, known_at: datetime, live: bool = False
) -> Outcome:
    """Feed the scenario in ``order`` and read the scores after a refresh by hand (the
    default), or, ``live``, as a seller would: the service's own clock (its timer and its
    triggers) on a virtual clock from a fresh deployment, read ``LIVE_READ_SECONDS`` after
    the feed (cases labelled :func:`live_label`), then after a refresh by hand as well."""
    today = scenario.today
    clock = VirtualClock(known_at.astimezone(UTC).replace(tzinfo=None))
    engine = create_engine(database_url)
    outcome = Outcome()
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        settings = ScorerSettings(database_url=database_url, api_keys="evaluate")  # type: ignore[arg-type]
        service = FeedingScorer(settings, engine, today=lambda: today, now=clock)
        shipments, events = messages(scenario, known_at)
        first, second = (shipments, events) if order == "shipments-first" else (events, shipments)
        if live:
            # A fresh deployment: its first clock run builds a model from nothing, then the
            # backlog arrives; the clock runs once meanwhile and as soon as it is applied.
            await service.clock.run_once()
            service.behind = True
            # The feed takes the time it takes on this machine, on the service's clock too.
            feeding = time.monotonic()
            await apply_messages(engine, service, first, today, clock())
            await service.clock.run_once()
            await apply_messages(engine, service, second, today, clock())
            clock.advance(time.monotonic() - feeding)
            service.behind = False
            elapsed = 0.0
            while elapsed <= LIVE_READ_SECONDS:
                await service.clock.run_once()
                step = min(settings.clock_interval_seconds, LIVE_READ_SECONDS - elapsed) or 1.0
                clock.advance(step)
                elapsed += step
            await _read(engine, service, scenario, family, seed, live_label(order), known_at, outcome)
        else:
            await apply_messages(engine, service, first, today, clock())
            if order == "shipments-first":
                await service.clock.run_once(refresh=True)
            await apply_messages(engine, service, second, today, clock())
        await service.clock.run_once(refresh=True)
        await _read(engine, service, scenario, family, seed, order, known_at, outcome)
    finally:
        await engine.dispose()
    return outcome


async def _read(
    engine: AsyncEngine,
    service: ScorerService,
    scenario: Scenario,
    family: str,
    seed: int,
    label: str,
    known_at: datetime,
    outcome: Outcome,
) -> None:
    """The scores as ``GET .../vtr`` computes them, and the pending packages' probabilities."""
    today = scenario.today
    leads = true_leads(scenario, today)
    known_truth = vtr_by_key(scenario, today, known_at)
    by_seller: dict[str, dict[tuple[str, str], object]] = {}
    async with engine.connect() as connection:
        for seller_id in sorted({key[0] for key in leads}):
            by_seller[seller_id] = {
                (c.marketplace, c.category): c for c in await service.scoring.scores(connection, seller_id, today)
            }
        rows = (
            await connection.execute(
                select(
                    packages.c.order_id, packages.c.probability_micro, packages.c.first_scan_at, packages.c.reason
                ).where(packages.c.state == "pending", packages.c.promised_date >= today)
            )
        ).all()
    for key, lead in sorted(leads.items(), key=lambda item: item[0]):
        category_score = by_seller[key[0]].get((key[1], key[2]))
        truth = known_truth.get(key)
        if category_score is None:
            continue
        s = category_score.score  # type: ignore[attr-defined]
        note = category_score.model  # type: ignore[attr-defined]
        matches = (truth is not None and (s.total, s.valid) == (truth.total, truth.valid)) or (
            truth is None and s.total == 0
        )
        outcome.cases.append(
            Case(
                family=family,
                seed=seed,
                order=label,
                seller_id=key[0],
                marketplace=key[1],
                category=key[2],
                role=scenario.role_of(key[0]),
                true_lead=lead,
                level=category_score.level.value,  # type: ignore[attr-defined]
                days_to_breach=s.days_to_breach,
                breach_probability=s.breach_probability,
                counts_match=bool(matches),
                total=s.total,
                vtr=s.vtr,
                model=None if note is None else msgspec.to_builtins(note),
            )
        )
    by_order = {package.order_id: package for package in scenario.packages}
    read = outcome.packages if label in ORDERS else outcome.live_packages
    for order_id, probability_micro, first_scan_at, reason in rows:
        package = by_order[order_id]
        probability = probability_micro / 1_000_000
        valid = package_valid(scenario, package, package.promised_date + timedelta(days=1))
        read.append((probability, valid))
        if label in ORDERS:
            key = (package.seller_id, package.marketplace, package.category)
            health = "healthy" if leads.get(key) is None else "breaching"
            outcome.details.append((probability, valid, f"{health}/{stage_of(first_scan_at, reason)}"))


def noon(day: date) -> datetime:
    return datetime.combine(day, NOON, UTC)
