"""A scorer keeps the learning period's rows between model refreshes and reads only what was
written since (services/scorer/storage/model_columns.py): after random writes (new orders,
scans, deliveries, cancellations, orders shipped together) and time passing (waiting
packages age, old ones leave the period), the state built from the kept rows equals the
state built from a fresh read of everything."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.model.state import ModelState
from services.scorer.storage import cohorts, model_columns, model_state
from services.scorer.storage.model_inputs import read_model_build
from services.scorer.storage.model_state import _build_model_state
from services.scorer.storage.plan import apply_records
from shared.schemas import CanonicalStatus, ShipmentCancelled, ShipmentConfirmed, TrackingEvent
from tests.scorer.conftest import NOW, cancellation, event, record, shipment
from tests.scorer.storage.test_model_columns import assert_same_state

LANES = (
    {"carrier_name": "Yanwen", "carrier": "yanwen", "service": "Yanwen Line", "marketplace": "US"},
    {"carrier_name": "China Post", "carrier": "china-post", "service": "ePacket", "marketplace": "DE"},
)
PATH = (CanonicalStatus.ACCEPTED, CanonicalStatus.IN_TRANSIT, CanonicalStatus.ARRIVED_DESTINATION,
        CanonicalStatus.OUT_FOR_DELIVERY, CanonicalStatus.DELIVERED)  # fmt: skip


Message = ShipmentConfirmed | TrackingEvent | ShipmentCancelled


def writes(rng: random.Random, moment: datetime, orders: list[str]) -> list[Message]:
    """New orders confirmed in the last days before ``moment``, and scans (or a cancellation)
    for some of the orders already written."""
    found: list[Message] = []
    for _ in range(rng.randint(5, 15)):
        index = len(orders)
        # Now and then an order shipped with the previous one: the same tracking number.
        number = orders[-1] if orders and rng.random() < 0.1 else f"UG{index:09d}YP"
        confirmed = (moment - timedelta(hours=rng.uniform(0, 24 * 12))).replace(tzinfo=UTC)
        found.append(
            shipment(
                f"o-{index}",
                seller_id=f"seller-{rng.randint(1, 3)}",
                tracking_number=number,
                confirmed_at=confirmed,
                promised=(confirmed + timedelta(days=rng.randint(6, 20))).date(),
                **rng.choice(LANES),
            )  # type: ignore[arg-type]
        )
        orders.append(number)
    # Scans first: the carriers' history of orders confirmed at the next step.
    for ahead in range(3):
        at = (moment - timedelta(hours=rng.uniform(0, 30))).replace(tzinfo=UTC)
        found.append(event(PATH[ahead], tracking_number=f"UG{len(orders) + ahead:09d}YP", occurred_at=at))
    for number in rng.sample(orders, min(len(orders), 12)):
        if rng.random() < 0.05:
            found.append(cancellation(number, cancelled_at=(moment - timedelta(hours=1)).replace(tzinfo=UTC)))
            continue
        stage = rng.randrange(len(PATH))
        at = (moment - timedelta(hours=rng.uniform(0, 200))).replace(tzinfo=UTC)
        found.append(event(PATH[stage], tracking_number=number, occurred_at=at, source=rng.choice(["17track", "a"])))
    return found


async def state(engine: AsyncEngine, evaluator: Evaluator, now: datetime, *, fresh: bool) -> ModelState:
    if fresh:
        model_columns._CACHES.clear()
    settings = evaluator.policy.forecast
    async with engine.begin() as connection:
        columns, found = await _build_model_state(connection, settings, now)
        # The packages per lane the model was built from, as the database counts them.
        counted = await read_model_build(connection, now - timedelta(days=settings.history_days), now)
        # The matured cohorts kept per day, as one aggregate over the period gives them.
        last = now.date() - timedelta(days=cohorts.MATURED_AFTER_DAYS)
        first = last - timedelta(days=settings.correlation_history_days - 1)
        if fresh:
            cohorts._KEPT.clear()
        kept = await cohorts._matured_cohorts(connection, first, last, columns.rewritten_days)
        assert kept == await cohorts.read_matured_cohorts(connection, first, last)
    assert columns.lane_counts == counted.lane_packages
    return found


async def test_the_kept_rows_give_the_state_a_fresh_read_gives(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    rng = random.Random(20)
    orders: list[str] = []
    moment = NOW.replace(tzinfo=None)
    await state(scorer_engine, evaluator, moment, fresh=True)  # the first read: nothing yet
    for step in range(8):
        # Time passes (sometimes weeks: the oldest packages leave the learning period) ...
        moment += timedelta(hours=rng.choice([0.5, 6, 30, 24 * 20]))
        batch = writes(rng, moment, orders)
        async with scorer_engine.begin() as connection:
            await apply_records(connection, evaluator, [record(m) for m in batch], moment.date())
        kept = await state(scorer_engine, evaluator, moment, fresh=False)
        if scorer_engine.dialect.name == "postgresql":
            assert model_columns._CACHES[scorer_engine.sync_engine].incremental
        everything = await state(scorer_engine, evaluator, moment, fresh=True)
        assert everything.histograms, step
        assert_same_state(everything, kept)
        # ... and once more without any write in between.
        later = moment + timedelta(hours=rng.uniform(0, 48))
        kept = await state(scorer_engine, evaluator, later, fresh=False)
        if scorer_engine.dialect.name == "postgresql":
            assert model_columns._CACHES[scorer_engine.sync_engine].incremental
        assert_same_state(await state(scorer_engine, evaluator, later, fresh=True), kept)
        moment = later


async def test_a_refresh_that_fails_half_way_keeps_nothing(
    scorer_engine: AsyncEngine, evaluator: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept rows and their settled sums are brought up to date in place: a refresh whose
    arithmetic fails leaves nothing kept, and the next one reads and computes everything."""
    rng = random.Random(7)
    orders: list[str] = []
    moment = NOW.replace(tzinfo=None)
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(m) for m in writes(rng, moment, orders)], moment.date())
    await state(scorer_engine, evaluator, moment, fresh=True)
    moment += timedelta(hours=30)
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(m) for m in writes(rng, moment, orders)], moment.date())

    def failing(*arguments: object, **keywords: object) -> None:
        raise RuntimeError("half-way")

    with monkeypatch.context() as patched:
        patched.setattr(model_state, "state_of_columns", failing)
        with pytest.raises(RuntimeError):
            await state(scorer_engine, evaluator, moment, fresh=False)
    assert scorer_engine.sync_engine not in model_columns._CACHES
    kept = await state(scorer_engine, evaluator, moment, fresh=False)
    assert_same_state(await state(scorer_engine, evaluator, moment, fresh=True), kept)
