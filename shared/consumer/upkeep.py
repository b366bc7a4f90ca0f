"""Partition upkeep, run between batches (never while a fetched batch is in hand, since
each of these may seek): claiming back partitions given up after a fence, re-fetching
stalled partitions, and stopping partitions whose stored offset lies outside the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import TopicPartition
from prometheus_client import Gauge

from shared.consumer.context import ConsumerContext
from shared.consumer.offsets import NO_OFFSET

log = logging.getLogger(__name__)

#: A partition behind its high watermark whose position has not moved for this long is re-fetched.
STALL_SECONDS = 5.0

#: How often owned partitions' stored offsets are compared with the broker's log range.
RANGE_CHECK_SECONDS = 30.0

#: With a batch cut ahead in hand the upkeep waits; at least this often no batch is cut
#: ahead, so that it runs.
UPKEEP_SECONDS = 5.0

OFFSET_OUT_OF_RANGE = Gauge(
    "vtr_consumer_offset_out_of_range",
    "1 while a partition is stopped because its stored offset is beyond the log end or below its start.",
    ["group", "topic", "partition"],
)


def range_series_in_range(group_id: str, tp: TopicPartition) -> None:
    """A series per owned partition, 0 while its offset is in range."""
    OFFSET_OUT_OF_RANGE.labels(group_id, tp.topic, str(tp.partition)).set(0)


def remove_range_series(group_id: str, tp: TopicPartition) -> None:
    with contextlib.suppress(KeyError):
        OFFSET_OUT_OF_RANGE.remove(group_id, tp.topic, str(tp.partition))


class Upkeep:
    def __init__(self, context: ConsumerContext, reclaim_after_seconds: float) -> None:
        self._context = context
        #: See ``reclaim_abandoned``.
        self.reclaim_after_seconds = reclaim_after_seconds
        self._range_checked_at = 0.0
        #: The stall watchdog's own record, per owned partition: (position, monotonic time
        #: it last moved).
        self._progress: dict[TopicPartition, tuple[int, float]] = {}

    async def run(self) -> None:
        await self.reclaim_abandoned()
        await self.restart_stalled_fetches()
        if time.monotonic() - self._range_checked_at > RANGE_CHECK_SECONDS:
            await self.check_offset_ranges()

    def check_ranges_soon(self) -> None:
        """New partitions: check their offsets before fetching them."""
        self._range_checked_at = 0.0

    async def reclaim_abandoned(self) -> None:
        """Claim again a partition given up after a fence that the group still lists as ours.

        A fence means another instance claimed the partition after this one. Normally the
        group tells this instance within a heartbeat that the partition is gone (on Apache
        Kafka the other instance cannot even be assigned it before this one has rejoined).
        But if no rebalance reaches this instance for ``reclaim_after_seconds`` (default
        twice the session timeout), nobody may be consuming the partition at all (a claim by
        an instance that has since lost the partition, or a broker that handed it to two
        members and then settled on this one without telling it again): claim it again.
        Fencing keeps this safe if the other instance does own it (at worst the two take
        turns until the group settles).
        """
        context = self._context
        due_after = self.reclaim_after_seconds
        now = time.monotonic()
        if all(now - fenced_at < due_after for fenced_at in context.partitions.given_up().values()):
            return
        async with context.batch_lock:
            assignment = context.client.assignment()
            given_up = context.partitions.given_up()
            for tp in given_up:
                if tp not in assignment:
                    context.partitions.drop(tp)
            due = sorted(tp for tp, fenced_at in given_up.items() if tp in assignment and now - fenced_at >= due_after)
            if not due:
                return
            await context.claim(due)
            context.client.resume(*due)
            context.counters.partitions_reclaimed += len(due)
            log.warning(
                "partitions given up after a fence are still assigned to this instance; claimed them again",
                extra={"group": context.group_id, "partitions": [f"{tp.topic}:{tp.partition}" for tp in due]},
            )

    async def restart_stalled_fetches(self) -> None:
        """Re-seek a partition that is behind but has not moved for ``STALL_SECONDS``.

        Seen with the local broker after rebalances: an owned, unpaused partition whose
        fetches stopped returning records although its high watermark was ahead. Seeking
        to the stored position restarts its fetch; on a healthy partition this never fires.
        """
        context = self._context
        now = time.monotonic()
        lags = context.lags()
        for tp, lag in lags.items():
            if context.partitions.state(tp).out_of_range:
                continue
            position = context.partitions.position(tp)
            last_position, since = self._progress.get(tp, (position, now))
            if lag == 0 or position != last_position:
                self._progress[tp] = (position, now)
            elif now - since > STALL_SECONDS:
                log.warning(
                    "partition stalled; fetching it again from its stored offset",
                    extra={"partition": f"{tp.topic}:{tp.partition}", "lag": lag},
                )
                context.client.resume(tp)
                await context.rewind(tp)
                self._progress[tp] = (position, now)
        for tp in set(self._progress) - set(lags):
            del self._progress[tp]

    async def check_offset_ranges(self) -> None:
        """Compare each owned partition's stored offset with the broker's log (after every
        assignment, then every RANGE_CHECK_SECONDS; the client's own reset to the earliest
        offset is harmless meanwhile: records below the stored offset are dropped, never
        applied, and the check stops the partition before it is read further): beyond its
        end (the broker lost records: restarted empty, unclean leader election, topic
        re-created) or below its start (retention passed a stopped consumer), the
        partition is stopped, counted in ``vtr_consumer_offset_out_of_range`` and logged
        with the command that moves the offset deliberately. Never skipped silently.
        A stopped partition whose stored offset was moved (the ``offsets reset`` command)
        back into range resumes from there."""
        context = self._context
        partitions = context.partitions
        self._range_checked_at = time.monotonic()
        checked = [tp for tp in partitions.owned() if partitions.position(tp) != NO_OFFSET]
        checked += [tp for tp in partitions.out_of_range() if tp not in checked]
        if not checked:
            return
        try:
            async with context.batch_lock:
                await self._reload_stopped_offsets()
                starts = await context.client.beginning_offsets(checked)
                for tp in checked:
                    if partitions.owns(tp):
                        self._judge(tp, starts.get(tp))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the broker is away: the next check tries again
            log.warning("offset range check failed", extra={"group": context.group_id, "error": type(error).__name__})

    def _judge(self, tp: TopicPartition, start: int | None) -> None:
        """Stop ``tp`` if its stored offset lies outside [start, end]; resume it if it was
        stopped and is back inside."""
        context = self._context
        stored = context.partitions.position(tp)
        # The log end as the last fetch response told it (ListOffsets is not trusted for
        # the end: the local broker answers a batch's base offset). Until this partition
        # was fetched once, its end is not judged.
        end = context.client.highwater(tp)
        if stored == NO_OFFSET or start is None:
            return
        if end is None:
            self._range_checked_at = time.monotonic() - RANGE_CHECK_SECONDS + 1.0
            end = stored
        if stored > end:
            self._stop_partition(tp, f"stored offset {stored} is beyond the log end {end}")
        elif stored < start:
            self._stop_partition(tp, f"stored offset {stored} is below the log start {start}")
        elif context.partitions.state(tp).out_of_range:
            self._resume_partition(tp, stored)

    async def _reload_stopped_offsets(self) -> None:
        """Stopped partitions: the operator may have moved the stored offset meanwhile."""
        context = self._context
        stopped = context.partitions.out_of_range()
        if not stopped:
            return
        stored = await context.store.stored()
        for tp in stopped:
            if tp in stored and context.partitions.owns(tp):
                context.partitions.state(tp).next_offset = stored[tp]

    def _stop_partition(self, tp: TopicPartition, reason: str) -> None:
        context = self._context
        context.client.pause(tp)
        context.buffer.drop(tp)
        state = context.partitions.state(tp)
        first = not state.out_of_range
        state.out_of_range = reason
        OFFSET_OUT_OF_RANGE.labels(context.group_id, tp.topic, str(tp.partition)).set(1)
        if first:
            service = context.settings.service_name
            log.error(
                "partition stopped: its stored offset is outside the broker's log; records may have been lost "
                "or not yet applied. Decide where to resume and move the offset deliberately",
                extra={
                    "group": context.group_id,
                    "partition": f"{tp.topic}:{tp.partition}",
                    "reason": reason,
                    "run": f"python -m services.{service} offsets reset --to earliest|latest|<ISO time> "
                    f"--partition {tp.topic}:{tp.partition}",
                },
            )

    def _resume_partition(self, tp: TopicPartition, stored: int) -> None:
        context = self._context
        context.partitions.state(tp).out_of_range = None
        range_series_in_range(context.group_id, tp)
        context.buffer.drop(tp)
        context.client.seek(tp, stored)
        context.client.resume(tp)
        log.warning(
            "partition resumed from its moved offset",
            extra={"group": context.group_id, "partition": f"{tp.topic}:{tp.partition}", "offset": stored},
        )
