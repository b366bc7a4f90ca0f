"""Apply score snapshots and clock ticks to the alert states, writing the outbox.

Both entry points run inside one database transaction: :meth:`AlertProcessor.apply_batch`
inside the transactional consumer's (together with the Kafka offsets), :meth:`tick` in
its own. The state change and the outbox rows it decides commit together or not at all.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import orjson
from aiokafka import ConsumerRecord
from sqlalchemy import and_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier import db, metrics
from services.notifier.alerts import (
    AlertState,
    Clock,
    Notice,
    Timings,
    apply_snapshot,
    evaluate,
    next_check_at,
    wanted_by,
)
from services.notifier.db import alert_states, as_utc, dialect_insert, lock_alert_states, outbox, subscriptions
from shared.schemas import SCORE_CODEC, ContractError, Level, ScoreSnapshot

log = logging.getLogger(__name__)

AlertKey = tuple[str, str, str]
_STATE_CODEC_DECODER = msgspec.json.Decoder(AlertState)
_ENCODER = msgspec.json.Encoder()

CHANNEL_EMAIL = "email"
CHANNEL_SLACK = "slack"


@dataclass(frozen=True)
class Subscription:
    seller_id: str
    emails: tuple[str, ...]
    slack_webhook_url: str | None
    language: str
    min_level: Level
    marketplaces: tuple[str, ...] | None

    def recipients(self) -> Iterable[tuple[str, str]]:
        for address in self.emails:
            yield CHANNEL_EMAIL, address
        if self.slack_webhook_url:
            yield CHANNEL_SLACK, self.slack_webhook_url

    def wants(self, marketplace: str, notice: Notice) -> bool:
        if self.marketplaces is not None and marketplace not in self.marketplaces:
            return False
        return wanted_by(self.min_level, notice)


def subscription_from_row(row: Any) -> Subscription:
    marketplaces = orjson.loads(row.marketplaces) if row.marketplaces else None
    return Subscription(
        seller_id=row.seller_id,
        emails=tuple(orjson.loads(row.emails)),
        slack_webhook_url=row.slack_webhook_url,
        language=row.language,
        min_level=Level(row.min_level),
        marketplaces=tuple(marketplaces) if marketplaces is not None else None,
    )


def dedupe_key(key: AlertKey, seq: int, channel: str, recipient: str) -> str:
    identity = "\x1f".join((*key, str(seq), channel, recipient))
    return hashlib.sha256(identity.encode()).hexdigest()


async def load_subscriptions(connection: AsyncConnection, seller_ids: Iterable[str]) -> dict[str, Subscription]:
    ids = sorted(set(seller_ids))
    if not ids:
        return {}
    rows = await connection.execute(select(subscriptions).where(subscriptions.c.seller_id.in_(ids)))
    return {row.seller_id: subscription_from_row(row) for row in rows}


async def write_outbox(
    connection: AsyncConnection,
    key: AlertKey,
    notice: Notice,
    snapshot_json: str,
    subscription: Subscription | None,
    now: datetime,
) -> int:
    """Insert the notice's rows (one per channel x recipient); returns how many were new."""
    if subscription is None or not subscription.wants(key[1], notice):
        return 0
    rows = [
        {
            "dedupe_key": dedupe_key(key, notice.seq, channel, recipient),
            "seller_id": key[0],
            "marketplace": key[1],
            "category": key[2],
            "kind": notice.kind.value,
            "previous_level": notice.previous_level.value,
            "level": notice.level.value,
            "notice_seq": notice.seq,
            "channel": channel,
            "recipient": recipient,
            "language": subscription.language,
            "snapshot": snapshot_json,
            "status": db.OUTBOX_PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for channel, recipient in subscription.recipients()
    ]
    if not rows:
        return 0
    result = await connection.execute(
        dialect_insert(connection, outbox).values(rows).on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return max(0, result.rowcount or 0)


class AlertProcessor:
    def __init__(self, timings: Timings, clock: Clock) -> None:
        self._timings = timings
        self._clock = clock

    async def apply_batch(self, connection: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        snapshots: dict[AlertKey, list[ScoreSnapshot]] = defaultdict(list)
        for record in records:
            try:
                snapshot = SCORE_CODEC.decode(record.value or b"")
            except ContractError as error:
                # A malformed record can never become valid: skip it (counted) rather than block the partition.
                metrics.SNAPSHOTS.labels("invalid").inc()
                log.warning(
                    "invalid score snapshot skipped", extra={"error": str(error)[:300], "offset": record.offset}
                )
                continue
            snapshots[(snapshot.seller_id, snapshot.marketplace, snapshot.category)].append(snapshot)
        if not snapshots:
            return
        now = self._clock()
        await lock_alert_states(connection, now)
        keys = sorted(snapshots)
        existing = await self._load_states(connection, keys)
        subs = await load_subscriptions(connection, (key[0] for key in keys))
        outcomes: dict[str, int] = defaultdict(int)
        for key in keys:
            found = existing.get(key)
            state = found[0] if found else AlertState()
            newest_json: str | None = None
            # Within a batch, apply in computed_at order: a reordered pair still counts as history.
            for snapshot in sorted(snapshots[key], key=lambda item: item.computed_at):
                applied = apply_snapshot(
                    state, snapshot.level, snapshot.computed_at, snapshot.caught_up, now, self._timings
                )
                if applied is None:
                    outcomes["stale"] += 1
                    continue
                outcomes["applied"] += 1
                state, notice = applied
                newest_json = SCORE_CODEC.encode(snapshot).decode()
                if notice is not None:
                    self._count(notice)
                    await write_outbox(connection, key, notice, newest_json, subs.get(key[0]), now)
            if newest_json is not None:
                await self._save_state(connection, key, state, newest_json, now, exists=found is not None)
        for outcome, count in outcomes.items():
            metrics.SNAPSHOTS.labels(outcome).inc(count)

    async def tick(self, engine: AsyncEngine, limit: int = 500) -> int:
        """Re-evaluate the states whose debounce, hold or reminder is due; returns notices written."""
        now = self._clock()
        written = 0
        async with engine.begin() as connection:
            await lock_alert_states(connection, now)
            rows = (
                await connection.execute(
                    select(alert_states)
                    .where(and_(alert_states.c.next_check_at.is_not(None), alert_states.c.next_check_at <= now))
                    .order_by(alert_states.c.next_check_at)
                    .limit(limit)
                )
            ).all()
            subs = await load_subscriptions(connection, (row.seller_id for row in rows))
            for row in rows:
                key: AlertKey = (row.seller_id, row.marketplace, row.category)
                state, notice = evaluate(_STATE_CODEC_DECODER.decode(row.machine), now, self._timings)
                if notice is not None:
                    self._count(notice)
                    written += await write_outbox(connection, key, notice, row.snapshot, subs.get(key[0]), now)
                await self._save_state(connection, key, state, row.snapshot, now, exists=True)
        return written

    @staticmethod
    def _count(notice: Notice) -> None:
        if notice.kind.value != "reminder":
            metrics.TRANSITIONS.labels(notice.level.value).inc()

    async def _load_states(
        self, connection: AsyncConnection, keys: Sequence[AlertKey]
    ) -> dict[AlertKey, tuple[AlertState, str]]:
        found: dict[AlertKey, tuple[AlertState, str]] = {}
        columns = (alert_states.c.seller_id, alert_states.c.marketplace, alert_states.c.category)
        # Bounded IN lists keep the statement small for large catch-up batches.
        for start in range(0, len(keys), 200):
            chunk = keys[start : start + 200]
            rows = await connection.execute(
                select(*columns, alert_states.c.machine, alert_states.c.snapshot).where(tuple_(*columns).in_(chunk))
            )
            for row in rows:
                found[(row.seller_id, row.marketplace, row.category)] = (
                    _STATE_CODEC_DECODER.decode(row.machine),
                    row.snapshot,
                )
        return found

    async def _save_state(
        self,
        connection: AsyncConnection,
        key: AlertKey,
        state: AlertState,
        snapshot_json: str,
        now: datetime,
        exists: bool,
    ) -> None:
        check_at = next_check_at(state, self._timings)
        values = {
            "machine": _ENCODER.encode(state).decode(),
            "snapshot": snapshot_json,
            "notified_level": state.notified_level.value,
            "next_check_at": check_at,
            "updated_at": now,
        }
        if exists:
            await connection.execute(
                update(alert_states)
                .where(
                    and_(
                        alert_states.c.seller_id == key[0],
                        alert_states.c.marketplace == key[1],
                        alert_states.c.category == key[2],
                    )
                )
                .values(values)
            )
        else:
            await connection.execute(
                dialect_insert(connection, alert_states).values(
                    seller_id=key[0], marketplace=key[1], category=key[2], **values
                )
            )


__all__ = ["AlertProcessor", "Subscription", "as_utc", "dedupe_key", "load_subscriptions", "write_outbox"]
