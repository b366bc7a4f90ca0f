"""What the forecast model was built from, what has changed since, and which lanes a
seller-category's pending packages are on (the queries behind domain/freshness.py), and
which carriers each push source brings (domain/sources.py)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer import metrics
from services.scorer.domain.freshness import InputChange, LaneId, ModelBuild
from services.scorer.domain.model.carrier_health import CarrierHealth
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.packages import service_key
from services.scorer.domain.sources import (
    PUSH_SOURCES,
    CarrierOrigin,
    SourceRules,
    carriers_behind,
    mark_source_outages,
    source_outages,
)
from services.scorer.storage.schema import packages
from shared.schemas import PackageState

CategoryKey = tuple[str, str]
SOURCE_RULES = SourceRules()


def lane_id(carrier: str | None, service: str | None, origin: str, marketplace: str) -> LaneId:
    return (carrier or "", service_key(service), origin, marketplace)


async def _packages_by_lane(connection: AsyncConnection, *conditions: Any) -> dict[LaneId, int]:
    c = packages.c
    lanes = (c.carrier, c.service, c.ship_from_country, c.marketplace)
    rows = await connection.execute(
        select(*lanes, func.count()).where(c.carrier.is_not(None), *conditions).group_by(*lanes)
    )
    found: Counter[LaneId] = Counter()
    for carrier, service, origin, marketplace, count in rows:
        found[lane_id(carrier, service, origin, marketplace)] += int(count)
    return dict(found)


async def read_model_build(connection: AsyncConnection, since: datetime, now: datetime) -> ModelBuild:
    """The packages of the learning period per lane, and the newest package id, read just
    before the model is built from the same table (a package added in between counts as
    new next time: one refresh too many at worst, never one too few)."""
    c = packages.c
    newest = (await connection.execute(select(func.coalesce(func.max(c.id), 0)))).scalar_one()
    lanes = await _packages_by_lane(connection, c.confirmed_at >= since, c.state != PackageState.CANCELLED.value)
    return ModelBuild(now, sum(lanes.values()), int(newest), lanes)


async def read_new_lanes(connection: AsyncConnection, build: ModelBuild) -> InputChange:
    """The packages added since ``build``, per lane (a range of the primary key)."""
    return InputChange(await _packages_by_lane(connection, packages.c.id > build.newest_package_id))


async def pending_lanes(
    connection: AsyncConnection, seller_id: str, as_of: date
) -> dict[CategoryKey, list[tuple[LaneId, int]]]:
    """A seller's pending packages promised from ``as_of`` on, per category and lane (the
    packages the forecast prices)."""
    c = packages.c
    rows = await connection.execute(
        select(c.marketplace, c.category, c.carrier, c.service, c.ship_from_country, func.count())
        .where(
            c.seller_id == seller_id,
            c.state == PackageState.PENDING.value,
            c.promised_date >= as_of,
            c.carrier.is_not(None),
        )
        .group_by(c.marketplace, c.category, c.carrier, c.service, c.ship_from_country)
    )
    found: dict[CategoryKey, list[tuple[LaneId, int]]] = defaultdict(list)
    for marketplace, category, carrier, service, origin, count in rows:
        found[(marketplace, category)].append((lane_id(carrier, service, origin, marketplace), int(count)))
    return found


def health_with_source_outages(
    health: Mapping[CarrierOrigin, CarrierHealth],
    counts: Mapping[CarrierOrigin, Counter[str]],
    settings: ModelSettings,
    rules: SourceRules = SOURCE_RULES,
) -> dict[CarrierOrigin, CarrierHealth]:
    """Carrier health read per push source: the carriers behind a source in an outage are
    not silent. ``counts`` are the recent physical scans per carrier x origin and source;
    exports ``vtr_scorer_source_outage`` and ``vtr_scorer_source_carriers``."""
    behind = carriers_behind(counts, rules)
    outages = source_outages(health, behind, settings, rules)
    out = {outage.source for outage in outages}
    for source in PUSH_SOURCES:
        metrics.SOURCE_CARRIERS.labels(source).set(len(behind.get(source, ())))
        metrics.SOURCE_OUTAGE.labels(source).set(int(source in out))
    return mark_source_outages(health, outages)
