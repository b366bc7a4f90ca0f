"""When a batch fails: count the failures, and after ``BATCH_ATTEMPTS`` apply the batch
one partition, then one record at a time, parking a record that still fails on the
dead-letter topic so that one bad record cannot block the others. Nothing is parked for
a transient reason (a database restarting, a connection cut): that is retried as it is."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import Counter

from shared.consumer.buffer import Batch, Record
from shared.consumer.context import ConsumerContext
from shared.consumer.offsets import Fenced
from shared.db import is_transient
from shared.kafka import ensure_topics, make_producer
from shared.schemas import DEADLETTER_CODEC, DeadLetter
from shared.topics import DEADLETTER, deadletter_spec

log = logging.getLogger(__name__)

#: A batch that fails this many times in a row (not for a transient reason) is applied one
#: partition, then one record, at a time, so that one bad record cannot block the others.
BATCH_ATTEMPTS = 3
#: A record that fails this many times on its own is parked: dead-lettered, counted, logged, skipped.
RECORD_ATTEMPTS = 3

PARKED_RECORDS = Counter(
    "vtr_consumer_parked_records_total",
    "Records that failed on their own after bounded retries and were parked on vtr.deadletter.v1.",
    ["group", "topic"],
)

#: Commits records in one transaction (``commit.Checkpoint.commit``); ``apply=False``
#: stores the offsets only.
Commit = Callable[..., Awaitable[None]]


class Failures:
    def __init__(self, context: ConsumerContext, commit: Commit) -> None:
        self._context = context
        self._commit = commit
        #: Batches failed in a row for a reason that may lie in the records (see BATCH_ATTEMPTS).
        self._failed_batches = 0
        #: Started on the first parked record (see ``_deadletter_producer``).
        self._deadletters: AIOKafkaProducer | None = None

    def open_series(self, topics: Sequence[str]) -> None:
        """The parked-records series exist (at 0) before anything is parked."""
        for topic in topics:
            PARKED_RECORDS.labels(self._context.group_id, topic)

    def succeeded(self) -> None:
        self._failed_batches = 0

    async def recover(self, error: Exception, owned: Batch) -> bool:
        """After ``owned`` failed and was rolled back: True if it has been committed since
        (isolated, bad records parked), else False with its partitions rewound, to be
        fetched again after the retry delay. Raises ``Fenced`` if a partition was taken."""
        context = self._context
        transient = is_transient(error)
        if transient:
            # Expected now and then (the database restarting, a race with the clock job that
            # the retry settles): a line an SRE can read, not a traceback at ERROR.
            log.warning(
                "batch rolled back on a transient failure; retrying",
                extra={"group": context.group_id, "problem": f"{type(error).__name__}: {error}"[:300]},
            )
        else:
            log.error("batch failed and was rolled back; retrying", exc_info=error, extra={"group": context.group_id})
        # Counted across calls: after a rewind the next fetch may come back empty.
        self._failed_batches = 0 if transient else self._failed_batches + 1
        if self._failed_batches >= BATCH_ATTEMPTS:
            # A record that can never be applied must not stop its partition, nor the
            # others: one partition, then one record at a time, parking what still fails.
            try:
                await self._apply_isolating(owned)
                self._failed_batches = 0
                return True
            except asyncio.CancelledError:
                raise
            except Fenced:  # another instance took a partition meanwhile
                raise
            except Exception:
                log.exception("isolating the bad record failed; retrying", extra={"group": context.group_id})
        # Nothing (more) was committed: rewind so the same records come again, in order.
        for tp in owned:
            await context.rewind(tp)
        return False

    async def stop(self) -> None:
        if self._deadletters is not None:
            await self._deadletters.stop()
            self._deadletters = None

    async def _apply_isolating(self, owned: Batch) -> None:
        """Apply one partition at a time, and a failing partition one record at a time;
        a record that still fails after RECORD_ATTEMPTS tries is parked so the rest of its
        partition, and every other partition, go on. Transient failures and fences
        propagate (the caller retries; nothing is parked)."""
        for tp, records in sorted(owned.items()):
            try:
                await self._commit({tp: records})
                continue
            except Fenced:
                raise
            except Exception as error:
                if is_transient(error):
                    raise
            for record in records:
                if record.offset < self._context.partitions.position(tp):
                    continue
                failure = await self._apply_alone(tp, record)
                if failure is not None:
                    await self._park(tp, record, failure)

    async def _apply_alone(self, tp: TopicPartition, record: Record) -> Exception | None:
        """Up to RECORD_ATTEMPTS tries at one record; the last error if none succeeded."""
        last_error: Exception | None = None
        for _ in range(RECORD_ATTEMPTS):
            try:
                await self._commit({tp: [record]})
                return None
            except Fenced:
                raise
            except Exception as error:
                if is_transient(error):
                    raise
                last_error = error
        return last_error

    async def _deadletter_producer(self) -> AIOKafkaProducer:
        """One producer for the instance's dead letters, started (and the topic made sure of,
        sized like the ingest's) on the first parked record."""
        if self._deadletters is None:
            await ensure_topics(self._context.settings, [deadletter_spec()])
            producer = make_producer(self._context.settings)
            await producer.start()
            self._deadletters = producer
        return self._deadletters

    async def _park(self, tp: TopicPartition, record: Record, error: Exception) -> None:
        """Dead-letter one record (raw bytes, for replay after a fix), then move past it.
        The dead letter is acknowledged before the offset moves: never skipped silently."""
        group_id = self._context.group_id
        reason = f"{group_id} could not apply {tp.topic}:{tp.partition}@{record.offset}: {type(error).__name__}"
        letter = DeadLetter(
            origin=group_id,
            reason=f"{reason}: {str(error)[:500]}",
            raw_base64=base64.b64encode(record.value or b"").decode("ascii"),
            content_type="application/octet-stream",
            received_at=datetime.now(UTC),
            headers={"topic": tp.topic, "partition": str(tp.partition), "offset": str(record.offset)},
        )
        producer = await self._deadletter_producer()
        await producer.send_and_wait(DEADLETTER, DEADLETTER_CODEC.encode(letter), key=group_id.encode())
        await self._commit({tp: [record]}, apply=False)
        PARKED_RECORDS.labels(group_id, tp.topic).inc()
        log.error(
            "record parked on the dead-letter topic after repeated failures",
            extra={
                "group": group_id,
                "partition": f"{tp.topic}:{tp.partition}",
                "offset": record.offset,
                "error": type(error).__name__,
            },
        )
