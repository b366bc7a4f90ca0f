"""The promise as a predictor (services/scorer/domain/model/): deliveries timed on each parcel's
promise clock where that explains a lane better, delayed entry in the survival histograms,
backfilled history selected for still waiting, and priors before any data."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scorer.domain.model.curves import BOUNDS, BUCKETS, Histogram
from services.scorer.domain.model.estimator import Model
from services.scorer.domain.model.lanes import LaneKey, Milestone
from services.scorer.domain.model.observations import observations_of, selected_from
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.state import ModelState

NOW = datetime(2026, 6, 15, 12, 0)
SETTINGS = ModelSettings()
LANE: LaneKey = ("seller-1", "yunexpress", "line", "CN", "AE")

Package = tuple[LaneKey, datetime, datetime | None, datetime | None, datetime]


def state_of(packages: list[Package], selected: set[int] = frozenset()) -> ModelState:  # type: ignore[assignment]
    state = ModelState(computed_at=NOW, recent_hours=SETTINGS.recent_hours)
    for index, (lane, confirmed, first, delivery, deadline) in enumerate(packages):
        for observation in observations_of(
            lane, confirmed, first, delivery, NOW, SETTINGS, deadline, selected_waiting=index in selected
        ):
            state.add(observation)
    return state


def history(follows_promise: bool, rng: random.Random, lane: LaneKey = LANE, days: int = 45) -> list[Package]:
    """Parcels first scanned within a day; promise lags of 8-20 days; delivered 1-4 days before
    the deadline when transit follows the promise, else 6-9 days after the first scan."""
    found: list[Package] = []
    for day in range(1, days):
        for _ in range(10):
            confirmed = NOW - timedelta(days=day, hours=rng.uniform(0, 12))
            deadline = confirmed + timedelta(days=rng.randint(8, 20))
            first = confirmed + timedelta(hours=rng.uniform(3, 30))
            if follows_promise:
                delivery = deadline - timedelta(days=rng.uniform(1, 4))
            else:
                delivery = first + timedelta(days=rng.uniform(6, 9))
            found.append(
                (
                    lane,
                    confirmed,
                    first if first <= NOW else None,
                    delivery if delivery <= NOW and first <= NOW else None,
                    deadline,
                )
            )
    return found


def scanned_probability(model: Model, *, scanned_days_ago: float, days_left: float) -> float:
    probability, _ = model.estimate(
        LANE,
        full_tracking=True,
        physical_scans=2,
        first_scan_at=NOW - timedelta(days=scanned_days_ago),
        confirmed_at=NOW - timedelta(days=scanned_days_ago, hours=10),
        deadline=NOW + timedelta(days=days_left),
        now=NOW,
        malformed=False,
    )
    return probability


def test_a_lane_whose_transit_follows_the_promise_is_timed_on_the_promise() -> None:
    model = Model(state_of(history(True, random.Random(1))), SETTINGS)
    assert model.delivery_clock(LANE) is Milestone.DELIVERY_BY_PROMISE
    # Older since its first scan than most of the lane's parcels took, but 6 days before its
    # deadline: the parcels of far promises take that long, and get there.
    assert scanned_probability(model, scanned_days_ago=12, days_left=6) > 0.9


def test_a_lane_whose_transit_ignores_the_promise_keeps_the_clock_from_the_first_scan() -> None:
    model = Model(state_of(history(False, random.Random(2))), SETTINGS)
    assert model.delivery_clock(LANE) is Milestone.DELIVERY
    # 12 days after its first scan on a lane that always delivers within 9: late, whatever
    # its promise (no parcel of the lane was seen that old, so the prior's tail speaks).
    assert scanned_probability(model, scanned_days_ago=12, days_left=6) < 0.8
    assert scanned_probability(model, scanned_days_ago=4, days_left=6) > 0.9


def test_the_promise_clock_still_sees_a_parcel_past_its_lane_s_slack() -> None:
    model = Model(state_of(history(True, random.Random(3))), SETTINGS)
    on_time = scanned_probability(model, scanned_days_ago=5, days_left=5)
    # The deadline is near and the lane's parcels are delivered 1-4 days before it.
    late = scanned_probability(model, scanned_days_ago=12, days_left=0.3)
    assert on_time > 0.9 and late < on_time - 0.3


@given(
    entry=st.floats(min_value=0.0, max_value=700.0),
    extra=st.floats(min_value=0.0, max_value=300.0),
    reached=st.booleans(),
)
def test_delayed_entry_counts_the_hours_at_risk_from_the_entry_only(entry: float, extra: float, reached: bool) -> None:
    """A package entering at ``entry`` and leaving at ``exit`` is at risk for exactly the hours
    between (within the grid), and its event counts only if it happened after it entered."""
    exit_ = entry + extra
    delayed = Histogram()
    delayed.add(exit_, reached, 1.0, entry_hours=entry)
    whole, before = Histogram(), Histogram()
    whole.add(exit_, reached, 1.0)
    before.add(entry, False, 1.0)
    for bucket in range(BUCKETS):
        assert delayed.exposure[bucket] == pytest.approx(whole.exposure[bucket] - before.exposure[bucket], abs=1e-9)
    inside = min(exit_, BOUNDS[-1]) - min(entry, BOUNDS[-1])
    assert sum(delayed.exposure) == pytest.approx(max(0.0, inside), abs=1e-6)
    assert sum(delayed.events) == (1.0 if reached and exit_ > entry and exit_ < BOUNDS[-1] else 0.0)


def test_packages_selected_for_still_waiting_add_nothing() -> None:
    rng = random.Random(4)
    packages = history(True, rng)
    open_old: list[Package] = [
        (LANE, NOW - timedelta(days=50), NOW - timedelta(days=49), None, NOW - timedelta(days=38)) for _ in range(40)
    ]
    with_open = state_of(packages + open_old, selected=set(range(len(packages), len(packages) + 40)))
    without = state_of(packages)
    for milestone in (Milestone.FIRST_SCAN, Milestone.DELIVERY, Milestone.DELIVERY_BY_PROMISE):
        a, b = with_open.histograms[(LANE, milestone)], without.histograms[(LANE, milestone)]
        assert a.events == pytest.approx(b.events) and a.exposure == pytest.approx(b.exposure)


def test_selected_from_is_the_earliest_promise_of_a_delivered_package() -> None:
    day = NOW.date()
    rows = [
        ("a", day - timedelta(days=40), False),  # open, older than what the backfill covers
        ("a", day - timedelta(days=35), True),
        ("a", day - timedelta(days=20), True),
        ("b", day - timedelta(days=3), False),
    ]
    assert selected_from(rows) == {"a": day - timedelta(days=35)}


def test_before_any_data_the_priors_are_not_pessimistic() -> None:
    empty = Model(ModelState(), SETTINGS)
    fresh, _ = empty.estimate(
        LANE,
        full_tracking=True,
        physical_scans=0,
        first_scan_at=None,
        confirmed_at=NOW - timedelta(hours=3),
        deadline=NOW + timedelta(days=12),
        now=NOW,
        malformed=False,
    )
    assert fresh > 0.85
    # Ten days in transit, four before its deadline: on its way, as most parcels are.
    assert scanned_probability(empty, scanned_days_ago=10, days_left=4) > 0.85


def test_the_clock_choice_survives_the_stored_state() -> None:
    state = state_of(history(True, random.Random(5)))
    stored = ModelState.from_json(state.lanes_only().as_json())
    model = Model(stored, SETTINGS)
    lane_level: LaneKey = ("", *LANE[1:])  # type: ignore[assignment]
    assert model.delivery_clock(lane_level) is Milestone.DELIVERY_BY_PROMISE
