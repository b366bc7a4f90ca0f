"""17TRACK webhook v2 (``TRACKING_UPDATED`` / ``TRACKING_STOPPED``).

Each provider of ``track_info.tracking.providers`` is one carrier of the parcel's journey
(e.g. China Post, then USPS on the last mile): its events carry that provider's carrier,
from its numeric ``provider.key``. An event's status comes from ``sub_status``, else from
its milestone ``stage``. ``misc_info.local_provider``/``local_number`` name the last mile.
``TRACKING_STOPPED`` (17TRACK no longer tracks the number) becomes one notice event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from services.ingest import signatures
from services.ingest.carriers.common import (
    LastMile,
    PushError,
    decode,
    last_mile,
    make_event,
    text,
    tracking_number,
)
from services.ingest.carriers.source import JSON, Carrier, WebhookSource, signed_header
from services.ingest.timezones import to_utc
from shared.schemas import NOTICE_TRACKING_STOPPED, CanonicalStatus, TrackingEvent
from shared.status_codes import MAPPINGS
from shared.utc_offset import TimeFormatError

if TYPE_CHECKING:
    from services.ingest.settings import IngestSettings


SOURCE = "17track"
MAPPING = MAPPINGS[SOURCE]
UPDATED = "TRACKING_UPDATED"
STOPPED = "TRACKING_STOPPED"


class Event(msgspec.Struct):
    time_iso: str | None = None
    time_utc: str | None = None
    description: Any = None
    location: Any = None
    stage: Any = None
    sub_status: Any = None


class ProviderInfo(msgspec.Struct):
    key: int | str | None = None
    name: Any = None


class Provider(msgspec.Struct):
    provider: ProviderInfo | None = None
    events: list[Event] = []


class Tracking(msgspec.Struct):
    providers: list[Provider] = []


class MiscInfo(msgspec.Struct):
    local_number: Any = None
    local_provider: Any = None
    local_key: int | str | None = None


class TrackInfo(msgspec.Struct):
    tracking: Tracking | None = None
    misc_info: MiscInfo | None = None


class Data(msgspec.Struct):
    number: str | None = None
    carrier: int | str | None = None
    track_info: TrackInfo | None = None


class Push(msgspec.Struct):
    event: str
    data: Data


_PUSH = msgspec.json.Decoder(Push)


def carrier_of(code: int | str | None, default: str = SOURCE) -> str:
    """The vtrwatch slug of 17TRACK's numeric carrier key; an unknown key is kept as it is
    (``"190271"``); ``default`` when there is none."""
    key = str(code).strip() if code is not None else ""
    if not key:
        return default
    return MAPPING.carriers.get(key, key)


def _occurred_at(event: Event, provider_index: int, index: int) -> datetime:
    # The field's path is only spelled out for an error: formatting it for every event
    # cost as much as reading the time.
    field = "time_utc" if event.time_utc else "time_iso"
    try:
        if event.time_utc:
            return to_utc(event.time_utc, UTC)
        if event.time_iso:
            return to_utc(event.time_iso, MAPPING.timezone)
    except TimeFormatError as error:
        raise PushError(f"{_event_path(provider_index, index)}.{field}: {error}") from None
    raise PushError(f"{_event_path(provider_index, index)}: time_utc or time_iso is required")


def _event_path(provider_index: int, index: int) -> str:
    return f"$.data.track_info.tracking.providers[{provider_index}].events[{index}]"


def _last_mile(track_info: TrackInfo | None) -> LastMile | None:
    misc = track_info.misc_info if track_info else None
    if misc is None:
        return None
    carrier = carrier_of(misc.local_key, "") if misc.local_key not in (None, "", 0) else text(misc.local_provider)
    return last_mile(carrier, misc.local_number, MAPPING.carriers)


def _stopped(number: str, carrier: str, received_at: datetime) -> TrackingEvent:
    return make_event(
        MAPPING,
        carrier=carrier,
        number=number,
        code=STOPPED,
        occurred_at=received_at,
        received_at=received_at,
        description="17TRACK stopped tracking this number",
        status=CanonicalStatus.UNKNOWN,
        notice=NOTICE_TRACKING_STOPPED,
    )


def parse(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    push = decode(_PUSH, raw_body)
    if push.event not in (UPDATED, STOPPED):
        return []
    number = tracking_number(push.data.number, "$.data.number")
    parcel_carrier = carrier_of(push.data.carrier)
    if push.event == STOPPED:
        return [_stopped(number, parcel_carrier, received_at)]
    track_info = push.data.track_info
    handed_to = _last_mile(track_info)
    tracking = track_info.tracking if track_info else None
    events = []
    for provider_index, provider in enumerate(tracking.providers if tracking else ()):
        key = provider.provider.key if provider.provider else None
        carrier = carrier_of(key, parcel_carrier)
        for index, event in enumerate(provider.events):
            code = text(event.sub_status) or text(event.stage)
            if code in MAPPING.metadata_only:
                continue
            events.append(
                make_event(
                    MAPPING,
                    carrier=carrier,
                    number=number,
                    code=code,
                    occurred_at=_occurred_at(event, provider_index, index),
                    received_at=received_at,
                    description=text(event.description),
                    location=text(event.location),
                    last_mile=handed_to,
                )
            )
    return events


def ack(accepted: int) -> dict[str, object]:
    return {"accepted": accepted}


# --- The webhook ---------------------------------------------------------------------------


def webhook_source(settings: IngestSettings) -> WebhookSource:
    api_key = settings.seventeen_track_api_key.get_secret_value()
    verify = signed_header(
        signatures.SEVENTEEN_TRACK_SIGNATURE_HEADER,
        lambda raw_body: signatures.seventeen_track_signature(raw_body, api_key),
        "invalid sign header",
        case_insensitive=True,
    )
    return WebhookSource.clear_text(SOURCE, verify, parse, ack)


WEBHOOK = Carrier(SOURCE, "17TRACK webhook v2 (sign header)", {JSON: (Push,)}, webhook_source)
