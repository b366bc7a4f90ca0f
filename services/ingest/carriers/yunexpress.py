"""YunExpress ``tisPushData`` pushes, in both envelopes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from services.ingest.carriers.common import (
    Code,
    PushError,
    alternate_numbers,
    decode,
    joined,
    make_event,
    moment,
    text,
    tracking_number,
)
from services.ingest.mapping import MAPPINGS
from shared.schemas import TrackingEvent

SOURCE = "yunexpress"
CARRIER = "yunexpress"
MAPPING = MAPPINGS[SOURCE]
DATA_CODE = "tisPushData"


class TrackEvent(msgspec.Struct):
    track_node_code: Code
    process_time: str | None = None
    process_utc_time: str | None = None
    track_node_description: Any = None
    process_content: Any = None
    process_country: Any = None
    process_province: Any = None
    process_city: Any = None
    process_location: Any = None


class Parcel(msgspec.Struct):
    waybill_number: str
    tracking_number: str | None = None
    track_events: list[TrackEvent] = []


class Push(msgspec.Struct):
    data_code: str | None = None
    data: Parcel | list[Parcel] | None = None
    body: Parcel | list[Parcel] | None = None


_PUSH = msgspec.json.Decoder(Push)


def _occurred_at(event: TrackEvent, where: str) -> datetime:
    # process_utc_time is unambiguous; process_time is local to wherever the scan happened.
    if event.process_utc_time:
        return moment(event.process_utc_time, UTC, f"{where}.process_utc_time")
    if event.process_time:
        return moment(event.process_time, MAPPING.timezone, f"{where}.process_time")
    raise PushError(f"{where}: process_utc_time or process_time is required")


def parse(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    push = decode(_PUSH, raw_body)
    if push.data_code is not None and push.data_code != DATA_CODE:
        raise PushError(f"$.data_code: expected {DATA_CODE!r}, got {push.data_code!r}")
    envelope, content = ("$.data", push.data) if push.data is not None else ("$.body", push.body)
    if content is None:
        raise PushError("$: a tisPushData push needs `data` (or `body`) with the parcel")
    parcels = content if isinstance(content, list) else [content]
    events = []
    for parcel_index, parcel in enumerate(parcels):
        parcel_path = f"{envelope}[{parcel_index}]" if isinstance(content, list) else envelope
        number = tracking_number(parcel.waybill_number, f"{parcel_path}.waybill_number")
        alternates = alternate_numbers(number, parcel.tracking_number)
        for index, event in enumerate(parcel.track_events):
            code = str(event.track_node_code).strip()
            if code in MAPPING.metadata_only:
                continue
            where = f"{parcel_path}.track_events[{index}]"
            events.append(
                make_event(
                    MAPPING,
                    carrier=CARRIER,
                    number=number,
                    code=code,
                    occurred_at=_occurred_at(event, where),
                    received_at=received_at,
                    description=text(event.process_content) or text(event.track_node_description),
                    location=text(event.process_location)
                    or joined(event.process_city, event.process_province, event.process_country),
                    alternates=alternates,
                )
            )
    return events


def ack(accepted: int) -> dict[str, object]:
    return {"success": True, "code": 0, "message": "success", "accepted": accepted}
