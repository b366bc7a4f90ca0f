"""Consuming: the consumer's batches applied in its transaction, the records of coming
batches decoded ahead, and the next batch planned while one is written (plan ahead)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer import metrics
from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.records import PreparedRecords, decode_records, prepare_record
from services.scorer.domain.window import TodayFunction
from services.scorer.storage.packages import ConcurrentUpdate
from services.scorer.storage.plan import BatchPlan, StalePlan, plan_records, report_applied, write_plan
from shared.schemas import ShipmentConfirmed, ShipmentMessage, TrackingEvent
from shared.topics import normalise_tracking_number

#: Records decoded ahead per slice, between yields to the batch being applied (about 1 ms each).
PREPARE_SLICE = 50
#: Records decoded ahead are kept for at most this many batches' worth.
PREPARED_BATCHES = 4


@dataclass
class AheadPlan:
    """The :class:`BatchPlan` of a batch, made while the batch before it was written
    (:meth:`BatchApplier.plan_ahead`), with the records it was made for and those it left out."""

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


async def _yield() -> None:
    await asyncio.sleep(0)


class BatchApplier:
    """Applies the consumer's batches (``apply_batch``), planning each one ahead when it can."""

    def __init__(
        self,
        engine: AsyncEngine,
        evaluator: Evaluator,
        today: TodayFunction,
        now: Callable[[], datetime],
        batch_max_records: int,
        batches_applied: Callable[[], int],
    ) -> None:
        self.engine = engine
        self.evaluator = evaluator
        self.today = today
        self.now = now
        self._batch_max_records = batch_max_records
        #: How many batches the consumer has committed.
        self._batches_applied = batches_applied
        #: Records of coming batches decoded ahead (``prepare_records``).
        self._prepared: PreparedRecords = {}
        #: Batches planned while the one before was written (``plan_ahead``), by the number
        #: of batches the consumer had committed when planning began.
        self._ahead: dict[int, AheadPlan] = {}
        #: Tracking numbers and orders the last batch wrote.
        self._last_written: tuple[set[str], set[tuple[str, str]]] = (set(), set())
        #: Records applied since the start (the clock job's measure of new input).
        self.records_applied = 0
        for outcome in ("used", "stale", "conflict"):  # every series exists (at 0) from the start
            metrics.BATCHES_PLANNED_AHEAD.labels(outcome)

    async def prepare_records(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Decode coming records (and build their rows) while a batch waits for PostgreSQL.

        In slices with a yield between them, so that the batch's statements go on as soon
        as their answers arrive. Bounded: at most ``PREPARED_BATCHES`` batches' worth is
        kept (records prepared but never applied here, e.g. after a revocation, are dropped
        with the rest when it overflows).
        """
        prepared = self._prepared
        if len(prepared) > PREPARED_BATCHES * self._batch_max_records:
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
        committed = self._batches_applied()
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
        # Planned while the last committed batch was written; older ones are of no use now.
        since = self._batches_applied() - 1
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
        self.records_applied += len(records)
        elapsed = time.perf_counter() - started
        metrics.BATCH_SIZE.observe(len(records))
        metrics.DB_TRANSACTION.observe(elapsed)
