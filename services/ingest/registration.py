"""Registering tracking numbers with the aggregators (issue 11 item 10).

17TRACK and AfterShip only push numbers registered with them. The registrar consumes
``vtr.shipments.v1`` (its own consumer group) and registers the number of every confirmed
shipment whose carrier or seller is tracked through an aggregator (settings
``VTR_REGISTER_17TRACK_CARRIERS`` / ``..._SELLERS``, ``VTR_REGISTER_AFTERSHIP_*``):

- 17TRACK: ``POST {VTR_17TRACK_API_URL}/register`` with header ``17token``, a JSON array of
  up to 40 ``{"number", "carrier"}``; the reply lists ``data.accepted`` and
  ``data.rejected`` (error ``-18019901``: already registered, which is success here).
- AfterShip: ``POST {VTR_AFTERSHIP_API_URL}/trackings`` with header ``as-api-key``, one
  ``{"tracking_number", "slug"}`` per call; ``201`` created, ``400`` with ``meta.code``
  ``4003`` "tracking already exists" (success here).

Calls are rate-limited per aggregator, retried with exponential back-off on 429, 5xx and
network errors, and idempotent (a number registered twice is "already registered"). A
number an aggregator refuses, or that still fails after the last attempt, is parked on
``vtr.deadletter.v1`` (origin ``registration-17track`` / ``registration-aftership``).
Offsets are committed once every number of a poll is registered or parked.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from services.ingest.metrics import REGISTRATION_CALLS, REGISTRATIONS
from services.ingest.publisher import Publisher, Record
from services.ingest.settings import IngestSettings
from services.ingest.vendor_calls import (
    RateLimiter,
    Retryable,
    RetryPolicy,
    call_with_retries,
    publisher_and_http,
    run_until_signal,
)
from services.ingest.worker_health import WORKER_LOOP, idle_until
from shared.kafka import make_consumer
from shared.schemas import DEADLETTER_CODEC, SHIPMENT_CODEC, ContractError, DeadLetter, ShipmentConfirmed
from shared.status_codes import MAPPINGS
from shared.topics import DEADLETTER, SHIPMENTS

log = logging.getLogger(__name__)

SEVENTEEN_TRACK = "17track"
AFTERSHIP = "aftership"
#: 17TRACK's register call takes at most 40 numbers.
SEVENTEEN_TRACK_BATCH = 40
#: 17TRACK's rejection code of a number that is already registered.
SEVENTEEN_TRACK_ALREADY_REGISTERED = -18019901
#: AfterShip's meta.code of "Tracking already exists".
AFTERSHIP_ALREADY_EXISTS = 4003
#: The registrar's consumer group on ``vtr.shipments.v1`` (its KafkaUser may read it).
REGISTRAR_GROUP = "vtr-ingest-registrar"


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    outcome: str
    reason: str = ""


REGISTERED = Outcome(True, "registered")
ALREADY = Outcome(True, "already_registered")


def _reverse(table: dict[str, str]) -> dict[str, str]:
    """vtrwatch slug -> the aggregator's first identifier for it."""
    reverse: dict[str, str] = {}
    for key, slug in table.items():
        reverse.setdefault(slug, key)
    return reverse


class SeventeenTrackClient:
    name = SEVENTEEN_TRACK
    batch_size = SEVENTEEN_TRACK_BATCH

    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str) -> None:
        self._http, self._url, self._key = http, base_url.rstrip("/") + "/register", api_key
        self._carrier_keys = _reverse(dict(MAPPINGS[SEVENTEEN_TRACK].carriers))

    def _item(self, shipment: ShipmentConfirmed) -> dict[str, Any]:
        item: dict[str, Any] = {"number": shipment.tracking_number}
        key = self._carrier_keys.get(shipment.carrier or "")
        if key is not None:
            item["carrier"] = int(key)  # else 17TRACK detects the carrier itself
        return item

    async def register(self, shipments: Sequence[ShipmentConfirmed]) -> dict[str, Outcome]:
        try:
            response = await self._http.post(
                self._url, json=[self._item(s) for s in shipments], headers={"17token": self._key}
            )
        except httpx.HTTPError as error:
            REGISTRATION_CALLS.labels(self.name, "network_error").inc()
            raise Retryable(f"17TRACK register: {error!r}") from error
        REGISTRATION_CALLS.labels(self.name, str(response.status_code)).inc()
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"17TRACK register answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as error:
            raise Retryable("17TRACK register answered a body that is not JSON") from error
        if response.status_code != 200 or body.get("code") != 0:
            # A whole-request error (bad key, quota): the numbers are not registered.
            reason = f"17TRACK register: HTTP {response.status_code}, code {body.get('code')}: {body.get('data')}"
            return {s.tracking_number: Outcome(False, "rejected", reason) for s in shipments}
        data = body.get("data") or {}
        outcomes: dict[str, Outcome] = {}
        for accepted in data.get("accepted") or ():
            outcomes[str(accepted.get("number", "")).upper()] = REGISTERED
        for rejected in data.get("rejected") or ():
            refusal = rejected.get("error") or {}
            number = str(rejected.get("number", "")).upper()
            if refusal.get("code") == SEVENTEEN_TRACK_ALREADY_REGISTERED:
                outcomes[number] = ALREADY
            else:
                outcomes[number] = Outcome(
                    False, "rejected", f"17TRACK {refusal.get('code')}: {refusal.get('message')}"
                )
        for shipment in shipments:
            outcomes.setdefault(shipment.tracking_number, Outcome(False, "rejected", "17TRACK did not answer for it"))
        return outcomes


class AfterShipClient:
    name = AFTERSHIP
    batch_size = 1

    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str) -> None:
        self._http, self._url, self._key = http, base_url.rstrip("/") + "/trackings", api_key
        self._slugs = _reverse(dict(MAPPINGS[AFTERSHIP].carriers))

    async def register(self, shipments: Sequence[ShipmentConfirmed]) -> dict[str, Outcome]:
        return {s.tracking_number: await self._create(s) for s in shipments}

    async def _create(self, shipment: ShipmentConfirmed) -> Outcome:
        body: dict[str, Any] = {"tracking_number": shipment.tracking_number, "order_id": shipment.order_id}
        slug = self._slugs.get(shipment.carrier or "")
        if slug is not None:
            body["slug"] = slug  # else AfterShip detects the courier
        try:
            response = await self._http.post(self._url, json=body, headers={"as-api-key": self._key})
        except httpx.HTTPError as error:
            REGISTRATION_CALLS.labels(self.name, "network_error").inc()
            raise Retryable(f"AfterShip create tracking: {error!r}") from error
        REGISTRATION_CALLS.labels(self.name, str(response.status_code)).inc()
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"AfterShip create tracking answered {response.status_code}")
        if response.status_code in (200, 201):
            return REGISTERED
        try:
            meta = response.json().get("meta") or {}
        except ValueError:
            meta = {}
        if meta.get("code") == AFTERSHIP_ALREADY_EXISTS:
            return ALREADY
        return Outcome(False, "rejected", f"AfterShip {response.status_code} {meta.get('code')}: {meta.get('message')}")


@dataclass(frozen=True)
class Route:
    """Which shipments go to an aggregator, through which client (17TRACK or AfterShip)."""

    client: SeventeenTrackClient | AfterShipClient
    limiter: RateLimiter
    carriers: frozenset[str]
    sellers: frozenset[str]

    def wants(self, shipment: ShipmentConfirmed) -> bool:
        return (shipment.carrier or "") in self.carriers or shipment.seller_id in self.sellers


class Registrar:
    def __init__(
        self,
        settings: IngestSettings,
        routes: Sequence[Route],
        publisher: Publisher,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._routes = routes
        self._publisher = publisher
        self._sleep = sleep
        self._retry_policy = RetryPolicy.from_settings(settings)
        #: numbers registered by this process, so a re-read shipment costs no call
        self._done: dict[tuple[str, str], None] = {}

    async def _call(self, route: Route, batch: Sequence[ShipmentConfirmed]) -> dict[str, Outcome]:
        name = route.client.name

        def retried(attempt: int, error: Retryable) -> None:
            log.warning("registration retried", extra={"aggregator": name, "attempt": attempt, "problem": str(error)})

        try:
            return dict(
                await call_with_retries(
                    lambda: route.client.register(batch),
                    limiter=route.limiter,
                    policy=self._retry_policy,
                    sleep=self._sleep,
                    on_retry=retried,
                )
            )
        except Retryable as error:
            return {s.tracking_number: Outcome(False, "failed", str(error)) for s in batch}

    async def register(self, shipments: Iterable[ShipmentConfirmed]) -> dict[str, dict[str, Outcome]]:
        """Register every shipment with the aggregators that want it; park what fails.
        Returns aggregator -> number -> outcome (numbers this process already registered
        are left out)."""
        results: dict[str, dict[str, Outcome]] = {}
        letters: list[Record] = []
        shipments = list(shipments)
        for route in self._routes:
            name = route.client.name
            wanted: dict[str, ShipmentConfirmed] = {}
            for shipment in shipments:
                if route.wants(shipment) and (name, shipment.tracking_number) not in self._done:
                    wanted.setdefault(shipment.tracking_number, shipment)
            pending = list(wanted.values())
            outcomes: dict[str, Outcome] = {}
            for start in range(0, len(pending), route.client.batch_size):
                outcomes.update(await self._call(route, pending[start : start + route.client.batch_size]))
            for number, outcome in outcomes.items():
                REGISTRATIONS.labels(name, outcome.outcome).inc()
                if outcome.ok:
                    self._done[(name, number)] = None
                else:
                    letters.append(self._letter(name, wanted.get(number), number, outcome))
            results[name] = outcomes
        if letters:
            await self._publisher.publish(letters)
        if len(self._done) > 200_000:
            for key in list(self._done)[:100_000]:
                del self._done[key]
        return results

    @staticmethod
    def _letter(aggregator: str, shipment: ShipmentConfirmed | None, number: str, outcome: Outcome) -> Record:
        raw = SHIPMENT_CODEC.encode(shipment) if shipment is not None else orjson.dumps({"tracking_number": number})
        letter = DeadLetter(
            origin=f"registration-{aggregator}",
            reason=f"{number}: {outcome.reason}"[:2000] or "registration failed",
            raw_base64=base64.b64encode(raw).decode(),
            content_type="application/json",
            received_at=datetime.now(UTC),
        )
        return Record(DEADLETTER, letter.origin.encode(), DEADLETTER_CODEC.encode(letter))

    async def run(self, stop: asyncio.Event, group_id: str = REGISTRAR_GROUP) -> None:
        """Consume confirmed shipments until ``stop`` is set; commit after each poll."""
        consumer = make_consumer(self._settings, SHIPMENTS, group_id=group_id)
        await consumer.start()
        try:
            while not stop.is_set():
                WORKER_LOOP.tick()
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                shipments = []
                for records in batches.values():
                    for record in records:
                        try:
                            message = SHIPMENT_CODEC.decode(record.value or b"")
                        except ContractError:
                            continue
                        if isinstance(message, ShipmentConfirmed):
                            shipments.append(message)
                if shipments:
                    await self.register(shipments)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()


def routes_from_settings(settings: IngestSettings, http: httpx.AsyncClient) -> list[Route]:
    routes = []
    if settings.register_17track_carriers or settings.register_17track_sellers:
        routes.append(
            Route(
                SeventeenTrackClient(
                    http, settings.seventeen_track_api_url, settings.seventeen_track_api_key.get_secret_value()
                ),
                RateLimiter(settings.register_17track_rate_per_second),
                frozenset(settings.register_17track_carriers),
                frozenset(settings.register_17track_sellers),
            )
        )
    if settings.register_aftership_carriers or settings.register_aftership_sellers:
        routes.append(
            Route(
                AfterShipClient(http, settings.aftership_api_url, settings.aftership_api_key.get_secret_value()),
                RateLimiter(settings.register_aftership_rate_per_second),
                frozenset(settings.register_aftership_carriers),
                frozenset(settings.register_aftership_sellers),
            )
        )
    return routes


async def run_registrar(settings: IngestSettings, stop: asyncio.Event) -> None:
    async with publisher_and_http(settings) as (publisher, http):
        routes = routes_from_settings(settings, http)
        if not routes:
            # Wait for the stop rather than exit: under a Deployment an exited process is
            # restarted over and over (CrashLoopBackOff) until VTR_REGISTER_* are set.
            log.warning("no aggregator registration configured; the registrar idles until stopped")
            await idle_until(stop)
            return
        await Registrar(settings, routes, publisher).run(stop)


def main() -> int:
    """``python -m services.ingest registrar``: run until SIGTERM/SIGINT."""
    return run_until_signal(run_registrar)
