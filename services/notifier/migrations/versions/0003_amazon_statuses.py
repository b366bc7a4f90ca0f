"""the last Amazon VTR status per seller x marketplace (issue 22)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 18:40:00

The notifier messages a seller at once when Amazon's own VTR status turns BAD; it keeps
the last status it saw to know when it turns.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "amazon_statuses",
        sa.Column("seller_id", sa.String(128), primary_key=True),
        sa.Column("marketplace", sa.String(2), primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("amazon_statuses")
