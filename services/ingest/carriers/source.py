"""The shape of one carrier integration, as every carrier module declares it: how a push is
verified (signature, token, decryption), parsed, and answered in the carrier's own shape.

The table of carriers is :data:`services.ingest.carriers.CARRIERS`; the routes, the OpenAPI
document and the dead-letter replay all iterate it, so a new carrier is one module with a
:class:`Carrier` row and one line in that table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.ingest.carriers.common import unique
from services.ingest.signatures import signatures_match
from shared.guard import check_json_body
from shared.schemas import TrackingEvent

if TYPE_CHECKING:
    from starlette.requests import Request

    from services.ingest.settings import IngestSettings

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

#: (verified payload, context echoed in the acknowledgement)
Verified = tuple[bytes, Any]


class Unauthenticated(Exception):
    """A push whose signature, token or key does not check out; ``context`` is what could
    be read of it for the failure reply (China Post's envelope, to echo its serialNo)."""

    def __init__(self, message: str = "", context: Any = None) -> None:
        super().__init__(message)
        self.context = context


def plain_failure(_context: Any, detail: str) -> dict[str, Any]:
    """A failure reply for carriers without a shape of their own."""
    return {"detail": detail}


def as_received(raw_body: bytes, _content_type: str) -> Verified:
    """A parked body of a carrier that sends clear text is its payload as it is."""
    return raw_body, None


def signed_header(
    header: str, expected: Callable[[bytes], str], problem: str, *, case_insensitive: bool = False
) -> Callable[[Request, bytes], Verified]:
    """The verifier of a carrier that signs the raw body into one header: the signature
    computed with ``expected(raw_body)`` must match the header's, in constant time."""

    def verify(request: Request, raw_body: bytes) -> Verified:
        if not signatures_match(request.headers.get(header), expected(raw_body), case_insensitive=case_insensitive):
            raise Unauthenticated(problem)
        return raw_body, None

    return verify


def header_or_query(request: Request, name: str) -> str | None:
    """A parameter some senders put in the query string and others in a header (with ``-``
    or ``_``)."""
    return request.query_params.get(name) or request.headers.get(name) or request.headers.get(name.replace("_", "-"))


@dataclass(frozen=True)
class WebhookSource:
    """One carrier integration bound to its secrets: how to verify, parse and acknowledge
    its pushes."""

    source: str
    verify: Callable[[Request, bytes], Verified]
    parse: Callable[[bytes, datetime, Any], list[TrackingEvent]]
    ack: Callable[[Any, int], dict[str, Any]]
    #: The body of a failure reply, in the carrier's shape where it has one.
    failure: Callable[[Any, str], dict[str, Any]] = plain_failure
    #: Turns a parked raw body (verified on arrival) back into (payload, context) without
    #: its signature, for the dead-letter replay: decrypts what arrived encrypted.
    reopen: Callable[[bytes, str], Verified] = as_received

    @classmethod
    def clear_text(
        cls,
        source: str,
        verify: Callable[[Request, bytes], Verified],
        parse: Callable[[bytes, datetime], list[TrackingEvent]],
        ack: Callable[[int], dict[str, Any]],
        failure: Callable[[Any, str], dict[str, Any]] = plain_failure,
    ) -> WebhookSource:
        """A carrier whose pushes carry no context: the payload is the body as signed, the
        reply depends only on the number of events."""
        return cls(
            source=source,
            verify=verify,
            parse=lambda payload, received_at, _context: parse(payload, received_at),
            ack=lambda _context, count: ack(count),
            failure=failure,
        )

    def events(self, payload: bytes, received_at: datetime, context: Any) -> list[TrackingEvent]:
        """The events of a verified push, as the live path and the dead-letter replay both
        read them: the decoding guard first (UTF-8, NUL, nesting depth), then the carrier's
        parser, repeats within the push dropped. Raises ``PushError`` or
        ``InputRejected`` for a body the rules refuse, anything else for one no rule
        foresaw."""
        check_json_body(payload, "the push")
        events = self.parse(payload, received_at, context)
        return events if len(events) < 2 else unique(events)


@dataclass(frozen=True)
class Carrier:
    """One row of the carrier table."""

    #: ``POST /v1/webhooks/<slug>``; also the metrics' source label and the dead letters' origin.
    slug: str
    #: The route's one-line summary in the OpenAPI document.
    summary: str
    #: Media type -> the msgspec types its body may take (several: ``oneOf``), for OpenAPI.
    bodies: Mapping[str, tuple[type, ...]]
    #: Binds the integration to its secrets from the settings.
    webhook_source: Callable[[IngestSettings], WebhookSource]
