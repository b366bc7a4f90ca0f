"""the clock job's package indexes hold pending packages only

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:40:00

The clock job's two queries (pending packages past their promised date; pending packages
whose review is due) were served by indexes on ``(state, promised_date)`` and
``(state, review_at)`` holding every package. Most packages leave ``pending`` for good
(valid, invalid, cancelled) and no other query uses these indexes, so partial indexes
``WHERE state = 'pending'`` serve the same queries while a package written in another
state adds no entry to them: two index insertions fewer for most package writes (issue 13).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_packages_pending_promised",
        "packages",
        ["promised_date"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_packages_pending_review", "packages", ["review_at"], postgresql_where=PENDING, sqlite_where=PENDING
    )
    op.drop_index("ix_packages_state_promised", table_name="packages")
    op.drop_index("ix_packages_state_review", table_name="packages")


def downgrade() -> None:
    op.create_index("ix_packages_state_promised", "packages", ["state", "promised_date"])
    op.create_index("ix_packages_state_review", "packages", ["state", "review_at"])
    op.drop_index("ix_packages_pending_review", table_name="packages")
    op.drop_index("ix_packages_pending_promised", table_name="packages")
