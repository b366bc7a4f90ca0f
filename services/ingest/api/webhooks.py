"""Carrier webhooks: ``POST /v1/webhooks/<slug>`` for every row of the carrier table.

Every webhook follows the same steps: read the raw body (413 past the limit), verify
(401, nothing stored), parse (4xx + dead letter), produce with acks=all (503 +
Retry-After), and only then acknowledge in the carrier's shape.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from services.ingest import metrics
from services.ingest.api.edge import ERROR_RESPONSES, BodyTooLarge, Reply, client_gone, dead_letter, read_body
from services.ingest.api.openapi import webhook_body
from services.ingest.carriers import CARRIERS
from services.ingest.carriers.common import PushError
from services.ingest.carriers.source import Unauthenticated, WebhookSource
from services.ingest.dedupe import RecentIds
from services.ingest.publisher import BrokerUnavailable, Publisher, Record
from services.ingest.settings import IngestSettings
from shared.guard import InputRejected
from shared.observability import HTTP_DURATION, HTTP_REQUESTS
from shared.schemas import TRACKING_EVENT_CODEC, CanonicalStatus, TrackingEvent
from shared.topics import TRACKING_EVENTS

log = logging.getLogger(__name__)


def webhook_sources(settings: IngestSettings) -> dict[str, WebhookSource]:
    """Every carrier integration by its slug (also the dead letters' origin), bound to its secrets."""
    return {carrier.slug: carrier.webhook_source(settings) for carrier in CARRIERS}


def unforeseen_reason(error: Exception) -> str:
    """The dead-letter reason of a push whose parsing raised what no rule foresaw."""
    return f"the push could not be parsed ({type(error).__name__})"


def _event_record(event: TrackingEvent) -> Record:
    return Record(TRACKING_EVENTS, event.tracking_number.encode(), TRACKING_EVENT_CODEC.encode(event))


class WebhookHandler:
    def __init__(self, settings: IngestSettings, publisher: Publisher) -> None:
        self._publisher = publisher
        self._limit = settings.max_body_bytes
        self._retry_after = {"Retry-After": str(settings.retry_after_seconds)}
        self._outcomes: dict[tuple[str, str], Any] = {}
        #: source -> when its last webhook arrived; the gauge reads it when scraped.
        self._last_seen: dict[str, float] = {}
        self._produced: dict[tuple[str, CanonicalStatus], Any] = {}
        self._recent = RecentIds(settings.recent_event_ids)

    def _count(self, source: str, outcome: str) -> None:
        child = self._outcomes.get((source, outcome))
        if child is None:
            child = self._outcomes[(source, outcome)] = metrics.WEBHOOKS.labels(source, outcome)
        child.inc()

    async def handle(self, spec: WebhookSource, request: Request) -> Reply:
        source = spec.source
        try:
            raw_body = await read_body(request, self._limit)
        except BodyTooLarge:
            self._count(source, metrics.TOO_LARGE)
            return Reply.json({"detail": f"body larger than {self._limit} bytes"}, 413)
        except ClientDisconnect:
            return client_gone(source)
        try:
            payload, context = spec.verify(request, raw_body)
        except Unauthenticated as error:
            self._count(source, metrics.UNAUTHORIZED)
            log.info("webhook refused", extra={"source": source, "problem": str(error)})
            return Reply.json(spec.failure(error.context, str(error) or "invalid signature"), 401)
        except Exception as error:  # a verifier that chokes on the input: still not authenticated
            self._count(source, metrics.UNAUTHORIZED)
            log.warning("webhook could not be verified", extra={"source": source, "error": type(error).__name__})
            return Reply.json(spec.failure(None, "the push could not be verified"), 401)
        received_at = datetime.now(UTC)
        self._saw(source, received_at)
        try:
            events = spec.events(payload, received_at, context)
        except (PushError, InputRejected) as error:
            return await self._park(spec, str(error), raw_body, request, received_at, context)
        except Exception as error:
            # A signed push no rule foresaw: parked for replay, never a 500 (issue 14).
            log.exception("webhook parser failed on a signed push", extra={"source": source})
            return await self._park(spec, unforeseen_reason(error), raw_body, request, received_at, context)
        recent = self._recent
        fresh = [event for event in events if event.event_id not in recent]
        if fresh:
            try:
                await self._publisher.publish([_event_record(event) for event in fresh])
            except BrokerUnavailable:
                return self._unavailable(spec, context)
            recent.remember(event.event_id for event in fresh)
            self._count_events(fresh)
        if len(fresh) < len(events):
            self._count_duplicates(events, fresh)
        self._count(source, metrics.ACCEPTED)
        return Reply.json(spec.ack(context, len(events)))

    async def _park(
        self, spec: WebhookSource, reason: str, raw_body: bytes, request: Request, received_at: datetime, context: Any
    ) -> Reply:
        """A signed push that cannot be used is parked as a dead letter and answered the
        way its sender treats as received: a refusal would only make the carrier retry
        the same bytes, then drop them (17TRACK gives up after three retries)."""
        source = spec.source
        try:
            await self._publisher.publish([dead_letter(source, reason, raw_body, request, received_at)])
        except BrokerUnavailable:
            return self._unavailable(spec, context)
        self._count(source, metrics.INVALID)
        metrics.DEADLETTERS.labels(source).inc()
        log.warning("webhook body dead-lettered", extra={"source": source, "reason": reason[:500]})
        return Reply.json({**spec.ack(context, 0), "dead_lettered": True, "detail": reason})

    def _saw(self, source: str, received_at: datetime) -> None:
        last_seen = self._last_seen
        if source not in last_seen:
            # The gauge reads the time when scraped: no lock taken per request.
            metrics.LAST_WEBHOOK.labels(source).set_function(lambda: last_seen[source])
        last_seen[source] = received_at.timestamp()

    def _unavailable(self, spec: WebhookSource, context: Any) -> Reply:
        self._count(spec.source, metrics.UNAVAILABLE)
        log.warning("broker unavailable; answered 503", extra={"source": spec.source})
        detail = "the event store is unavailable; retry later"
        return Reply.json(spec.failure(context, detail), 503, self._retry_after)

    @staticmethod
    def _count_duplicates(events: Sequence[TrackingEvent], fresh: Sequence[TrackingEvent]) -> None:
        produced = {event.event_id for event in fresh}
        skipped = Counter(event.carrier for event in events if event.event_id not in produced)
        for carrier, count in skipped.items():
            metrics.DUPLICATE_EVENTS.labels(carrier).inc(count)

    def _count_events(self, events: Sequence[TrackingEvent]) -> None:
        by_label: dict[tuple[str, CanonicalStatus], int] = {}
        unmapped: dict[str, int] | None = None
        for event in events:
            label = (event.carrier, event.status)
            by_label[label] = by_label.get(label, 0) + 1
            if event.status is CanonicalStatus.UNKNOWN and not event.notice:
                unmapped = unmapped if unmapped is not None else {}
                unmapped[event.carrier] = unmapped.get(event.carrier, 0) + 1
        for label, count in by_label.items():
            child = self._produced.get(label)
            if child is None:
                child = self._produced[label] = metrics.EVENTS_PRODUCED.labels(*label)
            child.inc(count)
        for carrier, count in (unmapped or {}).items():
            metrics.UNMAPPED_CODES.labels(carrier).inc(count)


@dataclass(frozen=True)
class WebhookRoutes:
    router: APIRouter
    handler: WebhookHandler
    #: full path -> (source, the documented route, used as the metrics' route label)
    by_path: dict[str, tuple[WebhookSource, APIRoute]]


class WebhookFastPath:
    """Serves ``POST /v1/webhooks/<source>`` straight from the ASGI entry point (see
    :class:`services.ingest.app.IngestApp`), skipping FastAPI's middleware stack, route
    matching and dependency solving on the hot path. It records the same
    ``vtr_http_*`` series as :class:`shared.observability.HttpMetricsMiddleware` (route
    template, method, status), with the label children looked up once instead of per
    request. The same routes are registered on the router too, which documents them in
    OpenAPI and serves any request that reaches it (e.g. without the fast path)."""

    def __init__(self, webhooks: WebhookRoutes) -> None:
        self._handler = webhooks.handler
        self.by_path = webhooks.by_path
        self._requests: dict[tuple[str, int], Any] = {}
        self._durations: dict[str, Any] = {}

    async def serve(self, target: tuple[WebhookSource, APIRoute], scope: Scope, receive: Receive, send: Send) -> None:
        spec, route = target
        started = time.perf_counter()
        status = 500
        try:
            reply = await self._handler.handle(spec, Request(scope, receive))
            status = reply.status
            await reply.send(send)
        finally:
            self._observe(route.path, status, time.perf_counter() - started)

    def _observe(self, template: str, status: int, seconds: float) -> None:
        requests = self._requests.get((template, status))
        if requests is None:
            requests = self._requests[template, status] = HTTP_REQUESTS.labels(template, "POST", str(status))
        requests.inc()
        duration = self._durations.get(template)
        if duration is None:
            duration = self._durations[template] = HTTP_DURATION.labels(template, "POST")
        duration.observe(seconds)


def webhook_routes(settings: IngestSettings, publisher: Publisher) -> WebhookRoutes:
    """One route per row of the carrier table, served by one handler."""
    handler = WebhookHandler(settings, publisher)
    router = APIRouter(prefix="/v1/webhooks", tags=["carrier webhooks"], responses=ERROR_RESPONSES)
    by_path: dict[str, tuple[WebhookSource, APIRoute]] = {}
    for carrier in CARRIERS:
        spec = carrier.webhook_source(settings)
        router.add_api_route(
            f"/{carrier.slug}",
            _receiver(handler, spec, f"webhook_{carrier.slug.replace('-', '_')}"),
            methods=["POST"],
            summary=carrier.summary,
            openapi_extra=webhook_body(carrier),
        )
        route = router.routes[-1]
        assert isinstance(route, APIRoute)
        by_path[route.path] = (spec, route)
    return WebhookRoutes(router, handler, by_path)


def _receiver(handler: WebhookHandler, spec: WebhookSource, name: str) -> Callable[[Request], Awaitable[Response]]:
    async def receive(request: Request) -> Response:
        return (await handler.handle(spec, request)).response()

    receive.__name__ = name
    return receive
