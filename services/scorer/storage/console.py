"""Read-only queries behind the console. Nothing here writes; the numbers come from the
same functions as the API (``Scoring.scores``, ``Scoring.views`` in runtime/scoring.py,
passed in as :class:`ScoringReads`) so the console and ``GET .../vtr`` /
``GET .../shipments`` cannot disagree."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.packages import MICRO, PACKAGE_COLUMNS, PackageRow, package_from_row
from services.scorer.domain.policy import invalid_reason_for
from services.scorer.domain.scores import CategoryScore
from services.scorer.domain.window import WINDOW_DAYS, TodayFunction, window
from services.scorer.settings import ScorerSettings
from services.scorer.storage.packages import load_cancellations, load_scans
from services.scorer.storage.schema import packages
from shared.schemas import Level, PackageState, PackageView, Reason


class ScoringReads(Protocol):
    """What these queries use of the scorer's reads (``runtime/scoring.py``'s ``Scoring``)."""

    settings: ScorerSettings
    evaluator: Evaluator
    today: TodayFunction

    async def scores(
        self, connection: AsyncConnection, seller_id: str, as_of: date, scope: tuple[str, str] | None = None
    ) -> list[CategoryScore]: ...

    async def views(
        self, connection: AsyncConnection, rows: Sequence[PackageRow], today: date
    ) -> list[PackageView]: ...


#: Most rows one export holds (a seller's 30-day window is far below it).
EXPORT_LIMIT = 100_000


@dataclass(frozen=True)
class StateConditions:
    """The console's package states as SQL conditions on ``packages``, written once for the
    overview, the lanes and the package list, with the API's rules (``GET .../shipments``):
    a pending package whose promised date has passed is shown as invalid (it will be), and
    a pending one not yet due is at risk when its probability of becoming valid is low."""

    valid: Any
    invalid: Any
    #: Pending and not yet due.
    pending: Any
    at_risk: Any
    #: Pending past its promised date: counted with ``invalid``.
    overdue: Any

    @classmethod
    def on(cls, service: ScoringReads, today: date) -> StateConditions:
        c = packages.c
        is_pending = c.state == PackageState.PENDING.value
        overdue = and_(is_pending, c.promised_date < today)
        upcoming = and_(is_pending, c.promised_date >= today)
        at_risk_micro = round(service.settings.at_risk_probability * MICRO)
        return cls(
            valid=c.state == PackageState.VALID.value,
            invalid=or_(c.state == PackageState.INVALID.value, overdue),
            pending=upcoming,
            at_risk=and_(upcoming, c.probability_micro < at_risk_micro),
            overdue=overdue,
        )


#: State filters of the package list, in the order the page offers them -> the condition
#: (None: no state condition). ``to_fix`` is invalid or at risk (what the messages list).
STATE_FILTERS: dict[str, Callable[[StateConditions], Any] | None] = {
    "to_fix": lambda states: or_(states.invalid, states.at_risk),
    "invalid": lambda states: states.invalid,
    "at_risk": lambda states: states.at_risk,
    "pending": lambda states: states.pending,
    "valid": lambda states: states.valid,
    "all": None,
}
PACKAGE_FILTERS = tuple(STATE_FILTERS)
#: What the list shows when no state is asked for.
DEFAULT_STATE_FILTER = "to_fix"


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


async def overview(service: ScoringReads, connection: AsyncConnection, seller_id: str) -> list[CategoryOverview]:
    """Every category of the seller (as ``GET .../vtr`` lists it), most urgent first."""
    today = service.today()
    rows = {
        (c.marketplace, c.category): CategoryOverview(c.as_json())
        for c in await service.scores(connection, seller_id, today)
    }
    current = window(today, service.settings.window_lag_days)
    c = packages.c
    states = StateConditions.on(service, today)
    result = await connection.execute(
        select(
            c.marketplace,
            c.category,
            func.sum(case((states.invalid, 1), else_=0)),
            func.sum(case((states.at_risk, 1), else_=0)),
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
    service: ScoringReads, connection: AsyncConnection, seller_id: str, marketplace: str, category: str, days: int = 30
) -> list[HistoryDay]:
    """The window's VTR and invalid reasons as ``GET .../vtr?as_of=d`` gives them, for each
    of the ``days`` days before today, oldest first.

    One read of the category's packages, scans and cancellations serves every day (the API
    re-reads them per call), and one pass over the packages: each is evaluated as of each
    day whose window holds it, with the scans that occurred before the end of that day, as
    ``recompute_counts`` does, but only again when another scan has occurred since: a
    package in a day's window is past its promised date, so it is valid, invalid or
    cancelled and nothing but its scans so far can change that (the model, which depends
    on the moment, only runs for pending packages). The learnt statistics only set pending
    packages' probabilities, which no window VTR depends on, so they are not read.
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
    result = [HistoryDay(first_day + timedelta(days=k)) for k in range(days)]
    reasons: list[dict[str, int]] = [defaultdict(int) for _ in range(days)]
    # window(d) holds promised dates [d - lag - 30, d - lag - 1]: a package counts on the
    # days d in [promised + lag + 1, promised + lag + 30].
    first_offset, last_offset = lag + 1, lag + WINDOW_DAYS
    for row in rows:
        package_scans = found_scans.get(row.tracking_number, ())
        package_cancellations = found_cancellations.get(row.tracking_number, ())
        scan_moments = sorted(scan.occurred_at for scan in package_scans)
        start = max(0, (row.promised_date - first_day).days + first_offset)
        stop = min(days - 1, (row.promised_date - first_day).days + last_offset)
        evaluated: PackageRow | None = None
        scans_seen = -1
        for k in range(start, stop + 1):
            day = result[k].day
            end_of_day = datetime.combine(day + timedelta(days=1), time())
            scans_by_then = bisect_left(scan_moments, end_of_day)
            if evaluated is None or scans_by_then != scans_seen or evaluated.state == PackageState.PENDING.value:
                evaluated = evaluator.evaluate(
                    row, package_scans, package_cancellations, day, occurred_before=end_of_day, now=end_of_day
                )
                scans_seen = scans_by_then
            if evaluated.state == PackageState.CANCELLED.value:
                continue
            result[k].total += 1
            if evaluated.state == PackageState.VALID.value:
                result[k].valid += 1
            elif evaluated.reason:
                reasons[k][invalid_reason_for(Reason(evaluated.reason)).value] += 1
    for entry, counted in zip(result, reasons, strict=True):
        entry.reasons = dict(sorted(counted.items()))
    return result


def _conditions(
    service: ScoringReads,
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
    states = StateConditions.on(service, today)
    state_condition = STATE_FILTERS[state]
    if state_condition is not None:
        conditions.append(state_condition(states))
    overdue = states.overdue
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
    service: ScoringReads,
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
    service: ScoringReads, connection: AsyncConnection, seller_id: str, marketplace: str, category: str
) -> list[LaneHealth]:
    """Carrier x service health of this seller-category: worst share of valid first."""
    today = service.today()
    current = window(today, service.settings.window_lag_days)
    c = packages.c
    states = StateConditions.on(service, today)
    result = await connection.execute(
        select(
            c.carrier_name,
            c.service,
            func.sum(case((states.valid, 1), else_=0)),
            func.sum(case((states.invalid, 1), else_=0)),
            func.sum(case((states.pending, 1), else_=0)),
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
    service: ScoringReads,
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
