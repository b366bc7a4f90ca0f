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
from datetime import datetime, timedelta
from typing import Any

import msgspec
import orjson
from aiokafka import ConsumerRecord
from sqlalchemy import and_, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier import db, metrics
from services.notifier.alerts import (
    AlertState,
    Clock,
    Notice,
    NoticeKind,
    Timings,
    apply_snapshot,
    escalation_level,
    evaluate,
    next_check_at,
    wanted_by,
)
from services.notifier.db import (
    alert_states,
    as_utc,
    dialect_insert,
    digests,
    lock_alert_states,
    outbox,
    subscriptions,
)
from shared.schemas import SCORE_CODEC, ContractError, Level, ScoreSnapshot

log = logging.getLogger(__name__)

AlertKey = tuple[str, str, str]
_STATE_CODEC_DECODER = msgspec.json.Decoder(AlertState)
_ENCODER = msgspec.json.Encoder()

CHANNEL_EMAIL = "email"
CHANNEL_SLACK = "slack"
#: Marketplace and category stored on a digest's outbox rows.
DIGEST_SCOPE = "*"


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


def fits_columns(snapshot: ScoreSnapshot) -> bool:
    return (
        len(snapshot.seller_id) <= db.SELLER_ID_LENGTH
        and len(snapshot.marketplace) <= db.MARKETPLACE_LENGTH
        and len(snapshot.category) <= db.CATEGORY_LENGTH
    )


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
    scope: tuple[str, str] | None = None,
) -> int:
    """Insert the notice's rows (one per channel x recipient); returns how many were new.

    ``scope`` overrides the (marketplace, category) stored on the rows (digests span all).
    """
    if subscription is None:
        return 0
    if scope is None and not subscription.wants(key[1], notice):
        return 0
    marketplace, category = scope or (key[1], key[2])
    rows = [
        {
            "dedupe_key": dedupe_key(key, notice.seq, channel, recipient),
            "seller_id": key[0],
            "marketplace": marketplace,
            "category": category,
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


async def write_digest(
    connection: AsyncConnection,
    seller_id: str,
    rows: Sequence[Any],
    seq: int,
    due_at: datetime,
    subscription: Subscription | None,
    now: datetime,
) -> int:
    if subscription is None:
        return 0
    entries = []
    for row in rows:
        snapshot = SCORE_CODEC.decode(row.snapshot.encode())
        level = Level(row.notified_level)
        wanted = level.severity >= subscription.min_level.severity and (
            subscription.marketplaces is None or snapshot.marketplace in subscription.marketplaces
        )
        if wanted:
            entries.append({"level": level.value, "snapshot": orjson.loads(row.snapshot)})
    if not entries:
        return 0
    worst = max((Level(entry["level"]) for entry in entries), key=lambda level: level.severity)
    notice = Notice(kind=NoticeKind.DIGEST, previous_level=worst, level=worst, seq=seq, decided_at=now)
    # The due time, not the sequence, identifies a digest: the schedule row may be deleted and recreated.
    key: AlertKey = (seller_id, DIGEST_SCOPE, f"digest@{due_at.isoformat()}")
    return await write_outbox(
        connection, key, notice, orjson.dumps(entries).decode(), subscription, now, scope=(DIGEST_SCOPE, DIGEST_SCOPE)
    )


class AlertProcessor:
    def __init__(self, timings: Timings, clock: Clock, digest_check_seconds: float = 60.0) -> None:
        self._timings = timings
        self._clock = clock
        self._digest_check = timedelta(seconds=digest_check_seconds)
        self._next_digest_check: datetime | None = None

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
            if not fits_columns(snapshot):
                # Would fail the transaction on PostgreSQL and block the partition forever.
                metrics.SNAPSHOTS.labels("invalid").inc()
                log.warning("score snapshot with oversized key skipped", extra={"offset": record.offset})
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
                    state,
                    snapshot.level,
                    snapshot.computed_at,
                    snapshot.caught_up,
                    now,
                    self._timings,
                    escalation_level(snapshot.level, snapshot.model),
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
            if not self._timings.per_category_reminders and (
                self._next_digest_check is None or now >= self._next_digest_check
            ):
                written += await self._digests(connection, now)
                self._next_digest_check = now + self._digest_check
        return written

    async def _digests(self, connection: AsyncConnection, now: datetime) -> int:
        """Daily digest mode: one message per seller listing every category still at a warning level.

        A seller's first digest is due one interval after a category of theirs was first
        seen at a warning level (the alert itself went out then); a seller with nothing
        left to warn about leaves the schedule.
        """
        bad = (
            await connection.execute(
                select(alert_states.c.seller_id, alert_states.c.notified_level, alert_states.c.snapshot).where(
                    alert_states.c.notified_level != Level.OK.value
                )
            )
        ).all()
        by_seller: dict[str, list[Any]] = defaultdict(list)
        for row in bad:
            by_seller[row.seller_id].append(row)
        await connection.execute(
            delete(digests).where(
                digests.c.seller_id.not_in(
                    select(alert_states.c.seller_id).where(alert_states.c.notified_level != Level.OK.value)
                )
            )
        )
        schedule = {
            row.seller_id: row
            for row in await connection.execute(select(digests).where(digests.c.seller_id.in_(sorted(by_seller))))
        }
        subs = await load_subscriptions(connection, by_seller)
        interval = self._timings.reminder_interval
        written = 0
        for seller_id, rows in sorted(by_seller.items()):
            scheduled = schedule.get(seller_id)
            if scheduled is None:
                await connection.execute(
                    insert(digests).values(seller_id=seller_id, next_due_at=now + interval, digest_seq=0)
                )
                continue
            due_at = as_utc(scheduled.next_due_at)
            if now < due_at:
                continue
            seq = scheduled.digest_seq + 1
            await connection.execute(
                update(digests)
                .where(digests.c.seller_id == seller_id)
                .values(next_due_at=now + interval, digest_seq=seq)
            )
            written += await write_digest(connection, seller_id, rows, seq, due_at, subs.get(seller_id), now)
        return written

    @staticmethod
    def _count(notice: Notice) -> None:
        if notice.kind is not NoticeKind.REMINDER:
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
