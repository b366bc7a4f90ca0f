"""The scorer's tables (SQLAlchemy core; PostgreSQL and SQLite).

Date-times are stored as naive UTC (both backends compare them correctly that way).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from shared.consumer.offsets import consumer_offsets_table
from shared.scope_columns import category_column, marketplace_column, scope_columns, seller_column

metadata = MetaData()
#: The predicate of the partial indexes on pending packages (PackageState.PENDING).
PENDING = text("state = 'pending'")

#: SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

offsets = consumer_offsets_table(metadata)

#: One row per confirmed order; orders shipped together share the scans of their tracking number.
#: Scan counts are not stored here: a scan that does not change a package's state then
#: costs no package write (the shipments API summarises the scans when it lists packages).
#: The milestone times (first scan, first delivery scan) are what the forecast model
#: learns from; ``review_at`` is when the clock job next recomputes a pending package.
packages = Table(
    "packages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    seller_column(nullable=False),
    Column("order_id", String(128), nullable=False),
    marketplace_column(nullable=False),
    category_column(nullable=False),
    Column("tracking_number", String(128), nullable=False),
    Column("carrier_name", String(200), nullable=False),
    Column("carrier", String(64), nullable=True),
    Column("service", String(200), nullable=True),
    Column("order_amount", String(32), nullable=False),
    Column("order_currency", String(3), nullable=False),
    Column("ship_from_country", String(2), nullable=False),
    Column("buy_shipping", Boolean, nullable=False),
    Column("risk_flags", String(400), nullable=False),
    Column("confirmed_at", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("promised_date", Date, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(48), nullable=True),
    Column("required_tracking", String(8), nullable=False),
    Column("probability_micro", Integer, nullable=False),
    Column("first_scan_at", DateTime, nullable=True),
    Column("delivery_scan_at", DateTime, nullable=True),
    Column("last_scan_at", DateTime, nullable=True),
    Column("review_at", DateTime, nullable=True),
    #: Optimistic concurrency: every write checks and bumps it (consumer vs clock job).
    Column("version", BigInteger, nullable=False),
    #: Who confirmed the order: ``erp``, ``amazon`` or ``amazon+erp`` (Amazon's record with
    #: the ERP's category; the ERP confirmation's own times beside it). Migration 0009.
    Column("source", String(16), nullable=False, server_default="erp"),
    Column("erp_confirmed_at", DateTime, nullable=True),
    Column("erp_received_at", DateTime, nullable=True),
    UniqueConstraint("seller_id", "order_id", name="uq_packages_seller_order"),
    Index("ix_packages_tracking_number", "tracking_number"),
    Index("ix_packages_seller_promised", "seller_id", "promised_date"),
    #: The clock job's queries; pending packages only (migration 0006).
    Index("ix_packages_pending_promised", "promised_date", postgresql_where=PENDING, sqlite_where=PENDING),
    Index("ix_packages_pending_review", "review_at", postgresql_where=PENDING, sqlite_where=PENDING),
    Index("ix_packages_confirmed", "confirmed_at"),
)

#: Every distinct tracking event (physical or not), kept whether or not its shipment is known yet.
scans = Table(
    "scans",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("tracking_number", String(128), nullable=False),
    Column("status", String(24), nullable=False),
    Column("occurred_at", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("source", String(64), nullable=False),
    #: The carrier's raw code: UNKNOWN scans are re-derived from it when the code table learns it.
    Column("carrier_code", String(64), nullable=False, server_default=""),
    #: Who had the parcel last, where the source said so (TrackingEvent.last_mile_*).
    Column("last_mile_carrier", String(64), nullable=False, server_default=""),
    Column("last_mile_tracking_number", String(128), nullable=False, server_default=""),
    Index("ix_scans_tracking_number", "tracking_number"),
)

#: Cancellations are kept as facts; a package is cancelled when one matches it and is not
#: older than its confirmation, whatever order the two messages arrived in.
cancellations = Table(
    "cancellations",
    metadata,
    Column("cancel_key", String(600), primary_key=True),
    Column("tracking_number", String(128), nullable=False),
    seller_column(nullable=True),
    Column("order_id", String(128), nullable=True),
    Column("cancelled_at", DateTime, nullable=False),
    Index("ix_cancellations_tracking_number", "tracking_number"),
)

#: Per seller x marketplace x category x promised date, maintained by deltas.
daily_counts = Table(
    "daily_counts",
    metadata,
    *scope_columns(primary_key=True),
    Column("promised_date", Date, primary_key=True),
    Column("valid", Integer, nullable=False),
    Column("invalid", Integer, nullable=False),
    Column("pending", Integer, nullable=False),
    #: Sum of pending packages' probabilities, in millionths (integers add up exactly).
    Column("expected_valid_micro", BigInteger, nullable=False),
    #: Sum of pending packages' p(1-p), in millionths: the variance of the valid count.
    Column("variance_micro", BigInteger, nullable=False, server_default="0"),
)

daily_reasons = Table(
    "daily_reasons",
    metadata,
    *scope_columns(primary_key=True),
    Column("promised_date", Date, primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("reason", String(48), primary_key=True),
    Column("count", Integer, nullable=False),
)

#: Seller-categories whose numbers changed and must be published (the outbox).
outbox = Table(
    "score_outbox",
    metadata,
    *scope_columns(primary_key=True),
    #: Bumped on every change, so publishing deletes the row only if nothing changed since.
    Column("version", BigInteger, nullable=False),
)

#: Per seller-category, bumped by triggers on ``score_outbox`` (migration 0005) in the
#: transaction of every outbox mark, never deleted: the read API's cache key.
score_versions = Table(
    "score_versions",
    metadata,
    *scope_columns(primary_key=True),
    Column("version", BigInteger, nullable=False),
)

#: Orders not confirmed yet, projected per promised date from each seller-category's recent
#: volume, promise lags and health (rebuilt by the clock job; millionths of packages).
projected_counts = Table(
    "projected_counts",
    metadata,
    *scope_columns(primary_key=True),
    Column("promised_date", Date, primary_key=True),
    Column("expected_micro", BigInteger, nullable=False),
    Column("expected_valid_micro", BigInteger, nullable=False),
    Column("variance_micro", BigInteger, nullable=False),
)

#: The forecast model's state (services/scorer/domain/model/), one JSON document shared by
#: every scorer instance: histograms per lane and milestone, and carrier health.
model_state = Table(
    "model_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("computed_at", DateTime, nullable=False),
    Column("body", Text, nullable=False),
)

#: Last level published per seller-category, for the level gauge.
score_levels = Table(
    "score_levels",
    metadata,
    *scope_columns(primary_key=True),
    Column("level", String(16), nullable=False),
)

#: The last day whose window slide has been marked (one instance does it per day).
clock_state = Table(
    "clock_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("day", Date, nullable=False),
)
