"""17TRACK webhook v2 (``TRACKING_UPDATED`` / ``TRACKING_STOPPED``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from services.ingest.carriers.common import PushError, decode, make_event, moment, text, tracking_number
from services.ingest.mapping import MAPPINGS
from shared.schemas import TrackingEvent

SOURCE = "17track"
MAPPING = MAPPINGS[SOURCE]
UPDATED = "TRACKING_UPDATED"


class Event(msgspec.Struct):
    time_iso: str | None = None
    time_utc: str | None = None
    description: Any = None
    location: Any = None
    stage: Any = None
    sub_status: Any = None


class Provider(msgspec.Struct):
    events: list[Event] = []


class Tracking(msgspec.Struct):
    providers: list[Provider] = []


class TrackInfo(msgspec.Struct):
    tracking: Tracking | None = None


class Data(msgspec.Struct):
    number: str | None = None
    carrier: int | str | None = None
    track_info: TrackInfo | None = None


class Push(msgspec.Struct):
    event: str
    data: Data


_PUSH = msgspec.json.Decoder(Push)


def carrier_of(code: int | str | None) -> str:
    """The vtrwatch slug of 17TRACK's numeric carrier key, else ``17track``."""
    return MAPPING.carriers.get(str(code).strip(), SOURCE) if code is not None else SOURCE


def _occurred_at(event: Event, where: str) -> datetime:
    if event.time_utc:
        return moment(event.time_utc, UTC, f"{where}.time_utc")
    if event.time_iso:
        return moment(event.time_iso, MAPPING.timezone, f"{where}.time_iso")
    raise PushError(f"{where}: time_utc or time_iso is required")


def parse(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    push = decode(_PUSH, raw_body)
    if push.event != UPDATED:
        return []  # TRACKING_STOPPED and other notices carry no scans
    number = tracking_number(push.data.number, "$.data.number")
    carrier = carrier_of(push.data.carrier)
    tracking = push.data.track_info.tracking if push.data.track_info else None
    events = []
    for provider_index, provider in enumerate(tracking.providers if tracking else ()):
        for index, event in enumerate(provider.events):
            code = text(event.sub_status) or text(event.stage)
            if code in MAPPING.metadata_only:
                continue
            where = f"$.data.track_info.tracking.providers[{provider_index}].events[{index}]"
            events.append(
                make_event(
                    MAPPING,
                    carrier=carrier,
                    number=number,
                    code=code,
                    occurred_at=_occurred_at(event, where),
                    received_at=received_at,
                    description=text(event.description),
                    location=text(event.location),
                )
            )
    return events


def ack(accepted: int) -> dict[str, object]:
    return {"accepted": accepted}
