"""The read path of ``GET /v1/sellers/{id}/vtr``: computed answers cached per seller, keyed
by the seller's score versions, never older than the last committed batch.

Every change to a seller-category's numbers marks it in the outbox in the same
transaction, and triggers on the outbox bump ``score_versions`` (migration 0005), whose
rows are never deleted. Versions only grow, so per seller ``(count, sum of versions)``
changes with every committed change, by any instance or the clock job. A request reads
that pair (one primary-key range read, a prepared statement on a small asyncpg pool),
and serves the cached answer only if it was computed under the same pair and for the same
day; otherwise it computes the answer with the service's own scoring
(:meth:`ScorerService.scores`) and caches the encoded bytes. The pair is read *before* the
numbers (each statement sees every transaction committed before it started), so an
answer is never cached under a pair older than the numbers it was computed from in a way
that could hide a change: at worst a newer answer sits under an older pair and is
recomputed once. The publisher, which computes every changed seller's scores anyway, puts
its answers into the same cache the same way.

What is cached is the encoded answer, whatever the scoring returns; it must depend only
on the database and the day (a score that depended on the time of day would need the
time in the key). Past days (``as_of`` before today) are computed on every request.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.types import Receive, Scope, Send

from services.scorer import metrics
from services.scorer.schema import score_versions
from shared.credentials.access import KeyGate, Refusal
from shared.credentials.scopes import Scope as KeyScope
from shared.guard import target_is_clean
from shared.observability import HTTP_DURATION, HTTP_REQUESTS

if TYPE_CHECKING:
    from services.scorer.service import CategoryScore, ScorerService

UNKNOWN_SELLER = "unknown seller: no package of this seller is known"
#: The route template, as FastAPI and the metrics middleware name it.
VTR_ROUTE = "/v1/sellers/{seller_id}/vtr"
#: The seller ids the route accepts (``SellerId`` in api.py); anything else goes to FastAPI.
_VTR_PATH = re.compile(r"/v1/sellers/([\w.:@-]{1,128})/vtr")
_VERSIONS_SQL = "SELECT count(*), coalesce(sum(version), 0) FROM score_versions WHERE seller_id = $1"
_JSON = msgspec.json.Encoder()

Token = tuple[int, int]


def encode_answer(seller_id: str, day: date, categories: Sequence[CategoryScore]) -> bytes:
    return _JSON.encode(
        {"seller_id": seller_id, "as_of": day.isoformat(), "categories": [c.as_json() for c in categories]}
    )


class ScoreReads:
    """Answers of ``GET .../vtr`` for one scorer process; see the module docstring."""

    def __init__(self, service: ScorerService, max_sellers: int, pool_size: int) -> None:
        self._service = service
        self._engine: AsyncEngine = service.engine
        self._max_sellers = max_sellers
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        #: seller -> (day, token, encoded answer), least recently used first.
        self._cache: OrderedDict[str, tuple[date, Token, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._from_cache = metrics.READ_ANSWERS.labels("cache")
        self._computed = metrics.READ_ANSWERS.labels("computed")

    async def start(self) -> None:
        if self._engine.dialect.name == "postgresql" and self._max_sellers > 0:
            url = self._engine.url.set(drivername="postgresql")
            self._pool = await asyncpg.create_pool(
                url.render_as_string(hide_password=False),
                # No connection at start-up: the scorer starts (and reports not ready) while
                # its database is down, as before this pool existed.
                min_size=0,
                max_size=self._pool_size,
                # The pool only runs one read-only statement: no session state to reset, and
                # the default reset is a round trip per request.
                reset=_no_reset,
            )

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- the cache -------------------------------------------------------------------

    def _get(self, seller_id: str, day: date, token: Token) -> bytes | None:
        entry = self._cache.get(seller_id)
        if entry is None or entry[0] != day or entry[1] != token:
            return None
        self._cache.move_to_end(seller_id)
        return entry[2]

    def put(self, seller_id: str, day: date, token: Token | None, body: bytes) -> None:
        """Cache ``body`` as the answer for ``seller_id`` on ``day``, computed from numbers
        read *after* ``token`` (None: the seller has no versions yet; nothing is cached)."""
        if token is None or token[0] == 0 or self._max_sellers <= 0:
            return
        self._cache[seller_id] = (day, token, body)
        self._cache.move_to_end(seller_id)
        while len(self._cache) > self._max_sellers:
            self._cache.popitem(last=False)
        metrics.READ_CACHE_SELLERS.set(len(self._cache))

    @property
    def caching(self) -> bool:
        return self._max_sellers > 0

    def today(self) -> date:
        return self._service.today()

    def __len__(self) -> int:
        return len(self._cache)

    # -- versions ----------------------------------------------------------------------

    async def token(self, seller_id: str) -> Token | None:
        """The seller's (count, sum) of score versions; None when the cache is off."""
        if self._max_sellers <= 0:
            return None
        if self._pool is not None:
            try:
                row = await self._pool.fetchrow(_VERSIONS_SQL, seller_id)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                # A connection broken since its last use (a database fail-over): the pool
                # drops it; one retry on a fresh connection before the request fails.
                row = await self._pool.fetchrow(_VERSIONS_SQL, seller_id)
            assert row is not None
            return int(row[0]), int(row[1])
        async with self._engine.connect() as connection:
            return (await tokens_by_seller(connection, [seller_id])).get(seller_id, (0, 0))

    # -- answers -----------------------------------------------------------------------

    async def answer(self, seller_id: str, day: date) -> bytes | None:
        """The encoded answer for ``seller_id`` on ``day``; None for an unknown seller."""
        token = await self.token(seller_id) if day == self.today() else None
        if token is not None:
            cached = self._get(seller_id, day, token)
            if cached is not None:
                self.hits += 1
                self._from_cache.inc()
                return cached
        self.misses += 1
        self._computed.inc()
        async with self._engine.connect() as connection:
            # A version exists only for a seller-category with counters, hence with a package.
            known = token is not None and token[0] > 0
            if not known and not await self._service.seller_exists(connection, seller_id):
                return None
            categories = await self._service.scores(connection, seller_id, day)
        body = encode_answer(seller_id, day, categories)
        self.put(seller_id, day, token, body)
        return body


async def _no_reset(_connection: asyncpg.Connection) -> None:
    return None


async def tokens_by_seller(connection: AsyncConnection, sellers: Sequence[str]) -> dict[str, Token]:
    """Each seller's token in one statement (the publisher reads them before its scores)."""
    result = await connection.execute(
        select(score_versions.c.seller_id, func.count(), func.sum(score_versions.c.version))
        .where(score_versions.c.seller_id.in_(sorted(set(sellers))))
        .group_by(score_versions.c.seller_id)
    )
    return {seller: (int(count), int(total)) for seller, count, total in result}


class VtrFastPath:
    """``GET /v1/sellers/{id}/vtr`` without a query string, answered at the ASGI entry.

    FastAPI's layers (error middleware, route matching, dependency solving for the path
    parameter and the bearer token, the metrics middleware) cost more than a cached answer
    itself. This serves the common request directly, with the same checks (the key gate:
    a valid key with ``scores:read`` for this seller, within its rate limit; the seller id
    pattern) and the same ``vtr_http_*`` series; anything else (another id, ``?as_of=``)
    goes through FastAPI, whose route calls the same :meth:`ScoreReads.answer`.
    """

    def __init__(self, reads: ScoreReads, gate: KeyGate) -> None:
        self._reads = reads
        self._gate = gate
        self._requests: dict[int, Any] = {}
        self._duration = HTTP_DURATION.labels(VTR_ROUTE, "GET")

    def matches(self, scope: Scope) -> str | None:
        """The seller id if this request is one the fast path serves, else None."""
        if scope["method"] != "GET" or scope["query_string"]:
            return None
        if not target_is_clean(scope):  # the decoding guard every other route gets from EdgeGuard
            return None
        match = _VTR_PATH.fullmatch(scope["path"])
        return None if match is None else match.group(1)

    @staticmethod
    def _authorization(scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return bytes(value)
        return None

    async def serve(self, seller_id: str, scope: Scope, send: Send) -> bool:
        """Answer, or return False without sending anything when the answer cannot be had
        here (a database that is down or not migrated): FastAPI's route then answers with
        the service's error handling (503 and why), like every other route."""
        started = time.perf_counter()
        outcome = self._gate.check(self._authorization(scope), KeyScope.SCORES_READ, seller_id, UNKNOWN_SELLER)
        headers: list[tuple[bytes, bytes]] = []
        if isinstance(outcome, Refusal):
            status, body = outcome.status, _JSON.encode({"detail": outcome.detail})
            headers = [(name.lower().encode(), value.encode()) for name, value in (outcome.headers or {}).items()]
        else:
            try:
                answer = await self._reads.answer(seller_id, self._reads.today())
            except Exception:
                return False
            status, body = (404, _JSON.encode({"detail": UNKNOWN_SELLER})) if answer is None else (200, answer)
        try:
            headers += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            counter = self._requests.get(status)
            if counter is None:
                counter = self._requests[status] = HTTP_REQUESTS.labels(VTR_ROUTE, "GET", str(status))
            counter.inc()
            self._duration.observe(time.perf_counter() - started)
        return True


async def dispatch(fast_path: VtrFastPath, scope: Scope, receive: Receive, send: Send) -> bool:
    """Serve the request if it is the fast path's; returns whether it did."""
    if scope["type"] != "http":
        return False
    seller_id = fast_path.matches(scope)
    if seller_id is None:
        return False
    return await fast_path.serve(seller_id, scope, send)
