"""The scope columns (seller, marketplace, category) as SQLAlchemy column factories, with
the widths of :mod:`shared.scope`: both services' schemas declare their scope with them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, String

from shared.scope import CATEGORY_LENGTH, MARKETPLACE_LENGTH, SELLER_ID_LENGTH


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
