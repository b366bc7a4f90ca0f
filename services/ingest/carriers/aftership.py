"""AfterShip ``tracking_update`` webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.ingest.carriers.common import PushError, decode, joined, make_event, moment, text, tracking_number
from services.ingest.mapping import MAPPINGS
from shared.carriers import carrier_slug
from shared.schemas import TrackingEvent

SOURCE = "aftership"
MAPPING = MAPPINGS[SOURCE]
TRACKING_UPDATE = "tracking_update"


class Checkpoint(msgspec.Struct):
    checkpoint_time: str
    tag: Any = None
    subtag: Any = None
    message: Any = None
    location: Any = None
    city: Any = None
    country_name: Any = None


class Tracking(msgspec.Struct):
    tracking_number: str | None = None
    slug: Any = None
    checkpoints: list[Checkpoint] = []


class Push(msgspec.Struct):
    event: str
    msg: Tracking | None = None


_PUSH = msgspec.json.Decoder(Push)


def carrier_of(slug: Any) -> str:
    """AfterShip's courier slug as a vtrwatch slug, else ``aftership`` (labels stay bounded)."""
    if not isinstance(slug, str) or not slug:
        return SOURCE
    return MAPPING.carriers.get(slug) or carrier_slug(slug) or SOURCE


def parse(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    push = decode(_PUSH, raw_body)
    if push.event != TRACKING_UPDATE:
        return []
    if push.msg is None:
        raise PushError("$.msg: a tracking_update needs the tracking in `msg`")
    number = tracking_number(push.msg.tracking_number, "$.msg.tracking_number")
    carrier = carrier_of(push.msg.slug)
    scans = []
    for index, checkpoint in enumerate(push.msg.checkpoints):
        code = text(checkpoint.tag)
        if code in MAPPING.metadata_only:
            continue
        where = f"$.msg.checkpoints[{index}]"
        occurred_at = moment(checkpoint.checkpoint_time, MAPPING.timezone, f"{where}.checkpoint_time")
        scans.append((code, occurred_at, checkpoint))
    # The earliest checkpoint of some tags means more (the first InTransit is the acceptance).
    first_of: dict[str, datetime] = {}
    for code, occurred_at, _ in scans:
        if code in MAPPING.first_scan and (code not in first_of or occurred_at < first_of[code]):
            first_of[code] = occurred_at
    return [
        make_event(
            MAPPING,
            carrier=carrier,
            number=number,
            code=code,
            occurred_at=occurred_at,
            received_at=received_at,
            description=text(checkpoint.message),
            location=text(checkpoint.location) or joined(checkpoint.city, checkpoint.country_name),
            status=MAPPING.first_scan[code] if first_of.get(code) == occurred_at else None,
        )
        for code, occurred_at, checkpoint in scans
    ]


def ack(accepted: int) -> dict[str, object]:
    return {"accepted": accepted}
