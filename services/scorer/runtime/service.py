"""The scorer at run time: its parts wired together, started and stopped.

The consumer applies batches through :class:`BatchApplier` (``consuming.py``); the clock
job (``clock.py``) and the gauges run every few seconds; the publisher (``publisher.py``)
sends the outbox's scores; :class:`Scoring` (``scoring.py``) answers the reads of the API,
the console and the publisher, with :class:`ScoreReads` (``reads.py``) caching the API's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import metrics
from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.packages import NOON
from services.scorer.domain.policy import load_policy
from services.scorer.domain.window import TodayFunction, utc_today
from services.scorer.runtime.clock import ClockJob
from services.scorer.runtime.consuming import BatchApplier
from services.scorer.runtime.publisher import Publisher
from services.scorer.runtime.reads import ScoreReads
from services.scorer.runtime.scoring import Scoring
from services.scorer.settings import ScorerSettings
from services.scorer.storage.schema import offsets
from services.scorer.storage.staging import create_staging_tables_on_connect
from shared.consumer.consumer import TransactionalConsumer
from shared.kafka import ensure_topics, make_producer
from shared.topics import INPUT_TOPICS, SCORES_TOPIC, SHIPMENTS, TRACKING_EVENTS

log = logging.getLogger(__name__)
#: Between clock rounds, how often the clock looks whether the consumer has just caught up.
WAKE_POLL_SECONDS = 1.0


class TopicLayoutError(RuntimeError):
    """The two input topics are not co-partitioned."""


class ScorerService:
    def __init__(
        self,
        settings: ScorerSettings,
        engine: AsyncEngine,
        today: TodayFunction = utc_today,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.today = today
        self._now = now
        self.evaluator = Evaluator(load_policy(settings.policy_file))
        self.consumer: TransactionalConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.scoring = Scoring(settings, self.evaluator, today)
        #: The read API's answers, also filled by the publisher.
        self.reads = ScoreReads(self.scoring, engine, settings.read_cache_sellers, settings.read_pool_size)
        self.publisher = Publisher(settings, engine, self.scoring, self.reads, self.caught_up)
        self.batches = BatchApplier(
            engine, self.evaluator, today, self.now, settings.batch_max_records, self._batches_applied
        )
        self.clock = ClockJob(
            settings,
            engine,
            self.evaluator,
            today,
            self.now,
            self.publisher.wake,
            self.caught_up,
            lambda: self.batches.records_applied,
        )
        self.plans_ahead = settings.plan_ahead and engine.dialect.name == "postgresql"
        create_staging_tables_on_connect(engine)

    def _batches_applied(self) -> int:
        assert self.consumer is not None
        return self.consumer.batches_applied

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        counts = await ensure_topics(self.settings, [*INPUT_TOPICS, SCORES_TOPIC])
        if counts[SHIPMENTS] != counts[TRACKING_EVENTS]:
            message = (
                f"refusing to start: {SHIPMENTS} has {counts[SHIPMENTS]} partitions and {TRACKING_EVENTS} has "
                f"{counts[TRACKING_EVENTS]}; they must be co-partitioned (same count) so that one instance sees "
                "every message of a tracking number"
            )
            log.critical(message)
            raise TopicLayoutError(message)
        producer = self.publisher.producer = make_producer(self.settings)
        await producer.start()
        self.consumer = TransactionalConsumer(
            settings=self.settings,
            engine=self.engine,
            topics=[SHIPMENTS, TRACKING_EVENTS],
            group_id=self.settings.consumer_group_id,
            offsets=offsets,
            apply_batch=self.batches.apply_batch,
            lag_gauge=metrics.CONSUMER_LAG,
            max_batch_records=self.settings.batch_max_records,
            poll_timeout_ms=self.settings.poll_timeout_ms,
            group_instance_id=self.settings.scorer_instance_id,
            on_batch_committed=lambda _records, seconds: metrics.BATCH_DURATION.observe(seconds),
            prepare_records=self.batches.prepare_records,
            plan_ahead=self.batches.plan_ahead if self.plans_ahead else None,
        )
        await self.consumer.start()
        self._tasks = [
            asyncio.create_task(
                self._every(self.settings.clock_interval_seconds, self.clock.run_once, self.clock.just_caught_up),
                name="clock",
            ),
            asyncio.create_task(self.publisher.run(self._stopping), name="publisher"),
            asyncio.create_task(
                self._every(self.settings.gauges_interval_seconds, self.clock.refresh_gauges), name="gauges"
            ),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        self.publisher.wake()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.consumer is not None:
            await self.consumer.stop()
        if self.publisher.producer is not None:
            await self.publisher.producer.stop()

    async def _every(
        self, interval: float, job: Callable[[], Awaitable[object]], wake: Callable[[], bool] | None = None
    ) -> None:
        """Run ``job`` every ``interval`` seconds, or sooner once ``wake()`` says so (polled
        every ``WAKE_POLL_SECONDS``)."""
        while not self._stopping.is_set():
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job failed; retrying next round", extra={"job": job.__name__})
            deadline = time.monotonic() + interval
            while not self._stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
                if wake is not None and wake():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), remaining if wake is None else min(WAKE_POLL_SECONDS, remaining)
                    )

    def caught_up(self) -> bool:
        """Whether this instance's consumer lag is known and at most the setting.

        Until the first fetch of a partition its high watermark is unknown and its lag would
        read 0; snapshots published then (from outbox marks left before a restart) must not
        claim to be caught up, or the notifier would alert on numbers still being replayed.
        """
        return self.consumer is not None and self.consumer.caught_up(self.settings.caught_up_max_lag)

    def now(self) -> datetime:
        """Naive UTC now; noon of ``today()`` when a test or a tool pins another day, or what
        the ``now`` given to the service says (the evaluation pins the moment)."""
        if self._now is not None:
            return self._now()
        moment = datetime.now(UTC).replace(tzinfo=None)
        today = self.today()
        return moment if moment.date() == today else datetime.combine(today, NOON)
