"""The package record (one row of ``packages`` in memory) and what is decided from it alone:
its deadline, whether more scans can change it, and how the confirmations of an order
(the seller's ERP's and Amazon's) make one package."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from typing import Any

from services.scorer.domain.model.lanes import LaneKey
from services.scorer.domain.policy import (
    STRUCTURAL_REASONS,
    ShipmentFacts,
)
from shared.schemas import (
    DELIVERY_SCAN_STATUSES,
    PHYSICAL_SCAN_STATUSES,
    SOURCE_AMAZON,
    SOURCE_ERP,
    UNCATEGORISED_FLAGS,
    PackageState,
    ShipmentConfirmed,
    TrackingEvent,
    TrackingLevel,
)
from shared.topics import normalise_tracking_number

MICRO = 1_000_000


def naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    # Arithmetic, not ``replace(tzinfo=None)``: ten times faster, and this runs for every
    # time of every record.
    return _NAIVE_EPOCH + (moment - _UTC_EPOCH)


_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_NAIVE_EPOCH = datetime(1970, 1, 1)


def service_key(service: str | None) -> str:
    return (service or "").strip().casefold()[:200]


@dataclass(slots=True)
class PackageRow:
    seller_id: str
    order_id: str
    marketplace: str
    category: str
    tracking_number: str
    carrier_name: str
    carrier: str | None
    service: str | None
    order_amount: str
    order_currency: str
    ship_from_country: str
    buy_shipping: bool
    risk_flags: str
    confirmed_at: datetime
    received_at: datetime
    promised_date: date
    state: str = PackageState.PENDING.value
    reason: str | None = None
    required_tracking: str = TrackingLevel.PARTIAL.value
    probability_micro: int = 0
    first_scan_at: datetime | None = None
    delivery_scan_at: datetime | None = None
    last_scan_at: datetime | None = None
    #: When the clock job next recomputes this package (pending packages only).
    review_at: datetime | None = None
    version: int = 0
    #: Who confirmed it: ``erp``, ``amazon``, or ``amazon+erp`` (Amazon's record with the
    #: ERP's fields, :data:`ERP_FIELDS`); see :func:`combine`.
    source: str = SOURCE_ERP
    #: The ERP confirmation's times when the row is ``amazon+erp`` (its own are Amazon's):
    #: what a later ERP confirmation is compared with.
    erp_confirmed_at: datetime | None = None
    erp_received_at: datetime | None = None
    id: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.seller_id, self.order_id)

    @property
    def scope(self) -> tuple[str, str, str]:
        return (self.seller_id, self.marketplace, self.category)

    def facts(self) -> ShipmentFacts:
        return ShipmentFacts(
            marketplace=self.marketplace,
            carrier=self.carrier,
            service=self.service,
            tracking_number=self.tracking_number,
            order_amount=self.order_amount,
            order_currency=self.order_currency,
            ship_from_country=self.ship_from_country,
            buy_shipping=self.buy_shipping,
            risk_flags=tuple(flag for flag in self.risk_flags.split(",") if flag),
        )

    @property
    def lane(self) -> LaneKey:
        return (self.seller_id, self.carrier or "", service_key(self.service), self.ship_from_country, self.marketplace)

    def content(self) -> tuple[Any, ...]:
        """Everything but the bookkeeping (version, id, review_at): equal content means nothing to write."""
        return _CONTENT(self)  # type: ignore[no-any-return]

    def as_values(self) -> dict[str, Any]:
        return dict(zip(PACKAGE_VALUE_NAMES, package_values(self), strict=True))

    def clone(self) -> PackageRow:
        # dataclasses.replace is several times slower, and this runs for every package of a batch.
        return PackageRow(*_ALL(self))


#: The columns of ``packages`` in PackageRow's field order (selects use this order too).
PACKAGE_COLUMNS = tuple(f.name for f in fields(PackageRow))


_ALL = attrgetter(*PACKAGE_COLUMNS)


_CONTENT = attrgetter(*(name for name in PACKAGE_COLUMNS if name not in ("version", "id", "review_at")))


PACKAGE_VALUE_NAMES = tuple(name for name in PACKAGE_COLUMNS if name != "id")


package_values = attrgetter(*PACKAGE_VALUE_NAMES)


def package_from_confirmation(message: ShipmentConfirmed) -> PackageRow:
    return PackageRow(
        seller_id=message.seller_id,
        order_id=message.order_id,
        marketplace=message.marketplace,
        category=message.category,
        tracking_number=normalise_tracking_number(message.tracking_number),
        carrier_name=message.carrier_name,
        carrier=message.carrier,
        service=message.service,
        order_amount=message.order_value.amount,
        order_currency=message.order_value.currency,
        ship_from_country=message.ship_from_country,
        buy_shipping=message.buy_shipping,
        risk_flags=",".join(sorted(message.risk_flags)),
        confirmed_at=naive_utc(message.confirmed_at),
        received_at=naive_utc(message.received_at),
        promised_date=message.promised_delivery_date,
        source=SOURCE_AMAZON if message.source == SOURCE_AMAZON else SOURCE_ERP,
    )


def package_from_row(row: Any) -> PackageRow:
    """A row selected with ``PACKAGE_COLUMNS`` in that order."""
    return PackageRow(*row)


@dataclass(frozen=True, slots=True)
class Cancellation:
    seller_id: str | None
    order_id: str | None
    cancelled_at: datetime

    def applies_to(self, package: PackageRow) -> bool:
        return (
            (self.seller_id is None or self.seller_id == package.seller_id)
            and (self.order_id is None or self.order_id == package.order_id)
            and self.cancelled_at >= package.confirmed_at
        )


def counted_deadline(promised_date: date) -> datetime:
    """A package first counts on the day after its promised date, with the scans that
    occurred before the end of that day (domain.md section 3)."""
    return datetime.combine(promised_date + timedelta(days=2), time())


NOON = time(12)


def settled(package: PackageRow, new_scans: Sequence[TrackingEvent] = ()) -> bool:
    """More scans cannot change this package: valid stays valid (validity only grows with
    scans), cancelled stays cancelled, and a structural reason does not depend on scans.

    A valid package still takes a scan that moves one of its milestones (an earlier first
    scan, or its first delivery scan): the forecast model learns from them, partial-tracking
    parcels included, which is how a service that never scans delivery shows in the data.
    """
    if package.state == PackageState.CANCELLED or package.reason in STRUCTURAL_REASONS:
        return True
    if package.state != PackageState.VALID:
        return False
    first, delivery = package.first_scan_at, package.delivery_scan_at
    for event in new_scans:
        if event.status not in PHYSICAL_SCAN_STATUSES:
            continue
        moment = naive_utc(event.occurred_at)
        if first is None or moment < first:
            return False
        if event.status in DELIVERY_SCAN_STATUSES and (delivery is None or moment < delivery):
            return False
    return True


#: A package confirmed by both: Amazon's record, with the seller's ERP's :data:`ERP_FIELDS`.
SOURCE_BOTH = "amazon+erp"
#: What the seller's ERP decides when Amazon also confirmed the order: the seller's own
#: category, and Buy Shipping, which Amazon's order does not record. Everything else
#: (tracking number, carrier name and slug, service, ship time, promised date, marketplace,
#: order value, ship-from country, the risk flags of that number and name) is Amazon's:
#: it is what Amazon scores (docs/amazon.md, "Which source wins").
ERP_FIELDS = ("category", "buy_shipping")

_Key = tuple[datetime, datetime]


def _amazon_key(row: PackageRow) -> _Key | None:
    """Amazon's confirmations are reads of Amazon's current record of the order: the newest
    read wins (receipt time first), even when it names a package shipped earlier than the
    one before (the order's first package got its number late) or the same package."""
    return None if row.source == SOURCE_ERP else (row.received_at, row.confirmed_at)


def _erp_key(row: PackageRow) -> _Key | None:
    if row.source == SOURCE_ERP:
        return (row.confirmed_at, row.received_at)
    if row.source == SOURCE_BOTH and row.erp_confirmed_at is not None and row.erp_received_at is not None:
        return (row.erp_confirmed_at, row.erp_received_at)
    return None


def _newest(
    stored: PackageRow | None, stored_key: _Key | None, fresh: PackageRow, fresh_key: _Key | None
) -> PackageRow | None:
    """Whichever of the two holds the newer confirmation of one source (ties: the stored one)."""
    if fresh_key is not None and (stored_key is None or fresh_key > stored_key):
        return fresh
    return stored if stored_key is not None else None


def combine(stored: PackageRow | None, fresh: PackageRow) -> PackageRow | None:
    """The package that ``stored`` and ``fresh`` (rows of one order's confirmations) make
    together; None when ``fresh`` adds nothing newer to ``stored``. ``stored`` is left as
    it was; ``fresh`` (a batch's own row) is returned as it is when it alone is the package.

    A row holds the newest Amazon confirmation and the newest ERP confirmation seen (either
    may be missing): per source the newer one wins (an ERP's by confirmation time, then
    receipt time, as before Amazon; Amazon's by the time the worker read it, then ship time),
    and the package is Amazon's record with the ERP's :data:`ERP_FIELDS` when both exist.
    That makes the result a function of the *set* of confirmations: any arrival order, any
    redelivery, gives the same package. The evaluation fields are left to the evaluator.
    """
    if stored is None:
        return fresh
    amazon = _newest(stored, _amazon_key(stored), fresh, _amazon_key(fresh))
    erp = _newest(stored, _erp_key(stored), fresh, _erp_key(fresh))
    if amazon is not fresh and erp is not fresh:
        return None
    if amazon is None or erp is None:
        return fresh  # one source only, and fresh is its newest confirmation
    package = amazon.clone()
    for name in ERP_FIELDS:
        setattr(package, name, getattr(erp, name))
    package.erp_confirmed_at, package.erp_received_at = _erp_key(erp) or (None, None)
    package.source = SOURCE_BOTH
    # The catalogue's "uncategorised" flags no longer apply: the category is the seller's.
    flags = [flag for flag in package.risk_flags.split(",") if flag and flag not in UNCATEGORISED_FLAGS]
    package.risk_flags = ",".join(flags)
    return package


def combined_confirmations(rows: Iterable[PackageRow]) -> dict[tuple[str, str], PackageRow]:
    """The package each order's confirmations in a batch make (:func:`combine`), as
    unevaluated rows; their times are naive UTC, so they order as the messages' aware times do."""
    combined: dict[tuple[str, str], PackageRow] = {}
    for row in rows:
        key = (row.seller_id, row.order_id)
        merged = combine(combined.get(key), row)
        if merged is not None:
            combined[key] = merged
    return combined
