"""Yanwen: a push in the shape of Yanwen's tracking API result."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import msgspec

from services.ingest import signatures
from services.ingest.carriers.common import (
    Code,
    PushError,
    alternate_numbers,
    decode,
    last_mile,
    make_event,
    text,
    tracking_number,
)
from services.ingest.carriers.source import JSON, Carrier, Unauthenticated, Verified, WebhookSource
from services.ingest.timezones import to_utc
from shared.schemas import TrackingEvent
from shared.status_codes import MAPPINGS
from shared.utc_offset import TimeFormatError, parse_utc_offset

if TYPE_CHECKING:
    from starlette.requests import Request

    from services.ingest.settings import IngestSettings


SOURCE = "yanwen"
CARRIER = "yanwen"
MAPPING = MAPPINGS[SOURCE]


class Checkpoint(msgspec.Struct):
    time_stamp: str
    tracking_status: Code
    time_zone: str | int | float | None = None
    message: Any = None
    location: Any = None


class Parcel(msgspec.Struct):
    tracking_number: str
    waybill_number: str | None = None
    exchange_number: str | None = None
    last_mile_carrier: Any = None
    checkpoints: list[Checkpoint] = []


class Push(msgspec.Struct):
    result: list[Parcel]
    code: Any = None
    message: Any = None


_PUSH = msgspec.json.Decoder(Push)


def _zone(value: str | int | float | None) -> timezone:
    if value is None or value == "":
        return MAPPING.timezone
    if not isinstance(value, str):
        # Hours as a number: bounded before formatting (a 400-digit integer cannot become a float).
        if not -14 <= value <= 14:
            raise TimeFormatError("a number of hours outside -14..+14 is not a UTC offset")
        value = f"{value:+g}"
    return parse_utc_offset(value)


def parse(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    push = decode(_PUSH, raw_body)
    events = []
    for parcel_index, parcel in enumerate(push.result):
        number = tracking_number(parcel.tracking_number, f"$.result[{parcel_index}].tracking_number")
        alternates = alternate_numbers(number, parcel.waybill_number, parcel.exchange_number)
        handed_to = last_mile(parcel.last_mile_carrier, parcel.exchange_number) if parcel.last_mile_carrier else None
        for index, checkpoint in enumerate(parcel.checkpoints):
            code = str(checkpoint.tracking_status).strip()
            if code in MAPPING.metadata_only:
                continue
            # The field's path is only spelled out for an error: formatting it for every
            # checkpoint cost as much as reading the time.
            field = "time_zone"
            try:
                zone = _zone(checkpoint.time_zone)
                field = "time_stamp"
                occurred_at = to_utc(checkpoint.time_stamp, zone)
            except TimeFormatError as error:
                raise PushError(f"$.result[{parcel_index}].checkpoints[{index}].{field}: {error}") from None
            events.append(
                make_event(
                    MAPPING,
                    carrier=CARRIER,
                    number=number,
                    code=code,
                    occurred_at=occurred_at,
                    received_at=received_at,
                    description=text(checkpoint.message),
                    location=text(checkpoint.location),
                    alternates=alternates,
                    last_mile=handed_to,
                )
            )
    return events


def ack(accepted: int) -> dict[str, object]:
    return {"code": 0, "message": "success", "accepted": accepted}


# --- The webhook ---------------------------------------------------------------------------


def webhook_source(settings: IngestSettings) -> WebhookSource:
    token = settings.yanwen_token.get_secret_value()

    def verify(request: Request, raw_body: bytes) -> Verified:
        presented = request.headers.get(signatures.YANWEN_TOKEN_HEADER, "")
        presented = presented[7:] if presented[:7].lower() == "bearer " else presented
        if not signatures.signatures_match(presented, token):
            raise Unauthenticated("invalid Authorization token")
        return raw_body, None

    return WebhookSource.clear_text(
        SOURCE, verify, parse, ack, failure=lambda _context, detail: {"code": 1, "message": detail, "detail": detail}
    )


WEBHOOK = Carrier(SOURCE, "Yanwen tracking result (Authorization token)", {JSON: (Push,)}, webhook_source)
