"""What every carrier parser shares: errors that name the field, lenient text fields,
and building a :class:`TrackingEvent` with its deterministic id."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, TypeVar

import msgspec

from services.ingest.timezones import to_utc
from shared.carriers import carrier_slug
from shared.schemas import CanonicalStatus, TrackingEvent, tracking_event_id
from shared.status_codes import SourceMapping
from shared.topics import normalise_tracking_number
from shared.utc_offset import TimeFormatError

#: Codes arrive as strings from some accounts and as numbers from others.
Code = str | int

PushT = TypeVar("PushT")


class PushError(ValueError):
    """An authenticated push that cannot be used; the message names the field and the problem."""


def decode(decoder: msgspec.json.Decoder[PushT], payload: bytes | str) -> PushT:
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as error:
        raise PushError(str(error)) from None
    except msgspec.DecodeError as error:
        raise PushError(f"body is not valid JSON: {error}") from None


def text(value: Any) -> str:
    """Free-text fields are informative only: anything that is not a string becomes ''."""
    return value.strip() if isinstance(value, str) else ""


def joined(*parts: Any) -> str:
    return ", ".join(part for part in (text(value) for value in parts) if part)


def tracking_number(value: str | None, field: str) -> str:
    number = normalise_tracking_number(value) if value else ""
    if not number:
        raise PushError(f"{field}: a tracking number is required")
    return number


def moment(value: str, default_zone: tzinfo, field: str) -> datetime:
    try:
        return to_utc(value, default_zone)
    except TimeFormatError as error:
        raise PushError(f"{field}: {error}") from None


def make_event(
    mapping: SourceMapping,
    *,
    carrier: str,
    number: str,
    code: str,
    occurred_at: datetime,
    received_at: datetime,
    description: str = "",
    location: str = "",
    alternates: tuple[str, ...] = (),
    status: CanonicalStatus | None = None,
    last_mile: LastMile | None = None,
    notice: str = "",
) -> TrackingEvent:
    return TrackingEvent(
        event_id=tracking_event_id(carrier, number, code, occurred_at, location, description),
        carrier=carrier,
        tracking_number=number,
        status=status if status is not None else mapping.status(code),
        carrier_code=code,
        occurred_at=occurred_at,
        received_at=received_at,
        source=mapping.source,
        description=description,
        location=location,
        alternate_tracking_numbers=alternates,
        last_mile_carrier=last_mile.carrier if last_mile else "",
        last_mile_tracking_number=last_mile.tracking_number if last_mile else "",
        notice=notice,
    )


@dataclass(frozen=True, slots=True)
class LastMile:
    """The carrier that delivers the last mile and the parcel's number there."""

    carrier: str
    tracking_number: str


def last_mile(carrier: Any, number: Any, carriers: Mapping[str, str] | None = None) -> LastMile | None:
    """A last-mile identity from a source's free fields: the carrier as a vtrwatch slug when
    the source's name or key is known (``carriers`` table, then the seller-name table), else
    the source's own value; None when the source names neither carrier nor number."""
    name = text(carrier) if not isinstance(carrier, int) else str(carrier)
    slug = (carriers or {}).get(name) or (carrier_slug(name) if name else None) or name
    tracking = normalise_tracking_number(number) if isinstance(number, str) else ""
    if not slug and not tracking:
        return None
    return LastMile(slug, tracking)


def alternate_numbers(identity: str, *candidates: str | None) -> tuple[str, ...]:
    """Other numbers of the parcel, normalised, without the identity and without repeats."""
    seen: dict[str, None] = {}
    for candidate in candidates:
        if candidate:
            number = normalise_tracking_number(candidate)
            if number and number != identity:
                seen[number] = None
    return tuple(seen)


def unique(events: Iterable[TrackingEvent]) -> list[TrackingEvent]:
    """Drop repeats of the same event inside one push (same id), keeping the first."""
    by_id: dict[str, TrackingEvent] = {}
    for event in events:
        by_id.setdefault(event.event_id, event)
    return list(by_id.values())
