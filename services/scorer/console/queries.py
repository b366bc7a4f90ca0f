"""Read-only queries behind the console. Nothing here writes; the numbers come from the
same functions as the API (:meth:`ScorerService.scores`, :meth:`ScorerService.views`) so
the console and ``GET .../vtr`` / ``GET .../shipments`` cannot disagree."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.policy import invalid_reason_for
from services.scorer.schema import packages
from services.scorer.service import ScorerService
from services.scorer.store import MICRO, PACKAGE_COLUMNS, load_cancellations, load_scans, package_from_row
from services.scorer.window import window
from shared.schemas import Level, PackageState, PackageView, Reason

#: State filters of the package list: ``to_fix`` is invalid or at risk (what the messages list).
PACKAGE_FILTERS = ("to_fix", "invalid", "at_risk", "pending", "valid", "all")
#: Most rows one export holds (a seller's 30-day window is far below it).
EXPORT_LIMIT = 100_000


@dataclass
class CategoryOverview:
    """One marketplace x category: the API's JSON for it and how many packages to fix."""

    numbers: dict[str, Any]
    invalid_packages: int = 0
    at_risk_packages: int = 0

    @property
    def marketplace(self) -> str:
        return str(self.numbers["marketplace"])

    @property
    def category(self) -> str:
        return str(self.numbers["category"])

    @property
    def level(self) -> Level:
        return Level(self.numbers["level"])

    def urgency(self) -> tuple[Any, ...]:
        """Sort key, most urgent first: worse level, likelier breach, sooner breach, less headroom."""
        n = self.numbers
        probability = n.get("breach_probability")
        days = n.get("days_to_breach")
        vtr = n.get("vtr")
        return (
            -self.level.severity,
            -(probability if probability is not None else -1.0),
            days if days is not None else 10_000,
            n.get("headroom", 0),
            vtr if vtr is not None else 2.0,
            self.marketplace,
            self.category,
        )


async def overview(service: ScorerService, connection: AsyncConnection, seller_id: str) -> list[CategoryOverview]:
    """Every category of the seller (as ``GET .../vtr`` lists it), most urgent first."""
    today = service.today()
    rows = {
        (c.marketplace, c.category): CategoryOverview(c.as_json())
        for c in await service.scores(connection, seller_id, today)
    }
    current = window(today, service.settings.window_lag_days)
    c = packages.c
    at_risk_micro = round(service.settings.at_risk_probability * MICRO)
    overdue = and_(c.state == PackageState.PENDING.value, c.promised_date < today)
    invalid = or_(c.state == PackageState.INVALID.value, overdue)
    at_risk = and_(c.state == PackageState.PENDING.value, c.promised_date >= today, c.probability_micro < at_risk_micro)
    result = await connection.execute(
        select(
            c.marketplace,
            c.category,
            func.sum(case((invalid, 1), else_=0)),
            func.sum(case((at_risk, 1), else_=0)),
        )
        .where(
            c.seller_id == seller_id,
            c.promised_date >= current.first,
            c.state.in_([PackageState.INVALID.value, PackageState.PENDING.value]),
        )
        .group_by(c.marketplace, c.category)
    )
    for marketplace, category, invalid_count, at_risk_count in result:
        row = rows.get((marketplace, category))
        if row is not None:
            row.invalid_packages = int(invalid_count or 0)
            row.at_risk_packages = int(at_risk_count or 0)
    return sorted(rows.values(), key=CategoryOverview.urgency)


@dataclass
class HistoryDay:
    day: date
    total: int = 0
    valid: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def vtr(self) -> float | None:
        return round(self.valid / self.total, 6) if self.total else None


async def history(
    service: ScorerService, connection: AsyncConnection, seller_id: str, marketplace: str, category: str, days: int = 30
) -> list[HistoryDay]:
    """The window's VTR and invalid reasons as ``GET .../vtr?as_of=d`` gives them, for each
    of the ``days`` days before today, oldest first.

    One read of the category's packages, scans and cancellations serves every day (the API
    re-reads them per call); each package is evaluated as of each day whose window holds
    it, with the scans that occurred before the end of that day, as ``recompute_counts``
    does. The learnt statistics only set pending packages' probabilities, which no window
    VTR depends on, so they are not read.
    """
    today = service.today()
    lag = service.settings.window_lag_days
    first_day = today - timedelta(days=days)
    first = window(first_day, lag).first
    last = window(today - timedelta(days=1), lag).last
    c = packages.c
    columns = [c[name] for name in PACKAGE_COLUMNS]
    rows = [
        package_from_row(row)
        for row in await connection.execute(
            select(*columns).where(
                c.seller_id == seller_id,
                c.marketplace == marketplace,
                c.category == category,
                c.promised_date.between(first, last),
            )
        )
    ]
    tracking_numbers = {row.tracking_number for row in rows}
    found_scans = await load_scans(connection, tracking_numbers)
    found_cancellations = await load_cancellations(connection, tracking_numbers)
    evaluator = service.evaluator
    result: list[HistoryDay] = []
    for k in range(days):
        day = first_day + timedelta(days=k)
        current = window(day, lag)
        end_of_day = datetime.combine(day + timedelta(days=1), time())
        entry = HistoryDay(day)
        reasons: dict[str, int] = defaultdict(int)
        for row in rows:
            if not current.first <= row.promised_date <= current.last:
                continue
            evaluated = evaluator.evaluate(
                row,
                found_scans.get(row.tracking_number, ()),
                found_cancellations.get(row.tracking_number, ()),
                day,
                occurred_before=end_of_day,
                now=end_of_day,
            )
            if evaluated.state == PackageState.CANCELLED.value:
                continue
            entry.total += 1
            if evaluated.state == PackageState.VALID.value:
                entry.valid += 1
            elif evaluated.reason:
                reasons[invalid_reason_for(Reason(evaluated.reason)).value] += 1
        entry.reasons = dict(sorted(reasons.items()))
        result.append(entry)
    return result


def _conditions(
    service: ScorerService,
    seller_id: str,
    marketplace: str | None,
    category: str | None,
    state: str,
    reason: Reason | None,
) -> list[Any]:
    """The same window and state rules as ``GET .../shipments``, plus the reason as shown."""
    today = service.today()
    current = window(today, service.settings.window_lag_days)
    c = packages.c
    conditions: list[Any] = [
        c.seller_id == seller_id,
        c.promised_date >= current.first,
        c.state != PackageState.CANCELLED.value,
    ]
    if marketplace:
        conditions.append(c.marketplace == marketplace)
    if category:
        conditions.append(c.category == category)
    overdue = and_(c.state == PackageState.PENDING.value, c.promised_date < today)
    upcoming = and_(c.state == PackageState.PENDING.value, c.promised_date >= today)
    at_risk = and_(upcoming, c.probability_micro < round(service.settings.at_risk_probability * MICRO))
    invalid = or_(c.state == PackageState.INVALID.value, overdue)
    if state == "valid":
        conditions.append(c.state == PackageState.VALID.value)
    elif state == "invalid":
        conditions.append(invalid)
    elif state == "pending":
        conditions.append(upcoming)
    elif state == "at_risk":
        conditions.append(at_risk)
    elif state == "to_fix":
        conditions.append(or_(invalid, at_risk))
    if reason is not None:
        # An overdue pending package is shown with the reason it will get once invalid.
        shown_as = [r.value for r in Reason if invalid_reason_for(r) is reason]
        conditions.append(
            or_(
                and_(~overdue, c.reason == reason.value),
                and_(overdue, c.reason.in_(shown_as or [reason.value])),
            )
        )
    return conditions


@dataclass
class PackageList:
    views: list[PackageView]
    total: int


async def package_list(
    service: ScorerService,
    connection: AsyncConnection,
    seller_id: str,
    *,
    marketplace: str | None,
    category: str | None,
    state: str,
    reason: Reason | None,
    offset: int,
    limit: int,
) -> PackageList:
    """One page of the seller's packages, soonest promised date first, and how many match."""
    conditions = _conditions(service, seller_id, marketplace, category, state, reason)
    c = packages.c
    total = int((await connection.execute(select(func.count()).select_from(packages).where(*conditions))).scalar_one())
    columns = [c[name] for name in PACKAGE_COLUMNS]
    rows = [
        package_from_row(row)
        for row in await connection.execute(
            select(*columns).where(*conditions).order_by(c.promised_date, c.id).offset(offset).limit(limit)
        )
    ]
    return PackageList(await service.views(connection, rows, service.today()), total)


@dataclass
class LaneHealth:
    """The seller's packages of one carrier x service in the window and entering it."""

    carrier_name: str
    service: str | None
    valid: int = 0
    invalid: int = 0
    pending: int = 0

    @property
    def resolved(self) -> int:
        return self.valid + self.invalid

    @property
    def vtr(self) -> float | None:
        return self.valid / self.resolved if self.resolved else None


async def lanes(
    service: ScorerService, connection: AsyncConnection, seller_id: str, marketplace: str, category: str
) -> list[LaneHealth]:
    """Carrier x service health of this seller-category: worst share of valid first."""
    today = service.today()
    current = window(today, service.settings.window_lag_days)
    c = packages.c
    overdue = and_(c.state == PackageState.PENDING.value, c.promised_date < today)
    result = await connection.execute(
        select(
            c.carrier_name,
            c.service,
            func.sum(case((c.state == PackageState.VALID.value, 1), else_=0)),
            func.sum(case((or_(c.state == PackageState.INVALID.value, overdue), 1), else_=0)),
            func.sum(case((and_(c.state == PackageState.PENDING.value, c.promised_date >= today), 1), else_=0)),
        )
        .where(
            c.seller_id == seller_id,
            c.marketplace == marketplace,
            c.category == category,
            c.promised_date >= current.first,
            c.state != PackageState.CANCELLED.value,
        )
        .group_by(c.carrier_name, c.service)
    )
    found = [
        LaneHealth(name, service_name, int(v or 0), int(i or 0), int(p or 0)) for name, service_name, v, i, p in result
    ]
    return sorted(found, key=lambda lane: (lane.vtr if lane.vtr is not None else 2.0, lane.carrier_name))


async def export_rows(
    service: ScorerService,
    connection: AsyncConnection,
    seller_id: str,
    *,
    marketplace: str | None,
    category: str | None,
    state: str,
    reason: Reason | None,
) -> list[PackageView]:
    """Every package matching the filter (for CSV and XLSX), in the list's order."""
    page = await package_list(
        service,
        connection,
        seller_id,
        marketplace=marketplace,
        category=category,
        state=state,
        reason=reason,
        offset=0,
        limit=EXPORT_LIMIT,
    )
    return page.views
