"""SP-API orders (Orders API v2026-01-01 ``searchOrders``) into vtrwatch's shipment
messages, catalogue items into categories, and the carrier-name check. Pure: no I/O.

An order fulfilled by the merchant with a package that has a tracking number becomes one
:class:`ShipmentConfirmed` (the scorer keeps one package per seller and order, as for ERP
confirmations: domain.md, "A package is one confirmed order"; an order shipped in several
packages is confirmed with the first package handed to a carrier, see
:func:`shipped_package` and docs/amazon.md). A cancelled order becomes a
:class:`ShipmentCancelled` for the numbers it was confirmed under.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from services.ingest.amazon.marketplaces import MARKETPLACES, Marketplace
from services.ingest.shipments import risk_flags
from shared.carriers import AMAZON_CARRIER_SPELLINGS, amazon_carrier_slug, carrier_slug
from shared.schemas import (
    CATEGORY_NOT_IN_CATALOGUE,
    CATEGORY_NOT_MAPPED,
    SOURCE_AMAZON,
    Money,
    ShipmentCancelled,
    ShipmentConfirmed,
)
from shared.topics import normalise_tracking_number

#: Risk flag of a package whose carrier name Amazon's list spells otherwise (Amazon treats it as "Other").
CARRIER_NAME_NOT_AS_AMAZON_SPELLS = "carrier_name_not_as_amazon_spells"
_SHIPPED_PACKAGE_STATUSES = frozenset({"SHIPPED", "IN_TRANSIT", "DELIVERED", "UNDELIVERABLE"})


class OrderProblem(ValueError):
    """An order that cannot become a confirmation; the text says why (no personal data)."""


def parse_time(text: Any) -> datetime:
    """An SP-API ISO 8601 time (``2024-12-25T14:00:00Z``, also without seconds) as aware UTC."""
    if not isinstance(text, str) or not text:
        raise OrderProblem("time missing")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OrderProblem(f"time {text[:40]!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def promised_date(order: dict[str, Any], marketplace: Marketplace) -> date:
    """The latest instant of ``fulfillment.deliverByWindow``, as the marketplace's local date."""
    window = (order.get("fulfillment") or {}).get("deliverByWindow") or {}
    latest = window.get("latestDateTime") or window.get("earliestDateTime")
    if latest is None:
        raise OrderProblem("order has no deliverByWindow")
    return parse_time(latest).astimezone(marketplace.zone).date()


def marketplace_of(order: dict[str, Any]) -> Marketplace:
    channel = order.get("salesChannel") or {}
    marketplace_id = channel.get("marketplaceId")
    marketplace = MARKETPLACES.get(marketplace_id) if isinstance(marketplace_id, str) else None
    if marketplace is None:
        raise OrderProblem(f"sales channel marketplace {str(marketplace_id)[:20]!r} is not one vtrwatch knows")
    return marketplace


def order_value(order: dict[str, Any]) -> Money:
    """What the partial/full rule compares: the order's total (item price plus shipping)."""
    total = (order.get("proceeds") or {}).get("grandTotal")
    if not total:
        amounts: list[Decimal] = []
        currency = ""
        for item in order.get("orderItems") or []:
            money = (item.get("proceeds") or {}).get("proceedsTotal") or {}
            if money.get("amount") is not None:
                amounts.append(Decimal(str(money["amount"])))
                currency = currency or str(money.get("currencyCode", ""))
        if not amounts:
            raise OrderProblem("order has no proceeds (ask for includedData=PROCEEDS)")
        total = {"amount": str(sum(amounts)), "currencyCode": currency}
    try:
        amount = format(abs(Decimal(str(total.get("amount")))), "f")
    except InvalidOperation:
        raise OrderProblem("order total is not a number") from None
    currency = str(total.get("currencyCode", "")).upper()
    if len(currency) != 3:
        raise OrderProblem("order total has no currency")
    return Money(amount, currency)


def asins_of(order: dict[str, Any]) -> list[str]:
    return [
        item["product"]["asin"]
        for item in order.get("orderItems") or []
        if isinstance((item.get("product") or {}).get("asin"), str)
    ]


def shipped_package(order: dict[str, Any]) -> dict[str, Any] | None:
    """The order's package: the first one handed to a carrier with a tracking number.

    Only packages whose ``packageStatus.status`` says they left (``SHIPPED``, ``IN_TRANSIT``,
    ``DELIVERED``, ``UNDELIVERABLE``) with a carrier and a tracking number count: a package
    still ``PENDING`` (no label yet, or no number), or ``CANCELLED`` (its label cancelled, the
    order re-shipped under another), is not the order's shipment. Among those, the earliest
    ship time (then the package reference, for a stable choice): a package added later, a
    second parcel of a split order or a replacement sent after a return, does not move the
    order to it; the first parcel is what the order's confirmation named. The choice changes
    only when that package stops counting (cancelled) or an earlier one gets its number, and
    then the worker publishes the new confirmation, as it does when Amazon's record of the
    chosen package changes (a corrected tracking number or carrier): Amazon's newest read of
    the order wins at the scorer."""
    shipped = [
        package
        for package in order.get("packages") or []
        if isinstance(package, dict)
        and package.get("trackingNumber")
        and package.get("carrier")
        and (package.get("packageStatus") or {}).get("status") in _SHIPPED_PACKAGE_STATUSES
    ]
    return min(
        shipped,
        key=lambda p: (str(p.get("shipTime") or p.get("createdTime") or ""), str(p.get("packageReferenceId") or "")),
        default=None,
    )


def ship_from_country(package: dict[str, Any]) -> str:
    """Where the package left from, as Amazon recorded it (``shipFromAddress.countryCode``,
    the seller's warehouse, not personal data): the partial/full tracking rule applies to
    packages shipped from China. Without it, CN (the confirmation's default, vtrwatch's
    sellers ship from China)."""
    code = (package.get("shipFromAddress") or {}).get("countryCode")
    if isinstance(code, str) and len(code) == 2 and code.isalpha():
        return code.upper()
    return "CN"


def is_cancelled(order: dict[str, Any]) -> bool:
    return (order.get("fulfillment") or {}).get("fulfillmentStatus") == "CANCELLED"


@dataclass(frozen=True)
class CarrierCheck:
    slug: str | None
    flags: tuple[str, ...]
    #: Why, and what the seller should do, when flagged (English, for logs and docs).
    advice: str = ""


def check_carrier_name(name: str) -> CarrierCheck:
    """A carrier name as Amazon recorded it, against Amazon's list spelled exactly.

    "Yun Express" is in the list: the slug, no flag. "Yun express" means the same carrier
    to a person (and to vtrwatch's ERP matching) but not to Amazon, which records it as
    "Other": no slug (so the scorer counts it not integrated, as Amazon will) and a flag
    naming the spelling to use. A name of no known carrier is not integrated either."""
    slug = amazon_carrier_slug(name)
    if slug is not None:
        return CarrierCheck(slug, ())
    meant = carrier_slug(name)
    if meant is not None and meant in AMAZON_CARRIER_SPELLINGS:
        spelling = AMAZON_CARRIER_SPELLINGS[meant]
        return CarrierCheck(
            None,
            (CARRIER_NAME_NOT_AS_AMAZON_SPELLS,),
            f"Amazon's carrier list spells it {spelling!r}; Amazon records {name!r} as 'Other', which is not a"
            f" valid tracking. Fix: update the shipment's carrier to {spelling!r} in Seller Central.",
        )
    return CarrierCheck(None, (), "carrier not in Amazon's list of integrated carriers")


def confirmation_of(
    order: dict[str, Any], seller_id: str, category: str, received_at: datetime, category_flag: str = ""
) -> tuple[ShipmentConfirmed, CarrierCheck] | None:
    """The order's confirmation, or None while it has no shipped package with tracking.

    ``category_flag``: why the category is the "Uncategorised" bucket (:attr:`CategoryAnswer.flag`),
    carried as a risk flag so that the seller sees it on the package."""
    package = shipped_package(order)
    if package is None:
        return None
    marketplace = marketplace_of(order)
    number = normalise_tracking_number(str(package["trackingNumber"]))
    if not number or any(char.isspace() for char in number) or len(number) > 64:
        raise OrderProblem("package tracking number is not one number")
    carrier_name = str(package["carrier"]).strip()[:200]
    check = check_carrier_name(carrier_name)
    shipped_at = parse_time(package.get("shipTime") or package.get("createdTime"))
    service = package.get("shippingService")
    message = ShipmentConfirmed(
        order_id=str(order["orderId"])[:128],
        seller_id=seller_id,
        marketplace=marketplace.code,
        category=category,
        carrier_name=carrier_name,
        carrier=check.slug,
        tracking_number=number,
        order_value=order_value(order),
        confirmed_at=shipped_at,
        promised_delivery_date=promised_date(order, marketplace),
        received_at=received_at,
        service=str(service)[:200] if service else None,
        ship_from_country=ship_from_country(package),
        risk_flags=(*check.flags, *risk_flags(check.slug, number), *((category_flag,) if category_flag else ())),
        source=SOURCE_AMAZON,
    )
    return message, check


def cancellation_of(
    order: dict[str, Any], seller_id: str, tracking_number: str, received_at: datetime
) -> ShipmentCancelled:
    return ShipmentCancelled(
        tracking_number=tracking_number,
        cancelled_at=parse_time(order.get("lastUpdatedTime")),
        received_at=received_at,
        seller_id=seller_id,
        order_id=str(order["orderId"])[:128],
    )


# -- categories ----------------------------------------------------------------------


CATEGORY_FILE = Path(__file__).with_name("categories.toml")


@dataclass(frozen=True)
class CategoryTable:
    display_groups: dict[str, str]
    browse_roots: dict[str, str]
    uncategorised: str

    @classmethod
    def load(cls, path: Path = CATEGORY_FILE) -> CategoryTable:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return cls(
            dict(data["display_groups"]),
            {key.casefold(): value for key, value in data["browse_roots"].items()},
            str(data["uncategorised"]),
        )


@dataclass(frozen=True)
class CategoryAnswer:
    category: str
    #: Empty when mapped; else why the ASIN is in the Uncategorised bucket (for the log).
    reason: str = ""
    #: Empty when mapped; else the package's risk flag that tells the seller why:
    #: ``category_not_mapped`` (the catalogue names a group the table does not map: a row
    #: to add) or ``category_not_in_catalogue`` (nothing to map: no ASIN, no catalogue
    #: entry for the marketplace, or the catalogue did not answer).
    flag: str = ""


def _root_name(classification: dict[str, Any]) -> str:
    node = classification
    while isinstance(node.get("parent"), dict):
        node = node["parent"]
    return str(node.get("displayName", ""))


def category_of(item: dict[str, Any], marketplace_id: str, table: CategoryTable) -> CategoryAnswer:
    """The category of a ``getCatalogItem`` answer (``summaries``, ``classifications``) in one marketplace."""
    summary = next(
        (s for s in item.get("summaries") or [] if isinstance(s, dict) and s.get("marketplaceId") == marketplace_id),
        None,
    )
    group = (summary or {}).get("websiteDisplayGroup")
    if isinstance(group, str) and group in table.display_groups:
        return CategoryAnswer(table.display_groups[group])
    roots = [
        _root_name(classification)
        for entry in item.get("classifications") or []
        if isinstance(entry, dict) and entry.get("marketplaceId") == marketplace_id
        for classification in entry.get("classifications") or []
        if isinstance(classification, dict)
    ]
    browse = (summary or {}).get("browseClassification")
    if isinstance(browse, dict):
        roots.append(_root_name(browse))
    for root in roots:
        if root.casefold() in table.browse_roots:
            return CategoryAnswer(table.browse_roots[root.casefold()])
    if summary is None and not roots:
        return CategoryAnswer(
            table.uncategorised,
            "catalogue has no summary or classification for this marketplace",
            CATEGORY_NOT_IN_CATALOGUE,
        )
    return CategoryAnswer(
        table.uncategorised,
        f"display group {group!r} and browse root {roots[0] if roots else None!r} are not in the category table",
        CATEGORY_NOT_MAPPED,
    )
