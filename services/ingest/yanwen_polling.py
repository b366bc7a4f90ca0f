"""Polling Yanwen for open parcels (issue 11 item 11): Yanwen publishes no push.

``python -m services.ingest poll-yanwen`` reads ``vtr.shipments.v1`` from the beginning
(and then follows it) to know the open Yanwen parcels: confirmed with carrier ``yanwen``,
not cancelled, promised date not passed, and no final scan (DELIVERED or RETURNED) seen by
this poller. Every ``VTR_YANWEN_POLL_INTERVAL_SECONDS`` it queries Yanwen's tracking API for
them, 30 numbers a call (``GET {VTR_YANWEN_API_URL}?nums=A,B,...`` with header
``Authorization: VTR_YANWEN_TOKEN``, reply ``{"code": 0, "result": [parcel, ...]}``, the
same shape as the push endpoint takes), spaced to ``VTR_YANWEN_POLL_RATE_PER_SECOND`` and
retried with back-off on 429, 5xx and network errors. The result becomes canonical events
through the same parser as the push; events this process produced recently are not
produced again (re-polled history), and event ids are deterministic anyway.

"Not yet valid" is approximated by "no final scan yet": whether one scan already makes a
parcel valid depends on the scorer's full/partial-tracking rule, so a partially tracked
parcel is polled until delivered or past its promised date (a cost, not an error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import httpx
import orjson

from services.ingest.carriers import yanwen
from services.ingest.carriers.common import PushError, unique
from services.ingest.dedupe import RecentIds
from services.ingest.metrics import YANWEN_OPEN_PARCELS, YANWEN_POLLS
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
from services.ingest.worker_health import WORKER_LOOP
from shared.kafka import make_consumer
from shared.schemas import (
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    CanonicalStatus,
    ContractError,
    ShipmentCancelled,
    ShipmentConfirmed,
    ShipmentMessage,
    TrackingEvent,
)
from shared.topics import SHIPMENTS, TRACKING_EVENTS

log = logging.getLogger(__name__)

CARRIER = "yanwen"
#: Yanwen's tracking query takes at most 30 numbers a call.
BATCH = 30
#: After these a parcel's tracking is complete: no need to ask again.
FINAL_STATUSES = frozenset({CanonicalStatus.DELIVERED, CanonicalStatus.RETURNED})


@dataclass
class OpenParcels:
    """Yanwen numbers worth asking about, from the shipments topic."""

    #: number -> (order key -> promised date); a number may carry several orders
    orders: dict[str, dict[tuple[str, str], date]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)

    def apply(self, message: ShipmentMessage) -> None:
        if isinstance(message, ShipmentConfirmed):
            key = (message.seller_id, message.order_id)
            if message.carrier == CARRIER:
                self.orders.setdefault(message.tracking_number, {})[key] = message.promised_delivery_date
            else:  # corrected to another carrier
                self.orders.get(message.tracking_number, {}).pop(key, None)
        elif isinstance(message, ShipmentCancelled):
            orders = self.orders.get(message.tracking_number)
            if orders is None:
                return
            for key in list(orders):
                if (message.seller_id is None or key[0] == message.seller_id) and (
                    message.order_id is None or key[1] == message.order_id
                ):
                    del orders[key]

    def close(self, number: str) -> None:
        self.closed.add(number)

    def due(self, today: date) -> list[str]:
        """Open numbers: an order not cancelled whose promised date has not passed."""
        return sorted(
            number
            for number, orders in self.orders.items()
            if number not in self.closed and any(promised >= today for promised in orders.values())
        )


class YanwenClient:
    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        self._http, self._url, self._token = http, url, token

    async def query(self, numbers: list[str]) -> bytes:
        try:
            response = await self._http.get(
                self._url, params={"nums": ",".join(numbers)}, headers={"Authorization": self._token}
            )
        except httpx.HTTPError as error:
            raise Retryable(f"Yanwen tracking query: {error!r}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"Yanwen tracking query answered {response.status_code}")
        if response.status_code != 200:
            raise PushError(f"Yanwen tracking query answered {response.status_code}: {response.text[:200]}")
        return response.content


@dataclass
class RoundResult:
    asked: int = 0
    calls: int = 0
    events: int = 0
    produced: int = 0
    closed: int = 0
    failed_batches: int = 0


class YanwenPoller:
    def __init__(
        self,
        settings: IngestSettings,
        client: YanwenClient,
        publisher: Publisher,
        *,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._client = client
        self._publisher = publisher
        self._today = today
        self._sleep = sleep
        self._limiter = RateLimiter(settings.yanwen_poll_rate_per_second)
        self._retry_policy = RetryPolicy.from_settings(settings)
        self._recent = RecentIds(settings.recent_event_ids)
        self.parcels = OpenParcels()
        #: what each round did, oldest first (the last few)
        self.rounds: list[RoundResult] = []

    async def _query(self, numbers: list[str], result: RoundResult) -> bytes | None:
        async def query_counted() -> bytes:
            result.calls += 1
            return await self._client.query(numbers)

        try:
            body = await call_with_retries(
                query_counted,
                limiter=self._limiter,
                policy=self._retry_policy,
                sleep=self._sleep,
                on_retry=lambda attempt, error: YANWEN_POLLS.labels("retried").inc(),
            )
        except Retryable as error:
            YANWEN_POLLS.labels("failed").inc()
            log.warning("Yanwen poll failed; asked again next round", extra={"problem": str(error)})
            return None
        YANWEN_POLLS.labels("ok").inc()
        return body

    async def poll(self, numbers: Iterable[str]) -> RoundResult:
        """Ask Yanwen about ``numbers`` (30 a call) and produce the events of the replies."""
        result = RoundResult()
        numbers = list(numbers)
        result.asked = len(numbers)
        for start in range(0, len(numbers), BATCH):
            batch = numbers[start : start + BATCH]
            body = await self._query(batch, result)
            if body is None:
                result.failed_batches += 1
                continue
            try:
                events = unique(yanwen.parse(body, datetime.now(UTC)))
            except PushError as error:
                YANWEN_POLLS.labels("unparseable").inc()
                log.warning("Yanwen reply not parseable", extra={"problem": str(error)[:500]})
                result.failed_batches += 1
                continue
            result.events += len(events)
            await self._produce(events, result)
            for number in {event.tracking_number for event in events if event.status in FINAL_STATUSES}:
                self.parcels.close(number)
                result.closed += 1
        return result

    async def _produce(self, events: list[TrackingEvent], result: RoundResult) -> None:
        fresh = [event for event in events if event.event_id not in self._recent]
        if not fresh:
            return
        await self._publisher.publish(
            [
                Record(TRACKING_EVENTS, event.tracking_number.encode(), TRACKING_EVENT_CODEC.encode(event))
                for event in fresh
            ]
        )
        self._recent.remember(event.event_id for event in fresh)
        result.produced += len(fresh)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the shipments topic and poll the open parcels every interval until ``stop``."""
        consumer = make_consumer(self._settings, SHIPMENTS, group_id=None)
        await consumer.start()
        next_round = 0.0
        try:
            while not stop.is_set():
                WORKER_LOOP.tick()
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for records in batches.values():
                    for record in records:
                        try:
                            self.parcels.apply(SHIPMENT_CODEC.decode(record.value or b""))
                        except ContractError:
                            continue
                if any(batches.values()):
                    continue  # catch up with the topic before asking
                if time.monotonic() >= next_round:
                    due = self.parcels.due(self._today())
                    YANWEN_OPEN_PARCELS.set(len(due))
                    summary = await self.poll(due)
                    self.rounds = [*self.rounds[-9:], summary]
                    log.info("Yanwen poll round", extra={"round": orjson.dumps(summary.__dict__).decode()})
                    next_round = time.monotonic() + self._settings.yanwen_poll_interval_seconds
        finally:
            await consumer.stop()


async def run_poller(settings: IngestSettings, stop: asyncio.Event) -> None:
    async with publisher_and_http(settings) as (publisher, http):
        client = YanwenClient(http, settings.yanwen_api_url, settings.yanwen_token.get_secret_value())
        await YanwenPoller(settings, client, publisher).run(stop)


def main() -> int:
    """``python -m services.ingest poll-yanwen``: run until SIGTERM/SIGINT."""
    return run_until_signal(run_poller)
