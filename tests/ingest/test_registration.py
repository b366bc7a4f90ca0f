"""Registering confirmed numbers with 17TRACK and AfterShip (issue 11 item 10), end to end:
shipments confirmed through the ingest API reach the registrar through the real broker, and
the registrar calls local servers that answer as the vendors document (fake_vendors.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from prometheus_client import REGISTRY

from services.ingest.publisher import Publisher
from services.ingest.registration import (
    AfterShipClient,
    Registrar,
    Route,
    SeventeenTrackClient,
    routes_from_settings,
)
from services.ingest.vendor_calls import RateLimiter
from shared.schemas import DEADLETTER_CODEC, Money, ShipmentConfirmed
from shared.topics import DEADLETTER
from tests.ingest.conftest import AUTH, read_topic
from tests.ingest.fake_vendors import (
    KEY_17TRACK,
    KEY_AFTERSHIP,
    FakeVendor,
    aftership_server,
    seventeen_track_server,
)
from tests.ingest.samples import unique_number


def confirmation(seller: str, number: str, carrier: str, order: str) -> dict[str, Any]:
    return {
        "order_id": order,
        "seller_id": seller,
        "marketplace": "US",
        "category": "Toys",
        "carrier": carrier,
        "tracking_number": number,
        "order_value": {"amount": "12.50", "currency": "USD"},
        "confirmed_at": "2026-11-20T08:30:00Z",
        "promised_delivery_date": "2026-12-05",
    }


def counted(aggregator: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("vtr_ingest_registrations_total", {"aggregator": aggregator, "outcome": outcome})
        or 0.0
    )


def registered_numbers(vendor: FakeVendor) -> list[str]:
    return [item["number"] for _, _, body in vendor.requests if isinstance(body, list) for item in body]


async def until(check: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_confirmed_numbers_are_registered_batched_retried_and_parked(
    ingest: httpx.AsyncClient, make_settings: Any
) -> None:
    seller_17, seller_as = unique_number("S17"), unique_number("SAS")
    numbers = [unique_number("LK") for _ in range(45)]
    refused, known = numbers[0], numbers[1]
    yun = [unique_number("YT") for _ in range(2)]
    async with seventeen_track_server() as track17, aftership_server() as aftership:
        track17.refuse.add(refused)
        track17.registered.add(known)  # registered earlier, e.g. by hand in 17TRACK's console
        track17.fail_next = [503]
        aftership.fail_next = [429]
        settings = make_settings(
            register_17track_sellers=seller_17,
            register_aftership_sellers=seller_as,
            seventeen_track_api_url=track17.url,
            seventeen_track_api_key=KEY_17TRACK,
            aftership_api_url=aftership.url,
            aftership_api_key=KEY_AFTERSHIP,
            registration_backoff_seconds=0.05,
            register_17track_rate_per_second=50,
            register_aftership_rate_per_second=50,
        )
        body = [confirmation(seller_17, n, "China Post", f"o-{i}") for i, n in enumerate(numbers)]
        body.append(confirmation(seller_17, numbers[5], "China Post", "o-shipped-together"))
        body += [confirmation(seller_as, n, "Yun Express", f"y-{i}") for i, n in enumerate(yun)]
        assert (await ingest.post("/v1/shipments", json=body, headers=AUTH)).status_code == 202
        before = counted("17track", "registered"), counted("17track", "already_registered")

        publisher = Publisher(settings)
        await publisher.start()
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=5) as http:
            registrar = Registrar(settings, routes_from_settings(settings, http), publisher)
            group = unique_number("registrar-")
            task = asyncio.create_task(registrar.run(stop, group_id=group))
            try:
                await until(lambda: len(aftership.registered) >= 2 and track17.registered >= set(numbers) - {refused})
            finally:
                stop.set()
                await task
            # A second registrar of the same group finds the offsets committed: no call.
            calls = len(track17.requests)
            stop_again = asyncio.Event()
            again = asyncio.create_task(
                Registrar(settings, routes_from_settings(settings, http), publisher).run(stop_again, group_id=group)
            )
            await asyncio.sleep(3)
            stop_again.set()
            await again
        await publisher.stop()

    # 17TRACK: one 503 retried, then the 45 distinct numbers in calls of at most 40, with the
    # China Post carrier key; the one registered before counts as registered.
    # (How the 45 split into calls depends on where the consumer's polls cut the topic.)
    assert all(len(body) <= 40 for _, _, body in track17.requests)
    mine = [n for n in registered_numbers(track17) if n in set(numbers)]
    assert sorted(set(mine)) == sorted(numbers)
    first_call = [item["number"] for item in track17.requests[0][2]]
    assert len(mine) == 45 + len(first_call)  # the first call was answered 503 and sent again
    assert {item.get("carrier") for _, _, body in track17.requests for item in body} == {3011}
    assert all(headers.get("17token") == KEY_17TRACK for _, headers, _ in track17.requests)
    assert track17.registered >= set(numbers) - {refused}
    assert counted("17track", "registered") - before[0] == 43
    assert counted("17track", "already_registered") - before[1] == 1
    assert len(track17.requests) == calls
    # AfterShip: one tracking per call, the 429 retried, the YunExpress slug.
    assert aftership.registered == set(yun)
    asked = [body["tracking_number"] for _, _, body in aftership.requests]
    assert sorted(asked.count(number) for number in yun) == [1, 2]  # the call answered 429 was repeated
    assert {body.get("slug") for _, _, body in aftership.requests} == {"yunexpress"}
    # The refused number is parked with its shipment.
    letters = await read_topic(
        settings, DEADLETTER, lambda record: refused.encode() in DEADLETTER_CODEC.decode(record.value).raw, expected=1
    )
    letter = DEADLETTER_CODEC.decode(letters[0].value)
    assert letter.origin == "registration-17track"
    assert "-18019909" in letter.reason


async def test_per_carrier_routing_and_giving_up(make_settings: Any) -> None:
    """Registrar.register directly: which shipments go where, and a number that keeps failing."""
    settings = make_settings(registration_max_attempts=3, registration_backoff_seconds=0.0)

    def shipment(number: str, carrier: str | None, seller: str = "A1") -> ShipmentConfirmed:
        from datetime import UTC, date, datetime

        return ShipmentConfirmed(
            order_id="o-" + number,
            seller_id=seller,
            marketplace="US",
            category="Toys",
            carrier_name=carrier or "Unknown",
            carrier=carrier,
            tracking_number=number,
            order_value=Money("5", "USD"),
            confirmed_at=datetime(2026, 11, 20, tzinfo=UTC),
            promised_delivery_date=date(2026, 12, 5),
            received_at=datetime(2026, 11, 20, tzinfo=UTC),
        )

    async with seventeen_track_server() as track17, aftership_server() as aftership:
        publisher = Publisher(settings)
        await publisher.start()
        async with httpx.AsyncClient(timeout=5) as http:
            routes = [
                Route(
                    SeventeenTrackClient(http, track17.url, KEY_17TRACK),
                    RateLimiter(100),
                    frozenset({"yanwen"}),
                    frozenset(),
                ),
                Route(
                    AfterShipClient(http, aftership.url, KEY_AFTERSHIP),
                    RateLimiter(100),
                    frozenset(),
                    frozenset({"B2"}),
                ),
            ]
            registrar = Registrar(settings, routes, publisher)
            track17.fail_next = [503, 503, 503]  # every attempt fails
            outcomes = await registrar.register(
                [shipment("UG1", "yanwen"), shipment("RR1", "china-post"), shipment("YT1", "yunexpress", seller="B2")]
            )
            assert {number: o.outcome for number, o in outcomes["17track"].items()} == {"UG1": "failed"}
            assert {number: o.outcome for number, o in outcomes["aftership"].items()} == {"YT1": "registered"}
            assert len(track17.requests) == 3
            # The next confirmation of the same number is tried again (it was not registered).
            retried = await registrar.register([shipment("UG1", "yanwen")])
            assert retried["17track"]["UG1"].outcome == "registered"
            # ... and once registered, this process does not call again.
            assert await registrar.register([shipment("UG1", "yanwen")]) == {"17track": {}, "aftership": {}}
        await publisher.stop()
    letters = await read_topic(
        settings,
        DEADLETTER,
        lambda record: (
            DEADLETTER_CODEC.decode(record.value).origin == "registration-17track"
            and b"UG1" in DEADLETTER_CODEC.decode(record.value).raw
        ),
        expected=1,
    )
    assert "503" in DEADLETTER_CODEC.decode(letters[0].value).reason
