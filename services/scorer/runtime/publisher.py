"""The publisher: a score snapshot for every seller-category marked in the outbox, sent to
the scores topic, then the marks deleted (after the acks). Snapshots sent while the
consumer is behind say so and are sent again once it has caught up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import metrics
from services.scorer.runtime.reads import ScoreReads, encode_answer
from services.scorer.runtime.scoring import Scoring
from services.scorer.settings import ScorerSettings
from services.scorer.storage.outbox import mark_changed, outbox_batch, outbox_remove, outbox_size, save_levels
from services.scorer.storage.versions import tokens_by_seller
from shared.schemas import SCORE_CODEC, ScoreSnapshot
from shared.topics import SCORES

log = logging.getLogger(__name__)

#: Seconds between publication rounds while the consumer is not caught up.
BEHIND_PUBLISH_PERIOD_SECONDS = 5.0


class Publisher:
    def __init__(
        self,
        settings: ScorerSettings,
        engine: AsyncEngine,
        scoring: Scoring,
        reads: ScoreReads,
        caught_up: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.scoring = scoring
        self.reads = reads
        self.caught_up = caught_up
        self.producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        #: Scopes published with ``caught_up=False``: the notifier holds alerts on those, so
        #: they are published again once this instance has caught up.
        self._published_behind: set[tuple[str, str, str]] = set()

    def wake(self) -> None:
        """Publish now rather than at the next interval (scores changed)."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            published = 0
            try:
                published = await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing scores failed; the outbox keeps them for the next round")
            if published < self.settings.publish_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.publish_interval_seconds)
                self._wake.clear()
            await self._hold_while_behind(stopping)

    async def _hold_while_behind(self, stopping: asyncio.Event) -> None:
        """While the consumer replays a backlog, publish one round per ``BEHIND_PUBLISH_PERIOD_SECONDS``.

        Snapshots published while behind say ``caught_up: false`` and are published again
        once caught up, and the outbox keeps one mark per seller-category however often it
        changes, so publishing them at full speed only took CPU from the consumer (a fifth
        of the process during a backlog). Checked every publish interval, so publication
        returns to full speed as soon as the consumer has caught up.
        """
        deadline = time.monotonic() + BEHIND_PUBLISH_PERIOD_SECONDS
        while not stopping.is_set() and not self.caught_up() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.publish_interval_seconds)

    async def publish_once(self) -> int:
        """Publish a snapshot for a batch of outbox marks, then delete the marks (after the acks)."""
        assert self.producer is not None
        caught_up = self.caught_up()
        if caught_up and self._published_behind:
            async with self.engine.begin() as connection:
                await mark_changed(connection, sorted(self._published_behind))
            self._published_behind.clear()
        async with self.engine.connect() as connection:
            marks = await outbox_batch(connection, self.settings.publish_batch_size)
            metrics.OUTBOX_BACKLOG.set(await outbox_size(connection))
            if not marks:
                return 0
            today = self.scoring.today()
            scopes_by_seller: dict[str, set[tuple[str, str]]] = defaultdict(set)
            for seller_id, marketplace, category, _ in marks:
                scopes_by_seller[seller_id].add((marketplace, category))
            snapshots: list[ScoreSnapshot] = []
            # Read before the scores, so each answer is cached under versions no newer than its numbers.
            tokens = await tokens_by_seller(connection, list(scopes_by_seller)) if self.reads.caching else {}
            for seller_id, scopes in scopes_by_seller.items():
                found = await self.scoring.scores(connection, seller_id, today)
                if seller_id in tokens:
                    self.reads.put(seller_id, today, tokens[seller_id], encode_answer(seller_id, today, found))
                scores = {(c.marketplace, c.category): c for c in found}
                for scope in sorted(scopes):
                    current = scores.get(scope) or self.scoring.rules.empty_score(*scope, as_of=today)
                    snapshots.append(current.snapshot(seller_id, today, caught_up))
        futures = [
            await self.producer.send(SCORES, SCORE_CODEC.encode(snapshot), key=snapshot.seller_id.encode())
            for snapshot in snapshots
        ]
        await asyncio.gather(*futures)
        metrics.SCORES_PUBLISHED.inc(len(snapshots))
        if not caught_up:
            self._published_behind.update((s.seller_id, s.marketplace, s.category) for s in snapshots)
        async with self.engine.begin() as connection:
            await outbox_remove(connection, marks)
            await save_levels(connection, ((s.seller_id, s.marketplace, s.category, s.level) for s in snapshots))
        return len(marks)
