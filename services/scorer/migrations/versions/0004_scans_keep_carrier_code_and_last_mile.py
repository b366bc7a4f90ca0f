"""scans keep the carrier code and the last-mile identity

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 04:20:00

The carrier's raw code lets ``python -m services.scorer remap-codes`` turn scans stored as
UNKNOWN into real statuses once the ingest's code table maps them (issue 11 item 13); the
last-mile carrier and number say which carrier had the parcel last. Scans stored before
this revision have empty values (their code is unknown to the scorer).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carrier_code", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("last_mile_carrier", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("last_mile_tracking_number", sa.String(length=128), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_column("last_mile_tracking_number")
        batch_op.drop_column("last_mile_carrier")
        batch_op.drop_column("carrier_code")
