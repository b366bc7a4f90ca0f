"""HTTP adapters: carrier webhooks and shipment confirmations.

Every webhook follows the same steps: read the raw body (413 past the limit), verify
(401, nothing stored), parse (4xx + dead letter), produce with acks=all (503 +
Retry-After), and only then acknowledge in the carrier's shape. Handlers take the raw
``Request`` so no per-request pydantic models are built on the hot path; the body
schemas still appear in the OpenAPI docs through ``openapi_extra``.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from services.ingest import metrics, signatures
from services.ingest.carriers import aftership, china_post, seventeen_track, yanwen, yunexpress
from services.ingest.carriers.common import PushError, unique
from services.ingest.dedupe import RecentIds
from services.ingest.publisher import BrokerUnavailable, Publisher, Record
from services.ingest.settings import IngestSettings
from services.ingest.shipments import (
    MAX_TRACKING_NUMBER_LENGTH,
    BodyError,
    CancellationIn,
    ShipmentIn,
    confirmations,
    split_records,
)
from services.ingest.shipments import validation_errors as pydantic_errors
from shared.credentials.access import KeyGate
from shared.credentials.scopes import Principal
from shared.credentials.scopes import Scope as KeyScope
from shared.guard import InputRejected, check_json_body
from shared.observability import HTTP_DURATION, HTTP_REQUESTS
from shared.schemas import (
    DEADLETTER_CODEC,
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    CanonicalStatus,
    DeadLetter,
    TrackingEvent,
)
from shared.topics import DEADLETTER, SHIPMENTS, TRACKING_EVENTS, normalise_tracking_number

log = logging.getLogger(__name__)

JSON = "application/json"
#: Request headers worth keeping with a dead letter (never signatures or tokens).
_REPLAY_HEADERS = ("content-type", "user-agent", signatures.YUNEXPRESS_TIMESTAMP_HEADER)


class BodyTooLarge(Exception):
    pass


class Unauthenticated(Exception):
    """A push whose signature, token or key does not check out; ``context`` is what could
    be read of it for the failure reply (China Post's envelope, to echo its serialNo)."""

    def __init__(self, message: str = "", context: Any = None) -> None:
        super().__init__(message)
        self.context = context


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=JSON, headers=headers)


_JSON_CONTENT_TYPE = (b"content-type", JSON.encode())


class Reply(NamedTuple):
    """A webhook's JSON answer, sent as two raw ASGI messages by the fast path (a Starlette
    ``Response`` per request cost more than the answer's own encoding) or as a
    ``Response`` by the router."""

    status: int
    body: bytes
    headers: dict[str, str] | None = None

    @classmethod
    def json(cls, content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, orjson.dumps(content), headers)

    def response(self) -> Response:
        return Response(self.body, status_code=self.status, media_type=JSON, headers=self.headers)

    async def send(self, send: Send) -> None:
        headers = [_JSON_CONTENT_TYPE, (b"content-length", str(len(self.body)).encode())]
        if self.headers:
            headers.extend((name.lower().encode(), value.encode()) for name, value in self.headers.items())
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (before reading it all) one larger than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    # Straight from ASGI receive(): Request.stream()'s async generator cost more per
    # request than reading the (usually one-message) body.
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]  # the usual case: no copy
    return b"".join(chunks)


#: Status recorded (never seen by anyone) for a request whose client went away mid-body.
CLIENT_CLOSED = 499


def _client_gone(origin: str) -> Reply:
    # Not an error: the sender will retry; nothing was read, so nothing was stored.
    log.info("client disconnected before sending the whole body", extra={"source": origin})
    return Reply.json({"detail": "client disconnected"}, CLIENT_CLOSED)


def dead_letter(origin: str, reason: str, raw_body: bytes, request: Request, received_at: datetime) -> Record:
    headers = {name: value for name in _REPLAY_HEADERS if (value := request.headers.get(name)) is not None}
    letter = DeadLetter(
        origin=origin,
        reason=reason,
        raw_base64=base64.b64encode(raw_body).decode("ascii"),
        content_type=request.headers.get("content-type", ""),
        received_at=received_at,
        headers=headers,
    )
    return Record(DEADLETTER, origin.encode(), DEADLETTER_CODEC.encode(letter))


def _event_record(event: TrackingEvent) -> Record:
    return Record(TRACKING_EVENTS, event.tracking_number.encode(), TRACKING_EVENT_CODEC.encode(event))


#: (verified payload, context echoed in the acknowledgement)
Verified = tuple[bytes, Any]


@dataclass(frozen=True)
class WebhookSource:
    """One carrier integration: how to verify, parse and acknowledge its pushes."""

    source: str
    verify: Callable[[Request, bytes], Verified]
    parse: Callable[[bytes, datetime, Any], list[TrackingEvent]]
    ack: Callable[[Any, int], dict[str, Any]]
    #: The body of a failure reply, in the carrier's shape where it has one.
    failure: Callable[[Any, str], dict[str, Any]]
    #: Turns a parked raw body (verified on arrival) back into (payload, context) without
    #: its signature, for the dead-letter replay: decrypts what arrived encrypted.
    reopen: Callable[[bytes, str], Verified] = lambda raw_body, _content_type: (raw_body, None)

    def events(self, payload: bytes, received_at: datetime, context: Any) -> list[TrackingEvent]:
        """The events of a verified push, as the live path and the dead-letter replay both
        read them: the decoding guard first (UTF-8, NUL, nesting depth), then the carrier's
        parser, repeats within the push dropped. Raises :class:`PushError` or
        :class:`InputRejected` for a body the rules refuse, anything else for one no rule
        foresaw."""
        check_json_body(payload, "the push")
        return unique(self.parse(payload, received_at, context))


def unforeseen_reason(error: Exception) -> str:
    """The dead-letter reason of a push whose parsing raised what no rule foresaw."""
    return f"the push could not be parsed ({type(error).__name__})"


def _plain_failure(_context: Any, detail: str) -> dict[str, Any]:
    return {"detail": detail}


class WebhookHandler:
    def __init__(self, settings: IngestSettings, publisher: Publisher) -> None:
        self._publisher = publisher
        self._limit = settings.max_body_bytes
        self._retry_after = {"Retry-After": str(settings.retry_after_seconds)}
        self._outcomes: dict[tuple[str, str], Any] = {}
        self._last_seen: dict[str, Any] = {}
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
            return _client_gone(source)
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
        self._last_webhook(source).set(received_at.timestamp())
        try:
            events = spec.events(payload, received_at, context)
        except (PushError, InputRejected) as error:
            return await self._park(spec, str(error), raw_body, request, received_at, context)
        except Exception as error:
            # A signed push no rule foresaw: parked for replay, never a 500 (issue 14).
            log.exception("webhook parser failed on a signed push", extra={"source": source})
            return await self._park(spec, unforeseen_reason(error), raw_body, request, received_at, context)
        fresh = [event for event in events if event.event_id not in self._recent]
        if fresh:
            try:
                await self._publisher.publish([_event_record(event) for event in fresh])
            except BrokerUnavailable:
                return self._unavailable(spec, context)
            self._recent.remember(event.event_id for event in fresh)
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

    def _last_webhook(self, source: str) -> Any:
        gauge = self._last_seen.get(source)
        if gauge is None:
            gauge = self._last_seen[source] = metrics.LAST_WEBHOOK.labels(source)
        return gauge

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
        unmapped: Counter[str] = Counter()
        for event in events:
            label = (event.carrier, event.status)
            by_label[label] = by_label.get(label, 0) + 1
            if event.status is CanonicalStatus.UNKNOWN and not event.notice:
                unmapped[event.carrier] += 1
        for label, count in by_label.items():
            child = self._produced.get(label)
            if child is None:
                child = self._produced[label] = metrics.EVENTS_PRODUCED.labels(*label)
            child.inc(count)
        for carrier, count in unmapped.items():
            metrics.UNMAPPED_CODES.labels(carrier).inc(count)


# --- Verification, one per source -------------------------------------------------------


def _header_or_query(request: Request, name: str) -> str | None:
    return request.query_params.get(name) or request.headers.get(name) or request.headers.get(name.replace("_", "-"))


def china_post_source(settings: IngestSettings) -> WebhookSource:
    sm4_key = settings.chinapost_sm4_key_hex()
    digest_key = settings.chinapost_digest_key.get_secret_value()

    def verify(request: Request, raw_body: bytes) -> Verified:
        digest = _header_or_query(request, signatures.CHINAPOST_DIGEST_PARAMETER)
        if digest is not None:
            expected = signatures.chinapost_data_digest(raw_body, digest_key)
            if not signatures.signatures_match(digest, expected):
                raise Unauthenticated("data_digest does not match")
            return raw_body, None
        envelope = china_post.parse_envelope(raw_body, request.headers.get("content-type", ""))
        if envelope is None:
            raise Unauthenticated("neither a data_digest nor an encrypted logitcsInterface")
        try:
            return signatures.chinapost_sm4_decrypt(envelope.encrypted, sm4_key), envelope
        except signatures.SignatureError as error:
            raise Unauthenticated(str(error), envelope) from None

    def reopen(raw_body: bytes, content_type: str) -> Verified:
        envelope = china_post.parse_envelope(raw_body, content_type)
        if envelope is None:
            return raw_body, None
        return signatures.chinapost_sm4_decrypt(envelope.encrypted, sm4_key), envelope

    def parse(payload: bytes, received_at: datetime, envelope: Any) -> list[TrackingEvent]:
        if envelope is None:
            return china_post.parse_traces_push(payload, received_at)
        return china_post.parse_ems_payload(payload, received_at)

    return WebhookSource(
        source=china_post.SOURCE,
        verify=verify,
        parse=parse,
        ack=lambda envelope, _count: china_post.ack(envelope, success=True),
        failure=lambda envelope, detail: {**china_post.ack(envelope, success=False, message=detail), "detail": detail},
        reopen=reopen,
    )


def yunexpress_source(settings: IngestSettings) -> WebhookSource:
    secret = settings.yunexpress_secret.get_secret_value()
    token = settings.yunexpress_token.get_secret_value()
    window = settings.yunexpress_timestamp_window_seconds
    aes_key = settings.yunexpress_aes_key_bytes() if settings.yunexpress_encrypted else None

    def timestamp_sha256(request: Request, raw_body: bytes) -> None:
        timestamp = request.headers.get(signatures.YUNEXPRESS_TIMESTAMP_HEADER)
        if not signatures.yunexpress_timestamp_fresh(timestamp, int(time.time() * 1000), window):
            raise Unauthenticated(f"{signatures.YUNEXPRESS_TIMESTAMP_HEADER} missing or outside the allowed window")
        assert timestamp is not None
        expected = signatures.yunexpress_signature(timestamp.strip(), raw_body, secret)
        presented = request.headers.get(signatures.YUNEXPRESS_SIGNATURE_HEADER)
        if not signatures.signatures_match(presented, expected, case_insensitive=True):
            raise Unauthenticated("invalid signature")

    def token_hmac(request: Request, raw_body: bytes) -> None:
        if not signatures.signatures_match(request.headers.get(signatures.YUNEXPRESS_TOKEN_HEADER), token):
            raise Unauthenticated("invalid token header")
        date = request.headers.get(signatures.YUNEXPRESS_DATE_HEADER, "").strip()
        if not signatures.yunexpress_timestamp_fresh(date, int(time.time() * 1000), window):
            raise Unauthenticated("date header missing or outside the allowed window")
        expected = signatures.yunexpress_hmac_signature(raw_body, date, request.method, request.url.path, secret)
        if not signatures.signatures_match(request.headers.get(signatures.YUNEXPRESS_SIGN_HEADER), expected):
            raise Unauthenticated("invalid sign header")

    check = token_hmac if settings.yunexpress_signing == "token-hmac" else timestamp_sha256

    def reopen(raw_body: bytes, _content_type: str = "") -> Verified:
        if aes_key is None:
            return raw_body, None
        try:
            envelope = orjson.loads(raw_body)
        except orjson.JSONDecodeError:
            envelope = None
        value = envelope.get(signatures.YUNEXPRESS_ENCRYPTED_FIELD) if isinstance(envelope, dict) else None
        if not isinstance(value, str):
            raise signatures.SignatureError('expected the encrypted envelope {"encrypt": ...}')
        return signatures.yunexpress_decrypt(value, aes_key), None

    def verify(request: Request, raw_body: bytes) -> Verified:
        check(request, raw_body)
        try:
            return reopen(raw_body)
        except signatures.SignatureError as error:
            raise Unauthenticated(str(error)) from None

    return WebhookSource(
        source=yunexpress.SOURCE,
        verify=verify,
        parse=lambda payload, received_at, _context: yunexpress.parse(payload, received_at),
        ack=lambda _context, count: yunexpress.ack(count),
        failure=lambda _context, detail: {"success": False, "code": 1, "message": detail, "detail": detail},
        reopen=reopen,
    )


def yanwen_source(settings: IngestSettings) -> WebhookSource:
    token = settings.yanwen_token.get_secret_value()

    def verify(request: Request, raw_body: bytes) -> Verified:
        presented = request.headers.get(signatures.YANWEN_TOKEN_HEADER, "")
        presented = presented[7:] if presented[:7].lower() == "bearer " else presented
        if not signatures.signatures_match(presented, token):
            raise Unauthenticated("invalid Authorization token")
        return raw_body, None

    return WebhookSource(
        source=yanwen.SOURCE,
        verify=verify,
        parse=lambda payload, received_at, _context: yanwen.parse(payload, received_at),
        ack=lambda _context, count: yanwen.ack(count),
        failure=lambda _context, detail: {"code": 1, "message": detail, "detail": detail},
    )


def seventeen_track_source(settings: IngestSettings) -> WebhookSource:
    api_key = settings.seventeen_track_api_key.get_secret_value()

    def verify(request: Request, raw_body: bytes) -> Verified:
        expected = signatures.seventeen_track_signature(raw_body, api_key)
        presented = request.headers.get(signatures.SEVENTEEN_TRACK_SIGNATURE_HEADER)
        if not signatures.signatures_match(presented, expected, case_insensitive=True):
            raise Unauthenticated("invalid sign header")
        return raw_body, None

    return WebhookSource(
        source=seventeen_track.SOURCE,
        verify=verify,
        parse=lambda payload, received_at, _context: seventeen_track.parse(payload, received_at),
        ack=lambda _context, count: seventeen_track.ack(count),
        failure=_plain_failure,
    )


def aftership_source(settings: IngestSettings) -> WebhookSource:
    secret = settings.aftership_secret.get_secret_value()

    def verify(request: Request, raw_body: bytes) -> Verified:
        expected = signatures.aftership_signature(raw_body, secret)
        presented = request.headers.get(signatures.AFTERSHIP_SIGNATURE_HEADER)
        if not signatures.signatures_match(presented, expected):
            raise Unauthenticated("invalid aftership-hmac-sha256 header")
        return raw_body, None

    return WebhookSource(
        source=aftership.SOURCE,
        verify=verify,
        parse=lambda payload, received_at, _context: aftership.parse(payload, received_at),
        ack=lambda _context, count: aftership.ack(count),
        failure=_plain_failure,
    )


# --- OpenAPI: the body schemas of endpoints that read the raw body ------------------------


class ChinaPostEmsPush(msgspec.Struct):
    """EMS open-platform push (method 040002); also accepted form-encoded."""

    logitcsInterface: str
    method: str | None = None
    msgType: str | None = None
    senderNo: str | None = None
    serialNo: str | None = None
    timeStamp: str | None = None
    version: str | None = None


_SHIPMENT_REF = {"$ref": "#/components/schemas/ShipmentIn"}
_SHIPMENTS_SCHEMA = {"oneOf": [_SHIPMENT_REF, {"type": "array", "items": _SHIPMENT_REF, "maxItems": 10_000}]}

_DOCUMENTED_TYPES: list[Any] = [
    ChinaPostEmsPush,
    china_post.TracesPush,
    yunexpress.Push,
    yanwen.Push,
    seventeen_track.Push,
    aftership.Push,
]
_SCHEMAS, OPENAPI_COMPONENTS = msgspec.json.schema_components(
    _DOCUMENTED_TYPES, ref_template="#/components/schemas/{name}"
)
_BODY_SCHEMAS: dict[str, dict[str, Any]] = dict(
    zip(["china-post-ems", "china-post-traces", "yunexpress", "yanwen", "17track", "aftership"], _SCHEMAS, strict=True)
)
for _key, _model in (("ShipmentIn", ShipmentIn), ("CancellationIn", CancellationIn)):
    _schema = _model.model_json_schema(ref_template="#/components/schemas/{model}")
    OPENAPI_COMPONENTS.update(_schema.pop("$defs", {}))
    OPENAPI_COMPONENTS[_key] = _schema


def _body(schema: dict[str, Any], media_types: Sequence[str] = (JSON,), required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {media: {"schema": schema} for media in media_types}}}


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Unauthenticated body that breaks the decoding guard, or an unusable shipment body."},
    401: {"description": "Signature or token missing or wrong; nothing is stored."},
    413: {"description": "Body over the size limit."},
    503: {"description": "The broker did not acknowledge in time; retry after `Retry-After` seconds."},
}


# --- The routers -----------------------------------------------------------------------------


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


def webhook_sources(settings: IngestSettings) -> dict[str, WebhookSource]:
    """Every carrier integration by its slug (also the dead letters' origin)."""
    return {
        "china-post": china_post_source(settings),
        "yunexpress": yunexpress_source(settings),
        "yanwen": yanwen_source(settings),
        "17track": seventeen_track_source(settings),
        "aftership": aftership_source(settings),
    }


def webhook_routes(settings: IngestSettings, publisher: Publisher) -> WebhookRoutes:
    handler = WebhookHandler(settings, publisher)
    router = APIRouter(prefix="/v1/webhooks", tags=["carrier webhooks"], responses=_ERROR_RESPONSES)
    sources = webhook_sources(settings)
    bodies = {
        "china-post": {
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": {"oneOf": [_BODY_SCHEMAS["china-post-ems"], _BODY_SCHEMAS["china-post-traces"]]}},
                    "application/x-www-form-urlencoded": {"schema": _BODY_SCHEMAS["china-post-ems"]},
                },
            }
        },
        "yunexpress": _body(_BODY_SCHEMAS["yunexpress"]),
        "yanwen": _body(_BODY_SCHEMAS["yanwen"]),
        "17track": _body(_BODY_SCHEMAS["17track"]),
        "aftership": _body(_BODY_SCHEMAS["aftership"]),
    }
    summaries = {
        "china-post": "China Post: EMS open-platform push (SM4) or traces push (data_digest)",
        "yunexpress": "YunExpress tisPushData (X-Openapi-Signature)",
        "yanwen": "Yanwen tracking result (Authorization token)",
        "17track": "17TRACK webhook v2 (sign header)",
        "aftership": "AfterShip tracking_update (aftership-hmac-sha256 header)",
    }

    def add(slug: str) -> None:
        spec = sources[slug]

        async def receive(request: Request) -> Response:
            return (await handler.handle(spec, request)).response()

        receive.__name__ = f"webhook_{slug.replace('-', '_')}"
        router.add_api_route(f"/{slug}", receive, methods=["POST"], summary=summaries[slug], openapi_extra=bodies[slug])

    for slug in sources:
        add(slug)
    by_path = {
        route.path: (sources[route.path.rsplit("/", 1)[-1]], route)
        for route in router.routes
        if isinstance(route, APIRoute)
    }
    return WebhookRoutes(router, handler, by_path)


def foreign_records(records: list[Any], seller_id: str) -> list[int]:
    """Indexes of the records that name a seller other than ``seller_id`` (as the
    confirmation model reads the field: a string, stripped)."""
    return [
        index
        for index, record in enumerate(records)
        if isinstance(record, dict) and isinstance(named := record.get("seller_id"), str) and named.strip() != seller_id
    ]


def other_seller_refusal(principal: Principal, indexes: list[int]) -> Response:
    shown = ", ".join(str(index) for index in indexes[:20]) + (", ..." if len(indexes) > 20 else "")
    detail = (
        f"this key belongs to seller {principal.seller_id}; record(s) {shown} name another seller."
        " Nothing in the request was accepted."
    )
    return json_response({"detail": detail, "records": indexes[:1000]}, 403)


def shipments_router(settings: IngestSettings, publisher: Publisher, gate: KeyGate) -> APIRouter:
    router = APIRouter(
        prefix="/v1/shipments",
        tags=["shipments"],
        responses={
            **_ERROR_RESPONSES,
            401: {"description": "Missing or invalid bearer token."},
            403: {"description": "The key lacks shipments:write, or a seller key named another seller."},
            429: {"description": "The key's rate limit; retry after `Retry-After` seconds."},
        },
    )
    may_write = Depends(gate.require(KeyScope.SHIPMENTS_WRITE))
    limit = settings.max_shipments_body_bytes
    max_records = settings.max_shipments_per_request
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}
    unavailable = {"detail": "the event store is unavailable; retry later"}

    async def reject(origin: str, status: int, body: dict[str, Any], letter: Record) -> Response:
        try:
            await publisher.publish([letter])
        except BrokerUnavailable:
            log.warning("broker unavailable; answered 503", extra={"source": origin})
            return json_response(unavailable, 503, retry_after)
        metrics.DEADLETTERS.labels(origin).inc()
        return json_response(body, status)

    @router.post(
        "",
        status_code=202,
        summary="Confirm shipments: one JSON object, a JSON array, or NDJSON (up to 10,000)",
        openapi_extra=_body(_SHIPMENTS_SCHEMA, (JSON, "application/x-ndjson")),
    )
    async def confirm_shipments(request: Request, principal: Principal = may_write) -> Response:
        try:
            raw_body = await read_body(request, limit)
        except BodyTooLarge:
            return json_response({"detail": f"body larger than {limit} bytes"}, 413)
        except ClientDisconnect:
            return _client_gone("shipments").response()
        received_at = datetime.now(UTC)
        content_type = request.headers.get("content-type", "")
        try:
            check_json_body(raw_body)
            records, unreadable = split_records(raw_body, content_type, max_records)
        except (BodyError, InputRejected) as error:
            letter = dead_letter("shipments", str(error), raw_body, request, received_at)
            status = error.status if isinstance(error, InputRejected) else 400
            return await reject("shipments", status, {"detail": str(error)}, letter)
        if principal.seller_id is not None and (foreign := foreign_records(records, principal.seller_id)):
            # Refused whole and stored nowhere (not even as a dead letter): the key may not
            # write in another seller's name, and the body is not its to park.
            metrics.SHIPMENTS.labels("confirmed", "forbidden").inc(len(records))
            return other_seller_refusal(principal, foreign)
        accepted, rejected = confirmations(records, unreadable, received_at)
        outgoing = [
            Record(SHIPMENTS, message.tracking_number.encode(), SHIPMENT_CODEC.encode(message)) for message in accepted
        ]
        if rejected:
            reason = f"{len(rejected)} of {len(records)} records rejected: " + orjson.dumps(rejected[:20]).decode()
            outgoing.append(dead_letter("shipments", reason, raw_body, request, received_at))
        if not accepted:
            metrics.SHIPMENTS.labels("confirmed", "rejected").inc(len(rejected))
            body = {"detail": "no valid shipment in the request", "accepted": 0, "rejected": rejected}
            return await reject("shipments", 422, body, outgoing[-1])
        try:
            await publisher.publish(outgoing)
        except BrokerUnavailable:
            return json_response(unavailable, 503, retry_after)
        metrics.SHIPMENTS.labels("confirmed", "accepted").inc(len(accepted))
        if rejected:
            metrics.SHIPMENTS.labels("confirmed", "rejected").inc(len(rejected))
            metrics.DEADLETTERS.labels("shipments").inc()
        return json_response({"accepted": len(accepted), "rejected": rejected}, 202)

    @router.post(
        "/{tracking_number}/cancel",
        status_code=202,
        summary="Cancel the orders shipped under a tracking number (excluded from VTR)",
        openapi_extra=_body({"$ref": "#/components/schemas/CancellationIn"}, required=False),
    )
    async def cancel_shipment(tracking_number: str, request: Request, principal: Principal = may_write) -> Response:
        number = normalise_tracking_number(tracking_number)
        if not number or len(number) > MAX_TRACKING_NUMBER_LENGTH or any(char.isspace() for char in number):
            return json_response({"detail": [{"field": "tracking_number", "message": "not a tracking number"}]}, 422)
        try:
            raw_body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            return json_response({"detail": f"body larger than {settings.max_body_bytes} bytes"}, 413)
        except ClientDisconnect:
            return _client_gone("shipments-cancel").response()
        received_at = datetime.now(UTC)
        try:
            check_json_body(raw_body)
        except InputRejected as error:
            metrics.SHIPMENTS.labels("cancelled", "rejected").inc()
            letter = dead_letter("shipments-cancel", str(error), raw_body, request, received_at)
            return await reject("shipments-cancel", error.status, {"detail": str(error)}, letter)
        try:
            document = orjson.loads(raw_body) if raw_body.strip() else {}
            cancellation = CancellationIn.model_validate(document if document is not None else {})
        except orjson.JSONDecodeError as error:
            metrics.SHIPMENTS.labels("cancelled", "rejected").inc()
            letter = dead_letter("shipments-cancel", f"body is not JSON: {error}", raw_body, request, received_at)
            return await reject("shipments-cancel", 400, {"detail": f"body is not JSON: {error}"}, letter)
        except ValidationError as error:
            metrics.SHIPMENTS.labels("cancelled", "rejected").inc()
            errors = pydantic_errors(error)
            letter = dead_letter("shipments-cancel", orjson.dumps(errors).decode(), raw_body, request, received_at)
            return await reject("shipments-cancel", 422, {"detail": errors}, letter)
        if principal.seller_id is not None:
            if cancellation.seller_id is not None and cancellation.seller_id != principal.seller_id:
                metrics.SHIPMENTS.labels("cancelled", "forbidden").inc()
                return other_seller_refusal(principal, [0])
            # A seller key cancels only its own orders, whatever the tracking number: the
            # scorer applies a cancellation to the orders of the seller it names.
            cancellation = cancellation.model_copy(update={"seller_id": principal.seller_id})
        message = cancellation.to_message(number, received_at)
        try:
            await publisher.publish([Record(SHIPMENTS, number.encode(), SHIPMENT_CODEC.encode(message))])
        except BrokerUnavailable:
            return json_response(unavailable, 503, retry_after)
        metrics.SHIPMENTS.labels("cancelled", "accepted").inc()
        return json_response({"accepted": 1, "rejected": []}, 202)

    return router
