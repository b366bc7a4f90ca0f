from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.schemas import (
    DEADLETTER_CODEC,
    SCORE_CODEC,
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    CanonicalStatus,
    ContractError,
    DeadLetter,
    ForecastPoint,
    Level,
    Money,
    ScoreSnapshot,
    ShipmentCancelled,
    ShipmentConfirmed,
    TrackingEvent,
    tracking_event_id,
)

NOW = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)


def make_event(**overrides: object) -> TrackingEvent:
    fields: dict[str, object] = {
        "event_id": tracking_event_id("china-post", "RR123456785CN", "203", NOW, "Shenzhen"),
        "carrier": "china-post",
        "tracking_number": "RR123456785CN",
        "status": CanonicalStatus.ACCEPTED,
        "carrier_code": "203",
        "occurred_at": NOW,
        "received_at": NOW,
        "source": "china-post",
        "location": "Shenzhen",
    }
    fields.update(overrides)
    return TrackingEvent(**fields)  # type: ignore[arg-type]


def make_shipment(**overrides: object) -> ShipmentConfirmed:
    fields: dict[str, object] = {
        "order_id": "113-0000001-0000001",
        "seller_id": "seller-1",
        "marketplace": "SG",
        "category": "Toys & Games",
        "carrier_name": "China Post",
        "carrier": "china-post",
        "tracking_number": "RR123456785CN",
        "order_value": Money("12.50", "SGD"),
        "confirmed_at": NOW,
        "promised_delivery_date": date(2026, 12, 10),
        "received_at": NOW,
        "service": "ePacket",
    }
    fields.update(overrides)
    return ShipmentConfirmed(**fields)  # type: ignore[arg-type]


def test_tracking_event_round_trips() -> None:
    event = make_event()
    assert TRACKING_EVENT_CODEC.decode(TRACKING_EVENT_CODEC.encode(event)) == event


def test_shipment_messages_round_trip_through_the_tagged_union() -> None:
    confirmed = make_shipment()
    cancelled = ShipmentCancelled(tracking_number="RR123456785CN", cancelled_at=NOW, received_at=NOW, order_id="o-1")
    assert SHIPMENT_CODEC.decode(SHIPMENT_CODEC.encode(confirmed)) == confirmed
    assert SHIPMENT_CODEC.decode(SHIPMENT_CODEC.encode(cancelled)) == cancelled
    assert b'"type":"cancelled"' in SHIPMENT_CODEC.encode(cancelled)


def test_score_and_deadletter_round_trip() -> None:
    snapshot = ScoreSnapshot(
        seller_id="seller-1",
        marketplace="SG",
        category="Toys",
        as_of=date(2026, 11, 20),
        computed_at=NOW,
        caught_up=True,
        window_from=date(2026, 10, 21),
        window_to=date(2026, 11, 19),
        total=100,
        valid=96,
        invalid=4,
        pending=0,
        vtr=0.96,
        headroom=1,
        forecast=(ForecastPoint(date(2026, 11, 21), 0.95),),
        days_to_breach=None,
        level=Level.WATCH,
        reasons={"no_physical_scan": 4},
    )
    assert SCORE_CODEC.decode(SCORE_CODEC.encode(snapshot)) == snapshot
    letter = DeadLetter(
        origin="yanwen", reason="not JSON", raw_base64="AAE=", content_type="text/plain", received_at=NOW
    )
    decoded = DEADLETTER_CODEC.decode(DEADLETTER_CODEC.encode(letter))
    assert decoded.raw == b"\x00\x01"


def test_event_id_is_deterministic_and_distinguishes_scans() -> None:
    first = tracking_event_id("yanwen", "UG1", "PU10", NOW, "Shenzhen")
    assert first == tracking_event_id("yanwen", "UG1", "PU10", NOW, "Shenzhen")
    assert first != tracking_event_id("yanwen", "UG1", "LH20", NOW, "Shenzhen")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"event_id": 5}', "event_id"),
        (b"not json", "malformed"),
        (TRACKING_EVENT_CODEC.encode(make_event()).replace(b'"ACCEPTED"', b'"TELEPORTED"'), "status"),
        (TRACKING_EVENT_CODEC.encode(make_event()).replace(b"+00:00", b"").replace(b"Z", b""), "occurred_at"),
    ],
)
def test_malformed_tracking_events_are_rejected_with_the_field_named(payload: bytes, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        TRACKING_EVENT_CODEC.decode(payload)
    assert field in str(caught.value)


def test_malformed_shipment_names_the_problem() -> None:
    payload = SHIPMENT_CODEC.encode(make_shipment()).replace(b'"SG"', b'"Singapore"')
    with pytest.raises(ContractError, match="marketplace"):
        SHIPMENT_CODEC.decode(payload)
    with pytest.raises(ContractError, match="type"):
        SHIPMENT_CODEC.decode(b'{"type": "teleported"}')


def test_levels_are_ordered_by_severity() -> None:
    assert [level.severity for level in Level] == [0, 1, 2, 3]
    assert Level.BREACH.severity > Level.AT_RISK.severity
