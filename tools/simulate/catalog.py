"""The simulated world's reference data: marketplaces, categories and carrier services.

These are the simulator's own tables, written from ``domain.md`` and ``carriers.md``; the
ground truth must not borrow the scorer's policy data, or a shared mistake would pass
unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


@dataclass(frozen=True)
class Marketplace:
    code: str
    currency: str
    #: Local-currency threshold at and above which full tracking is required (CN origin).
    threshold: Decimal
    #: Digits after the decimal point in the currency (JPY has none).
    decimals: int = 2
    #: True when the threshold is 5 USD converted at an FX rate that is a scorer setting;
    #: the scenario then keeps order values well away from it (see :attr:`ambiguous_band`).
    fx_derived: bool = False

    @property
    def ambiguous_band(self) -> tuple[Decimal, Decimal]:
        """Values the simulator never generates: where a plausible FX rate could move the threshold."""
        if not self.fx_derived:
            return (self.threshold, self.threshold)
        return (self.threshold * Decimal("0.7"), self.threshold * Decimal("1.35"))


MARKETPLACES: dict[str, Marketplace] = {
    market.code: market
    for market in (
        Marketplace("US", "USD", Decimal("5")),
        Marketplace("UK", "GBP", Decimal("5")),
        Marketplace("DE", "EUR", Decimal("5")),
        Marketplace("JP", "JPY", Decimal("1000"), decimals=0),
        Marketplace("SG", "SGD", Decimal("7")),
        Marketplace("AE", "AED", Decimal("20")),
        Marketplace("SA", "SAR", Decimal("20")),
        # 5 USD at about 18 MXN and 1.55 AUD per USD.
        Marketplace("MX", "MXN", Decimal("90"), fx_derived=True),
        Marketplace("AU", "AUD", Decimal("7.75"), fx_derived=True),
    )
}

CATEGORIES = (
    "Toys & Games",
    "Home & Kitchen",
    "Electronics",
    "Beauty",
    "Clothing",
    "Sports & Outdoors",
    "Pet Supplies",
)


class Source(StrEnum):
    """Which webhook a carrier's scans reach vtrwatch through."""

    CHINA_POST_EMS = "china-post-ems"
    CHINA_POST_TRACES = "china-post-traces"
    YUNEXPRESS = "yunexpress"
    YANWEN = "yanwen"
    SEVENTEEN_TRACK = "17track"
    AFTERSHIP = "aftership"


class NumberFormat(StrEnum):
    S10 = "s10"  # UPU S10: 2 letters, 8 digits, check digit, CN
    YUNEXPRESS = "yt"  # YT + 16 digits
    YANWEN = "yanwen"  # UG + 9 digits + YP
    FOURPX = "4px"
    SFC = "sfc"
    SUNYOU = "sunyou"
    DHL_ECOMMERCE = "dhl-ecommerce"
    GENERIC = "generic"


@dataclass(frozen=True)
class FailureRates:
    """Probabilities per parcel of each way tracking goes wrong."""

    #: Label created, never scanned by the carrier (no physical scan at all).
    no_pickup: float = 0.004
    #: Scanned at pickup and in transit, then nothing (no delivery scan).
    lost_in_transit: float = 0.006
    #: Delivered without a delivery scan.
    no_delivery_scan: float = 0.004
    #: First scan several days late (counts, late scans are valid).
    late_pickup: float = 0.02
    #: A failed delivery attempt before the delivery.
    attempt_first: float = 0.04
    #: An undocumented carrier code among the scans (``UNKNOWN``, not a scan until mapped).
    unknown_code: float = 0.05
    #: Mean extra days a parcel sits silent between its export and its arrival scans (a
    #: congested hub, a customs backlog): later, but the scans do come.
    hold_days: float = 0.0
    #: Mean extra days a parcel waits at the destination between its arrival scan and its
    #: out-for-delivery scan (a customs slowdown, a public holiday): later, but it comes.
    destination_hold_days: float = 0.0


@dataclass(frozen=True)
class CarrierService:
    key: str
    #: The carrier name the seller uploads to Amazon.
    carrier_name: str
    service: str | None
    #: Whether Amazon integrates this carrier (the simulator's own knowledge, domain.md 2.1).
    integrated: bool
    #: False for surface / 平邮 products: they never produce a delivery scan.
    delivery_scans: bool
    source: Source
    number_format: NumberFormat
    #: Days from confirmation to delivery (uniform range).
    transit_days: tuple[float, float]
    #: Days from confirmation to the promised delivery date (inclusive range).
    promise_days: tuple[int, int]
    failures: FailureRates = field(default_factory=FailureRates)
    #: Numeric 17TRACK carrier code / AfterShip slug, for the aggregators.
    aggregator_code: str = ""


SERVICES: dict[str, CarrierService] = {
    service.key: service
    for service in (
        CarrierService(
            "china-post/epacket",
            "China Post",
            "ePacket",
            True,
            True,
            Source.CHINA_POST_EMS,
            NumberFormat.S10,
            (6.0, 10.0),
            (11, 14),
        ),
        CarrierService(
            "china-post/registered",
            "China Post",
            "国际挂号",
            True,
            True,
            Source.CHINA_POST_TRACES,
            NumberFormat.S10,
            (8.0, 12.0),
            (13, 16),
        ),
        CarrierService(
            "china-post/surface",
            "China Post",
            "平邮",
            True,
            False,
            Source.CHINA_POST_TRACES,
            NumberFormat.S10,
            (10.0, 16.0),
            (14, 18),
        ),
        CarrierService(
            "yunexpress/line",
            "Yun Express",
            "云途全球专线挂号",
            True,
            True,
            Source.YUNEXPRESS,
            NumberFormat.YUNEXPRESS,
            (5.0, 8.0),
            (9, 12),
        ),
        CarrierService(
            "yanwen/line",
            "YANWEN",
            "燕文专线追踪",
            True,
            True,
            Source.YANWEN,
            NumberFormat.YANWEN,
            (6.0, 9.0),
            (10, 13),
        ),
        CarrierService(
            # An untracked economy product: no delivery scan ever, and its name matches none
            # of the scorer's partial-only keywords (the model must learn it).
            "yanwen/economy",
            "YANWEN",
            "燕文航空经济小包",
            True,
            False,
            Source.YANWEN,
            NumberFormat.YANWEN,
            (8.0, 14.0),
            (12, 16),
        ),
        CarrierService(
            "4px/standard",
            "4PX",
            "4PX Standard",
            True,
            True,
            Source.SEVENTEEN_TRACK,
            NumberFormat.FOURPX,
            (6.0, 10.0),
            (11, 14),
            aggregator_code="190094",
        ),
        CarrierService(
            "sfc/priority",
            "SFC",
            "SFC Priority Line",
            True,
            True,
            Source.SEVENTEEN_TRACK,
            NumberFormat.SFC,
            (7.0, 10.0),
            (11, 14),
            aggregator_code="190137",
        ),
        CarrierService(
            "sunyou/economy",
            "Sunyou",
            "Sunyou Economy",
            True,
            True,
            Source.AFTERSHIP,
            NumberFormat.SUNYOU,
            (7.0, 11.0),
            (12, 15),
            aggregator_code="sunyou",
        ),
        CarrierService(
            "dhl-ecommerce/packet",
            "DHL eCommerce",
            "Packet Plus",
            True,
            True,
            Source.AFTERSHIP,
            NumberFormat.DHL_ECOMMERCE,
            (5.0, 8.0),
            (9, 12),
            aggregator_code="dhl-global-mail",
        ),
        CarrierService(
            # Scans fine, but Amazon does not integrate it: every package is invalid.
            "fast-cargo/express",
            "Fast Cargo",
            "Express",
            False,
            True,
            Source.AFTERSHIP,
            NumberFormat.GENERIC,
            (6.0, 9.0),
            (10, 13),
            aggregator_code="fast-cargo",
        ),
    )
}
