"""The canonical messages on vtrwatch's topics, encoded as JSON (UTF-8) with msgspec.

msgspec validates while it decodes and is several times faster than building pydantic
models, which matters on the ingest and scorer hot paths. :class:`Codec` is the one way
to turn bytes into messages and back; a malformed message raises :class:`ContractError`
that says which field is wrong.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

import msgspec

UtcDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
CountryCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
DecimalString = Annotated[str, msgspec.Meta(pattern=r"^\d+(\.\d+)?$")]


class CanonicalStatus(StrEnum):
    """Carrier-independent scan status (../shared/carriers.md)."""

    INFO_RECEIVED = "INFO_RECEIVED"
    ACCEPTED = "ACCEPTED"
    IN_TRANSIT = "IN_TRANSIT"
    ARRIVED_DESTINATION = "ARRIVED_DESTINATION"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    ATTEMPTED_DELIVERY = "ATTEMPTED_DELIVERY"
    DELIVERED = "DELIVERED"
    RETURNED = "RETURNED"
    EXCEPTION = "EXCEPTION"
    UNKNOWN = "UNKNOWN"


#: Statuses that are a physical scan. INFO_RECEIVED is electronic only and UNKNOWN is not
#: a scan until its code is mapped.
PHYSICAL_SCAN_STATUSES = frozenset(CanonicalStatus) - {CanonicalStatus.INFO_RECEIVED, CanonicalStatus.UNKNOWN}
#: Statuses that satisfy the delivery requirement of full tracking.
DELIVERY_SCAN_STATUSES = frozenset({CanonicalStatus.DELIVERED, CanonicalStatus.ATTEMPTED_DELIVERY})


class Level(StrEnum):
    """Risk level of a seller x marketplace x category, worst last."""

    OK = "OK"
    WATCH = "WATCH"
    AT_RISK = "AT_RISK"
    BREACH = "BREACH"

    @property
    def severity(self) -> int:
        return list(Level).index(self)


class TrackingEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One normalised carrier scan on ``vtr.tracking-events.v1`` (key: tracking number).

    Fields left at their default are not encoded (``omit_defaults``): every decoder fills
    them in again, so the additive last-mile and notice fields cost no bytes on the scans
    that do not have them.
    """

    event_id: NonEmpty
    carrier: NonEmpty
    tracking_number: NonEmpty
    status: CanonicalStatus
    carrier_code: str
    occurred_at: UtcDateTime
    received_at: UtcDateTime
    #: Which integration delivered it: ``china-post``, ``17track``, ``aftership``, ...
    source: NonEmpty
    description: str = ""
    location: str = ""
    #: Other numbers the carrier knows the parcel by (e.g. YunExpress last-mile number).
    alternate_tracking_numbers: tuple[str, ...] = ()
    #: Who delivers the last mile, when the source names it (AfterShip ``next_couriers``,
    #: 17TRACK ``misc_info``, YunExpress ``last_mile_name``, Yanwen ``last_mile_carrier``):
    #: a vtrwatch carrier slug where known, else the source's own name or key.
    last_mile_carrier: str = ""
    #: The parcel's number at the last-mile carrier (trimmed, upper-cased).
    last_mile_tracking_number: str = ""
    #: Set on a message that is a notice about the tracking, not a scan (its status is
    #: UNKNOWN): ``tracking_stopped`` when an aggregator stopped tracking the number.
    notice: str = ""


#: ``TrackingEvent.notice`` of a number an aggregator no longer tracks (17TRACK TRACKING_STOPPED).
NOTICE_TRACKING_STOPPED = "tracking_stopped"


def tracking_event_id(
    carrier: str,
    tracking_number: str,
    carrier_code: str,
    occurred_at: datetime,
    location: str,
    description: str = "",
) -> str:
    """Deterministic id: the same carrier event re-pushed always gets the same id, and two
    scans at the same time and place that differ in code or message are two events. The
    description is only part of the identity when there is one (ids of scans without a
    message are what they always were)."""
    parts = (carrier, tracking_number, carrier_code, occurred_at.isoformat(), location)
    identity = "|".join((*parts, description) if description else parts)
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


class Money(msgspec.Struct, frozen=True):
    amount: DecimalString
    currency: CurrencyCode


class ShipmentConfirmed(msgspec.Struct, frozen=True, kw_only=True, tag="confirmed", tag_field="type"):
    """A seller confirmed an order as shipped (``vtr.shipments.v1``, key: tracking number)."""

    order_id: NonEmpty
    seller_id: NonEmpty
    marketplace: CountryCode
    category: NonEmpty
    #: The carrier name exactly as the seller uploaded it to Amazon.
    carrier_name: NonEmpty
    #: Known carrier slug (``china-post``, ...) or None when the name matches no carrier.
    carrier: str | None
    tracking_number: NonEmpty
    order_value: Money
    confirmed_at: UtcDateTime
    promised_delivery_date: date
    received_at: UtcDateTime
    service: str | None = None
    ship_from_country: CountryCode = "CN"
    buy_shipping: bool = False
    #: Problems noticed at ingest that do not reject the shipment (``malformed_tracking_number``).
    risk_flags: tuple[str, ...] = ()
    #: Who confirmed it: ``erp`` (``POST /v1/shipments``) or ``amazon`` (read from SP-API orders).
    source: str = "erp"


SOURCE_ERP = "erp"
SOURCE_AMAZON = "amazon"
#: Risk flags of an Amazon confirmation whose ASIN the catalogue did not name a category
#: for (it is in the "Uncategorised" category): the catalogue has nothing for the ASIN in
#: that marketplace (or the order has no ASIN, or the catalogue did not answer), or its
#: display group and browse root are not in vtrwatch's category table. A category from
#: the seller's ERP replaces it (docs/amazon.md, "Categories").
CATEGORY_NOT_IN_CATALOGUE = "category_not_in_catalogue"
CATEGORY_NOT_MAPPED = "category_not_mapped"
UNCATEGORISED_FLAGS = frozenset({CATEGORY_NOT_IN_CATALOGUE, CATEGORY_NOT_MAPPED})


class ShipmentCancelled(msgspec.Struct, frozen=True, kw_only=True, tag="cancelled", tag_field="type"):
    """Orders shipped under ``tracking_number`` were cancelled; None means all of them."""

    tracking_number: NonEmpty
    cancelled_at: UtcDateTime
    received_at: UtcDateTime
    seller_id: str | None = None
    order_id: str | None = None


ShipmentMessage = ShipmentConfirmed | ShipmentCancelled


class ForecastPoint(msgspec.Struct, frozen=True):
    """The forecast for one day: ``vtr`` is the expected rate; the band and the breach
    probability come from the distribution of the pending packages' outcomes (additive
    fields: older producers leave them None)."""

    date: date
    vtr: float | None
    #: 10th, 50th and 90th percentile of that day's VTR.
    p10: float | None = None
    p50: float | None = None
    p90: float | None = None
    #: Probability that the VTR of that day is below the floor.
    breach_probability: float | None = None


class CarrierHealthNote(msgspec.Struct, frozen=True, kw_only=True):
    """A carrier (per origin) that sends far fewer scans than usual, across all sellers."""

    carrier: str
    origin: str
    #: Hours since the carrier's last scan from this origin reached vtrwatch.
    silent_hours: float
    #: Scans received over the recent period against the usual number for that period.
    received_scans: int
    expected_scans: float
    #: Pending packages of this seller-category that the silence affects.
    affected_packages: int = 0


class ModelNote(msgspec.Struct, frozen=True, kw_only=True):
    """Which forecast model priced a category's pending packages, and whether it knew them.

    While ``lanes_learnt`` is false the forecast rests on priors for some of the category's
    lanes: the scorer caps the level at WATCH unless today's VTR alone says worse
    (``today_level``), and the notifier escalates on such a snapshot only as far as
    ``today_level`` (docs/forecast.md, "Cold start").
    """

    #: When the model was built (None: not built yet, every lane on priors).
    built_at: UtcDateTime | None
    #: Packages (confirmed in the model's learning period) the model was built from.
    packages: int
    #: Whether every lane (carrier x service x origin x marketplace) of the category's
    #: pending packages had enough packages in that build.
    lanes_learnt: bool
    #: Pending packages of the category on lanes the model has not learnt.
    unlearnt_pending: int = 0
    #: The level today's VTR alone gives (no forecast): what a cap never hides.
    today_level: Level = Level.OK


class ScoreSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A seller x marketplace x category score on ``vtr.scores.v1`` (key: seller id).

    Snapshots are idempotent: the newest ``computed_at`` wins.
    """

    seller_id: NonEmpty
    marketplace: CountryCode
    category: NonEmpty
    as_of: date
    computed_at: UtcDateTime
    #: Whether the scorer's consumer lag was below its threshold when this was computed.
    caught_up: bool
    window_from: date
    window_to: date
    total: int
    valid: int
    invalid: int
    pending: int
    vtr: float | None
    headroom: int
    forecast: tuple[ForecastPoint, ...]
    days_to_breach: int | None
    level: Level
    reasons: dict[str, int]
    #: Probability that the VTR falls below the floor on some day of the forecast.
    breach_probability: float | None = None
    #: Pending packages of the forecast by risk reason (stalled, carrier silent, ...).
    pending_reasons: dict[str, int] = {}
    #: Carriers of this seller-category that are silent across all sellers.
    carrier_health: tuple[CarrierHealthNote, ...] = ()
    #: The model behind the forecast (None from producers that predate it: read as learnt).
    model: ModelNote | None = None


class AmazonVtrStatus(StrEnum):
    """Amazon's own verdict on a marketplace's valid tracking rate (account health report)."""

    GOOD = "GOOD"
    BAD = "BAD"
    NONE = "NONE"


class AmazonVtr(msgspec.Struct, frozen=True, kw_only=True, tag="vtr", tag_field="type"):
    """Amazon's own valid tracking rate of one seller x marketplace, from its seller
    performance report (``vtr.amazon-vtr.v1``, key: seller id). Idempotent: the newest
    ``fetched_at`` for a seller, marketplace and reporting range wins."""

    seller_id: NonEmpty
    marketplace: CountryCode
    marketplace_id: NonEmpty
    #: Amazon's rate as a fraction (0.9529), None when the report had none.
    rate: float | None
    shipment_count: int | None
    valid_tracking_count: int | None
    status: AmazonVtrStatus
    target_value: float | None
    reporting_from: date
    reporting_to: date
    report_id: NonEmpty
    fetched_at: UtcDateTime
    #: What looked wrong in the report and was read around (``counts_inconsistent``, ...).
    problems: tuple[str, ...] = ()


class AmazonConnectionChanged(msgspec.Struct, frozen=True, kw_only=True, tag="connection", tag_field="type"):
    """A seller's Amazon connection changed state (``vtr.amazon-vtr.v1``, key: seller id):
    ``connected`` (the consent callback, or an operator's ``amazon connect``),
    ``disconnected`` (``amazon disconnect``), or ``reconnect_needed`` when Amazon refused
    its authorisation (revoked in Seller Central, expired), so the seller is told to
    connect again. The notifier keeps every notice in the audit trail; none carries a token."""

    seller_id: NonEmpty
    region: NonEmpty
    state: NonEmpty
    reason: str
    changed_at: UtcDateTime
    #: Who made the change: ``amazon`` (the seller's consent in Seller Central, or Amazon
    #: refusing the authorisation) or ``operator`` (the ingest's ``amazon`` commands).
    by: str = "amazon"
    #: ``consent`` or ``operator`` for a connection; empty otherwise.
    via: str = ""
    selling_partner_id: str = ""


AmazonMessage = AmazonVtr | AmazonConnectionChanged
RECONNECT_NEEDED = "reconnect_needed"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A request body that was authenticated but could not be used, kept for replay."""

    origin: NonEmpty
    reason: NonEmpty
    raw_base64: str
    content_type: str
    received_at: UtcDateTime
    headers: dict[str, str] = {}

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_base64)


class ContractError(ValueError):
    """A message that does not match its schema; the text names the field."""


MessageT = TypeVar("MessageT")


class Codec(Generic[MessageT]):
    """Encode and decode one message type to and from JSON bytes."""

    def __init__(self, message_type: type[MessageT] | object, name: str) -> None:
        self.name = name
        self._decoder: msgspec.json.Decoder[MessageT] = msgspec.json.Decoder(message_type)  # type: ignore[arg-type]
        self._encoder = msgspec.json.Encoder()

    def encode(self, message: MessageT) -> bytes:
        return self._encoder.encode(message)

    def decode(self, payload: bytes) -> MessageT:
        try:
            return self._decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            raise ContractError(f"invalid {self.name} message: {error}") from error


TRACKING_EVENT_CODEC: Codec[TrackingEvent] = Codec(TrackingEvent, "tracking event")
SHIPMENT_CODEC: Codec[ShipmentMessage] = Codec(ShipmentMessage, "shipment")
SCORE_CODEC: Codec[ScoreSnapshot] = Codec(ScoreSnapshot, "score snapshot")
DEADLETTER_CODEC: Codec[DeadLetter] = Codec(DeadLetter, "dead letter")
AMAZON_CODEC: Codec[AmazonMessage] = Codec(AmazonMessage, "Amazon")


class PackageState(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    PENDING = "pending"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a package is (or risks becoming) invalid. The notifier words each one per language."""

    CARRIER_NOT_INTEGRATED = "carrier_not_integrated"
    NO_PHYSICAL_SCAN = "no_physical_scan"
    MISSING_DELIVERY_SCAN = "missing_delivery_scan"
    SERVICE_LACKS_DELIVERY_SCAN = "service_lacks_delivery_scan"
    MALFORMED_TRACKING_NUMBER = "malformed_tracking_number"
    AWAITING_FIRST_SCAN = "awaiting_first_scan"
    #: Still no physical scan well after confirmation: the carrier probably never picked
    #: the parcel up, or the uploaded number is wrong. Likely to end invalid.
    OVERDUE_FIRST_SCAN = "overdue_first_scan"
    AWAITING_DELIVERY_SCAN = "awaiting_delivery_scan"
    #: Scanned, then nothing for much longer than the lane usually takes between scans.
    STALLED_IN_TRANSIT = "stalled_in_transit"
    #: The carrier sends far fewer scans than usual across all sellers (carrier health).
    CARRIER_SILENT = "carrier_silent"
    #: Full tracking required, and the service's parcels almost never get a delivery scan
    #: in recent data (learnt, whatever the service is called).
    SERVICE_RARELY_SCANS_DELIVERY = "service_rarely_scans_delivery"
    #: The tracking aggregator stopped tracking the number; it must be registered again.
    TRACKING_STOPPED = "tracking_stopped"
    CANCELLED = "cancelled"


class TrackingLevel(StrEnum):
    PARTIAL = "partial"
    FULL = "full"


class PackageView(msgspec.Struct, frozen=True, kw_only=True):
    """One package as the scorer's ``GET /v1/sellers/{seller_id}/shipments`` lists it.

    The notifier reads these to name the orders to fix; ``action`` is the scorer's English
    advice, the notifier words its own per language from ``reason``.
    """

    order_id: str
    tracking_number: str
    marketplace: str
    category: str
    carrier_name: str
    carrier: str | None
    service: str | None
    order_value: Money
    confirmed_at: UtcDateTime
    promised_delivery_date: date
    state: PackageState
    reason: Reason | None
    required_tracking: TrackingLevel
    physical_scans: int
    last_scan_at: UtcDateTime | None
    #: Probability of being valid by the promised date (1 when valid, 0 when impossible).
    probability_valid: float
    action: str
    #: The order value from which this marketplace requires full tracking, in its currency.
    full_tracking_threshold: Money | None = None
    #: Who had the parcel last and its number there, from the newest scan that says so
    #: (e.g. ``usps`` for a China Post ePacket in the US): the carrier to ask first.
    last_mile_carrier: str = ""
    last_mile_tracking_number: str = ""
    #: Who confirmed the order: ``erp``, ``amazon``, or ``amazon+erp`` (Amazon's record of
    #: the package with the category from the seller's ERP; docs/amazon.md).
    source: str = SOURCE_ERP
    #: Problems noticed at ingest that do not reject the package: ``malformed_tracking_number``,
    #: ``carrier_name_not_as_amazon_spells``, and why an Amazon order is "Uncategorised"
    #: (``category_not_in_catalogue``, ``category_not_mapped``).
    risk_flags: tuple[str, ...] = ()


class PackagePage(msgspec.Struct, frozen=True, kw_only=True):
    seller_id: str
    packages: tuple[PackageView, ...]
    #: Opaque; pass back as ``cursor`` for the next page. None on the last page.
    next_cursor: str | None


PACKAGE_PAGE_CODEC: Codec[PackagePage] = Codec(PackagePage, "package page")
