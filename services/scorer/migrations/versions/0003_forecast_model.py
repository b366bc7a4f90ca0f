"""forecast model: milestone times on packages, review schedule, variance counters, model state, projections

The learnt model replaces the per-week resolved counts (carrier_stats). Existing packages
get their milestone times from their stored scans, the variance counters are rebuilt from
the pending packages, and every pending package is due for review, so the clock job
recomputes its probability with the new model after the upgrade.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PHYSICAL = (
    "('ACCEPTED','IN_TRANSIT','ARRIVED_DESTINATION','OUT_FOR_DELIVERY','ATTEMPTED_DELIVERY','DELIVERED',"
    "'RETURNED','EXCEPTION')"
)
DELIVERY = "('ATTEMPTED_DELIVERY','DELIVERED')"


def upgrade() -> None:
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_scan_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("delivery_scan_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_scan_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("review_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_packages_state_review", ["state", "review_at"], unique=False)
        batch_op.create_index("ix_packages_confirmed", ["confirmed_at"], unique=False)
    with op.batch_alter_table("daily_counts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variance_micro", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "model_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "projected_counts",
        sa.Column("seller_id", sa.String(length=128), nullable=False),
        sa.Column("marketplace", sa.String(length=2), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.Column("promised_date", sa.Date(), nullable=False),
        sa.Column("expected_micro", sa.BigInteger(), nullable=False),
        sa.Column("expected_valid_micro", sa.BigInteger(), nullable=False),
        sa.Column("variance_micro", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", "marketplace", "category", "promised_date"),
    )
    op.drop_table("carrier_stats")
    op.execute(  # constant fragments only, no input
        f"""
        UPDATE packages SET
          first_scan_at = (SELECT min(s.occurred_at) FROM scans s
                           WHERE s.tracking_number = packages.tracking_number AND s.status IN {PHYSICAL}),
          last_scan_at = (SELECT max(s.occurred_at) FROM scans s
                          WHERE s.tracking_number = packages.tracking_number AND s.status IN {PHYSICAL}),
          delivery_scan_at = (SELECT min(s.occurred_at) FROM scans s
                              WHERE s.tracking_number = packages.tracking_number AND s.status IN {DELIVERY})
        """  # noqa: S608
    )
    # Integer arithmetic, identical to the scorer's: p(1-p) in millionths, truncated.
    op.execute(
        """
        UPDATE daily_counts SET variance_micro = COALESCE((
          SELECT sum(p.probability_micro * (1000000 - p.probability_micro) / 1000000) FROM packages p
          WHERE p.state = 'pending' AND p.seller_id = daily_counts.seller_id
            AND p.marketplace = daily_counts.marketplace AND p.category = daily_counts.category
            AND p.promised_date = daily_counts.promised_date), 0)
        """
    )


def downgrade() -> None:
    op.create_table(
        "carrier_stats",
        sa.Column("carrier", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("marketplace", sa.String(length=2), nullable=False),
        sa.Column("required_tracking", sa.String(length=8), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("resolved_valid", sa.Integer(), nullable=False),
        sa.Column("resolved_invalid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("carrier", "service", "marketplace", "required_tracking", "week_start"),
    )
    op.drop_table("model_state")
    op.drop_table("projected_counts")
    with op.batch_alter_table("daily_counts", schema=None) as batch_op:
        batch_op.drop_column("variance_micro")
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.drop_index("ix_packages_confirmed")
        batch_op.drop_index("ix_packages_state_review")
        batch_op.drop_column("review_at")
        batch_op.drop_column("last_scan_at")
        batch_op.drop_column("delivery_scan_at")
        batch_op.drop_column("first_scan_at")
