"""The matured cohorts' aggregate (services/scorer/storage/cohorts.py) on a real database:
one row per seller, lane and promised date, only matured, counted packages."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.storage.cohorts import learn_lane_correlations, read_matured_cohorts
from services.scorer.storage.schema import packages
from shared.schemas import PackageState, Reason

TODAY = date(2026, 6, 15)
LANE = ("china-post", "epacket", "CN", "US")
_ids = iter(range(1, 100_000))


def row(promised: date, state: PackageState, **fields: Any) -> dict[str, Any]:
    number = next(_ids)
    values: dict[str, Any] = {
        "seller_id": "seller-1",
        "order_id": f"o-{number}",
        "marketplace": "US",
        "category": "toys",
        "tracking_number": f"RR{number:09d}CN",
        "carrier_name": "China Post",
        "carrier": "china-post",
        "service": "ePacket",
        "order_amount": "4.99",
        "order_currency": "USD",
        "ship_from_country": "CN",
        "buy_shipping": False,
        "risk_flags": "",
        "confirmed_at": datetime.combine(promised - timedelta(days=12), datetime.min.time()),
        "received_at": datetime.combine(promised - timedelta(days=12), datetime.min.time()),
        "promised_date": promised,
        "state": state.value,
        "reason": None,
        "required_tracking": "partial",
        "probability_micro": 0,
        "version": 1,
    }
    values.update(fields)
    return values


async def test_one_row_per_seller_lane_and_day_of_the_matured_packages(scorer_engine: AsyncEngine) -> None:
    day = TODAY - timedelta(days=5)
    rows = [
        row(day, PackageState.VALID),
        row(day, PackageState.VALID, service="EPACKET "),  # the same lane, spelt otherwise
        row(day, PackageState.INVALID, reason=Reason.NO_PHYSICAL_SCAN.value),
        # Still pending past its deadline: invalid by the rules.
        row(day, PackageState.PENDING),
        row(day, PackageState.CANCELLED),
        # Structurally invalid: not a failure of the lane's parcels.
        row(day, PackageState.INVALID, reason=Reason.SERVICE_LACKS_DELIVERY_SCAN.value),
        row(day, PackageState.VALID, carrier=None),
        row(day, PackageState.INVALID, seller_id="seller-2"),
        row(day - timedelta(days=1), PackageState.VALID),
        # Not matured yet (its counting day is tomorrow), and before the period.
        row(TODAY - timedelta(days=1), PackageState.INVALID),
        row(TODAY - timedelta(days=60), PackageState.INVALID),
    ]
    async with scorer_engine.begin() as connection:
        await connection.execute(insert(packages), rows)
        found = await read_matured_cohorts(connection, TODAY - timedelta(days=29), TODAY - timedelta(days=2))
    assert [(c.seller_id, c.lane, c.promised_date, c.packages, c.failed) for c in found] == [
        ("seller-1", LANE, day - timedelta(days=1), 1, 0),
        ("seller-1", LANE, day, 4, 2),
        ("seller-2", LANE, day, 1, 1),
    ]


async def test_a_lane_whose_failures_jump_from_day_to_day_is_learnt_at_refresh(scorer_engine: AsyncEngine) -> None:
    # 28 matured days of 30 parcels: 1 failure one day, 12 the next, for one seller;
    # 1 failure every day for another seller on another lane.
    rows = []
    for back in range(2, 30):
        day = TODAY - timedelta(days=back)
        jumpy = 12 if back % 2 else 1
        rows += [row(day, PackageState.INVALID if i < jumpy else PackageState.VALID) for i in range(30)]
        rows += [
            row(day, PackageState.INVALID if i < 1 else PackageState.VALID, seller_id="steady", service="Registered")
            for i in range(30)
        ]
    async with scorer_engine.begin() as connection:
        await connection.execute(insert(packages), rows)
        learnt = await learn_lane_correlations(connection, ModelSettings(), TODAY)
        unfloored = await learn_lane_correlations(connection, ModelSettings(correlation_prior_is_floor=False), TODAY)
    jumpy_value = learnt.of_lane("seller-1", LANE, 0.05)
    steady_value = learnt.of_lane("steady", ("china-post", "registered", "CN", "US"), 0.05)
    assert learnt.seller_lanes[("seller-1", LANE)].cohorts == 27
    assert jumpy_value > 0.5
    assert steady_value < jumpy_value / 2
    # The steady lane takes the prior (the floor), or less when the floor is off.
    assert steady_value == 0.05
    assert unfloored.of_lane("steady", ("china-post", "registered", "CN", "US"), 0.05) < 0.05
