"""Applying a batch of input records: a plan read and evaluated from the stored rows, and
its write.

Every write path evaluates packages before and after a change with the policy and writes,
with one statement per kind of row, the changed packages (version-checked), the counter
deltas, the learning-statistics deltas and the outbox marks. Counters are sorted by key so
concurrent transactions lock rows in the same order.

The state is a function of the *set* of messages seen, not of their order: scans are
stored by event id, an order's confirmations make one package by the source rule (per
source the newest wins; Amazon's record with the ERP's category, domain/packages.py
``combine``), and a cancellation applies to confirmations not newer than itself.
Redelivered or reordered records change nothing."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer import metrics
from services.scorer.domain.evaluator import Deltas, EvaluatedPackages, Evaluator
from services.scorer.domain.packages import Cancellation, PackageRow, combine, combined_confirmations, settled
from services.scorer.domain.policy import (
    Scan,
)
from services.scorer.domain.records import (
    DecodedBatch,
    InputRecord,
    PreparedRecords,
    cancel_key,
    cancellation_row,
    decode_records,
)
from services.scorer.storage.packages import (
    load_cancellations,
    load_packages,
    load_scans,
    store_cancellations,
    store_scans,
    stored_keys,
    write_evaluated,
)
from services.scorer.storage.schema import (
    cancellations,
    scans,
)
from shared.schemas import (
    TrackingEvent,
)
from shared.topics import SHIPMENTS, TRACKING_EVENTS, normalise_tracking_number

log = logging.getLogger(__name__)


class StalePlan(RuntimeError):
    """A batch plan's scans or cancellations were stored by another writer after it read them."""


@dataclass
class BatchPlan:
    """What applying a batch writes, worked out from the stored rows it read (see
    :func:`plan_records`), and what :func:`write_plan` checks so that it is still right
    when written in a later transaction than the one that read (a plan made ahead)."""

    batch: DecodedBatch
    #: Scans and cancellations not stored yet, distinct, in key order.
    scan_rows: list[dict[str, Any]]
    cancellation_rows: list[dict[str, Any]]
    evaluated: EvaluatedPackages
    applied_confirmations: int
    #: Every tracking number and order whose stored rows the plan read.
    tracking_numbers: set[str]
    order_keys: set[tuple[str, str]]

    def touches(self) -> tuple[set[str], set[tuple[str, str]]]:
        """The tracking numbers and orders whose stored rows writing this plan changes."""
        numbers = {row["tracking_number"] for row in self.scan_rows}
        numbers.update(row["tracking_number"] for row in self.cancellation_rows)
        numbers.update(package.tracking_number for package in self.evaluated.writes)
        return numbers, {package.key for package in self.evaluated.writes}


#: Packages evaluated between two yields when a plan is made ahead (about half a millisecond
#: of CPU: the batch being written meanwhile waits for the event loop at every statement).
PLAN_SLICE = 20


async def plan_records(
    connection: AsyncConnection,
    evaluator: Evaluator,
    batch: DecodedBatch,
    today: date,
    now: datetime | None = None,
    pause: Callable[[], Awaitable[None]] | None = None,
) -> BatchPlan:
    """Read what ``batch`` depends on and evaluate it, writing nothing.

    A scan or cancellation is new when its key is not stored (as the insert's ``ON
    CONFLICT DO NOTHING`` decides); a package is re-evaluated when it gets a new scan or
    cancellation (unless settled) or a confirmation that changes it, with its stored scans and
    cancellations plus the batch's new ones. ``pause`` is awaited between slices of the
    evaluation (a plan made ahead yields to the batch being written meanwhile).
    """
    unique_scans = {row["event_id"]: row for row in batch.scan_rows}
    stored_events = await stored_keys(connection, scans.c.event_id, list(unique_scans))
    scan_rows = [unique_scans[event_id] for event_id in sorted(unique_scans) if event_id not in stored_events]
    unique_cancellations = {cancel_key(message): message for message in batch.cancellations}
    stored_cancellations = await stored_keys(connection, cancellations.c.cancel_key, list(unique_cancellations))
    cancellation_rows = [
        cancellation_row(key, message)
        for key, message in sorted(unique_cancellations.items())
        if key not in stored_cancellations
    ]
    scanned = {row["tracking_number"] for row in scan_rows}
    cancelled = {row["tracking_number"] for row in cancellation_rows}
    latest = combined_confirmations(batch.confirmation_rows)
    existing = await load_packages(connection, scanned | cancelled, latest)
    events_by_number: dict[str, list[TrackingEvent]] = defaultdict(list)
    for event in batch.events:
        events_by_number[normalise_tracking_number(event.tracking_number)].append(event)

    changes: dict[tuple[str, str], tuple[PackageRow | None, PackageRow]] = {
        key: (package, package.clone())
        for key, package in existing.items()
        if package.tracking_number in cancelled
        or (
            package.tracking_number in scanned
            and not settled(package, events_by_number.get(package.tracking_number, ()))
        )
    }
    applied_confirmations = 0
    for key, confirmed in latest.items():
        before = existing.get(key)
        fresh = combine(before, confirmed)
        if fresh is None:
            continue  # nothing newer than what is stored (a redelivery, an older confirmation)
        applied_confirmations += 1
        if before is not None:
            # Keep the evaluation fields; they are recomputed below and compared with the old ones.
            fresh.version, fresh.id = before.version, before.id
        changes[key] = (before, fresh)

    numbers = {after.tracking_number for _, after in changes.values()}
    found_scans = await load_scans(connection, numbers)
    found_cancellations = await load_cancellations(connection, numbers)
    for row in scan_rows:
        if row["tracking_number"] in numbers:
            found_scans[row["tracking_number"]].append(Scan(row["status"], row["occurred_at"]))
    for row in cancellation_rows:
        if row["tracking_number"] in numbers:
            found_cancellations[row["tracking_number"]].append(
                Cancellation(row["seller_id"], row["order_id"], row["cancelled_at"])
            )
    evaluated = EvaluatedPackages([], Deltas.empty())
    pairs = list(changes.values())
    step = PLAN_SLICE if pause is not None else max(1, len(pairs))
    for start in range(0, len(pairs), step):
        if start and pause is not None:
            await pause()
        evaluated.add(evaluator, pairs[start : start + step], found_scans, found_cancellations, today, now)
    read_numbers = numbers | scanned | cancelled | set(events_by_number)
    read_numbers.update(row.tracking_number for row in batch.confirmation_rows)
    return BatchPlan(
        batch=batch,
        scan_rows=scan_rows,
        cancellation_rows=cancellation_rows,
        evaluated=evaluated,
        applied_confirmations=applied_confirmations,
        tracking_numbers=read_numbers,
        order_keys=set(latest) | set(existing),
    )


async def write_plan(connection: AsyncConnection, plan: BatchPlan) -> None:
    """Write a batch plan.

    Raises :class:`StalePlan` when some of its scans or cancellations were stored since it
    read them, and :class:`ConcurrentUpdate` when one of its packages was written: either
    way the caller rolls back what this wrote and plans again.
    """
    stored = await store_scans(connection, plan.scan_rows)
    if stored != len(plan.scan_rows):
        raise StalePlan(f"{len(plan.scan_rows) - stored} scan(s) stored since the plan read them")
    stored = await store_cancellations(connection, plan.cancellation_rows)
    if stored != len(plan.cancellation_rows):
        raise StalePlan(f"{len(plan.cancellation_rows) - stored} cancellation(s) stored since the plan read them")
    await write_evaluated(connection, plan.evaluated)


def report_applied(plan: BatchPlan) -> None:
    """Count a written plan's records (once its writes went through) and log what was skipped."""
    batch = plan.batch
    for record, error in batch.undecodable:
        metrics.RECORDS.labels(record.topic, "invalid").inc()
        log.warning(
            "skipping undecodable record",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "error": str(error)},
        )
    metrics.RECORDS.labels(TRACKING_EVENTS, "applied").inc(len(plan.scan_rows))
    metrics.RECORDS.labels(TRACKING_EVENTS, "duplicate").inc(len(batch.events) - len(plan.scan_rows))
    applied_shipments = len(plan.cancellation_rows) + plan.applied_confirmations
    metrics.RECORDS.labels(SHIPMENTS, "applied").inc(applied_shipments)
    metrics.RECORDS.labels(SHIPMENTS, "duplicate").inc(
        len(batch.cancellations) + len(batch.confirmations) - applied_shipments
    )
    if batch.newest_received_at is not None:
        metrics.LAST_EVENT.set(batch.newest_received_at.timestamp())


async def apply_records(
    connection: AsyncConnection,
    evaluator: Evaluator,
    records: Sequence[InputRecord],
    today: date,
    now: datetime | None = None,
    prepared: PreparedRecords | None = None,
) -> None:
    """Apply one batch of shipment and tracking records (any order, any mix, redeliveries
    included) in ``connection``'s transaction; ``prepared``: records decoded ahead (see
    :func:`decode_records`)."""
    plan = await plan_records(connection, evaluator, decode_records(records, prepared), today, now)
    await write_plan(connection, plan)
    report_applied(plan)
