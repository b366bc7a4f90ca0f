"""AfterShip ``tracking_update`` webhooks.

Statuses come from the checkpoint's ``subtag`` (AfterShip's documented sub-status table,
e.g. ``InTransit_002`` acceptance scan, ``Exception_011`` returned to sender), else from
its ``tag``; the code kept on the event is the subtag when there is one. A checkpoint's
``checkpoint_time`` without an offset is local time at the checkpoint: its zone comes from
the checkpoint's country and state (``zones.toml``). Checkpoints a merchant entered by hand
(``source: "user"``) are no carrier scan and produce no event.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import msgspec

from services.ingest import signatures
from services.ingest.carriers.common import (
    LastMile,
    PushError,
    decode,
    joined,
    last_mile,
    make_event,
    moment,
    text,
    tracking_number,
)
from services.ingest.carriers.source import JSON, Carrier, WebhookSource, signed_header
from services.ingest.timezones import ZONES, location_zone
from shared.carriers import carrier_slug
from shared.schemas import TrackingEvent
from shared.status_codes import MAPPINGS

if TYPE_CHECKING:
    from services.ingest.settings import IngestSettings


SOURCE = "aftership"
MAPPING = MAPPINGS[SOURCE]
TRACKING_UPDATE = "tracking_update"
#: A state code inside a US location such as "WEST PALM BEACH FL DISTRIBUTION CENTER"
#: (USPS checkpoints often leave `state` empty).
_STATE_TOKEN = re.compile(r"\b([A-Z]{2})\b")


class Checkpoint(msgspec.Struct):
    checkpoint_time: str
    tag: Any = None
    subtag: Any = None
    message: Any = None
    location: Any = None
    city: Any = None
    state: Any = None
    country_name: Any = None
    #: ISO 3166-1 alpha-3; ``country_region`` in newer API versions.
    country_iso3: Any = None
    country_region: Any = None
    #: The courier that reported this checkpoint (differs from the tracking's on the last mile).
    slug: Any = None
    #: ``user`` when the merchant entered the checkpoint by hand.
    source: Any = None


class NextCourier(msgspec.Struct):
    slug: Any = None
    tracking_number: Any = None


class Tracking(msgspec.Struct):
    tracking_number: str | None = None
    slug: Any = None
    checkpoints: list[Checkpoint] = []
    #: The couriers the parcel is handed to after the first one (the last mile).
    next_couriers: list[NextCourier] | None = None


class Push(msgspec.Struct):
    event: str
    msg: Tracking | None = None


_PUSH = msgspec.json.Decoder(Push)


def carrier_of(slug: Any) -> str:
    """AfterShip's courier slug as a vtrwatch slug, else ``aftership`` (labels stay bounded)."""
    if not isinstance(slug, str) or not slug:
        return SOURCE
    return MAPPING.carriers.get(slug) or carrier_slug(slug) or SOURCE


def checkpoint_zone(checkpoint: Checkpoint) -> tzinfo:
    """The zone of the checkpoint's location; the source's fixed zone (UTC) when the
    country is missing or not in zones.toml."""
    country = text(checkpoint.country_iso3) or text(checkpoint.country_region)
    if not country:
        return MAPPING.timezone
    state = text(checkpoint.state)
    if state.lower() == "null":
        state = ""
    regions = None if state else ZONES.regions.get(ZONES.country_code(country))
    if regions is not None:
        for field in (checkpoint.city, checkpoint.location):
            found = next((token for token in _STATE_TOKEN.findall(text(field)) if token in regions), "")
            if found:
                state = found
                break
    return location_zone(country, state) or MAPPING.timezone


def _last_mile(tracking: Tracking) -> LastMile | None:
    couriers = [courier for courier in tracking.next_couriers or () if text(courier.slug)]
    if not couriers:
        return None
    courier = couriers[-1]
    return last_mile(courier.slug, courier.tracking_number, MAPPING.carriers)


def parse(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    push = decode(_PUSH, raw_body)
    if push.event != TRACKING_UPDATE:
        return []
    if push.msg is None:
        raise PushError("$.msg: a tracking_update needs the tracking in `msg`")
    number = tracking_number(push.msg.tracking_number, "$.msg.tracking_number")
    carrier = carrier_of(push.msg.slug)
    handed_to = _last_mile(push.msg)
    events = []
    for index, checkpoint in enumerate(push.msg.checkpoints):
        if text(checkpoint.source) in MAPPING.manual_sources:
            continue
        code = text(checkpoint.subtag) or text(checkpoint.tag)
        if code in MAPPING.metadata_only:
            continue
        where = f"$.msg.checkpoints[{index}].checkpoint_time"
        events.append(
            make_event(
                MAPPING,
                carrier=carrier_of(checkpoint.slug) if text(checkpoint.slug) else carrier,
                number=number,
                code=code,
                occurred_at=moment(checkpoint.checkpoint_time, checkpoint_zone(checkpoint), where),
                received_at=received_at,
                description=text(checkpoint.message),
                location=text(checkpoint.location) or joined(checkpoint.city, checkpoint.country_name),
                last_mile=handed_to,
            )
        )
    return events


def ack(accepted: int) -> dict[str, object]:
    return {"accepted": accepted}


# --- The webhook ---------------------------------------------------------------------------


def webhook_source(settings: IngestSettings) -> WebhookSource:
    secret = settings.aftership_secret.get_secret_value()
    verify = signed_header(
        signatures.AFTERSHIP_SIGNATURE_HEADER,
        lambda raw_body: signatures.aftership_signature(raw_body, secret),
        "invalid aftership-hmac-sha256 header",
    )
    return WebhookSource.clear_text(SOURCE, verify, parse, ack)


WEBHOOK = Carrier(SOURCE, "AfterShip tracking_update (aftership-hmac-sha256 header)", {JSON: (Push,)}, webhook_source)
