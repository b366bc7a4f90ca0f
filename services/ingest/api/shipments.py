"""Sellers' shipment confirmations and cancellations: ``POST /v1/shipments`` and
``POST /v1/shipments/{tracking_number}/cancel`` (bearer token: see ``app.py``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from services.ingest import metrics
from services.ingest.api.edge import (
    ERROR_RESPONSES,
    BodyTooLarge,
    client_gone,
    dead_letter,
    json_response,
    read_body,
    request_body,
)
from services.ingest.api.openapi import CANCELLATION_SCHEMA, SHIPMENTS_SCHEMA
from services.ingest.carriers.source import JSON
from services.ingest.publisher import BrokerUnavailable, Publisher, Record
from services.ingest.settings import IngestSettings
from services.ingest.shipments import (
    MAX_TRACKING_NUMBER_LENGTH,
    BodyError,
    CancellationIn,
    confirmations,
    split_records,
)
from services.ingest.shipments import validation_errors as pydantic_errors
from shared.credentials.scopes import Principal
from shared.guard import InputRejected, check_json_body
from shared.schemas import SHIPMENT_CODEC
from shared.topics import SHIPMENTS, normalise_tracking_number

log = logging.getLogger(__name__)

UNAVAILABLE = {"detail": "the event store is unavailable; retry later"}


def app_settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


def app_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


def request_principal(request: Request) -> Principal:
    """The key that opened the request: the ``shipments:write`` gate that ``app.py`` puts
    on this router has checked it and left it on the request."""
    principal: Principal = request.state.principal
    return principal


SettingsDep = Annotated[IngestSettings, Depends(app_settings)]
PublisherDep = Annotated[Publisher, Depends(app_publisher)]
PrincipalDep = Annotated[Principal, Depends(request_principal)]

router = APIRouter(
    prefix="/v1/shipments",
    tags=["shipments"],
    responses={
        **ERROR_RESPONSES,
        401: {"description": "Missing or invalid bearer token."},
        403: {"description": "The key lacks shipments:write, or a seller key named another seller."},
        429: {"description": "The key's rate limit; retry after `Retry-After` seconds."},
    },
)


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


def _unavailable(settings: IngestSettings) -> Response:
    return json_response(UNAVAILABLE, 503, {"Retry-After": str(settings.retry_after_seconds)})


async def _reject(
    publisher: Publisher, settings: IngestSettings, origin: str, status: int, body: dict[str, Any], letter: Record
) -> Response:
    """Answers a refused request once its body is parked as a dead letter."""
    try:
        await publisher.publish([letter])
    except BrokerUnavailable:
        log.warning("broker unavailable; answered 503", extra={"source": origin})
        return _unavailable(settings)
    metrics.DEADLETTERS.labels(origin).inc()
    return json_response(body, status)


@router.post(
    "",
    status_code=202,
    summary="Confirm shipments: one JSON object, a JSON array, or NDJSON (up to 10,000)",
    openapi_extra=request_body(SHIPMENTS_SCHEMA, (JSON, "application/x-ndjson")),
)
async def confirm_shipments(
    request: Request, settings: SettingsDep, publisher: PublisherDep, principal: PrincipalDep
) -> Response:
    limit = settings.max_shipments_body_bytes
    try:
        raw_body = await read_body(request, limit)
    except BodyTooLarge:
        return json_response({"detail": f"body larger than {limit} bytes"}, 413)
    except ClientDisconnect:
        return client_gone("shipments").response()
    received_at = datetime.now(UTC)
    content_type = request.headers.get("content-type", "")
    try:
        check_json_body(raw_body)
        records, unreadable = split_records(raw_body, content_type, settings.max_shipments_per_request)
    except (BodyError, InputRejected) as error:
        letter = dead_letter("shipments", str(error), raw_body, request, received_at)
        status = error.status if isinstance(error, InputRejected) else 400
        return await _reject(publisher, settings, "shipments", status, {"detail": str(error)}, letter)
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
        return await _reject(publisher, settings, "shipments", 422, body, outgoing[-1])
    try:
        await publisher.publish(outgoing)
    except BrokerUnavailable:
        return _unavailable(settings)
    metrics.SHIPMENTS.labels("confirmed", "accepted").inc(len(accepted))
    if rejected:
        metrics.SHIPMENTS.labels("confirmed", "rejected").inc(len(rejected))
        metrics.DEADLETTERS.labels("shipments").inc()
    return json_response({"accepted": len(accepted), "rejected": rejected}, 202)


def _not_a_tracking_number(number: str) -> bool:
    return not number or len(number) > MAX_TRACKING_NUMBER_LENGTH or any(char.isspace() for char in number)


def _cancellation(raw_body: bytes) -> CancellationIn:
    """The cancellation's body (none, or JSON ``null``, is an empty one)."""
    document = orjson.loads(raw_body) if raw_body.strip() else {}
    return CancellationIn.model_validate(document if document is not None else {})


@router.post(
    "/{tracking_number}/cancel",
    status_code=202,
    summary="Cancel the orders shipped under a tracking number (excluded from VTR)",
    openapi_extra=request_body(CANCELLATION_SCHEMA, required=False),
)
async def cancel_shipment(
    tracking_number: str, request: Request, settings: SettingsDep, publisher: PublisherDep, principal: PrincipalDep
) -> Response:
    number = normalise_tracking_number(tracking_number)
    if _not_a_tracking_number(number):
        return json_response({"detail": [{"field": "tracking_number", "message": "not a tracking number"}]}, 422)
    try:
        raw_body = await read_body(request, settings.max_body_bytes)
    except BodyTooLarge:
        return json_response({"detail": f"body larger than {settings.max_body_bytes} bytes"}, 413)
    except ClientDisconnect:
        return client_gone("shipments-cancel").response()
    received_at = datetime.now(UTC)
    try:
        check_json_body(raw_body)
        cancellation = _cancellation(raw_body)
    except (InputRejected, orjson.JSONDecodeError, ValidationError) as error:
        metrics.SHIPMENTS.labels("cancelled", "rejected").inc()
        status, detail = _refusal(error)
        reason = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
        letter = dead_letter("shipments-cancel", reason, raw_body, request, received_at)
        return await _reject(publisher, settings, "shipments-cancel", status, {"detail": detail}, letter)
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
        return _unavailable(settings)
    metrics.SHIPMENTS.labels("cancelled", "accepted").inc()
    return json_response({"accepted": 1, "rejected": []}, 202)


def _refusal(error: Exception) -> tuple[int, Any]:
    """The status and detail of a cancellation body the guard or the model refuses."""
    if isinstance(error, InputRejected):
        return error.status, str(error)
    if isinstance(error, ValidationError):
        return 422, pydantic_errors(error)
    return 400, f"body is not JSON: {error}"
