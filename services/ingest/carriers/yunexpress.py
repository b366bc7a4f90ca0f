"""YunExpress ``tisPushData`` pushes, in both envelopes, and the older camelCase shape.

The older shape (``wayBillNumber``, ``trackingNumber``, ``lastMileName``,
``orderTrackingDetails[]`` with ``processDate``, ``processContent``, ``processLocation``,
``trackNodeCode``...) carries the field names of YunExpress's v1 tracking API
(``WaybillNumber``/``OrderTrackingDetails``, PascalCase there): keys are matched without
regard to case or underscores, so both spellings are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

import msgspec
import orjson

from services.ingest.carriers.common import (
    Code,
    PushError,
    alternate_numbers,
    decode,
    joined,
    last_mile,
    make_event,
    moment,
    text,
    tracking_number,
)
from services.ingest.mapping import MAPPINGS
from services.ingest.timezones import location_zone
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
    last_mile_name: Any = None
    track_events: list[TrackEvent] = []


class Push(msgspec.Struct):
    data_code: str | None = None
    data: Parcel | list[Parcel] | None = None
    body: Parcel | list[Parcel] | None = None


_PUSH = msgspec.json.Decoder(Push)


def _local_zone(event: TrackEvent) -> tzinfo:
    country = text(event.process_country)
    return (location_zone(country) if country else None) or MAPPING.timezone


def _occurred_at(event: TrackEvent, where: str) -> datetime:
    # process_utc_time is unambiguous; process_time is local to wherever the scan happened.
    if event.process_utc_time:
        return moment(event.process_utc_time, UTC, f"{where}.process_utc_time")
    if event.process_time:
        return moment(event.process_time, _local_zone(event), f"{where}.process_time")
    raise PushError(f"{where}: process_utc_time or process_time is required")


# --- The older camelCase shape -------------------------------------------------------------

#: Squashed key (lower case, no underscores) -> the field of the current shape.
_LEGACY_PARCEL_FIELDS = {
    "waybillnumber": "waybill_number",
    "trackingnumber": "tracking_number",
    "lastmilename": "last_mile_name",
}
_LEGACY_EVENT_FIELDS = {
    "tracknodecode": "track_node_code",
    "processdate": "process_time",
    "processtime": "process_time",
    "processutctime": "process_utc_time",
    "processcontent": "process_content",
    "trackcodedescription": "track_node_description",
    "processlocation": "process_location",
    "processcountry": "process_country",
    "processprovince": "process_province",
    "processcity": "process_city",
}
_LEGACY_DETAILS = "ordertrackingdetails"
#: The older API's numeric status, on events that carry no node code: it becomes the code
#: ``trackingStatus:<n>``, mapped in status_codes.toml like any other (docs/carriers.md).
_LEGACY_NUMERIC_STATUS = "trackingstatus"
LEGACY_STATUS_PREFIX = "trackingStatus:"
#: Envelopes the older parcels were seen in (the v1 API's `Item`, or data/body as today).
_LEGACY_ENVELOPES = ("data", "body", "item", "result")


def _squash(key: str) -> str:
    return key.replace("_", "").lower()


def _legacy_parcels(document: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(document, list):
        for index, item in enumerate(document):
            for path, parcel in _legacy_parcels(item):
                yield f"[{index}]{path}", parcel
        return
    if not isinstance(document, dict):
        return
    squashed = {_squash(key): value for key, value in document.items()}
    if _LEGACY_DETAILS in squashed:
        yield "", squashed
        return
    for name in _LEGACY_ENVELOPES:
        if name in squashed:
            for path, parcel in _legacy_parcels(squashed[name]):
                yield f".{name}{path}", parcel


def _legacy_event(detail: dict[str, Any]) -> dict[str, Any]:
    event = {new: value for key, value in detail.items() if (new := _LEGACY_EVENT_FIELDS.get(_squash(key)))}
    if "track_node_code" not in event:
        numeric = next((value for key, value in detail.items() if _squash(key) == _LEGACY_NUMERIC_STATUS), None)
        if isinstance(numeric, int | str) and not isinstance(numeric, bool) and str(numeric).strip().isdigit():
            event["track_node_code"] = f"{LEGACY_STATUS_PREFIX}{int(str(numeric).strip())}"
    return event


def parse_legacy(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    """The older camelCase (or PascalCase) push: ``wayBillNumber`` + ``orderTrackingDetails``."""
    try:
        document = orjson.loads(raw_body)
    except orjson.JSONDecodeError as error:
        raise PushError(f"body is not valid JSON: {error}") from None
    parcels = []
    for path, fields in _legacy_parcels(document):
        details = fields.get(_LEGACY_DETAILS)
        if not isinstance(details, list):
            raise PushError(f"${path}.orderTrackingDetails: expected an array")
        parcel = {new: fields[old] for old, new in _LEGACY_PARCEL_FIELDS.items() if old in fields}
        parcel["track_events"] = [_legacy_event(detail) if isinstance(detail, dict) else detail for detail in details]
        try:
            parcels.append((path, msgspec.convert(parcel, Parcel)))
        except msgspec.ValidationError as error:
            raise PushError(f"${path}: {error} (older camelCase shape)") from None
    if not parcels:
        raise PushError("$: neither a tisPushData push nor a parcel with orderTrackingDetails")
    return [event for path, parcel in parcels for event in _parcel_events(parcel, f"${path}", received_at)]


def parse(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    # The older shape names its events orderTrackingDetails (OrderTrackingDetails in v1).
    if b"rackingDetails" in raw_body:
        return parse_legacy(raw_body, received_at)
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
        events += _parcel_events(parcel, parcel_path, received_at)
    return events


def _parcel_events(parcel: Parcel, parcel_path: str, received_at: datetime) -> list[TrackingEvent]:
    number = tracking_number(parcel.waybill_number, f"{parcel_path}.waybill_number")
    alternates = alternate_numbers(number, parcel.tracking_number)
    handed_to = last_mile(parcel.last_mile_name, parcel.tracking_number) if parcel.last_mile_name else None
    events = []
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
                last_mile=handed_to,
            )
        )
    return events


def ack(accepted: int) -> dict[str, object]:
    return {"success": True, "code": 0, "message": "success", "accepted": accepted}
