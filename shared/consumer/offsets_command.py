"""``python -m services.<scorer|notifier> offsets show|reset``: look at and deliberately
move the consumer offsets a service stores in its database (issue 14, section 5).

A partition whose stored offset lies beyond the broker's log end or below its start is
stopped by the consumer (``vtr_consumer_offset_out_of_range``); an operator decides where
it resumes and runs::

    python -m services.scorer offsets reset --to earliest --partition vtr.shipments.v1:3
    python -m services.scorer offsets reset --to latest
    python -m services.scorer offsets reset --to 2026-11-20T08:00:00Z --partition 3

``--partition`` takes ``topic:N`` or ``N`` (partition N of every topic the service
consumes: the scorer's two input topics are co-partitioned and move together); without
it every partition is moved. A partition whose stored offset is still inside the log is
only moved with ``--force`` (stop the service first then: a running instance would
overwrite the offset with its next batch). A running service picks up a moved offset of
a stopped partition within ``RANGE_CHECK_SECONDS`` (30 s), without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import Table

from shared.consumer.offsets import NO_OFFSET, OffsetsStore
from shared.db import create_engine
from shared.kafka import make_consumer
from shared.settings import ServiceSettings


@dataclass(frozen=True)
class ConsumerOffsets:
    """Where a service keeps its consumer offsets."""

    group_id: str
    topics: Sequence[str]
    table: Table


@dataclass(frozen=True)
class PartitionOffsets:
    tp: TopicPartition
    stored: int | None
    start: int
    end: int

    @property
    def in_range(self) -> bool:
        return self.stored is None or self.stored == NO_OFFSET or self.start <= self.stored <= self.end


def parse_target(text: str) -> str | datetime:
    if text in ("earliest", "latest"):
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError("--to takes earliest, latest or an ISO 8601 time with an offset") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("--to: give the time with its UTC offset, e.g. 2026-11-20T08:00:00Z")
    return moment


def select_partitions(available: Sequence[TopicPartition], wanted: Sequence[str]) -> list[TopicPartition]:
    if not wanted:
        return sorted(available)
    chosen: set[TopicPartition] = set()
    for item in wanted:
        topic, _, number = item.rpartition(":")
        if not number.isdigit():
            raise SystemExit(f"--partition {item!r}: give topic:N or N")
        matches = [tp for tp in available if tp.partition == int(number) and (not topic or tp.topic == topic)]
        if not matches:
            raise SystemExit(f"--partition {item!r}: no such partition among {sorted({tp.topic for tp in available})}")
        chosen.update(matches)
    return sorted(chosen)


async def _log_ends(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition's log end (high watermark) as a fetch response reports it: the local
    broker's ListOffsets answers the last batch's base offset + 1, not the end."""
    listed = await consumer.end_offsets(partitions)
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, listed[tp])
    deadline = asyncio.get_running_loop().time() + 5
    while any(consumer.highwater(tp) is None for tp in partitions):
        await consumer.getmany(timeout_ms=200)
        if asyncio.get_running_loop().time() > deadline:
            break
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in partitions}


async def _states(settings: ServiceSettings, target: ConsumerOffsets, wanted: Sequence[str]) -> list[PartitionOffsets]:
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # metadata for every topic
        available = [
            TopicPartition(topic, partition)
            for topic in target.topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        partitions = select_partitions(available, wanted)
        starts = await consumer.beginning_offsets(partitions)
        ends = await _log_ends(consumer, partitions)
    finally:
        await consumer.stop()
    engine = create_engine(settings.database_url)
    try:
        stored = await OffsetsStore(engine, target.table, target.group_id).stored()
    finally:
        await engine.dispose()
    return [PartitionOffsets(tp, stored.get(tp), starts[tp], ends[tp]) for tp in partitions]


async def _offsets_for(
    settings: ServiceSettings, states: list[PartitionOffsets], to: str | datetime
) -> dict[TopicPartition, int]:
    if to == "earliest":
        return {state.tp: state.start for state in states}
    if to == "latest":
        return {state.tp: state.end for state in states}
    assert isinstance(to, datetime)
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        found = await consumer.offsets_for_times({state.tp: int(to.timestamp() * 1000) for state in states})
    finally:
        await consumer.stop()
    # No record at or after the time: the log's end (the next record to arrive).
    return {state.tp: found[state.tp].offset if found.get(state.tp) else state.end for state in states}


async def _write(settings: ServiceSettings, target: ConsumerOffsets, offsets: dict[TopicPartition, int]) -> None:
    engine = create_engine(settings.database_url)
    try:
        await OffsetsStore(engine, target.table, target.group_id).move(offsets)
    finally:
        await engine.dispose()


def _print(states: list[PartitionOffsets], out: TextIO, moved: dict[TopicPartition, int] | None = None) -> None:
    header = f"{'partition':<32} {'stored':>10} {'log start':>10} {'log end':>10}  state"
    print(header + ("  -> new" if moved is not None else ""), file=out)
    for state in states:
        stored = "-" if state.stored in (None, NO_OFFSET) else str(state.stored)
        condition = "ok" if state.in_range else "OUT OF RANGE"
        line = f"{state.tp.topic + ':' + str(state.tp.partition):<32} {stored:>10} {state.start:>10} {state.end:>10}"
        line += f"  {condition}"
        if moved is not None and state.tp in moved:
            line += f"  -> {moved[state.tp]}"
        print(line, file=out)


async def run(
    settings: ServiceSettings, target: ConsumerOffsets, argv: Sequence[str], out: TextIO | None = None
) -> int:
    out = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(prog=f"python -m services.{settings.service_name} offsets")
    commands = parser.add_subparsers(dest="action", required=True)
    show = commands.add_parser("show", help="stored offsets next to the broker's log range")
    reset = commands.add_parser("reset", help="move stored offsets deliberately")
    for command in (show, reset):
        command.add_argument("--partition", action="append", default=[], help="topic:N or N (repeatable)")
    reset.add_argument("--to", required=True, type=parse_target, help="earliest, latest or an ISO 8601 time")
    reset.add_argument("--force", action="store_true", help="also move partitions whose offset is in range")
    reset.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    args = parser.parse_args(list(argv))

    states = await _states(settings, target, args.partition)
    if args.action == "show":
        _print(states, out)
        return 0 if all(state.in_range for state in states) else 1
    in_range = [state for state in states if state.in_range and state.stored not in (None, NO_OFFSET)]
    if in_range and not args.force:
        _print(states, out)
        print(
            f"refusing: {len(in_range)} partition(s) are in range and being consumed normally; choose the "
            "out-of-range ones with --partition, or stop the service and add --force",
            file=out,
        )
        return 1
    offsets = await _offsets_for(settings, states, args.to)
    _print(states, out, offsets)
    if args.dry_run:
        print("dry run: nothing changed", file=out)
        return 0
    await _write(settings, target, offsets)
    print(f"moved {len(offsets)} partition(s) of group {target.group_id}", file=out)
    return 0


def main(settings: ServiceSettings, target: ConsumerOffsets, argv: Sequence[str]) -> None:
    raise SystemExit(asyncio.run(run(settings, target, argv)))
