"""``python -m services.ingest replay-deadletters``: re-parse parked webhook bodies with
today's parsers and produce the events they now yield.

Every webhook dead letter was authenticated on arrival (only bodies whose signature, token
or key checked out are parked), so its raw body is re-parsed without a signature: bodies
that arrived encrypted (China Post EMS, YunExpress's envelope) are decrypted again with the
configured keys. Event ids are deterministic, so replaying twice produces the same ids and
changes nothing downstream. Shipment dead letters are not replayed (the ERP resends those).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import orjson
from aiokafka.structs import TopicPartition

from services.ingest.api.webhooks import unforeseen_reason, webhook_sources
from services.ingest.carriers.common import PushError
from services.ingest.carriers.source import WebhookSource
from services.ingest.publisher import Publisher, Record
from services.ingest.settings import IngestSettings
from services.ingest.signatures import SignatureError
from shared.kafka import ensure_topics, make_consumer
from shared.schemas import DEADLETTER_CODEC, TRACKING_EVENT_CODEC, ContractError, DeadLetter, TrackingEvent
from shared.topics import DEADLETTER, TRACKING_EVENTS, deadletter_spec

#: Room for the largest dead letter (the shipments' 8 MiB bodies, base64) per fetch.
_FETCH_BYTES = 32 * 1024 * 1024
#: How many events are produced per broker round trip.
_PRODUCE_BATCH = 500


@dataclass
class OriginSummary:
    letters: int = 0
    replayed: int = 0
    events: int = 0
    failing: int = 0
    #: reason -> how many letters still fail with it
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class ReplaySummary:
    dry_run: bool
    by_origin: dict[str, OriginSummary] = field(default_factory=dict)
    #: Letters of origins that are not webhooks (shipments), left alone.
    skipped: int = 0

    def origin(self, name: str) -> OriginSummary:
        return self.by_origin.setdefault(name, OriginSummary())

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "skipped_not_webhook": self.skipped,
            "origins": {
                name: {
                    "letters": summary.letters,
                    "replayed": summary.replayed,
                    "events": summary.events,
                    "still_failing": summary.failing,
                    "reasons": dict(summary.reasons.most_common(10)),
                }
                for name, summary in sorted(self.by_origin.items())
            },
        }


def reparse(spec: WebhookSource, letter: DeadLetter) -> list[TrackingEvent]:
    """The events a parked body yields with today's guard and parser, read exactly as the
    live path reads a push (:meth:`WebhookSource.events`); raises whatever the live path
    would have parked it for (PushError, InputRejected, SignatureError when it no longer
    decrypts, or anything no rule foresaw)."""
    raw_body = base64.b64decode(letter.raw_base64)
    payload, context = spec.reopen(raw_body, letter.content_type)
    return spec.events(payload, letter.received_at, context)


async def _read_letters(settings: IngestSettings) -> list[DeadLetter]:
    """Every dead letter on the topic up to its end at the start of the replay."""
    # Idempotent: the topic exists wherever the ingest ran; this only reads its partitions.
    counts = await ensure_topics(settings, [deadletter_spec(settings.largest_body_bytes())])
    partitions = [TopicPartition(DEADLETTER, partition) for partition in range(counts[DEADLETTER])]
    consumer = make_consumer(
        settings, group_id=None, max_partition_fetch_bytes=_FETCH_BYTES, fetch_max_bytes=_FETCH_BYTES
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        # Read until every partition is past its end offset of the start and a poll comes back
        # empty: the local broker reports the end of a multi-record batch short, so records
        # beyond the reported end are read too (a letter parked meanwhile is harmless).
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        continue
                    try:
                        letters.append(DEADLETTER_CODEC.decode(record.value))
                    except ContractError:
                        continue
            if not any(batches.values()) and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                break
    finally:
        await consumer.stop()
    return letters


async def replay(
    settings: IngestSettings,
    *,
    origins: Sequence[str] = (),
    since: datetime | None = None,
    dry_run: bool = False,
) -> ReplaySummary:
    sources = webhook_sources(settings)
    summary = ReplaySummary(dry_run=dry_run)
    events: list[TrackingEvent] = []
    for letter in await _read_letters(settings):
        spec = sources.get(letter.origin)
        if spec is None:
            summary.skipped += 1
            continue
        if (origins and letter.origin not in origins) or (since is not None and letter.received_at < since):
            continue
        counts = summary.origin(letter.origin)
        counts.letters += 1
        try:
            found = reparse(spec, letter)
        except Exception as error:
            # Whatever the live path would park (a rule's refusal, or an exception no rule
            # foresaw) still fails: counted, never the end of the replay.
            known = isinstance(error, (PushError, SignatureError, ValueError))
            counts.failing += 1
            counts.reasons[(str(error) if known else unforeseen_reason(error))[:200]] += 1
            continue
        counts.replayed += 1
        counts.events += len(found)
        events += found
    if not dry_run and events:
        publisher = Publisher(settings)
        await publisher.start()
        try:
            for start in range(0, len(events), _PRODUCE_BATCH):
                await publisher.publish(
                    [
                        Record(TRACKING_EVENTS, event.tracking_number.encode(), TRACKING_EVENT_CODEC.encode(event))
                        for event in events[start : start + _PRODUCE_BATCH]
                    ]
                )
        finally:
            await publisher.stop()
    return summary


def _since(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest replay-deadletters",
        description="Re-parse parked webhook bodies (verified on arrival) with today's parsers; produce their events.",
    )
    parser.add_argument("--origin", action="append", default=[], help="only this origin (repeatable): 17track, ...")
    parser.add_argument("--since", type=_since, help="only letters received at or after this ISO 8601 time (UTC)")
    parser.add_argument("--dry-run", action="store_true", help="parse and report, produce nothing")
    args = parser.parse_args(argv)
    unknown = set(args.origin) - set(webhook_sources(IngestSettings()))
    if unknown:
        parser.error(f"not a webhook origin: {', '.join(sorted(unknown))}")
    summary = asyncio.run(replay(IngestSettings(), origins=args.origin, since=args.since, dry_run=args.dry_run))
    out.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
