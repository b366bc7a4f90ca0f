"""Shipment confirmations and cancellations from sellers' ERPs: request models, body
splitting (object, array, NDJSON) and tracking-number sanity checks. No I/O."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from shared.carriers import carrier_slug
from shared.guard import day_in_calendar, in_calendar
from shared.schemas import Money, Reason, ShipmentCancelled, ShipmentConfirmed
from shared.topics import normalise_tracking_number

MALFORMED_TRACKING_NUMBER = Reason.MALFORMED_TRACKING_NUMBER.value
CARRIER_NOT_INTEGRATED = Reason.CARRIER_NOT_INTEGRATED.value

# UPU S10: 2 letters, 8 digits, check digit, 2-letter country.
_S10 = re.compile(r"^[A-Z]{2}(\d{8})(\d)[A-Z]{2}$")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_YUNEXPRESS_WAYBILL = re.compile(r"^YT\d{16}$")
MAX_TRACKING_NUMBER_LENGTH = 64


def s10_check_digit(serial: str) -> int:
    """The UPU S10 check digit of 8 serial digits (mod 11; 10 -> 0, 11 -> 5)."""
    check = 11 - sum(int(digit) * weight for digit, weight in zip(serial, _S10_WEIGHTS, strict=True)) % 11
    return {10: 0, 11: 5}.get(check, check)


def is_china_post_s10(number: str) -> bool:
    """A UPU S10 number with a correct check digit, issued in China (ends in CN)."""
    match = _S10.match(number)
    return bool(match and number.endswith("CN") and s10_check_digit(match.group(1)) == int(match.group(2)))


def is_yunexpress_waybill(number: str) -> bool:
    return _YUNEXPRESS_WAYBILL.match(number) is not None


#: carrier slug -> whether a (normalised) tracking number looks right for it.
TRACKING_NUMBER_CHECKS: dict[str, Callable[[str], bool]] = {
    "china-post": is_china_post_s10,
    "yunexpress": is_yunexpress_waybill,
}


def risk_flags(carrier: str | None, number: str) -> tuple[str, ...]:
    flags = []
    if carrier is None:
        flags.append(CARRIER_NOT_INTEGRATED)
    else:
        check = TRACKING_NUMBER_CHECKS.get(carrier)
        if check is not None and not check(number):
            flags.append(MALFORMED_TRACKING_NUMBER)
    return tuple(flags)


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _decimal_string(value: Any) -> Any:
    # Accept 12.5 as well as "12.50"; keep the seller's digits when given as a string.
    if isinstance(value, bool):
        raise ValueError('must be a decimal amount such as "12.50"')
    if isinstance(value, int | float):
        try:
            value = format(Decimal(str(value)), "f")
        except InvalidOperation:
            raise ValueError('must be a decimal amount such as "12.50"') from None
    return value.strip() if isinstance(value, str) else value


Upper2 = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{2}$")]
Text = Annotated[str, Field(min_length=1, max_length=200)]
#: Seller and order ids: what the scorer and notifier store (128 characters); a longer one
#: would be accepted here and then skipped downstream, so it is refused with a 422 instead.
Id = Annotated[str, Field(min_length=1, max_length=128)]


class OrderValue(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    amount: Annotated[str, BeforeValidator(_decimal_string), Field(pattern=r"^\d{1,12}(\.\d{1,6})?$")]
    currency: Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{3}$")]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a UTC offset, e.g. 2026-11-20T08:30:00Z")
    return in_calendar(value)


class ShipmentIn(BaseModel):
    """One shipment confirmation as a seller's ERP sends it."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    order_id: Id
    seller_id: Id
    marketplace: Upper2 = Field(description="Two-letter marketplace: US, UK, DE, JP, SG, AE, SA, MX, AU, ...")
    category: Text
    carrier: Text = Field(description='Carrier name as uploaded to Amazon ("China Post", "Yun Express") or a slug.')
    service: Annotated[str, Field(max_length=200)] | None = Field(default=None, examples=["ePacket", "平邮"])
    tracking_number: Annotated[str, Field(min_length=1, max_length=MAX_TRACKING_NUMBER_LENGTH)]
    order_value: OrderValue = Field(description="Item price plus shipping, in the marketplace's currency.")
    ship_from_country: Upper2 = "CN"
    confirmed_at: datetime
    promised_delivery_date: date
    buy_shipping: bool = False

    @field_validator("confirmed_at")
    @classmethod
    def _confirmed_at_aware(cls, value: datetime) -> datetime:
        return _aware(value)

    @field_validator("promised_delivery_date")
    @classmethod
    def _promised_in_calendar(cls, value: date) -> date:
        return day_in_calendar(value)

    @field_validator("tracking_number")
    @classmethod
    def _tracking_number_normalised(cls, value: str) -> str:
        number = normalise_tracking_number(value)
        if not number or any(char.isspace() for char in number):
            raise ValueError("must be one tracking number without spaces")
        return number

    def to_message(self, received_at: datetime) -> ShipmentConfirmed:
        carrier = carrier_slug(self.carrier)
        return ShipmentConfirmed(
            order_id=self.order_id,
            seller_id=self.seller_id,
            marketplace=self.marketplace,
            category=self.category,
            carrier_name=self.carrier,
            carrier=carrier,
            tracking_number=self.tracking_number,
            order_value=Money(self.order_value.amount, self.order_value.currency),
            confirmed_at=self.confirmed_at,
            promised_delivery_date=self.promised_delivery_date,
            received_at=received_at,
            service=self.service or None,
            ship_from_country=self.ship_from_country,
            buy_shipping=self.buy_shipping,
            risk_flags=risk_flags(carrier, self.tracking_number),
        )


class CancellationIn(BaseModel):
    """Optional body of ``POST /v1/shipments/{tracking_number}/cancel``."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    cancelled_at: datetime | None = Field(default=None, description="Default: now.")
    order_id: Id | None = Field(default=None, description="Default: every order shipped under the number.")
    seller_id: Id | None = None

    @field_validator("cancelled_at")
    @classmethod
    def _cancelled_at_aware(cls, value: datetime | None) -> datetime | None:
        return _aware(value) if value is not None else None

    def to_message(self, tracking_number: str, received_at: datetime) -> ShipmentCancelled:
        return ShipmentCancelled(
            tracking_number=tracking_number,
            cancelled_at=self.cancelled_at or received_at,
            received_at=received_at,
            seller_id=self.seller_id,
            order_id=self.order_id,
        )


class BodyError(ValueError):
    """The body as a whole cannot be read (not JSON, not NDJSON, too many records)."""


#: A record that could not be parsed as JSON at all (NDJSON line): its index and error.
RecordParseError = tuple[int, str]


def split_records(raw_body: bytes, content_type: str, limit: int) -> tuple[list[Any], list[RecordParseError]]:
    """The body's records: a JSON object, a JSON array, or NDJSON (one object a line)."""
    if "ndjson" in content_type or "jsonlines" in content_type:
        records: list[Any] = []
        unreadable: list[RecordParseError] = []
        for line in raw_body.splitlines():
            if not line.strip():
                continue
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as error:
                unreadable.append((len(records), f"line is not JSON: {error}"))
                records.append(None)
        if not records:
            raise BodyError("body has no records")
    else:
        try:
            loaded = orjson.loads(raw_body)
        except orjson.JSONDecodeError as error:
            raise BodyError(f"body is not JSON (send NDJSON as application/x-ndjson): {error}") from None
        records, unreadable = (loaded if isinstance(loaded, list) else [loaded]), []
        if not records:
            raise BodyError("body is an empty array")
    if len(records) > limit:
        raise BodyError(f"{len(records)} records; at most {limit} per request")
    return records, unreadable


def validation_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "order_value.amount", "message": ...}``, without input values."""
    return [
        {"field": ".".join(str(part) for part in detail["loc"]) or "$", "message": detail["msg"]}
        for detail in error.errors(include_url=False, include_input=False)
    ]


def confirmations(
    records: list[Any], unreadable: list[RecordParseError], received_at: datetime
) -> tuple[list[ShipmentConfirmed], list[dict[str, Any]]]:
    """Valid records as messages, and the rejected ones with their index and errors."""
    unreadable_by_index = dict(unreadable)
    accepted: list[ShipmentConfirmed] = []
    rejected: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        if index in unreadable_by_index:
            rejected.append({"index": index, "errors": [{"field": "$", "message": unreadable_by_index[index]}]})
            continue
        if not isinstance(record, dict):
            rejected.append({"index": index, "errors": [{"field": "$", "message": "a shipment must be a JSON object"}]})
            continue
        try:
            accepted.append(ShipmentIn.model_validate(record).to_message(received_at))
        except ValidationError as error:
            rejected.append({"index": index, "errors": validation_errors(error)})
    return accepted, rejected
