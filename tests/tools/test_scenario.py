"""The simulator is reproducible and its scenarios have the shape the checks rely on."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from tests.tools.conftest import TODAY
from tools.simulate.catalog import MARKETPLACES, SERVICES, Source
from tools.simulate.numbers import make_tracking_number, s10, s10_check_digit
from tools.simulate.plan import replay_plan
from tools.simulate.presets import DRIFTING_SELLER, SURFACE_SELLER, demo_config, small_config
from tools.simulate.scenario import Scenario, generate
from tools.simulate.truth import true_breach_day, vtr_by_key

KNOWN_AT = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def test_same_seed_same_scenario_and_plan() -> None:
    first, second = generate(small_config(), 3, TODAY), generate(small_config(), 3, TODAY)
    assert first.packages == second.packages
    assert first.parcels == second.parcels
    assert replay_plan(first, KNOWN_AT) == replay_plan(second, KNOWN_AT)


def test_another_seed_another_scenario() -> None:
    assert generate(small_config(), 3, TODAY).packages != generate(small_config(), 4, TODAY).packages


def test_scenario_covers_every_source_and_failure_mode(small_scenario: Scenario) -> None:
    sources = {parcel.service.source for parcel in small_scenario.parcels.values()}
    assert sources == set(Source)
    fates = {parcel.fate for parcel in small_scenario.parcels.values()}
    assert {
        "delivered",
        "no_pickup",
        "lost_in_transit",
        "surface_no_delivery_scan",
        "carrier_stopped_scanning",
    } <= fates
    assert any(package.cancelled_at for package in small_scenario.packages)
    shared = [tn for tn in small_scenario.parcels if sum(p.tracking_number == tn for p in small_scenario.packages) > 1]
    assert shared, "some orders share a parcel"
    assert small_scenario.start == TODAY - timedelta(days=45)
    assert max(p.confirmed_at.date() for p in small_scenario.packages) == TODAY + timedelta(days=14)


def test_values_sit_around_thresholds_but_never_in_fx_ambiguity(small_scenario: Scenario) -> None:
    at_threshold = 0
    for package in small_scenario.packages:
        market = MARKETPLACES[package.marketplace]
        low, high = market.ambiguous_band
        if market.fx_derived:
            assert not low <= package.value <= high, package
        at_threshold += package.value == market.threshold
    assert at_threshold > 0


def test_cancellations_come_before_any_delivery(small_scenario: Scenario) -> None:
    for package in small_scenario.packages:
        if package.cancelled_at is None:
            continue
        deliveries = [
            s.occurred_at for s in small_scenario.parcels[package.tracking_number].scans if s.status == "DELIVERED"
        ]
        assert all(package.cancelled_at < moment for moment in deliveries)


def test_tracking_numbers_are_well_formed() -> None:
    assert s10("RR", 12345678) == "RR123456785CN"
    assert s10_check_digit("00000000") == 5
    rng = random.Random(1)
    for service in SERVICES.values():
        number = make_tracking_number(service.number_format, rng)
        assert number == number.strip().upper()
        if service.number_format == "yt":
            assert len(number) == 18 and number[2:].isdigit()


def test_plan_sends_each_known_thing_once_and_in_order(small_scenario: Scenario) -> None:
    steps = replay_plan(small_scenario, KNOWN_AT)
    shipped = [package.order_id for step in steps for package in step.shipments]
    known = [p.order_id for p in small_scenario.packages if p.confirmed_at <= KNOWN_AT]
    assert sorted(shipped) == sorted(known)
    cancel_day = {p.order_id: step.day for step in steps for p in step.cancellations}
    ship_day = {p.order_id: step.day for step in steps for p in step.shipments}
    assert cancel_day and all(ship_day[order] <= day for order, day in cancel_day.items())
    pushed = {scan for step in steps for push in step.pushes for update in push.updates for scan in update.scans}
    assert all(scan.occurred_at <= KNOWN_AT for scan in pushed)
    assert [step.day for step in steps] == sorted(step.day for step in steps)


def test_demo_story_holds_for_the_default_seed() -> None:
    """The drifting and the surface seller are >= 95% now and truly breach 5+ days later;
    healthy sellers never breach within the horizon."""
    scenario = generate(demo_config(), 7, TODAY)
    now = vtr_by_key(scenario, TODAY, KNOWN_AT)
    for key, tally in now.items():
        breach = true_breach_day(scenario, key, TODAY)
        if key[0] in (DRIFTING_SELLER, SURFACE_SELLER) and breach is not None:
            assert tally.vtr is not None and tally.vtr >= 0.95
            assert breach >= TODAY + timedelta(days=5), key
        elif key[0] not in (DRIFTING_SELLER, SURFACE_SELLER):
            assert breach is None, key
    assert true_breach_day(scenario, (DRIFTING_SELLER, "SG", "Home & Kitchen"), TODAY) is not None
    assert true_breach_day(scenario, (SURFACE_SELLER, "AE", "Beauty"), TODAY) is not None


def test_transit_that_follows_the_promise_ends_a_few_days_before_it() -> None:
    from dataclasses import replace

    from tools.simulate.scenario import PromiseTransit

    model = PromiseTransit(lag_days=(8, 20), early_days=(1.0, 4.0), services=("yunexpress/line",))
    scenario = generate(replace(small_config(), promise_transit=model), 3, TODAY)
    following, lags = 0, set()
    for package in scenario.packages:
        parcel = scenario.parcels[package.tracking_number]
        delivered = [scan.occurred_at for scan in parcel.scans if scan.status.value == "DELIVERED"]
        if package.service_key != "yunexpress/line" or not delivered or parcel.fate != "delivered":
            continue
        end_of_promise = datetime.combine(package.promised_date + timedelta(days=1), datetime.min.time(), UTC)
        early_days = (end_of_promise - min(delivered)).total_seconds() / 86400
        assert 0.9 <= early_days <= 4.1 or (end_of_promise - package.confirmed_at).days < 4
        lags.add((package.promised_date - package.confirmed_at.date()).days)
        following += 1
    assert following > 50 and min(lags) == 8 and max(lags) == 20


def test_a_backfill_holds_the_orders_promised_since_its_start_and_the_open_older_ones() -> None:
    from dataclasses import replace

    full = generate(replace(small_config(), history_days=60), 5, TODAY)
    backfill = generate(replace(small_config(), history_days=60, backfill_days=35), 5, TODAY)
    first = TODAY - timedelta(days=35)
    start = datetime.combine(TODAY, datetime.min.time(), UTC)
    kept = {package.order_id for package in backfill.packages}
    for package in full.packages:
        scans = full.parcels[package.tracking_number].scans
        delivered = any(
            scan.status.value in ("DELIVERED", "ATTEMPTED_DELIVERY") and scan.occurred_at < start for scan in scans
        )
        expected = package.promised_date >= first or (not delivered and package.cancelled_at is None)
        assert (package.order_id in kept) == expected
    assert any(package.promised_date < first for package in backfill.packages)
    assert set(backfill.parcels) == {package.tracking_number for package in backfill.packages}
