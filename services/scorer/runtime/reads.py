"""The read path of ``GET /v1/sellers/{id}/vtr``: computed answers cached per seller, keyed
by the seller's score versions, never older than the last committed batch.

Every change to a seller-category's numbers marks it in the outbox in the same
transaction, and triggers on the outbox bump ``score_versions`` (migration 0005), whose
rows are never deleted. Versions only grow, so per seller ``(count, sum of versions)``
changes with every committed change, by any instance or the clock job. A request reads
that pair (one primary-key range read, a prepared statement on a small asyncpg pool),
and serves the cached answer only if it was computed under the same pair and for the same
day; otherwise it computes the answer with the service's own scoring
(:meth:`Scoring.scores`) and caches the encoded bytes. The pair is read *before* the
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

from collections import OrderedDict
from collections.abc import Sequence
from datetime import date

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import metrics
from services.scorer.domain.scores import CategoryScore
from services.scorer.runtime.scoring import Scoring
from services.scorer.storage.counts import seller_exists
from services.scorer.storage.versions import VERSIONS_SQL, Token, tokens_by_seller

_JSON = msgspec.json.Encoder()


def encode_answer(seller_id: str, day: date, categories: Sequence[CategoryScore]) -> bytes:
    return _JSON.encode(
        {"seller_id": seller_id, "as_of": day.isoformat(), "categories": [c.as_json() for c in categories]}
    )


class ScoreReads:
    """Answers of ``GET .../vtr`` for one scorer process; see the module docstring."""

    def __init__(self, scoring: Scoring, engine: AsyncEngine, max_sellers: int, pool_size: int) -> None:
        self._scoring = scoring
        self._engine = engine
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
        return self._scoring.today()

    def __len__(self) -> int:
        return len(self._cache)

    # -- versions ----------------------------------------------------------------------

    async def token(self, seller_id: str) -> Token | None:
        """The seller's (count, sum) of score versions; None when the cache is off."""
        if self._max_sellers <= 0:
            return None
        if self._pool is not None:
            try:
                row = await self._pool.fetchrow(VERSIONS_SQL, seller_id)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                # A connection broken since its last use (a database fail-over): the pool
                # drops it; one retry on a fresh connection before the request fails.
                row = await self._pool.fetchrow(VERSIONS_SQL, seller_id)
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
            if not known and not await seller_exists(connection, seller_id):
                return None
            categories = await self._scoring.scores(connection, seller_id, day)
        body = encode_answer(seller_id, day, categories)
        self.put(seller_id, day, token, body)
        return body


async def _no_reset(_connection: asyncpg.Connection) -> None:
    return None
