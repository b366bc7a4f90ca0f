"""The shipments list of the API: a seller's packages in the window, filtered and paged by id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.packages import MICRO, PACKAGE_COLUMNS, PackageRow, package_from_row
from services.scorer.storage.schema import packages
from shared.schemas import PackageState

_c = packages.c


def _overdue(today: date) -> Any:
    return and_(_c.state == PackageState.PENDING.value, _c.promised_date < today)


def _upcoming(today: date) -> Any:
    return and_(_c.state == PackageState.PENDING.value, _c.promised_date >= today)


#: Shipment list filters -> their condition, given today and the at-risk bound (millionths):
#: ``invalid`` counts pending packages past their promised date; ``at_risk`` is a pending
#: package unlikely to become valid in time.
STATE_CONDITIONS: dict[str, Callable[[date, int], Any]] = {
    "invalid": lambda today, _: or_(_c.state == PackageState.INVALID.value, _overdue(today)),
    "at_risk": lambda today, at_risk_micro: and_(_upcoming(today), _c.probability_micro < at_risk_micro),
    "pending": lambda today, _: _upcoming(today),
    "valid": lambda _today, _: _c.state == PackageState.VALID.value,
}
SHIPMENT_STATES = tuple(STATE_CONDITIONS)


async def shipment_rows(
    connection: AsyncConnection,
    seller_id: str,
    *,
    today: date,
    window_first: date,
    at_risk_probability: float,
    marketplace: str | None,
    category: str | None,
    state: str | None,
    limit: int,
    after_id: int,
) -> list[PackageRow]:
    """Up to ``limit + 1`` packages after ``after_id`` in id order (one more tells a next page)."""
    conditions: list[Any] = [
        _c.seller_id == seller_id,
        _c.promised_date >= window_first,
        _c.id > after_id,
        _c.state != PackageState.CANCELLED.value,
    ]
    if marketplace:
        conditions.append(_c.marketplace == marketplace)
    if category:
        conditions.append(_c.category == category)
    if state:
        conditions.append(STATE_CONDITIONS[state](today, round(at_risk_probability * MICRO)))
    columns = [packages.c[name] for name in PACKAGE_COLUMNS]
    query = select(*columns).where(*conditions).order_by(_c.id).limit(limit + 1)
    return [package_from_row(row) for row in await connection.execute(query)]
