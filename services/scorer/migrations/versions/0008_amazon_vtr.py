"""Amazon's own VTR per seller x marketplace (issue 22)

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07 18:30:00

The newest figure of Amazon's seller performance report per seller and marketplace
(``vtr.amazon-vtr.v1``), kept beside vtrwatch's numbers for ``GET /v1/sellers/{id}/amazon``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "amazon_vtr",
        sa.Column("seller_id", sa.String(128), primary_key=True),
        sa.Column("marketplace", sa.String(2), primary_key=True),
        sa.Column("marketplace_id", sa.String(32), nullable=False),
        sa.Column("rate", sa.Float, nullable=True),
        sa.Column("shipment_count", sa.Integer, nullable=True),
        sa.Column("valid_tracking_count", sa.Integer, nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("target_value", sa.Float, nullable=True),
        sa.Column("reporting_from", sa.Date, nullable=False),
        sa.Column("reporting_to", sa.Date, nullable=False),
        sa.Column("report_id", sa.String(128), nullable=False),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
        sa.Column("problems", sa.String(400), nullable=False),
        sa.Column("bad_since", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("amazon_vtr")
