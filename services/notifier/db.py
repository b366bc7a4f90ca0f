"""The notifier's tables (SQLAlchemy core; SQLite locally, PostgreSQL in production).

- ``subscriptions``: who hears about a seller, where and in which language;
- ``alert_states``: one state machine per seller x marketplace x category, with the
  newest snapshot (to compose reminders and debounced messages from);
- ``outbox``: one row per message x channel x recipient, written in the same transaction
  as the state change that decided it; ``dedupe_key`` is unique so nothing is written
  twice;
- ``delivery_attempts``: every try to hand a message to SMTP or Slack;
- ``digests``: when each seller's next daily digest is due (digest mode only);
- ``audit_events``: who changed what and when (keys issued and revoked, subscription
  changes), for ``GET /v1/audit``; ``event_id`` is unique so a record read twice is
  written once;
- ``state_lock``: one row every writer of ``alert_states`` updates first, which
  serialises the consumer and the tick on both databases (see :func:`lock_alert_states`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer.offsets import consumer_offsets_table
from shared.scope import NOTIFIER_MARKETPLACE_WIDTH, SELLER_ID_LENGTH
from shared.scope_columns import scope_columns, seller_column

metadata = MetaData()

Id = BigInteger().with_variant(Integer, "sqlite")

subscriptions = Table(
    "subscriptions",
    metadata,
    seller_column(primary_key=True),
    #: JSON list of addresses.
    Column("emails", Text, nullable=False),
    Column("slack_webhook_url", Text, nullable=True),
    Column("language", String(8), nullable=False),
    Column("min_level", String(16), nullable=False),
    #: JSON list of marketplace codes; NULL means every marketplace.
    Column("marketplaces", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

alert_states = Table(
    "alert_states",
    metadata,
    *scope_columns(NOTIFIER_MARKETPLACE_WIDTH, primary_key=True),
    #: :class:`services.notifier.alerts.AlertState` as JSON.
    Column("machine", Text, nullable=False),
    #: The newest snapshot (SCORE_CODEC JSON).
    Column("snapshot", Text, nullable=False),
    Column("notified_level", String(16), nullable=False),
    #: When the tick must look at this row again; NULL: only a new snapshot can change it.
    Column("next_check_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_alert_states_next_check_at", "next_check_at"),
)

OUTBOX_PENDING = "pending"
OUTBOX_SENT = "sent"
OUTBOX_FAILED = "failed"

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(64), nullable=False, unique=True),
    *scope_columns(NOTIFIER_MARKETPLACE_WIDTH, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("previous_level", String(16), nullable=False),
    Column("level", String(16), nullable=False),
    Column("notice_seq", Integer, nullable=False),
    Column("channel", String(8), nullable=False),
    #: An e-mail address or a Slack webhook URL (a secret: never logged or returned whole).
    Column("recipient", Text, nullable=False),
    Column("language", String(8), nullable=False),
    Column("snapshot", Text, nullable=False),
    #: The composed message (JSON), kept so every retry sends the same content.
    Column("rendered", Text, nullable=True),
    Column("packages_listed", Boolean, nullable=True),
    Column("status", String(8), nullable=False, default=OUTBOX_PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_seller", "seller_id", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outbox_id", Id, ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    #: ``sent``, ``retry`` or ``failed``.
    Column("outcome", String(8), nullable=False),
    Column("error", Text, nullable=True),
    Column("duration_seconds", Float, nullable=False),
)

digests = Table(
    "digests",
    metadata,
    seller_column(primary_key=True),
    #: When the next daily digest is due (``reminder_mode = daily_digest`` only).
    Column("next_due_at", DateTime(timezone=True), nullable=False),
    Column("digest_seq", Integer, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    #: Deterministic for events derived from the credentials topic (``key.issued:<key id>``).
    Column("event_id", String(96), nullable=False, unique=True),
    Column("at", DateTime(timezone=True), nullable=False),
    #: The seller concerned; NULL for staff and service keys.
    Column("seller_id", String(SELLER_ID_LENGTH), nullable=True),
    #: The key that made the change (subscriptions) or that the change is about (keys).
    Column("key_id", String(64), nullable=False),
    #: ``key.issued``, ``key.revoked``, ``subscription.updated``, ``subscription.deleted``, ...
    Column("action", String(48), nullable=False),
    #: What changed, as JSON (secrets masked; never a token).
    Column("changes", Text, nullable=False),
    Index("ix_audit_events_seller", "seller_id", "id"),
)

state_lock = Table(
    "state_lock",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("touched_at", DateTime(timezone=True), nullable=True),
)
STATE_LOCK_NAME = "alert_states"

consumer_offsets = consumer_offsets_table(metadata)


def as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; every timestamp stored here is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dialect_insert(connection: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ``on_conflict_do_nothing`` on the connection's database."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def lock_alert_states(connection: AsyncConnection, now: datetime) -> None:
    """Take the alert-state write lock for the rest of the transaction.

    An UPDATE of one well-known row makes PostgreSQL hold a row lock and SQLite take its
    write lock until commit, so the consumer and the tick never read a state the other is
    about to overwrite (a lost update would re-send or drop a message).
    """
    result = await connection.execute(
        update(state_lock).where(state_lock.c.name == STATE_LOCK_NAME).values(touched_at=now)
    )
    if result.rowcount == 0:
        await connection.execute(
            dialect_insert(connection, state_lock)
            .values(name=STATE_LOCK_NAME, touched_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        await connection.execute(update(state_lock).where(state_lock.c.name == STATE_LOCK_NAME).values(touched_at=now))
