"""score versions: a per seller-category counter bumped with every outbox mark

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:30:00

``score_versions`` is written only by triggers on ``score_outbox``, in the transaction
that marks a seller-category as changed: the read API's cache of computed scores is keyed
by these versions (docs/scoring.md, "Read path"). Rows are never deleted, unlike the
outbox's, so a version never repeats.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRES_FUNCTION = """
CREATE FUNCTION bump_score_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Sorted, so concurrent transactions lock the rows in the same order (they already hold
    -- the matching outbox rows, so they never wait for each other here).
    INSERT INTO score_versions AS v (seller_id, marketplace, category, version)
    SELECT seller_id, marketplace, category, 1 FROM changed ORDER BY seller_id, marketplace, category
    ON CONFLICT (seller_id, marketplace, category) DO UPDATE SET version = v.version + 1;
    RETURN NULL;
END
$$
"""

SQLITE_UPSERT = """
    INSERT INTO score_versions (seller_id, marketplace, category, version)
    VALUES (NEW.seller_id, NEW.marketplace, NEW.category, 1)
    ON CONFLICT (seller_id, marketplace, category) DO UPDATE SET version = version + 1;
"""


def upgrade() -> None:
    op.create_table(
        "score_versions",
        sa.Column("seller_id", sa.String(length=128), nullable=False),
        sa.Column("marketplace", sa.String(length=2), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", "marketplace", "category"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        # Statement-level with transition tables: one upsert per outbox statement. A trigger
        # with a transition table takes one event, hence two triggers (an outbox mark is an
        # INSERT .. ON CONFLICT DO UPDATE, which fires both).
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER score_outbox_{event.lower()}_bumps_version AFTER {event} ON score_outbox "
                "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bump_score_versions()"
            )
    else:
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER score_outbox_{event.lower()}_bumps_version AFTER {event} ON score_outbox "
                f"FOR EACH ROW BEGIN {SQLITE_UPSERT} END"
            )
    # Every seller-category already counted starts at version 1.
    op.execute(
        "INSERT INTO score_versions (seller_id, marketplace, category, version) "
        "SELECT DISTINCT seller_id, marketplace, category, 1 FROM daily_counts"
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for event in ("insert", "update"):
        op.execute(
            f"DROP TRIGGER IF EXISTS score_outbox_{event}_bumps_version" + (" ON score_outbox" if postgres else "")
        )
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS bump_score_versions()")
    op.drop_table("score_versions")
