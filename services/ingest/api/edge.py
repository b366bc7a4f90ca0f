"""What every ingest route does at the edge: read the raw body (413 past the limit),
answer in JSON, and park what cannot be used as a dead letter.

Handlers take the raw ``Request`` so no per-request pydantic models are built on the hot
path; the body schemas still appear in the OpenAPI docs through ``openapi_extra``
(:mod:`services.ingest.api.openapi`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from fastapi import Request, Response
from starlette.requests import ClientDisconnect
from starlette.types import Send

from services.ingest import signatures
from services.ingest.carriers.source import JSON
from services.ingest.publisher import Record
from shared.schemas import DEADLETTER_CODEC, DeadLetter
from shared.topics import DEADLETTER

log = logging.getLogger(__name__)

#: Request headers worth keeping with a dead letter (never signatures or tokens).
_REPLAY_HEADERS = ("content-type", "user-agent", signatures.YUNEXPRESS_TIMESTAMP_HEADER)
_JSON_CONTENT_TYPE = (b"content-type", JSON.encode())
#: Status recorded (never seen by anyone) for a request whose client went away mid-body.
CLIENT_CLOSED = 499

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Unauthenticated body that breaks the decoding guard, or an unusable shipment body."},
    401: {"description": "Signature or token missing or wrong; nothing is stored."},
    413: {"description": "Body over the size limit."},
    503: {"description": "The broker did not acknowledge in time; retry after `Retry-After` seconds."},
}


class BodyTooLarge(Exception):
    pass


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=JSON, headers=headers)


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


def client_gone(origin: str) -> Reply:
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


def request_body(schema: dict[str, Any], media_types: Sequence[str] = (JSON,), required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a body the route reads raw."""
    return {"requestBody": {"required": required, "content": {media: {"schema": schema} for media in media_types}}}
