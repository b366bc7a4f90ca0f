"""The forecast model's state in the database: built from the learning period's packages
and scans, saved, refreshed, and the projections of orders not confirmed yet."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy import (
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.freshness import ModelBuild
from services.scorer.domain.model.batch import Settled, SettledSums, carrier_health_of, state_of_columns
from services.scorer.domain.model.estimator import Model
from services.scorer.domain.model.lanes import LaneKey
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.state import ModelState
from services.scorer.domain.packages import MICRO, service_key
from services.scorer.domain.projection import LAG_DAYS, RecentPackage, project
from services.scorer.storage.cohorts import learn_lane_correlations
from services.scorer.storage.dialect import JSON_ENCODER, chunks, dialect_insert, execute_rows, insert_rows
from services.scorer.storage.model_columns import (
    SETTLED_FIELDS,
    ModelInput,
    StoredRows,
    kept_rows,
    micros,
    model_input_of,
    read_stored_rows,
    take_back_settled,
)
from services.scorer.storage.model_inputs import health_with_source_outages
from services.scorer.storage.outbox import mark_changed
from services.scorer.storage.schema import (
    model_state,
    packages,
    projected_counts,
)
from shared.schemas import PackageState

MODEL_STATE_NAME = "forecast"


async def build_model_state(connection: AsyncConnection, settings: ModelSettings, now: datetime) -> ModelState:
    """The model's state from the packages confirmed in the learning period (milestone times,
    the silences between their scans, the carrier health), as of ``now`` (naive UTC). The
    arithmetic runs in a worker thread, so the event loop keeps consuming meanwhile."""
    return (await _build_model_state(connection, settings, now))[1]


async def _build_model_state(
    connection: AsyncConnection, settings: ModelSettings, now: datetime
) -> tuple[ModelInput, ModelState]:
    since = now - timedelta(days=settings.history_days)
    silence_since = now - timedelta(days=settings.silence_history_days)
    with kept_rows(connection) as keep:
        rows = await read_stored_rows(connection, since, silence_since, now, settings)
        columns, state = await asyncio.to_thread(model_state_of_rows, rows, now, settings)
        keep()
    state.health = health_with_source_outages(state.health, columns.source_counts, settings)
    return columns, state


def model_state_of_rows(rows: StoredRows, now: datetime, settings: ModelSettings) -> tuple[ModelInput, ModelState]:
    """:func:`build_model_state`'s arithmetic on what it read: every package's observations
    and silences at once (services/scorer/domain/model/batch.py) and the carrier health.

    Rows kept between refreshes keep the sums of their settled observations with them
    (batch.Settled): only the packages and silences still moving are computed again."""
    since = now - timedelta(days=settings.history_days)
    silence_since = now - timedelta(days=settings.silence_history_days)
    now_us = micros(now)
    settled = None
    if rows.kept_between_refreshes:
        if rows.sums is None or now_us < rows.settled_until_us:
            # Settled observations stay as they are from the moment they settled on only.
            forget_settled(rows, now_us)
        # Silences learnt by packages that left the silences' period since.
        c = rows.columns
        take_back_settled(rows, c["confirmed"] < micros(silence_since), now_us, settings, silences_only=True)
    columns = model_input_of(rows, since, silence_since, now)
    if rows.kept_between_refreshes:
        settled = settled_of(rows, columns)
        if settled is None:  # inconsistent: everything computed again, settled anew
            forget_settled(rows, now_us)
            settled = settled_of(rows, columns)
    state = state_of_columns(columns.packages, columns.scans, columns.silence_learners, now_us, settings, settled)
    if settled is not None:
        at = columns.learning_rows
        for name, flags in (("settled", settled.packages), ("settled_waiting", settled.waiting),
                            ("silences_settled", settled.silences)):  # fmt: skip
            rows.columns[name][at] = flags
        rows.settled_until_us = now_us
    state.computed_at = now
    state.health = carrier_health_of(columns.packages, now_us, settings)
    return columns, state


def forget_settled(rows: StoredRows, now_us: int) -> None:
    """Start the settled sums anew (nothing settled)."""
    rows.sums = SettledSums.empty(now_us)
    for name in SETTLED_FIELDS:
        rows.columns[name] = np.zeros(len(rows.columns["id"]), dtype=bool)


def settled_of(rows: StoredRows, columns: ModelInput) -> Settled | None:
    """The kept flags of the learning packages, or None when a row outside them is flagged
    (its observations would be in the sums without being a learning package's any more)."""
    assert rows.sums is not None
    c = rows.columns
    learning = np.zeros(len(c["id"]), dtype=bool)
    learning[columns.learning_rows] = True
    learner = np.zeros(len(c["id"]), dtype=bool)
    learner[columns.learning_rows[columns.silence_learners]] = True
    if (c["settled"] & ~learning).any() or (c["silences_settled"] & ~learner).any():
        return None
    at = columns.learning_rows
    return Settled(rows.sums, c["settled"][at], c["settled_waiting"][at], c["silences_settled"][at],
                   columns.silences_may_settle)  # fmt: skip


async def save_model_state(connection: AsyncConnection, state: ModelState) -> None:
    assert state.computed_at is not None
    statement = dialect_insert(connection, model_state).values(
        name=MODEL_STATE_NAME,
        computed_at=state.computed_at,
        body=JSON_ENCODER.encode(state.lanes_only().as_json()).decode(),
    )
    statement = statement.on_conflict_do_update(
        index_elements=[model_state.c.name],
        set_={"computed_at": statement.excluded.computed_at, "body": statement.excluded.body},
    )
    await connection.execute(statement)


async def refresh_model(connection: AsyncConnection, evaluator: Evaluator, now: datetime) -> int:
    """Rebuild the model from the data, store it, and make the pending packages of every
    lane whose curves or carrier health moved due for review. Returns how many were marked.

    Because the model is a function of the stored data and ``now`` only, a shipments-first
    backfill and a scans-first one end with the same probabilities once this has run.
    """
    settings = evaluator.policy.forecast
    # Read before the rows: a package added in between counts as new next time (one refresh
    # too many at worst, never one too few). The packages per lane come from the rows read
    # (no aggregate over the period in the database).
    newest = (await connection.execute(select(func.coalesce(func.max(packages.c.id), 0)))).scalar_one()
    columns, state = await _build_model_state(connection, settings, now)
    build = ModelBuild(now, sum(columns.lane_counts.values()), int(newest), columns.lane_counts)
    state.correlations = await learn_lane_correlations(connection, settings, now.date(), columns.rewritten_days)
    model = await asyncio.to_thread(Model, state, settings)
    c = packages.c
    lanes_result = await connection.execute(
        select(c.seller_id, c.carrier, c.service, c.ship_from_country, c.marketplace)
        .where(c.state == PackageState.PENDING.value)
        .distinct()
    )
    # The stored spellings of each lane (services spelt differently are one lane: service_key).
    spellings: dict[LaneKey, list[tuple[str, str, str, str, str]]] = defaultdict(list)
    for seller, carrier, service, origin, marketplace in lanes_result:
        key = (seller, carrier or "", service_key(service), origin, marketplace)
        spellings[key].append((seller, carrier or "", service or "", origin, marketplace))
    previous = evaluator.model if evaluator.model.state.computed_at is not None else None
    # In a worker thread, as the build: comparing every seller's lanes computes their curves
    # and going-silent shares (seconds with tens of thousands of sellers), during which the
    # event loop keeps consuming and answering reads. The models' lazy caches only ever gain
    # finished values, so the loop's own evaluations can share them.
    changed = await asyncio.to_thread(model.changed_lanes, previous, set(spellings))
    marked = 0
    # Only the pending packages of the lanes that moved are due at once (their carrier's other
    # lanes keep their review time): the review after a refresh grows with what moved.
    moved = sorted(spelling for lane in changed for spelling in spellings[lane])
    for chunk in chunks(moved, 500):
        result = await connection.execute(
            update(packages)
            .where(
                c.state == PackageState.PENDING.value,
                c.review_at.is_not(None),  # already due: nothing to write
                tuple_(
                    c.seller_id, func.coalesce(c.carrier, ""), func.coalesce(c.service, ""), c.ship_from_country,
                    c.marketplace,
                ).in_(chunk),
            )
            .values(review_at=None)
        )  # fmt: skip
        marked += result.rowcount or 0
    await save_model_state(connection, state)
    evaluator.model = model
    evaluator.build = build
    return marked


ProjectionKey = tuple[str, str, str, date]


async def refresh_projections(connection: AsyncConnection, settings: ModelSettings, today: date, now: datetime) -> int:
    """Rebuild the projected orders of every seller-category that confirmed packages in the
    last two weeks (services/scorer/domain/projection.py) and mark the categories whose projection
    moved by half a package or more; returns how many were marked."""
    c = packages.c
    since = now - timedelta(days=max(LAG_DAYS, settings.projection_volume_days))
    result = await connection.execute(
        select(
            c.seller_id, c.marketplace, c.category, c.confirmed_at, c.promised_date, c.state, c.probability_micro
        ).where(c.confirmed_at >= since, c.state != PackageState.CANCELLED.value)
    )
    recent: dict[tuple[str, str, str], list[RecentPackage]] = defaultdict(list)
    for seller_id, marketplace, category, confirmed_at, promised, state, probability_micro in result:
        probability = 1.0 if state == PackageState.VALID.value else 0.0
        if state == PackageState.PENDING.value:
            probability = probability_micro / MICRO if promised >= today else 0.0
        recent[(seller_id, marketplace, category)].append(RecentPackage(confirmed_at, promised, probability))
    fresh: dict[ProjectionKey, tuple[int, int, int]] = {}
    for scope, items in recent.items():
        for day, projected in project(items, today, now, settings).items():
            fresh[(*scope, day)] = (
                round(projected.expected * MICRO),
                round(projected.expected_valid * MICRO),
                round(projected.variance * MICRO),
            )
    p = projected_counts.c
    old: dict[ProjectionKey, tuple[int, int, int]] = {
        (s_, m, cat, d): (e, v, var)
        for s_, m, cat, d, e, v, var in await connection.execute(
            select(p.seller_id, p.marketplace, p.category, p.promised_date, p.expected_micro,
                   p.expected_valid_micro, p.variance_micro)
        )
    }  # fmt: skip
    moved: dict[tuple[str, str, str], float] = defaultdict(float)
    for key in old.keys() | fresh.keys():
        before, after = old.get(key, (0, 0, 0)), fresh.get(key, (0, 0, 0))
        # What moves a forecast: projected failures (expected - expected valid).
        moved[key[:3]] += abs((after[0] - after[1]) - (before[0] - before[1])) / MICRO
    await connection.execute(delete(projected_counts))
    rows = [
        {
            "seller_id": key[0],
            "marketplace": key[1],
            "category": key[2],
            "promised_date": key[3],
            "expected_micro": value[0],
            "expected_valid_micro": value[1],
            "variance_micro": value[2],
        }
        for key, value in sorted(fresh.items())
    ]
    if rows:
        statement, parameters = insert_rows(connection, projected_counts, rows)
        await execute_rows(connection, statement, parameters)
    changed = sorted(scope for scope, amount in moved.items() if amount >= 0.5)
    await mark_changed(connection, changed)
    return len(changed)
