"""The forecast model's state in the database: built from the learning period's packages
and scans, saved, refreshed, and the projections of orders not confirmed yet."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.model.carrier_health import carrier_health
from services.scorer.domain.model.estimator import Model
from services.scorer.domain.model.lanes import STAGE_OF_SCAN, LaneKey
from services.scorer.domain.model.observations import InFlight, observations_of, selected_from, silence_observations
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.state import ModelState
from services.scorer.domain.packages import MICRO, counted_deadline, service_key
from services.scorer.domain.policy import (
    STRUCTURAL_REASONS,
)
from services.scorer.domain.projection import LAG_DAYS, RecentPackage, project
from services.scorer.storage.cohorts import learn_lane_correlations
from services.scorer.storage.dialect import JSON_ENCODER, chunks, dialect_insert, execute_rows, insert_rows
from services.scorer.storage.model_inputs import carriers_of_numbers, health_with_source_outages, read_model_build
from services.scorer.storage.outbox import mark_changed
from services.scorer.storage.schema import (
    model_state,
    packages,
    projected_counts,
    scans,
)
from shared.schemas import (
    DELIVERY_SCAN_STATUSES,
    PHYSICAL_SCAN_STATUSES,
    PackageState,
)

MODEL_STATE_NAME = "forecast"


async def build_model_state(connection: AsyncConnection, settings: ModelSettings, now: datetime) -> ModelState:
    """The model's state from the packages confirmed in the learning period (milestone times,
    the silences between their scans, the carrier health), as of ``now`` (naive UTC). The
    arithmetic runs in a worker thread: on a large history it takes seconds, during which
    the event loop keeps consuming."""
    c = packages.c
    since = now - timedelta(days=settings.history_days)
    package_rows = (
        await connection.execute(
            select(
                c.seller_id,
                c.carrier,
                c.service,
                c.ship_from_country,
                c.marketplace,
                c.confirmed_at,
                c.first_scan_at,
                c.delivery_scan_at,
                c.last_scan_at,
                c.state,
                c.reason,
                c.tracking_number,
                c.promised_date,
            ).where(c.confirmed_at >= since, c.carrier.is_not(None), c.state != PackageState.CANCELLED.value)
        )
    ).all()
    silence_since = now - timedelta(days=settings.silence_history_days)
    scan_rows = (
        await connection.execute(
            select(scans.c.tracking_number, scans.c.status, scans.c.occurred_at, scans.c.source).where(
                scans.c.tracking_number.in_(select(c.tracking_number).where(c.confirmed_at >= silence_since)),
                scans.c.status.in_(sorted(PHYSICAL_SCAN_STATUSES)),
                scans.c.occurred_at <= now,
            )
        )
    ).all()
    state = await asyncio.to_thread(model_state_from_rows, package_rows, scan_rows, now, settings)
    scan_sources = ((row.tracking_number, row.source) for row in scan_rows)
    state.health = health_with_source_outages(state.health, carriers_of_numbers(package_rows), scan_sources, settings)
    return state


def model_state_from_rows(
    package_rows: Sequence[Any], scan_rows: Sequence[Any], now: datetime, settings: ModelSettings
) -> ModelState:
    """:func:`build_model_state`'s arithmetic, on the rows it read."""
    state = ModelState(computed_at=now, recent_hours=settings.recent_hours)
    scan_times: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    silence_since = now - timedelta(days=settings.silence_history_days)
    #: Scanned parcels recent enough to learn silences from:
    #: tracking number -> (lane, first scan, delivery scan, deadline).
    scanned: dict[str, tuple[LaneKey, datetime, datetime | None, datetime]] = {}
    complete_from = selected_from((row[0], row[12], row[7] is not None) for row in package_rows)
    for (
        seller_id,
        carrier,
        service,
        origin,
        marketplace,
        confirmed_at,
        first_scan_at,
        delivery_scan_at,
        last_scan_at,
        package_state,
        reason,
        tracking_number,
        promised_date,
    ) in package_rows:
        if reason in STRUCTURAL_REASONS or (package_state == PackageState.VALID.value and first_scan_at is None):
            continue  # their scans are not followed (or Buy Shipping counted them valid)
        lane: LaneKey = (seller_id, carrier, service_key(service), origin, marketplace)
        deadline = counted_deadline(promised_date)
        if first_scan_at is not None and first_scan_at <= now and confirmed_at >= silence_since:
            scanned.setdefault(tracking_number, (lane, first_scan_at, delivery_scan_at, deadline))
        first_complete = complete_from.get(seller_id)
        for observation in observations_of(
            lane,
            confirmed_at,
            first_scan_at,
            delivery_scan_at,
            now,
            settings,
            deadline,
            selected_waiting=first_complete is not None and promised_date < first_complete,
        ):
            state.add(observation)
        # Every carrier with a scan gets a health entry (its newest scan, however old); the
        # usual rate only counts the baseline period (services/scorer/domain/model/).
        times = scan_times[(carrier, origin)]
        for moment in {first_scan_at, delivery_scan_at, last_scan_at}:
            if moment is not None:
                times.append(moment)
    state.health = carrier_health(scan_times, now, settings)
    _add_silences(state, scanned, scan_rows, now, settings)
    return state


def _add_silences(
    state: ModelState,
    scanned: dict[str, tuple[LaneKey, datetime, datetime | None, datetime]],
    scan_rows: Sequence[Any],
    now: datetime,
    settings: ModelSettings,
) -> None:
    """The silences between the scans of recent parcels (learnt per lane across sellers:
    how long a service's parcels usually go without a scan in each stage), and the recent
    cohort of each seller's lane with the silence each parcel is in now."""
    by_number: dict[str, set[tuple[datetime, bool, str]]] = defaultdict(set)
    for tracking_number, status, occurred_at, *_ in scan_rows:
        if tracking_number in scanned:
            # Sorted by time, a delivery scan after any other scan of the same moment.
            by_number[tracking_number].add((occurred_at, status in DELIVERY_SCAN_STATUSES, status))
    for tracking_number, (lane, first_scan_at, delivery_scan_at, deadline) in scanned.items():
        ordered = [(status, moment) for moment, _, status in sorted(by_number.get(tracking_number, ()))]
        for observation in silence_observations(("", *lane[1:]), ordered, now, settings):  # type: ignore[arg-type]
            state.add(observation)
        last_status, last_at = ordered[-1] if ordered else (None, first_scan_at)
        state.in_flight.append(
            InFlight(
                lane,
                (now - first_scan_at).total_seconds() / 3600.0,
                delivery_scan_at is not None and delivery_scan_at <= now,
                STAGE_OF_SCAN.get(last_status or ""),
                (now - last_at).total_seconds() / 3600.0,
                (deadline - first_scan_at).total_seconds() / 3600.0,
            )
        )


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
    build = await read_model_build(connection, now - timedelta(days=settings.history_days), now)
    state = await build_model_state(connection, settings, now)
    state.correlations = await learn_lane_correlations(connection, settings, now.date())
    model = await asyncio.to_thread(Model, state, settings)
    c = packages.c
    lanes_result = await connection.execute(
        select(c.seller_id, c.carrier, c.service, c.ship_from_country, c.marketplace)
        .where(c.state == PackageState.PENDING.value)
        .distinct()
    )
    lanes = {(s, carrier or "", service_key(service), o, m) for s, carrier, service, o, m in lanes_result}
    previous = evaluator.model if evaluator.model.state.computed_at is not None else None
    changed = model.changed_lanes(previous, lanes)
    marked = 0
    pairs = sorted({(lane[0], lane[1]) for lane in changed})
    for chunk in chunks(pairs, 500):
        result = await connection.execute(
            update(packages)
            .where(
                c.state == PackageState.PENDING.value,
                tuple_(c.seller_id, func.coalesce(c.carrier, "")).in_(chunk),
            )
            .values(review_at=None)
        )
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
