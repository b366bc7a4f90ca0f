"""Input records decoded and checked into what the scorer stores: a pure function of the
records' bytes, so the consumer can work it out ahead of a batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from services.scorer.domain.packages import PackageRow, naive_utc, package_from_confirmation
from services.scorer.domain.policy import (
    TRACKING_STOPPED_STATUS,
)
from shared.schemas import (
    NOTICE_TRACKING_STOPPED,
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    ContractError,
    ShipmentCancelled,
    ShipmentConfirmed,
    TrackingEvent,
)
from shared.topics import SHIPMENTS, TRACKING_EVENTS, normalise_tracking_number


class InputRecord(Protocol):
    """What the scorer reads of a consumed Kafka record (aiokafka's ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class DecodedBatch:
    events: list[TrackingEvent]
    confirmations: list[ShipmentConfirmed]
    cancellations: list[ShipmentCancelled]
    newest_received_at: datetime | None = None
    #: Per event, in ``events`` order: its ``scans`` row.
    scan_rows: list[dict[str, Any]] = field(default_factory=list)
    #: Per confirmation, in ``confirmations`` order: its unevaluated package row.
    confirmation_rows: list[PackageRow] = field(default_factory=list)
    #: Records that can never be applied, and why (logged and counted by :func:`report_applied`).
    undecodable: list[tuple[InputRecord, ContractError | None]] = field(default_factory=list)


@dataclass(slots=True)
class PreparedRecord:
    """What one input record decodes to, worked out ahead of its batch (see
    :func:`prepare_record`): a pure function of the record's bytes."""

    value: bytes | None
    message: TrackingEvent | ShipmentConfirmed | ShipmentCancelled | None = None
    #: Why the record can never be applied (counted and logged when its batch is applied).
    error: ContractError | None = None
    #: The ``scans`` row of a tracking event; the unevaluated package of a confirmation.
    row: dict[str, Any] | PackageRow | None = None


#: Records decoded ahead of their batch, by (topic, partition, offset).
PreparedRecords = dict[tuple[str, int, int], PreparedRecord]


#: Longest accepted value per field: a record that does not fit the columns is rejected as
#: invalid instead of failing its batch forever.
FIELD_LIMITS: dict[str, int] = {
    "event_id": 64,
    "tracking_number": 128,
    "seller_id": 128,
    "order_id": 128,
    "category": 200,
    "carrier_name": 200,
    "carrier": 64,
    "service": 200,
}


AMOUNT_LIMIT = 32


#: Text fields of each message that the scorer stores.
STORED_TEXT: dict[type, tuple[str, ...]] = {
    TrackingEvent: ("event_id", "tracking_number", "source"),
    ShipmentConfirmed: ("seller_id", "order_id", "category", "carrier_name", "carrier", "service", "tracking_number"),
    ShipmentCancelled: ("tracking_number", "seller_id", "order_id"),
}


MIN_YEAR, MAX_YEAR = 1900, 9000


#: Time fields converted to naive UTC for storage.
STORED_TIMES: dict[type, tuple[str, ...]] = {
    TrackingEvent: ("occurred_at", "received_at"),
    ShipmentConfirmed: ("confirmed_at", "received_at"),
    ShipmentCancelled: ("cancelled_at", "received_at"),
}


def check_storable(message: TrackingEvent | ShipmentConfirmed | ShipmentCancelled) -> None:
    """Refuse what the database would refuse (a failing batch would be retried forever)."""
    for name in STORED_TEXT[type(message)]:
        value = getattr(message, name)
        if value is None:
            continue
        limit = FIELD_LIMITS.get(name)
        if limit is not None and len(value) > limit:
            raise ContractError(f"{name} longer than {limit} characters")
        if "\x00" in value:
            raise ContractError(f"{name} contains a NUL character")
    for name in STORED_TIMES[type(message)]:
        # Converting to UTC overflows within a day of year 1 or 9999.
        if not MIN_YEAR <= getattr(message, name).year <= MAX_YEAR:
            raise ContractError(f"{name} is not between the years {MIN_YEAR} and {MAX_YEAR}")
    if isinstance(message, ShipmentConfirmed) and len(message.order_value.amount) > AMOUNT_LIMIT:
        raise ContractError(f"order_value.amount longer than {AMOUNT_LIMIT} characters")


def prepare_record(record: InputRecord) -> PreparedRecord:
    """Decode and check one record and build the row it becomes: the CPU work of a record
    that does not depend on the database, so the consumer can do it for the next batch
    while this one waits for PostgreSQL."""
    prepared = PreparedRecord(record.value)
    try:
        if record.value is None:
            raise ContractError("empty record value")
        if record.topic == TRACKING_EVENTS or record.topic.endswith(TRACKING_EVENTS):
            event = TRACKING_EVENT_CODEC.decode(record.value)
            check_storable(event)
            prepared.message, prepared.row = event, scan_row(event)
        elif record.topic == SHIPMENTS or record.topic.endswith(SHIPMENTS):
            message = SHIPMENT_CODEC.decode(record.value)
            check_storable(message)
            prepared.message = message
            if isinstance(message, ShipmentConfirmed):
                prepared.row = package_from_confirmation(message)
        else:
            raise ContractError(f"unexpected topic {record.topic}")
    except ContractError as error:
        prepared.error = error
    return prepared


def decode_records(records: Sequence[InputRecord], prepared: PreparedRecords | None = None) -> DecodedBatch:
    """Decode a batch, taking each record's decoding from ``prepared`` when it was worked
    out ahead (entries are removed as they are used: rows are mutated by the batch, and a
    batch that is retried decodes its records afresh)."""
    batch = DecodedBatch([], [], [])
    for record in records:
        ready = prepared.pop((record.topic, record.partition, record.offset), None) if prepared else None
        # The same bytes, or the offset now holds another record (a re-created topic).
        if ready is None or ready.value != record.value:
            ready = prepare_record(record)
        message = ready.message
        if ready.error is not None or message is None:
            # A record that can never be applied must not block the partition: skip it.
            batch.undecodable.append((record, ready.error))
            continue
        if isinstance(message, TrackingEvent):
            batch.events.append(message)
            batch.scan_rows.append(ready.row)  # type: ignore[arg-type]
        elif isinstance(message, ShipmentConfirmed):
            batch.confirmations.append(message)
            batch.confirmation_rows.append(ready.row)  # type: ignore[arg-type]
        else:
            batch.cancellations.append(message)
        received_at = message.received_at
        if batch.newest_received_at is None or received_at > batch.newest_received_at:
            batch.newest_received_at = received_at
    return batch


def scan_row(event: TrackingEvent) -> dict[str, Any]:
    """The ``scans`` row of a tracking event."""
    return {
        "event_id": event.event_id,
        "tracking_number": normalise_tracking_number(event.tracking_number),
        "status": TRACKING_STOPPED_STATUS if event.notice == NOTICE_TRACKING_STOPPED else event.status.value,
        "occurred_at": naive_utc(event.occurred_at),
        "received_at": naive_utc(event.received_at),
        "source": event.source[:64],
        "carrier_code": event.carrier_code[:64],
        "last_mile_carrier": event.last_mile_carrier[:64],
        "last_mile_tracking_number": event.last_mile_tracking_number[:128],
    }


#: The columns of a ``scans`` row, in :func:`scan_row`'s order.
SCAN_COLUMNS = (
    "event_id",
    "tracking_number",
    "status",
    "occurred_at",
    "received_at",
    "source",
    "carrier_code",
    "last_mile_carrier",
    "last_mile_tracking_number",
)


def cancel_key(message: ShipmentCancelled) -> str:
    return "|".join(
        (
            normalise_tracking_number(message.tracking_number),
            message.seller_id or "",
            message.order_id or "",
            naive_utc(message.cancelled_at).isoformat(),
        )
    )


def cancellation_row(key: str, message: ShipmentCancelled) -> dict[str, Any]:
    return {
        "cancel_key": key,
        "tracking_number": normalise_tracking_number(message.tracking_number),
        "seller_id": message.seller_id,
        "order_id": message.order_id,
        "cancelled_at": naive_utc(message.cancelled_at),
    }
