"""Packages remember who confirmed them: the seller's ERP, Amazon, or both (issue 22)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 21:40:00

An order confirmed by the seller's ERP and read from Amazon is one package whatever order
the two confirmations arrive in: Amazon's record wins what Amazon scores, the ERP the
category (domain/packages.py ``combine``). For that the package keeps its ``source``
(``erp``, ``amazon``, ``amazon+erp``) and, when both confirmed it, the ERP confirmation's
own times, so that a later ERP correction is told from a redelivered older one. Every
package stored before this came from an ERP: ``erp``, no extra times (adding a column with
a constant default rewrites no row on PostgreSQL 11+).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="erp"))
        batch.add_column(sa.Column("erp_confirmed_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("erp_received_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.drop_column("erp_received_at")
        batch.drop_column("erp_confirmed_at")
        batch.drop_column("source")
