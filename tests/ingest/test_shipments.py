"""Shipment confirmations and cancellations: auth, body shapes, validation, risk flags."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.ingest.settings import IngestSettings
from shared.schemas import DEADLETTER_CODEC, SHIPMENT_CODEC, ShipmentCancelled, ShipmentConfirmed
from shared.topics import DEADLETTER, SHIPMENTS
from tests.ingest.conftest import AUTH, keyed, read_topic
from tests.ingest.samples import unique_number


def s10(serial: int) -> str:
    """A valid China Post S10 number for an 8-digit serial."""
    from services.ingest.shipments import s10_check_digit

    digits = f"{serial % 10**8:08d}"
    return f"LK{digits}{s10_check_digit(digits)}CN"


def shipment(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "order_id": unique_number("113-"),
        "seller_id": "A1SELLER",
        "marketplace": "US",
        "category": "Toys",
        "carrier": "China Post",
        "service": "ePacket",
        "tracking_number": s10(int(unique_number("")[:8])),
        "order_value": {"amount": "12.50", "currency": "USD"},
        "confirmed_at": "2026-11-20T08:30:00Z",
        "promised_delivery_date": "2026-12-05",
    }
    record.update(overrides)
    return record


async def shipments_on_topic(settings: IngestSettings, *numbers: str) -> list[ShipmentConfirmed | ShipmentCancelled]:
    records = await read_topic(settings, SHIPMENTS, keyed(*numbers), len(numbers))
    return [SHIPMENT_CODEC.decode(record.value) for record in records]


async def test_one_object_is_confirmed(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    record = shipment(marketplace="sg", carrier="yun express", tracking_number=" yt1234567890123456 ")
    record["order_value"] = {"amount": 6.9, "currency": "sgd"}

    response = await ingest.post("/v1/shipments", json=record, headers=AUTH)

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "rejected": []}
    [message] = await shipments_on_topic(ingest_settings, "YT1234567890123456")
    assert isinstance(message, ShipmentConfirmed)
    assert message.carrier == "yunexpress"
    assert message.carrier_name == "yun express"
    assert message.marketplace == "SG"
    assert message.order_value.amount == "6.9"
    assert message.order_value.currency == "SGD"
    assert message.ship_from_country == "CN"
    assert message.risk_flags == ()


async def test_an_array_with_bad_records_accepts_the_good_ones(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    good = shipment()
    bad_value = shipment(order_value={"amount": "-3", "currency": "USD"})
    naive_time = shipment(confirmed_at="2026-11-20T08:30:00")

    response = await ingest.post("/v1/shipments", json=[good, bad_value, "nope", naive_time], headers=AUTH)

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert [entry["index"] for entry in body["rejected"]] == [1, 2, 3]
    assert body["rejected"][0]["errors"][0]["field"] == "order_value.amount"
    assert body["rejected"][2]["errors"][0]["field"] == "confirmed_at"
    assert "offset" in body["rejected"][2]["errors"][0]["message"]
    [message] = await shipments_on_topic(ingest_settings, good["tracking_number"])
    assert message.order_id == good["order_id"]


async def test_ndjson_is_accepted(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    records = [shipment() for _ in range(3)]
    body = b"\n".join(orjson.dumps(record) for record in records) + b"\n\n{broken\n"

    response = await ingest.post(
        "/v1/shipments", content=body, headers={**AUTH, "content-type": "application/x-ndjson"}
    )

    assert response.status_code == 202
    assert response.json()["accepted"] == 3
    assert response.json()["rejected"][0]["index"] == 3
    messages = await shipments_on_topic(ingest_settings, *(record["tracking_number"] for record in records))
    assert {message.order_id for message in messages} == {record["order_id"] for record in records}


async def test_risk_flags_do_not_reject(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    bad_check_digit = shipment(tracking_number="LK123456784CN")
    short_waybill = shipment(carrier="YunExpress", tracking_number=unique_number("YT"))
    unknown_carrier = shipment(carrier="Fast Cargo", tracking_number=unique_number("FC"))

    response = await ingest.post("/v1/shipments", json=[bad_check_digit, short_waybill, unknown_carrier], headers=AUTH)

    assert response.json() == {"accepted": 3, "rejected": []}
    numbers = [record["tracking_number"] for record in (bad_check_digit, short_waybill, unknown_carrier)]
    by_number = {message.tracking_number: message for message in await shipments_on_topic(ingest_settings, *numbers)}
    bad_digit, short = by_number["LK123456784CN"], by_number[short_waybill["tracking_number"]]
    assert isinstance(bad_digit, ShipmentConfirmed)
    assert isinstance(short, ShipmentConfirmed)
    assert bad_digit.risk_flags == ("malformed_tracking_number",)
    assert short.risk_flags == ("malformed_tracking_number",)
    unknown = by_number[unknown_carrier["tracking_number"]]
    assert isinstance(unknown, ShipmentConfirmed)
    assert unknown.carrier is None
    assert unknown.carrier_name == "Fast Cargo"
    assert unknown.risk_flags == ("carrier_not_integrated",)


async def test_nothing_valid_is_422_and_a_dead_letter(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    marker = unique_number("ORDER")
    response = await ingest.post("/v1/shipments", json=[{"order_id": marker}], headers=AUTH)

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["rejected"][0]["errors"]}
    assert {"seller_id", "marketplace", "tracking_number", "order_value"} <= fields
    letters = await read_topic(
        ingest_settings, DEADLETTER, lambda record: marker.encode() in DEADLETTER_CODEC.decode(record.value).raw, 1
    )
    assert DEADLETTER_CODEC.decode(letters[0].value).origin == "shipments"


async def test_unreadable_bodies_are_400(ingest: httpx.AsyncClient) -> None:
    response = await ingest.post("/v1/shipments", content=b"{not json", headers=AUTH)
    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]
    assert (await ingest.post("/v1/shipments", json=[], headers=AUTH)).status_code == 400


async def test_more_records_than_allowed_are_refused(
    ingest_factory: Any, make_settings: Any, ingest_settings: IngestSettings
) -> None:
    async with ingest_factory(make_settings(max_shipments_per_request=2)) as client:
        response = await client.post("/v1/shipments", json=[shipment(), shipment(), shipment()], headers=AUTH)
    assert response.status_code == 400
    assert "at most 2" in response.json()["detail"]


async def test_bearer_token_is_required(ingest: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert (await ingest.post("/v1/shipments", json=shipment(), headers=headers)).status_code == 401
        assert (await ingest.post("/v1/shipments/X/cancel", headers=headers)).status_code == 401


async def test_cancellation(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    everything = unique_number("CXL")
    one_order = unique_number("CXL")

    assert (await ingest.post(f"/v1/shipments/{everything.lower()}/cancel", headers=AUTH)).status_code == 202
    response = await ingest.post(
        f"/v1/shipments/{one_order}/cancel",
        json={"cancelled_at": "2026-11-21T10:00:00+08:00", "order_id": "113-1"},
        headers=AUTH,
    )
    assert response.status_code == 202

    by_number = {m.tracking_number: m for m in await shipments_on_topic(ingest_settings, everything, one_order)}
    assert isinstance(by_number[everything], ShipmentCancelled)
    assert by_number[everything].order_id is None
    one = by_number[one_order]
    assert isinstance(one, ShipmentCancelled)
    assert one.order_id == "113-1"
    assert one.cancelled_at.isoformat() == "2026-11-21T02:00:00+00:00"


async def test_invalid_cancellation_names_the_field(ingest: httpx.AsyncClient) -> None:
    response = await ingest.post("/v1/shipments/X1/cancel", json={"cancelled_at": "yesterday"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "cancelled_at"


async def test_cancelling_a_blank_tracking_number_is_refused(ingest: httpx.AsyncClient) -> None:
    response = await ingest.post("/v1/shipments/%20%20/cancel", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "tracking_number"


async def test_ten_thousand_shipments_in_one_ndjson_request(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    prefix = unique_number("BULK")
    records = [shipment(tracking_number=f"{prefix}X{index:05d}", carrier="SFC") for index in range(10_000)]
    body = b"\n".join(orjson.dumps(record) for record in records)
    assert len(body) > ingest_settings.max_body_bytes  # bigger than a webhook may be

    response = await ingest.post(
        "/v1/shipments", content=body, headers={**AUTH, "content-type": "application/x-ndjson"}
    )

    assert response.status_code == 202
    assert response.json() == {"accepted": 10_000, "rejected": []}
    numbers = {record["tracking_number"].encode() for record in records}
    on_topic = await read_topic(ingest_settings, SHIPMENTS, lambda record: record.key in numbers, 10_000)
    assert len(on_topic) == 10_000
