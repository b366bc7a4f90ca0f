"""The scope every figure is kept per: seller x marketplace x category, declared once.

The scorer's and the notifier's tables take their scope columns from the factories below,
and the scorer's field limits (a record that would not fit is refused, not retried) take
the same widths, so a width changes in one place.

**Marketplace width.** The truth is 2 characters: a marketplace is an ISO 3166-1 alpha-2
code (``CountryCode`` in :mod:`shared.schemas`, checked on every message that carries
one), and the scorer's tables were created 2 wide. The notifier's tables were created 8
wide (its migration 0001) and are declared as the database has them
(:data:`NOTIFIER_MARKETPLACE_WIDTH`): they only ever hold the 2-letter codes the scorer
publishes, and narrowing them would be a migration for no behaviour.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, String

SELLER_ID_LENGTH = 128
MARKETPLACE_LENGTH = 2
CATEGORY_LENGTH = 200
#: The notifier's marketplace columns as its migration 0001 created them (see above).
NOTIFIER_MARKETPLACE_WIDTH = 8


def seller_column(**options: Any) -> Column[str]:
    return Column("seller_id", String(SELLER_ID_LENGTH), **options)


def marketplace_column(width: int = MARKETPLACE_LENGTH, **options: Any) -> Column[str]:
    return Column("marketplace", String(width), **options)


def category_column(**options: Any) -> Column[str]:
    return Column("category", String(CATEGORY_LENGTH), **options)


def scope_columns(marketplace_width: int = MARKETPLACE_LENGTH, **options: Any) -> tuple[Column[str], ...]:
    """The three scope columns with the same options (``primary_key=True`` or ``nullable=False``)."""
    return (
        seller_column(**options),
        marketplace_column(marketplace_width, **options),
        category_column(**options),
    )
