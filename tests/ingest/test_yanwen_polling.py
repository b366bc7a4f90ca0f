"""Polling Yanwen for open parcels (issue 11 item 11): shipments confirmed through the
ingest API and the real broker, a local server answering as Yanwen's tracking query, and
the canonical events on the topic."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import REGISTRY

from services.ingest.publisher import Publisher
from services.ingest.yanwen_polling import OpenParcels, YanwenClient, YanwenPoller
from shared.schemas import CanonicalStatus, Money, ShipmentCancelled, ShipmentConfirmed
from tests.ingest.conftest import AUTH
from tests.ingest.fake_vendors import TOKEN_YANWEN, yanwen_server
from tests.ingest.samples import unique_number
from tests.ingest.test_registration import until
from tests.ingest.test_webhooks import events_of


def _confirmation(seller: str, number: str, promised: date, order: str) -> dict[str, Any]:
    return {
        "order_id": order,
        "seller_id": seller,
        "marketplace": "SG",
        "category": "Home",
        "carrier": "YANWEN",
        "tracking_number": number,
        "order_value": {"amount": "9.90", "currency": "SGD"},
        "confirmed_at": "2026-11-20T08:30:00Z",
        "promised_delivery_date": promised.isoformat(),
    }


def _retried() -> float:
    return REGISTRY.get_sample_value("vtr_ingest_yanwen_polls_total", {"outcome": "retried"}) or 0.0


def _parcel(number: str, *codes: str) -> dict[str, Any]:
    """A parcel of Yanwen's tracking result (the shape carriers.md documents)."""
    times = ["2026-11-21 10:00:00", "2026-11-23 08:00:00", "2026-11-28 15:30:00"]
    return {
        "tracking_number": number,
        "waybill_number": "YW" + number,
        "exchange_number": "SG" + number[-9:],
        "tracking_status": codes[-1],
        "origin_country": "CN",
        "destination_country": "SG",
        "last_mile_carrier": "Singapore Post",
        "checkpoints": [
            {"time_stamp": times[i], "time_zone": "+8", "tracking_status": code, "message": code, "location": "SZ"}
            for i, code in enumerate(codes)
        ],
    }


async def test_open_parcels_are_polled_in_batches_and_become_events(
    ingest: httpx.AsyncClient, make_settings: Any
) -> None:
    today = datetime.now(UTC).date()
    seller = unique_number("SYW")
    open_numbers = [unique_number("UG") for _ in range(34)]
    delivered, in_transit = open_numbers[0], open_numbers[1]
    past, cancelled = unique_number("UG"), unique_number("UG")
    body = [_confirmation(seller, n, today + timedelta(days=5), f"o-{i}") for i, n in enumerate(open_numbers)]
    body += [
        _confirmation(seller, past, today - timedelta(days=1), "o-past"),
        _confirmation(seller, cancelled, today + timedelta(days=5), "o-cancelled"),
    ]
    assert (await ingest.post("/v1/shipments", json=body, headers=AUTH)).status_code == 202
    cancel = await ingest.post(f"/v1/shipments/{cancelled}/cancel", json={"order_id": "o-cancelled"}, headers=AUTH)
    assert cancel.status_code == 202

    async with yanwen_server() as vendor:
        vendor.parcels[delivered] = _parcel(delivered, "PU10", "LH20", "LM40")
        vendor.parcels[in_transit] = _parcel(in_transit, "PU10", "LH20")
        vendor.fail_next = [503]
        settings = make_settings(
            yanwen_api_url=vendor.url + "/api/tracking",
            yanwen_token=TOKEN_YANWEN,
            yanwen_poll_interval_seconds=1.0,
            yanwen_poll_rate_per_second=50,
            registration_backoff_seconds=0.05,
        )
        publisher = Publisher(settings)
        await publisher.start()
        retried_before = _retried()
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=5) as http:
            poller = YanwenPoller(settings, YanwenClient(http, settings.yanwen_api_url, TOKEN_YANWEN), publisher)
            task = asyncio.create_task(poller.run(stop))
            try:
                await until(lambda: len(poller.rounds) >= 2)
            finally:
                stop.set()
                await task
        await publisher.stop()

    assert len(poller.rounds) >= 2
    first, second = poller.rounds[0], poller.rounds[1]
    calls = [numbers for _, _, numbers in vendor.requests]
    first_round, second_round = calls[: first.calls], calls[first.calls : first.calls + second.calls]
    # Round one: a 503 retried, every open parcel asked; the one delivered is closed after it.
    assert first.failed_batches == 0
    assert _retried() == retried_before + 1
    asked_first = {n for numbers in first_round for n in numbers}
    asked_second = {n for numbers in second_round for n in numbers}
    assert set(open_numbers) <= asked_first
    assert not {past, cancelled} & (asked_first | asked_second)
    assert delivered not in asked_second and in_transit in asked_second
    every_call = [numbers for _, _, numbers in vendor.requests]
    assert all(len(numbers) <= 30 for numbers in every_call)
    assert all(headers.get("Authorization") == TOKEN_YANWEN for _, headers, _ in vendor.requests)
    events = await events_of(settings, delivered, 3)
    assert sorted((e.carrier_code, e.status) for e in events) == [
        ("LH20", CanonicalStatus.IN_TRANSIT),
        ("LM40", CanonicalStatus.DELIVERED),
        ("PU10", CanonicalStatus.ACCEPTED),
    ]
    assert {e.source for e in events} == {"yanwen"}
    assert {e.last_mile_tracking_number for e in events} == {"SG" + delivered[-9:]}
    # Polled twice, produced once: re-polled history is not produced again.
    again = await events_of(settings, in_transit, 2, settle=1.0)
    assert len(again) == 2


def test_open_parcels_follow_confirmations_corrections_and_cancellations() -> None:
    today = date(2026, 12, 1)

    def confirmed(number: str, order: str, carrier: str | None, promised: date) -> ShipmentConfirmed:
        moment = datetime(2026, 11, 20, tzinfo=UTC)
        return ShipmentConfirmed(
            order_id=order,
            seller_id="A1",
            marketplace="SG",
            category="Home",
            carrier_name=carrier or "?",
            carrier=carrier,
            tracking_number=number,
            order_value=Money("5", "SGD"),
            confirmed_at=moment,
            promised_delivery_date=promised,
            received_at=moment,
        )

    parcels = OpenParcels()
    soon = today + timedelta(days=3)
    for message in (
        confirmed("UG1", "o1", "yanwen", soon),
        confirmed("UG2", "o2", "yanwen", today - timedelta(days=1)),
        confirmed("UG3", "o3", "yanwen", soon),
        confirmed("UG3", "o3", "china-post", soon),  # corrected: not Yanwen after all
        confirmed("UG4", "o4", "yanwen", soon),
        confirmed("UG4", "o5", "yanwen", soon),  # two orders shipped together
        ShipmentCancelled(
            tracking_number="UG4", order_id="o4", cancelled_at=datetime.now(UTC), received_at=datetime.now(UTC)
        ),
        confirmed("UG5", "o6", "yanwen", soon),
        ShipmentCancelled(tracking_number="UG5", cancelled_at=datetime.now(UTC), received_at=datetime.now(UTC)),
    ):
        parcels.apply(message)
    assert parcels.due(today) == ["UG1", "UG4"]
    parcels.close("UG1")
    assert parcels.due(today) == ["UG4"]
