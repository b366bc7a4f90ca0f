"""The decoding guard at every HTTP edge: what a request may carry before any route,
parser or database sees it.

One set of rules for the three services (issue 14): bodies are UTF-8, JSON nests at most
:data:`MAX_JSON_DEPTH` deep, no text carries a NUL (PostgreSQL cannot store one), paths
and query strings decode to UTF-8, and times lie in the calendar the system works in
(:data:`EARLIEST`..:data:`LATEST`). A request that breaks a rule gets a 4xx whose
``detail`` says which rule; it never reaches code that would fail on it with a 500.

- :class:`EdgeGuard` is a pure ASGI middleware for the FastAPI routes (scorer, notifier,
  the ingest's shipment API); it also turns a client that disconnects mid-body into a
  quiet end of the request instead of an error in the logs.
- :func:`check_json_body` is the same body check for code that reads raw bodies itself
  (the ingest's carrier webhooks, which are served before the middleware stack).
- :func:`install_error_handlers` renders request-validation errors without echoing the
  input (which may be invalid UTF-8, infinity or a secret) and answers 503, naming the
  command to run, when the database schema is not migrated.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import SchemaNotReady, is_transient

log = logging.getLogger(__name__)

#: Deepest JSON nesting accepted anywhere (the deepest real payload nests about 8 deep).
MAX_JSON_DEPTH = 64
#: The calendar the system works in: carrier scans, confirmations, promised dates.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
#: Bodies of the FastAPI routes (subscriptions, cancellations) are small.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Longest path plus query string accepted (before any route sees it).
MAX_TARGET_BYTES = 8 * 1024

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A JSON string literal (escapes included; the unrolled form is fast in re): brackets
# inside strings do not nest.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# An innermost pair of brackets: each pass that removes them all peels one level.
_INNERMOST = re.compile(rb"\[\]|\{\}")
# An escaped NUL (an even number of backslashes before it would be literal text).
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
# A UTF-16 surrogate escape without its partner: decoders accept it, UTF-8 cannot hold it.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


class InputRejected(ValueError):
    """A request the guard refuses; ``status`` is the 4xx, the message says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_depth(raw: bytes) -> int:
    """How deep the JSON text nests (brackets inside strings do not count)."""
    opened = raw.count(b"[") + raw.count(b"{")
    if opened <= MAX_JSON_DEPTH:
        return opened  # an upper bound that is already small
    # Drop the strings: with no escaped quote every quote opens or closes one (a split is
    # the fastest way); otherwise find them properly.
    escaped = b'\\"' in raw
    outside = _JSON_STRING.sub(b"", raw) if escaped else b"".join(raw.split(b'"')[0::2])
    brackets = outside.translate(None, _BRACKETS)
    # Removing every innermost pair lowers every branch by one level: the number of passes
    # is the depth (each pass runs in C; stops once past the limit, or on malformed text).
    depth = 0
    while brackets and depth <= MAX_JSON_DEPTH:
        brackets, removed = _INNERMOST.subn(b"", brackets)
        if not removed:
            break
        depth += 1
    return depth


def check_json_body(raw: bytes, what: str = "body", max_depth: int = MAX_JSON_DEPTH) -> None:
    """The rules for a (JSON or form) body: UTF-8, no NUL, at most ``max_depth`` deep.
    Raises :class:`InputRejected` naming the rule; costs microseconds on a normal push."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputRejected(f"{what} is not valid UTF-8 (byte {error.start})") from None
    # Well-formed JSON, but text that can never be stored (PostgreSQL) or sent: 422.
    if b"\x00" in raw or (b"\\u0000" in raw and _ESCAPED_NUL.search(raw)):
        raise InputRejected(f"{what} contains a NUL character, which cannot be stored", 422)
    if b"\\u" in raw and _LONE_SURROGATE.search(raw):
        raise InputRejected(f"{what} contains a lone UTF-16 surrogate escape, which cannot be stored", 422)
    if json_depth(raw) > max_depth:
        raise InputRejected(f"{what} nests deeper than {max_depth} levels")


def target_is_clean(scope: Scope) -> bool:
    """Whether the path and query pass :func:`check_target`: a fast path that skips the
    middleware serves only those, and leaves the rest to EdgeGuard's answer."""
    try:
        check_target(scope)
    except InputRejected:
        return False
    return True


def check_target(scope: Scope) -> None:
    """The path and query string: bounded, UTF-8 once percent-decoded, no NUL."""
    raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    if len(raw_path) + len(query) > MAX_TARGET_BYTES:
        raise InputRejected(f"request target longer than {MAX_TARGET_BYTES} bytes", 414)
    for part, what, plus_is_space in ((raw_path, "path", False), (query, "query string", True)):
        if part.isascii() and b"%" not in part and b"\x00" not in part:
            continue  # nothing to decode: the usual request costs three byte scans
        decoded = urllib.parse.unquote_to_bytes(part.replace(b"+", b" ") if plus_is_space else part)
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise InputRejected(f"{what} is not valid UTF-8 once percent-decoded") from None
        if "\x00" in text:
            raise InputRejected(f"{what} contains a NUL character")


def in_calendar(moment: datetime) -> datetime:
    """An aware time in UTC inside [EARLIEST, LATEST); ValueError (not OverflowError) otherwise."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return utc


def day_in_calendar(day: date) -> date:
    if not EARLIEST.date() <= day < LATEST.date():
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return day


def _reply(status: int, detail: Any) -> tuple[Message, Message]:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class EdgeGuard:
    """Pure ASGI middleware applying the guard to every HTTP request before routing.

    Bodies of ``POST``/``PUT``/``PATCH``/``DELETE`` requests are read here (refused past
    ``max_body_bytes`` with 413, before being read in full) and checked with
    :func:`check_json_body` unless the path starts with one of ``raw_body_prefixes``
    (routes that read and check their raw bodies themselves); the route then receives
    the same bytes."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        raw_body_prefixes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.raw_body_prefixes = tuple(raw_body_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_target(scope)
        except InputRejected as error:
            await self._refuse(send, error)
            return
        if scope["method"] not in _BODY_METHODS or scope["path"].startswith(self.raw_body_prefixes):
            await self.app(scope, receive, send)
            return
        body, more = await self._read(scope, receive, send)
        if body is None:
            return
        try:
            check_json_body(body)
        except InputRejected as error:
            await self._refuse(send, error)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await more()

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> tuple[bytes | None, Receive]:
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, InputRejected(f"body larger than {self.max_body_bytes} bytes", 413))
            return None, receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The client went away mid-body: nothing to answer, nothing to log as an error.
                log.info("client disconnected before sending the whole body", extra={"path": scope["path"]})
                return None, receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(send, InputRejected(f"body larger than {self.max_body_bytes} bytes", 413))
                return None, receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), receive

    @staticmethod
    async def _refuse(send: Send, error: InputRejected) -> None:
        start, body = _reply(error.status, str(error))
        await send(start)
        await send(body)


# --- error rendering ---------------------------------------------------------------------


def _printable(value: Any) -> Any:
    """Loc parts and context values as JSON-safe text (no bytes, no infinity)."""
    if isinstance(value, str | int | bool) or value is None:
        return value
    return repr(value)[:80]


def validation_details(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors without the input: the input may be invalid UTF-8, a
    number JSON cannot carry (``1e999``), or a secret the caller sent by mistake."""
    details = []
    for error in errors:
        details.append(
            {
                "loc": [_printable(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "value_error")),
            }
        )
    return details


def _undefined_table(error: BaseException) -> bool:
    """Whether a database error says a table or column of the schema is missing."""
    text = str(getattr(error, "orig", error)).lower()
    name = type(getattr(error, "orig", error)).__name__
    return (
        "UndefinedTable" in name
        or "UndefinedColumn" in name
        or "no such table" in text
        or "no such column" in text
        or ("relation" in text and "does not exist" in text)
    )


def install_error_handlers(app: FastAPI, service: str) -> None:
    """422 without echoed input; 503 naming ``migrate`` when the schema is not at head."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    async def invalid_request(_: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        body = orjson.dumps({"detail": validation_details(error.errors())})
        return Response(body, 422, media_type="application/json")

    async def database_error(_: Request, error: Exception) -> Response:
        if _undefined_table(error):
            problem = SchemaNotReady(service, "the database schema is not migrated")
            log.error("database schema not migrated", extra={"run": problem.command})
            return Response(
                orjson.dumps({"detail": str(problem)}),
                503,
                media_type="application/json",
                headers={"Retry-After": "30"},
            )
        if is_transient(error):  # down, read-only, full: the request may succeed later
            return await database_unavailable(_, error)
        raise error

    async def database_unavailable(_: Request, error: Exception) -> Response:
        log.warning("database unavailable; answered 503", extra={"error": type(error).__name__})
        return Response(
            orjson.dumps({"detail": "the database is unavailable (down, read-only or full); retry later"}),
            503,
            media_type="application/json",
            headers={"Retry-After": "5"},
        )

    async def schema_not_ready(_: Request, error: Exception) -> Response:
        return Response(
            orjson.dumps({"detail": str(error)}), 503, media_type="application/json", headers={"Retry-After": "30"}
        )

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(DBAPIError, database_error)
    # The scorer's read path talks to asyncpg directly (prepared statements, no SQLAlchemy).
    app.add_exception_handler(asyncpg.PostgresError, database_error)
    app.add_exception_handler(SchemaNotReady, schema_not_ready)
    app.add_exception_handler(ConnectionError, database_unavailable)
