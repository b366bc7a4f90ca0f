"""The matured daily cohorts the failure correlation is learnt from
(services/scorer/domain/model/correlation.py): one aggregate over the packages whose
counting deadline has passed."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.model.correlation import Cohort, LaneCorrelations, learn_correlations
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.policy import STRUCTURAL_REASONS
from services.scorer.storage.model_inputs import lane_id
from services.scorer.storage.schema import packages
from shared.schemas import PackageState

#: A package promised on day d counts on d + 1 with the scans that occurred by the end of
#: that day: from d + 2 on its outcome is known.
MATURED_AFTER_DAYS = 2


async def read_matured_cohorts(connection: AsyncConnection, first: date, last: date) -> list[Cohort]:
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
    connection: AsyncConnection, settings: ModelSettings, today: date
) -> LaneCorrelations:
    """The correlation of failures per lane from the cohorts matured in the last
    ``correlation_history_days`` (``[forecast]`` of policy.toml)."""
    last = today - timedelta(days=MATURED_AFTER_DAYS)
    first = last - timedelta(days=settings.correlation_history_days - 1)
    cohorts = await read_matured_cohorts(connection, first, last)
    # Pure arithmetic over every seller lane's cohorts: off the event loop, as the model build.
    return await asyncio.to_thread(
        learn_correlations, cohorts, settings.correlation_pseudo_cohorts, settings.correlation_prior_is_floor
    )
