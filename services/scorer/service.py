"""The scorer at run time: consumer, clock job, outbox publisher and the reads of the API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer import metrics
from services.scorer.advice import advice_for
from services.scorer.forecast import Score, score
from services.scorer.lastmile import NO_LAST_MILE, LastMile, load_last_miles
from services.scorer.levels import level_of
from services.scorer.policy import ScanSummary, invalid_reason_for, load_policy, summarise_scans
from services.scorer.reads import ScoreReads, encode_answer, tokens_by_seller
from services.scorer.schema import daily_counts, daily_reasons, offsets, packages, score_levels
from services.scorer.settings import ScorerSettings
from services.scorer.store import (
    MICRO,
    NOON,
    PACKAGE_COLUMNS,
    BatchPlan,
    ConcurrentUpdate,
    Evaluator,
    PackageRow,
    PreparedRecords,
    ScopeCounts,
    StalePlan,
    TodayFunction,
    create_staging_tables_on_connect,
    decode_records,
    dialect_insert,
    expire_pending,
    load_scans,
    mark_changed,
    mark_window_slide,
    outbox_batch,
    outbox_remove,
    outbox_size,
    package_from_row,
    plan_records,
    prepare_record,
    prune_counters,
    read_counts,
    recompute_counts,
    refresh_model,
    refresh_projections,
    report_applied,
    review_due,
    seller_exists,
    utc_today,
    write_plan,
)
from services.scorer.window import FORECAST_DAYS, counted_range, window
from shared.consumer.consumer import TransactionalConsumer
from shared.kafka import ensure_topics, make_producer
from shared.schemas import (
    SCORE_CODEC,
    CarrierHealthNote,
    ForecastPoint,
    Level,
    Money,
    PackagePage,
    PackageState,
    PackageView,
    Reason,
    ScoreSnapshot,
    ShipmentConfirmed,
    ShipmentMessage,
    TrackingEvent,
    TrackingLevel,
)
from shared.topics import (
    INPUT_TOPICS,
    SCORES,
    SCORES_TOPIC,
    SHIPMENTS,
    TRACKING_EVENTS,
    normalise_tracking_number,
)

log = logging.getLogger(__name__)

#: Shipment list filters: ``at_risk`` is a pending package unlikely to become valid in time.
SHIPMENT_STATES = ("invalid", "at_risk", "pending", "valid")
#: Records decoded ahead per slice, between yields to the batch being applied (about 1 ms each).
PREPARE_SLICE = 50
#: Records decoded ahead are kept for at most this many batches' worth.
PREPARED_BATCHES = 4
#: Seconds between publication rounds while the consumer is not caught up.
BEHIND_PUBLISH_PERIOD_SECONDS = 5.0


@dataclass
class AheadPlan:
    """A batch planned while the one before it was written (``ScorerService.plan_ahead``)."""

    records: list[ConsumerRecord[bytes, bytes]]
    #: The batch's records of parcels the batch written meanwhile had records of too: not
    #: in the plan, planned in the batch's transaction.
    rest: list[ConsumerRecord[bytes, bytes]]
    today: date
    plan: BatchPlan
    #: The tracking numbers and orders of the batch's records.
    numbers: set[str]
    orders: set[tuple[str, str]]


def same_records(these: Sequence[ConsumerRecord[bytes, bytes]], those: Sequence[ConsumerRecord[bytes, bytes]]) -> bool:
    return len(these) == len(those) and all(a is b for a, b in zip(these, those, strict=True))


def parcels_of(
    messages: Iterable[TrackingEvent | ShipmentMessage | None],
) -> tuple[set[str], set[tuple[str, str]]]:
    """The tracking numbers and orders that ``messages`` are about."""
    numbers: set[str] = set()
    orders: set[tuple[str, str]] = set()
    for message in messages:
        if message is not None:
            numbers.add(normalise_tracking_number(message.tracking_number))
            if isinstance(message, ShipmentConfirmed):
                orders.add((message.seller_id, message.order_id))
    return numbers, orders


def touches_parcels(message: TrackingEvent | ShipmentMessage, numbers: set[str], orders: set[tuple[str, str]]) -> bool:
    return normalise_tracking_number(message.tracking_number) in numbers or (
        isinstance(message, ShipmentConfirmed) and (message.seller_id, message.order_id) in orders
    )


class TopicLayoutError(RuntimeError):
    """The two input topics are not co-partitioned."""


@dataclass(frozen=True)
class CategoryScore:
    marketplace: str
    category: str
    score: Score
    level: Level
    #: Silent carriers behind this category's pending packages (across all sellers).
    carrier_health: tuple[CarrierHealthNote, ...] = ()

    def as_json(self) -> dict[str, Any]:
        s = self.score
        return {
            "marketplace": self.marketplace,
            "category": self.category,
            "window_from": s.window.first.isoformat(),
            "window_to": s.window.last.isoformat(),
            "total": s.total,
            "valid": s.valid,
            "invalid": s.invalid,
            "pending": s.pending,
            "vtr": _rounded(s.vtr),
            "headroom": s.headroom,
            "forecast": [
                {
                    "date": p.day.isoformat(),
                    "vtr": _rounded(p.vtr),
                    "p10": _rounded(p.p10),
                    "p50": _rounded(p.p50),
                    "p90": _rounded(p.p90),
                    "breach_probability": _rounded(p.breach_probability),
                }
                for p in s.forecast
            ],
            "days_to_breach": s.days_to_breach,
            "breach_probability": _rounded(s.breach_probability),
            "level": self.level.value,
            "reasons": dict(sorted(s.reasons.items())),
            "pending_reasons": dict(sorted(s.pending_reasons.items())),
            "carrier_health": [msgspec.to_builtins(note) for note in self.carrier_health],
        }

    def snapshot(self, seller_id: str, as_of: date, caught_up: bool) -> ScoreSnapshot:
        s = self.score
        return ScoreSnapshot(
            seller_id=seller_id,
            marketplace=self.marketplace,
            category=self.category,
            as_of=as_of,
            computed_at=datetime.now(UTC),
            caught_up=caught_up,
            window_from=s.window.first,
            window_to=s.window.last,
            total=s.total,
            valid=s.valid,
            invalid=s.invalid,
            pending=s.pending,
            vtr=_rounded(s.vtr),
            headroom=s.headroom,
            forecast=tuple(
                ForecastPoint(
                    p.day,
                    _rounded(p.vtr),
                    _rounded(p.p10),
                    _rounded(p.p50),
                    _rounded(p.p90),
                    _rounded(p.breach_probability),
                )
                for p in s.forecast
            ),
            days_to_breach=s.days_to_breach,
            level=self.level,
            reasons=dict(sorted(s.reasons.items())),
            breach_probability=_rounded(s.breach_probability),
            pending_reasons=dict(sorted(s.pending_reasons.items())),
            carrier_health=self.carrier_health,
        )


async def _yield() -> None:
    await asyncio.sleep(0)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def encode_cursor(package_id: int) -> str:
    return base64.urlsafe_b64encode(str(package_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Raises ValueError for anything that is not a cursor this API handed out."""
    padded = cursor + "=" * (-len(cursor) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    # ASCII digits of a row id that fits the database's BIGINT.
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**63:
        raise ValueError("not a cursor")
    return int(text)


def aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


CENT = Decimal("0.01")
ClockStep = Callable[[AsyncConnection, Evaluator, date, int, datetime], Awaitable[int]]


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
        self.floor = Fraction(str(settings.vtr_floor))
        self.thresholds = settings.level_thresholds()
        self.consumer: TransactionalConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._wake_publisher = asyncio.Event()
        #: Scopes published with ``caught_up=False``: the notifier holds alerts on those, so
        #: they are published again once this instance has caught up.
        self._published_behind: set[tuple[str, str, str]] = set()
        #: The read API's answers, also filled by the publisher (services/scorer/reads.py).
        self.reads = ScoreReads(self, settings.read_cache_sellers, settings.read_pool_size)
        #: Records of coming batches decoded ahead (``prepare_records``).
        self._prepared: PreparedRecords = {}
        #: Batches planned while the one before was written (``plan_ahead``), by the number
        #: of batches the consumer had committed when planning began.
        self._ahead: dict[int, AheadPlan] = {}
        #: Tracking numbers and orders the last batch wrote.
        self._last_written: tuple[set[str], set[tuple[str, str]]] = (set(), set())
        self.plans_ahead = settings.plan_ahead and engine.dialect.name == "postgresql"
        create_staging_tables_on_connect(engine)
        for outcome in ("used", "stale", "conflict"):  # every series exists (at 0) from the start
            metrics.BATCHES_PLANNED_AHEAD.labels(outcome)

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
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self.consumer = TransactionalConsumer(
            settings=self.settings,
            engine=self.engine,
            topics=[SHIPMENTS, TRACKING_EVENTS],
            group_id=self.settings.consumer_group_id,
            offsets=offsets,
            apply_batch=self.apply_batch,
            lag_gauge=metrics.CONSUMER_LAG,
            max_batch_records=self.settings.batch_max_records,
            poll_timeout_ms=self.settings.poll_timeout_ms,
            group_instance_id=self.settings.scorer_instance_id,
            on_batch_committed=lambda _records, seconds: metrics.BATCH_DURATION.observe(seconds),
            prepare_records=self.prepare_records,
            plan_ahead=self.plan_ahead if self.plans_ahead else None,
        )
        await self.consumer.start()
        self._tasks = [
            asyncio.create_task(self._every(self.settings.clock_interval_seconds, self.run_clock_once), name="clock"),
            asyncio.create_task(self._publisher_loop(), name="publisher"),
            asyncio.create_task(self._every(self.settings.gauges_interval_seconds, self.refresh_gauges), name="gauges"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        self._wake_publisher.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def _every(self, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        while not self._stopping.is_set():
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job failed; retrying next round", extra={"job": job.__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    async def _publisher_loop(self) -> None:
        while not self._stopping.is_set():
            published = 0
            try:
                published = await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing scores failed; the outbox keeps them for the next round")
            if published < self.settings.publish_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_publisher.wait(), self.settings.publish_interval_seconds)
                self._wake_publisher.clear()
            await self._hold_while_behind()

    async def _hold_while_behind(self) -> None:
        """While the consumer replays a backlog, publish one round per ``BEHIND_PUBLISH_PERIOD_SECONDS``.

        Snapshots published while behind say ``caught_up: false`` and are published again
        once caught up, and the outbox keeps one mark per seller-category however often it
        changes, so publishing them at full speed only took CPU from the consumer (a fifth
        of the process during a backlog). Checked every publish interval, so publication
        returns to full speed as soon as the consumer has caught up.
        """
        deadline = time.monotonic() + BEHIND_PUBLISH_PERIOD_SECONDS
        while not self._stopping.is_set() and not self.caught_up() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.publish_interval_seconds)

    def caught_up(self) -> bool:
        """Whether this instance's consumer lag is known and at most the setting.

        Until the first fetch of a partition its high watermark is unknown and its lag would
        read 0; snapshots published then (from outbox marks left before a restart) must not
        claim to be caught up, or the notifier would alert on numbers still being replayed.
        """
        return self.consumer is not None and self.consumer.caught_up(self.settings.caught_up_max_lag)

    # -- consuming -------------------------------------------------------------------

    async def prepare_records(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Decode coming records (and build their rows) while a batch waits for PostgreSQL.

        In slices with a yield between them, so that the batch's statements go on as soon
        as their answers arrive. Bounded: at most ``PREPARED_BATCHES`` batches' worth is
        kept (records prepared but never applied here, e.g. after a revocation, are dropped
        with the rest when it overflows).
        """
        prepared = self._prepared
        if len(prepared) > PREPARED_BATCHES * self.settings.batch_max_records:
            prepared.clear()
        for start in range(0, len(records), PREPARE_SLICE):
            for record in records[start : start + PREPARE_SLICE]:
                key = (record.topic, record.partition, record.offset)
                if key not in prepared:
                    prepared[key] = prepare_record(record)
            await asyncio.sleep(0)

    async def plan_ahead(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], in_flight: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Read and evaluate the next batch while the consumer writes ``in_flight``.

        The plan reads committed rows in a snapshot of its own, so it must not depend on
        what ``in_flight`` writes: records of parcels that ``in_flight`` has records of too
        are left out of it (planned in the transaction, after the plan is written). The plan
        is used (``apply_batch``) only if the batch written meanwhile touched none of the
        parcels it read, no other batch came between, and every package it writes still has
        the version it read (version-checked upsert) and every scan and cancellation is
        still new; otherwise the whole batch is planned in its own transaction.
        """
        assert self.consumer is not None
        committed = self.consumer.batches_applied
        # Usually planned ahead itself, its parcels known then (its records decoded and used).
        before = self._ahead.get(committed - 1)
        if before is not None and same_records(before.records, in_flight):
            numbers, orders = before.numbers, before.orders
        else:
            numbers, orders = parcels_of(self._message_of(record) for record in in_flight)
        today, now = self.today(), self.now()
        await self.prepare_records(records)
        messages = [self._message_of(record) for record in records]
        independent: list[ConsumerRecord[bytes, bytes]] = []
        rest: list[ConsumerRecord[bytes, bytes]] = []
        for record, message in zip(records, messages, strict=True):
            shared = message is not None and touches_parcels(message, numbers, orders)
            (rest if shared else independent).append(record)
        own_numbers, own_orders = parcels_of(messages)
        batch = decode_records(independent, self._prepared)
        async with self.engine.connect() as reader:
            snapshot = await reader.execution_options(isolation_level="REPEATABLE READ")
            async with snapshot.begin():
                plan = await plan_records(snapshot, self.evaluator, batch, today, now, pause=_yield)
        self._ahead[committed] = AheadPlan(list(records), rest, today, plan, own_numbers, own_orders)

    def _message_of(self, record: ConsumerRecord[bytes, bytes]) -> TrackingEvent | ShipmentMessage | None:
        """The record's message, decoded ahead if it was (``prepare_records``)."""
        ready = self._prepared.get((record.topic, record.partition, record.offset))
        if ready is None or ready.value != record.value:
            ready = prepare_record(record)
        return ready.message

    def _planned(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> AheadPlan | None:
        """The plan made ahead for exactly ``records``, if it can still be used: it began
        while the batch before was written, and that batch touched none of its parcels."""
        assert self.consumer is not None
        # Planned while the last committed batch was written; older ones are of no use now.
        since = self.consumer.batches_applied - 1
        ahead = self._ahead.pop(since, None)
        for committed in [key for key in self._ahead if key < since]:
            del self._ahead[committed]
        if ahead is None:
            return None
        numbers, orders = self._last_written
        if (
            not same_records(ahead.records, records)
            or ahead.today != self.today()
            or not numbers.isdisjoint(ahead.plan.tracking_numbers)
            or not orders.isdisjoint(ahead.plan.order_keys)
        ):
            metrics.BATCHES_PLANNED_AHEAD.labels("stale").inc()
            return None
        return ahead

    async def apply_batch(self, connection: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        started = time.perf_counter()
        plans: list[BatchPlan] = []
        rest: Sequence[ConsumerRecord[bytes, bytes]] = records
        ahead = self._planned(records)
        if ahead is not None:
            try:
                async with connection.begin_nested():  # a conflict undoes only the plan's writes
                    await write_plan(connection, ahead.plan)
                metrics.BATCHES_PLANNED_AHEAD.labels("used").inc()
                plans.append(ahead.plan)
                rest = ahead.rest
            except (StalePlan, ConcurrentUpdate):
                metrics.BATCHES_PLANNED_AHEAD.labels("conflict").inc()
        if rest:
            # After the plan's writes, as a batch of its own would be: the result does not
            # depend on how records are split into batches.
            batch = decode_records(rest, self._prepared)
            plans.append(await plan_records(connection, self.evaluator, batch, self.today(), self.now()))
            await write_plan(connection, plans[-1])
        numbers: set[str] = set()
        orders: set[tuple[str, str]] = set()
        for plan in plans:
            report_applied(plan)
            written_numbers, written_orders = plan.touches()
            numbers |= written_numbers
            orders |= written_orders
        self._last_written = (numbers, orders)
        elapsed = time.perf_counter() - started
        metrics.BATCH_SIZE.observe(len(records))
        metrics.DB_TRANSACTION.observe(elapsed)

    # -- clock -----------------------------------------------------------------------

    def now(self) -> datetime:
        """Naive UTC now; noon of ``today()`` when a test or a tool pins another day, or what
        the ``now`` given to the service says (the evaluation pins the moment)."""
        if self._now is not None:
            return self._now()
        moment = datetime.now(UTC).replace(tzinfo=None)
        today = self.today()
        return moment if moment.date() == today else datetime.combine(today, NOON)

    def model_due(self) -> bool:
        """Whether the forecast model is older than ``VTR_MODEL_REFRESH_SECONDS`` (or was never built)."""
        computed = self.evaluator.model.state.computed_at
        return computed is None or (self.now() - computed).total_seconds() >= self.settings.model_refresh_seconds

    def _export_carrier_health(self) -> None:
        model = self.evaluator.model
        metrics.CARRIER_SILENT_HOURS.clear()
        metrics.CARRIER_SCAN_RATE.clear()
        for health in model.state.health.values():
            metrics.CARRIER_SILENT_HOURS.labels(health.carrier, health.origin).set(round(health.silent_hours, 2))
            metrics.CARRIER_SCAN_RATE.labels(health.carrier, health.origin).set(round(health.usual_rate, 4))
            metrics.CARRIER_SILENT.labels(health.carrier, health.origin).set(int(health.silent(model.settings)))

    async def run_clock_once(self, refresh: bool | None = None) -> tuple[int, bool]:
        """Refresh the model when due (``refresh`` forces it either way), recompute pending
        packages whose review is due, expire pending packages whose promised date passed,
        rebuild the projections with those fresh probabilities, and mark the window slide
        once a day."""
        today = self.today()
        refreshing = self.model_due() if refresh is None else refresh
        if refreshing:
            started = time.perf_counter()
            async with self.engine.begin() as connection:
                await refresh_model(connection, self.evaluator, self.now())
            metrics.MODEL_REFRESH_SECONDS.observe(time.perf_counter() - started)
            self._export_carrier_health()
        reviewed = await self._run_clock_step(review_due, today)
        expired = await self._run_clock_step(expire_pending, today)
        if refreshing:
            async with self.engine.begin() as connection:
                await refresh_projections(connection, self.evaluator.policy.forecast, today, self.now())
        metrics.REVIEWED_PACKAGES.inc(reviewed)
        async with self.engine.begin() as connection:
            slid = await mark_window_slide(connection, today, self.settings.window_lag_days, FORECAST_DAYS)
            if slid:
                oldest_needed = window(today, self.settings.window_lag_days).first
                await prune_counters(connection, oldest_needed - timedelta(days=self.settings.counters_retention_days))
        metrics.EXPIRED_PACKAGES.inc(expired)
        metrics.CLOCK_RUNS.labels("ok").inc()
        if expired or reviewed or slid:
            self._wake_publisher.set()
        return expired, slid

    async def _run_clock_step(self, step: ClockStep, today: date) -> int:
        """Run ``step`` in batches of its own transaction until it has nothing left."""
        total = 0
        while True:
            try:
                async with self.engine.begin() as connection:
                    written = await step(connection, self.evaluator, today, self.settings.clock_batch_size, self.now())
            except ConcurrentUpdate:  # the consumer changed one of the rows; the next run retries
                metrics.CLOCK_RUNS.labels("conflict").inc()
                return total
            total += written
            if written < self.settings.clock_batch_size:
                return total

    async def refresh_gauges(self) -> None:
        """Whole-table aggregates for the dashboards; run rarely (they scan the counters)."""
        current = window(self.today(), self.settings.window_lag_days)
        async with self.engine.connect() as connection:
            totals = (
                await connection.execute(
                    select(
                        func.coalesce(func.sum(daily_counts.c.valid), 0),
                        func.coalesce(func.sum(daily_counts.c.invalid), 0),
                        func.coalesce(func.sum(daily_counts.c.pending), 0),
                    ).where(daily_counts.c.promised_date.between(current.first, current.last))
                )
            ).one()
            reasons = await connection.execute(
                select(daily_reasons.c.state, daily_reasons.c.reason, func.sum(daily_reasons.c.count))
                .where(
                    daily_reasons.c.promised_date.between(current.first, self.today() + timedelta(days=FORECAST_DAYS))
                )
                .group_by(daily_reasons.c.state, daily_reasons.c.reason)
            )
            levels = await connection.execute(
                select(score_levels.c.level, score_levels.c.marketplace, func.count()).group_by(
                    score_levels.c.level, score_levels.c.marketplace
                )
            )
            backlog = await outbox_size(connection)
        metrics.PACKAGES.labels("valid").set(int(totals[0]))
        # Pending packages in the window have passed their promised date: they count as invalid.
        metrics.PACKAGES.labels("invalid").set(int(totals[1]) + int(totals[2]))
        metrics.PACKAGES_BY_REASON.clear()
        for state, reason, count in reasons:
            if count:
                metrics.PACKAGES_BY_REASON.labels(state, reason).set(int(count))
        metrics.SELLER_CATEGORIES.clear()
        for level, marketplace, count in levels:
            metrics.SELLER_CATEGORIES.labels(level, marketplace).set(count)
        metrics.OUTBOX_BACKLOG.set(backlog)

    # -- publication -----------------------------------------------------------------

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
            today = self.today()
            scopes_by_seller: dict[str, set[tuple[str, str]]] = defaultdict(set)
            for seller_id, marketplace, category, _ in marks:
                scopes_by_seller[seller_id].add((marketplace, category))
            snapshots: list[ScoreSnapshot] = []
            # Read before the scores, so each answer is cached under versions no newer than its numbers.
            tokens = await tokens_by_seller(connection, list(scopes_by_seller)) if self.reads.caching else {}
            for seller_id, scopes in scopes_by_seller.items():
                found = await self.scores(connection, seller_id, today)
                if seller_id in tokens:
                    self.reads.put(seller_id, today, tokens[seller_id], encode_answer(seller_id, today, found))
                scores = {(c.marketplace, c.category): c for c in found}
                for scope in sorted(scopes):
                    current = scores.get(scope) or self._empty_score(*scope, as_of=today)
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
            statement = dialect_insert(connection, score_levels)
            statement = statement.on_conflict_do_update(
                index_elements=list(score_levels.primary_key.columns), set_={"level": statement.excluded.level}
            )
            await connection.execute(
                statement,
                sorted(
                    (
                        {
                            "seller_id": s.seller_id,
                            "marketplace": s.marketplace,
                            "category": s.category,
                            "level": s.level,
                        }
                        for s in snapshots
                    ),
                    key=lambda row: (row["seller_id"], row["marketplace"], row["category"]),
                ),
            )
        return len(marks)

    def _empty_score(self, marketplace: str, category: str, as_of: date) -> CategoryScore:
        return self._category(marketplace, category, ScopeCounts({}, {}), as_of)

    # -- reads -----------------------------------------------------------------------

    def _category(self, marketplace: str, category: str, counts: ScopeCounts, as_of: date) -> CategoryScore:
        result = score(
            counts.days,
            as_of,
            lag_days=self.settings.window_lag_days,
            floor=self.floor,
            reasons=counts.reasons,
            pending_reasons=counts.pending_reasons,
            correlation=self.settings.forecast_correlation,
        )
        return CategoryScore(marketplace, category, result, level_of(result, self.thresholds), counts.carrier_health)

    async def scores(
        self, connection: AsyncConnection, seller_id: str, as_of: date, scope: tuple[str, str] | None = None
    ) -> list[CategoryScore]:
        """Every category of a seller with a package in the window or entering it within 14 days
        (only the ``(marketplace, category)`` of ``scope`` when given)."""
        lag = self.settings.window_lag_days
        span = counted_range(as_of, lag)
        current = window(as_of, lag)
        if as_of >= self.today():
            found = await read_counts(connection, seller_id, span.first, span.last, current.first, current.last, scope)
        else:
            found = await recompute_counts(
                connection,
                self.evaluator,
                seller_id,
                as_of,
                span.first,
                span.last,
                current.first,
                current.last,
                scope,
            )
        await self._attach_carrier_health(connection, seller_id, as_of, found)
        return [
            self._category(marketplace, category, counts, as_of)
            for (marketplace, category), counts in sorted(found.items())
        ]

    async def _attach_carrier_health(
        self, connection: AsyncConnection, seller_id: str, as_of: date, found: dict[tuple[str, str], ScopeCounts]
    ) -> None:
        """Name the silent carriers behind a category's pending packages (one query, and only
        while some carrier is silent)."""
        model = self.evaluator.model
        silent = {key: health for key, health in model.state.health.items() if health.silent(model.settings)}
        if not silent:
            return
        c = packages.c
        rows = await connection.execute(
            select(c.marketplace, c.category, c.carrier, c.ship_from_country, func.count())
            .where(
                c.seller_id == seller_id,
                c.state == PackageState.PENDING.value,
                c.reason == Reason.CARRIER_SILENT.value,
                c.promised_date >= as_of,
            )
            .group_by(c.marketplace, c.category, c.carrier, c.ship_from_country)
        )
        notes: dict[tuple[str, str], list[CarrierHealthNote]] = defaultdict(list)
        for marketplace, category, carrier, origin, count in rows:
            health = silent.get((carrier, origin))
            if health is None:
                continue
            notes[(marketplace, category)].append(
                CarrierHealthNote(
                    carrier=carrier,
                    origin=origin,
                    silent_hours=round(health.silent_hours, 1),
                    received_scans=0,
                    expected_scans=round(health.expected_scans, 1),
                    affected_packages=int(count),
                )
            )
        for scope, scope_notes in notes.items():
            if scope in found:
                found[scope].carrier_health = tuple(sorted(scope_notes, key=lambda note: note.carrier))

    async def seller_exists(self, connection: AsyncConnection, seller_id: str) -> bool:
        return await seller_exists(connection, seller_id)

    async def shipments(
        self,
        connection: AsyncConnection,
        seller_id: str,
        *,
        marketplace: str | None,
        category: str | None,
        state: str | None,
        limit: int,
        after_id: int,
    ) -> PackagePage:
        today = self.today()
        current = window(today, self.settings.window_lag_days)
        columns = [packages.c[name] for name in PACKAGE_COLUMNS]
        c = packages.c
        conditions: list[Any] = [
            c.seller_id == seller_id,
            c.promised_date >= current.first,
            c.id > after_id,
            c.state != PackageState.CANCELLED.value,
        ]
        if marketplace:
            conditions.append(c.marketplace == marketplace)
        if category:
            conditions.append(c.category == category)
        overdue = and_(c.state == PackageState.PENDING.value, c.promised_date < today)
        upcoming = and_(c.state == PackageState.PENDING.value, c.promised_date >= today)
        if state == "valid":
            conditions.append(c.state == PackageState.VALID.value)
        elif state == "invalid":
            conditions.append(or_(c.state == PackageState.INVALID.value, overdue))
        elif state == "pending":
            conditions.append(upcoming)
        elif state == "at_risk":
            conditions.append(and_(upcoming, c.probability_micro < round(self.settings.at_risk_probability * MICRO)))
        rows = [
            package_from_row(row)
            for row in await connection.execute(select(*columns).where(*conditions).order_by(c.id).limit(limit + 1))
        ]
        page, more = rows[:limit], len(rows) > limit
        return PackagePage(
            seller_id=seller_id,
            packages=tuple(await self.views(connection, page, today)),
            next_cursor=encode_cursor(page[-1].id) if more and page and page[-1].id is not None else None,
        )

    async def views(self, connection: AsyncConnection, rows: Sequence[PackageRow], today: date) -> list[PackageView]:
        """What the API and the console show of these packages: their scans summed up and
        the last-mile carrier when a source named one."""
        tracking_numbers = {row.tracking_number for row in rows}
        found_scans = await load_scans(connection, tracking_numbers)
        last_miles = await load_last_miles(connection, tracking_numbers)
        return [
            self._view(
                row,
                summarise_scans(found_scans.get(row.tracking_number, ())),
                today,
                last_miles.get(row.tracking_number, NO_LAST_MILE),
            )
            for row in rows
        ]

    def _view(
        self, row: PackageRow, scans: ScanSummary, today: date, last_mile: LastMile = NO_LAST_MILE
    ) -> PackageView:
        state = PackageState(row.state)
        reason = Reason(row.reason) if row.reason else None
        probability = row.probability_micro / MICRO
        if state is PackageState.PENDING and row.promised_date < today:
            # The clock job has not run since the promised date passed; report what it will write.
            state, probability = PackageState.INVALID, 0.0
            reason = invalid_reason_for(reason) if reason else None
        return PackageView(
            order_id=row.order_id,
            tracking_number=row.tracking_number,
            marketplace=row.marketplace,
            category=row.category,
            carrier_name=row.carrier_name,
            carrier=row.carrier,
            service=row.service,
            order_value=Money(row.order_amount, row.order_currency),
            confirmed_at=row.confirmed_at.replace(tzinfo=UTC),
            promised_delivery_date=row.promised_date,
            state=state,
            reason=reason,
            required_tracking=TrackingLevel(row.required_tracking),
            physical_scans=scans.physical_scans,
            last_scan_at=aware(scans.last_scan_at),
            probability_valid=probability,
            action=advice_for(reason),
            full_tracking_threshold=self._full_tracking_threshold(row.marketplace),
            last_mile_carrier=last_mile.carrier,
            last_mile_tracking_number=last_mile.tracking_number,
        )

    def _full_tracking_threshold(self, marketplace: str) -> Money:
        threshold = self.evaluator.policy.threshold(marketplace)
        return Money(f"{threshold.amount.quantize(CENT).normalize():f}", threshold.currency)
