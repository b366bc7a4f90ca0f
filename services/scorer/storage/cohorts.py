"""The matured daily cohorts the failure correlation is learnt from
(services/scorer/domain/model/correlation.py): an aggregate over the packages whose
counting deadline has passed. On PostgreSQL a scorer keeps each promised day's cohorts
between refreshes and aggregates again only the days a package written since the last
read belongs to (or belonged to), and every day once a day."""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.model.correlation import Cohort, LaneCorrelations, learn_correlations
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.policy import STRUCTURAL_REASONS
from services.scorer.storage.dialect import driver_connection, uses_copy
from services.scorer.storage.model_inputs import lane_id
from services.scorer.storage.schema import packages
from shared.schemas import PackageState

#: A package promised on day d counts on d + 1 with the scans that occurred by the end of
#: that day: from d + 2 on its outcome is known.
MATURED_AFTER_DAYS = 2


async def read_matured_cohorts(
    connection: AsyncConnection, first: date, last: date, days: Collection[date] | None = None
) -> list[Cohort]:
    """Per seller, lane and promised date from ``first`` to ``last``: the packages and how
    many of them are not valid (a package still pending past its deadline is invalid).
    Cancelled packages and the structurally invalid ones (a carrier Amazon does not
    integrate, a service without delivery scans: invalid whatever happens) are left out."""
    c = packages.c
    group = (c.seller_id, c.carrier, c.service, c.ship_from_country, c.marketplace, c.promised_date)
    failed = func.sum(case((c.state == PackageState.VALID.value, 0), else_=1))
    rows = await connection.execute(
        select(*group, func.count(), failed)
        .where(
            c.promised_date >= first,
            c.promised_date <= last,
            c.carrier.is_not(None),
            c.state != PackageState.CANCELLED.value,
            c.reason.is_(None) | c.reason.not_in(sorted(STRUCTURAL_REASONS)),
            *(() if days is None else (c.promised_date.in_(sorted(days)),)),
        )
        .group_by(*group)
    )
    # Services spelt differently are one lane (service_key): merged here.
    totals: Counter[tuple[str, tuple[str, str, str, str], date]] = Counter()
    failures: Counter[tuple[str, tuple[str, str, str, str], date]] = Counter()
    for seller_id, carrier, service, origin, marketplace, promised, count, not_valid in rows:
        key = (seller_id, lane_id(carrier, service, origin, marketplace), promised)
        totals[key] += int(count)
        failures[key] += int(not_valid or 0)
    return [Cohort(key[0], key[1], key[2], total, failures[key]) for key, total in sorted(totals.items())]


async def learn_lane_correlations(
    connection: AsyncConnection, settings: ModelSettings, today: date, rewritten_days: Collection[date] | None = None
) -> LaneCorrelations:
    """The correlation of failures per lane from the cohorts matured in the last
    ``correlation_history_days`` (``[forecast]`` of policy.toml). ``rewritten_days``: the
    promised days the packages rewritten since the last refresh had before (the model's
    kept rows know them), so that a package moved to another day leaves its old one; None
    when unknown (then every day is aggregated again)."""
    last = today - timedelta(days=MATURED_AFTER_DAYS)
    first = last - timedelta(days=settings.correlation_history_days - 1)
    cohorts = await _matured_cohorts(connection, first, last, rewritten_days)
    # Pure arithmetic over every seller lane's cohorts: off the event loop, as the model build.
    return await asyncio.to_thread(
        learn_correlations, cohorts, settings.correlation_pseudo_cohorts, settings.correlation_prior_is_floor
    )


@dataclass
class _KeptCohorts:
    """A scorer's cohorts per promised day, and what its last read could not see yet."""

    #: The last day of the period read.
    last: date
    #: The oldest transaction in progress when the last read began (as model_columns.ModelCache).
    marker: str
    days: dict[date, list[Cohort]] = field(default_factory=dict)


#: Per database engine, as the model's kept rows.
_KEPT: weakref.WeakKeyDictionary[Any, _KeptCohorts] = weakref.WeakKeyDictionary()
_SNAPSHOT_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
#: The promised days of the period with a package written since the last read ($3).
_WRITTEN_DAYS = (
    "SELECT DISTINCT promised_date FROM packages WHERE promised_date BETWEEN $1 AND $2"
    " AND age(xmin) <= age($3::text::xid)"
)


async def _matured_cohorts(
    connection: AsyncConnection, first: date, last: date, rewritten_days: Collection[date] | None
) -> list[Cohort]:
    """:func:`read_matured_cohorts` of ``first`` .. ``last``: on PostgreSQL only the days
    written since this scorer's last read are aggregated again (all of them on a new day)."""
    if not uses_copy(connection):
        return await read_matured_cohorts(connection, first, last)
    driver = await driver_connection(connection)
    marker = str(int(await driver.fetchval(_SNAPSHOT_XMIN)) % 2**32)
    key = connection.engine.sync_engine
    # Taken out while brought up to date: a refresh that fails half-way reads everything next time.
    kept = _KEPT.pop(key, None)
    period = {first + timedelta(days=offset) for offset in range((last - first).days + 1)}
    days: dict[date, list[Cohort]]
    if kept is None or kept.last != last or rewritten_days is None:
        days = {day: [] for day in sorted(period)}
        for cohort in await read_matured_cohorts(connection, first, last):
            days[cohort.promised_date].append(cohort)
    else:
        written = {row[0] for row in await driver.fetch(_WRITTEN_DAYS, first, last, kept.marker)}
        stale = (written | set(rewritten_days) | (period - kept.days.keys())) & period
        days = {day: cohorts for day, cohorts in kept.days.items() if day in period and day not in stale}
        for day in stale:
            days[day] = []
        if stale:
            for cohort in await read_matured_cohorts(connection, first, last, stale):
                days[cohort.promised_date].append(cohort)
    _KEPT[key] = _KeptCohorts(last, marker, days)
    # In the order one aggregate over the whole period gives them.
    return sorted((cohort for cohorts in days.values() for cohort in cohorts), key=_cohort_order)


def _cohort_order(cohort: Cohort) -> tuple[str, tuple[str, str, str, str], date]:
    return (cohort.seller_id, cohort.lane, cohort.promised_date)
