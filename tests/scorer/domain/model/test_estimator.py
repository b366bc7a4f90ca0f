"""The per-package model (services/scorer/domain/model/): survival curves from censored data,
hierarchical shrinkage, reasons, carrier health, and order-free state."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scorer.domain.model.carrier_health import CarrierHealth, carrier_health
from services.scorer.domain.model.curves import BUCKETS, Curve, Histogram
from services.scorer.domain.model.estimator import Model
from services.scorer.domain.model.lanes import PACKAGE_MILESTONES, STAGE_OF_SCAN, LaneKey, Milestone
from services.scorer.domain.model.observations import InFlight, observations_of, silence_observations
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.state import ModelState
from shared.schemas import Reason

NOW = datetime(2026, 6, 15, 12, 0)
SETTINGS = ModelSettings()
LANE: LaneKey = ("seller-1", "yanwen", "yanwen line", "CN", "SG")
OTHER_SELLER: LaneKey = ("seller-2", "yanwen", "yanwen line", "CN", "SG")


def state_of(packages: list[tuple[LaneKey, datetime, datetime | None, datetime | None]]) -> ModelState:
    state = ModelState(computed_at=NOW, recent_hours=SETTINGS.recent_hours)
    for lane, confirmed, first, delivery in packages:
        for observation in observations_of(lane, confirmed, first, delivery, NOW, SETTINGS):
            state.add(observation)
    return state


def healthy_history(lane: LaneKey, days: int = 40, per_day: int = 8, rng: random.Random | None = None) -> list:
    """Most first scans within a day, 3% days late, 0.5% never; deliveries 5-9 days later."""
    rng = rng or random.Random(1)
    found = []
    for day in range(2, days):
        for _ in range(per_day):
            confirmed = NOW - timedelta(days=day, hours=rng.uniform(0, 12))
            draw = rng.random()
            if draw < 0.005:
                found.append((lane, confirmed, None, None))
                continue
            pickup = rng.uniform(72, 190) if draw < 0.035 else rng.uniform(4, 28)
            first = confirmed + timedelta(hours=pickup)
            delivery = first + timedelta(days=rng.uniform(5, 9))
            found.append((lane, confirmed, first if first <= NOW else None, delivery if delivery <= NOW else None))
    return found


def estimate(model: Model, lane: LaneKey, *, hours_ago: float, days_left: float, scanned_hours_ago: float | None = None,
             full: bool = False) -> tuple[float, Reason]:  # fmt: skip
    confirmed = NOW - timedelta(hours=hours_ago)
    return model.estimate(
        lane,
        full_tracking=full,
        physical_scans=0 if scanned_hours_ago is None else 1,
        first_scan_at=None if scanned_hours_ago is None else NOW - timedelta(hours=scanned_hours_ago),
        confirmed_at=confirmed,
        deadline=NOW + timedelta(days=days_left),
        now=NOW,
        malformed=False,
    )


def test_a_prior_curve_reaches_its_share() -> None:
    curve = Curve.prior(mean_days=1.0, share=0.9)
    assert curve.survival[0] == 1.0
    assert curve.eventual == pytest.approx(0.9, abs=0.01)
    assert curve.reach_by(0, 24) == pytest.approx(0.9 * (1 - 2.718281828**-1), abs=0.01)


def test_censored_packages_are_at_risk_not_failures() -> None:
    histogram = Histogram()
    histogram.add(10.0, reached=True, weight=1.0)
    histogram.add(10.0, reached=False, weight=1.0)  # still waiting after 10 hours
    assert sum(histogram.events) == 1.0
    # Both were at risk for 10 hours: 3-hour buckets 0..2 fully, bucket 3 for one hour each.
    assert histogram.exposure[:4] == pytest.approx([6.0, 6.0, 6.0, 2.0])


def test_a_healthy_lane_gives_high_probabilities_and_no_overdue() -> None:
    model = Model(state_of(healthy_history(LANE)), SETTINGS)
    probability, reason = estimate(model, LANE, hours_ago=2, days_left=10)
    assert probability > 0.95 and reason is Reason.AWAITING_FIRST_SCAN
    scanned, reason = estimate(model, LANE, hours_ago=48, days_left=10, scanned_hours_ago=30, full=True)
    assert scanned > 0.9 and reason is Reason.AWAITING_DELIVERY_SCAN


def test_a_carrier_that_stopped_picking_up_two_days_ago_shows_in_unscanned_parcels() -> None:
    rng = random.Random(2)
    history = healthy_history(LANE, rng=rng)
    stopped = [(LANE, NOW - timedelta(hours=rng.uniform(0, 48)), None, None) for _ in range(16)]
    healthy = Model(state_of(history), SETTINGS)
    failing = Model(state_of(history + stopped), SETTINGS)
    before, _ = estimate(healthy, LANE, hours_ago=36, days_left=10)
    after, reason = estimate(failing, LANE, hours_ago=36, days_left=10)
    assert after < before - 0.25
    assert reason is Reason.OVERDUE_FIRST_SCAN


def test_slow_but_reliable_first_scans_are_learnt_not_flagged() -> None:
    rng = random.Random(3)
    slow = []
    for day in range(8, 45):
        for _ in range(6):
            confirmed = NOW - timedelta(days=day, hours=rng.uniform(0, 12))
            slow.append((LANE, confirmed, confirmed + timedelta(days=rng.uniform(3, 6)), None))
    model = Model(state_of(slow), SETTINGS)
    probability, reason = estimate(model, LANE, hours_ago=60, days_left=8)
    assert probability > 0.9
    assert reason is Reason.AWAITING_FIRST_SCAN


def test_one_sellers_stop_shows_for_that_seller_and_not_for_the_others_on_the_lane() -> None:
    rng = random.Random(4)
    mine = healthy_history(LANE, rng=rng)
    others = healthy_history(OTHER_SELLER, per_day=20, rng=rng)
    stopped = [(LANE, NOW - timedelta(hours=rng.uniform(0, 60)), None, None) for _ in range(20)]
    model = Model(state_of(mine + others + stopped), SETTINGS)
    newcomer: LaneKey = ("seller-new", *LANE[1:])  # type: ignore[assignment]
    failing, _ = estimate(model, LANE, hours_ago=40, days_left=10)
    fresh, _ = estimate(model, LANE, hours_ago=2, days_left=10)
    other, _ = estimate(model, OTHER_SELLER, hours_ago=2, days_left=10)
    other_late, _ = estimate(model, OTHER_SELLER, hours_ago=40, days_left=10)
    borrowed, _ = estimate(model, newcomer, hours_ago=2, days_left=10)
    assert failing < other_late - 0.25
    # The seller's parcels confirmed this morning are not scanned yet, but the lane's recent
    # cohort says a good share of them will never be.
    assert fresh < other - 0.2
    # The other seller, and a newcomer borrowing the lane, stay healthy.
    assert other > 0.9 and borrowed > 0.85


def peer_lanes(count: int) -> list[LaneKey]:
    """Other sellers on LANE's carrier and origin, in other marketplaces."""
    return [(f"peer-{i}", "yanwen", "yanwen line", "CN", ("JP", "AE", "SA", "MX", "AU", "US")[i]) for i in range(count)]


def history_before(lanes: list[LaneKey], rng: random.Random, days_ago: float) -> list:
    """Healthy history of every lane, confirmed before ``days_ago``."""
    cutoff = NOW - timedelta(days=days_ago)
    return [package for lane in lanes for package in healthy_history(lane, rng=rng) if package[1] < cutoff]


def backlogged(lane: LaneKey, rng: random.Random, days: float = 4.0, per_day: int = 8) -> list:
    """Parcels confirmed in the last ``days``: 80% of them first scanned 3-8 days late (so
    still waiting now), the rest as usual."""
    found = []
    for _ in range(int(days * per_day)):
        confirmed = NOW - timedelta(hours=rng.uniform(0, days * 24))
        pickup = rng.uniform(72, 190) if rng.random() < 0.8 else rng.uniform(4, 28)
        first = confirmed + timedelta(hours=pickup)
        found.append((lane, confirmed, first if first <= NOW else None, None))
    return found


def test_a_pickup_backlog_every_seller_of_the_carrier_shares_is_a_delay_not_a_loss() -> None:
    rng = random.Random(5)
    lanes = [LANE, *peer_lanes(5)]
    history = history_before(lanes, rng, days_ago=4)
    backlog = [package for lane in lanes for package in backlogged(lane, rng)]
    alone = Model(state_of(history + backlogged(LANE, rng)), SETTINGS)
    shared = Model(state_of(history + backlog), SETTINGS)
    # The peers' parcels wait as the seller's do: what the history says of a waiting
    # parcel's chances (a few in a hundred never scanned) holds for the delayed ones too.
    assert shared.change.peer_backlog(LANE, 60.0) > 0.5
    waiting_alone, _ = estimate(alone, LANE, hours_ago=60, days_left=12)
    waiting_shared, _ = estimate(shared, LANE, hours_ago=60, days_left=12)
    assert waiting_shared > 0.9
    # The seller alone with the same waiting parcels (no peer shares it) is a stop.
    assert waiting_alone < waiting_shared - 0.3


def test_a_backlog_needs_most_peers_a_big_failing_peer_does_not_hide_a_sellers_stop() -> None:
    rng = random.Random(6)
    peers = peer_lanes(4)
    history = history_before([LANE, *peers], rng, days_ago=3)
    recent = [package for lane in peers[1:] for package in healthy_history(lane, days=3, rng=rng)]
    # The seller's parcels and one big peer's stopped being scanned 3 days ago.
    stopped = [
        (lane, NOW - timedelta(hours=rng.uniform(0, 72)), None, None) for lane in (LANE, peers[0]) for _ in range(60)
    ]
    model = Model(state_of(history + recent + stopped), SETTINGS)
    assert model.change.peer_backlog(LANE, 40.0) == 0.0
    failing, reason = estimate(model, LANE, hours_ago=40, days_left=10)
    healthy, _ = estimate(model, peers[1], hours_ago=40, days_left=10)
    assert failing < healthy - 0.25
    assert reason in (Reason.AWAITING_FIRST_SCAN, Reason.OVERDUE_FIRST_SCAN)


def test_a_silent_carrier_is_no_backlog() -> None:
    rng = random.Random(7)
    lanes = [LANE, *peer_lanes(5)]
    history = history_before(lanes, rng, days_ago=4)
    state = state_of(history + [package for lane in lanes for package in backlogged(lane, rng)])
    assert Model(state, SETTINGS).change.peer_backlog(LANE, 60.0) > 0.5
    state.health[("yanwen", "CN")] = CarrierHealth("yanwen", "CN", silent_hours=40.0, usual_rate=10.0)
    assert Model(state, SETTINGS).change.peer_backlog(LANE, 60.0) == 0.0


def test_a_service_that_never_scans_delivery_is_learnt_partial_only() -> None:
    rng = random.Random(5)
    untracked = []
    for day in range(2, 56):
        for _ in range(6):
            confirmed = NOW - timedelta(days=day, hours=rng.uniform(0, 12))
            untracked.append((LANE, confirmed, confirmed + timedelta(hours=rng.uniform(4, 20)), None))
    model = Model(state_of(untracked), SETTINGS)
    assert model.rarely_scans_delivery(LANE)
    probability, reason = estimate(model, LANE, hours_ago=30, days_left=12, scanned_hours_ago=20, full=True)
    assert probability < 0.05
    assert reason is Reason.SERVICE_RARELY_SCANS_DELIVERY
    # Partial tracking does not need the delivery scan: unaffected.
    partial, _ = estimate(model, LANE, hours_ago=2, days_left=12)
    assert partial > 0.9


def test_a_stalled_parcel_is_told_from_one_on_time() -> None:
    model = Model(state_of(healthy_history(LANE)), SETTINGS)
    on_time, _ = estimate(model, LANE, hours_ago=80, days_left=6, scanned_hours_ago=70, full=True)
    stalled, reason = estimate(model, LANE, hours_ago=15 * 24, days_left=1, scanned_hours_ago=14 * 24, full=True)
    assert on_time > 0.8 > 0.3 > stalled
    assert reason is Reason.STALLED_IN_TRANSIT


def test_carrier_health_flags_a_silent_carrier_and_lowers_its_parcels() -> None:
    scans_per_hour = 4
    usual = [NOW - timedelta(hours=30 + h / scans_per_hour) for h in range(24 * 6 * scans_per_hour)]
    health = carrier_health({("yunexpress", "CN"): usual}, NOW, SETTINGS)[("yunexpress", "CN")]
    assert health.silent_hours == pytest.approx(30.0, abs=0.3)
    assert health.silent(SETTINGS)
    history = healthy_history(("seller-1", "yunexpress", "line", "CN", "AE"))
    quiet = Model(state_of(history), SETTINGS)
    state = state_of(history)
    state.health = {("yunexpress", "CN"): health}
    silent = Model(state, SETTINGS)
    lane: LaneKey = ("seller-1", "yunexpress", "line", "CN", "AE")
    before, _ = estimate(quiet, lane, hours_ago=6, days_left=10)
    after, reason = estimate(silent, lane, hours_ago=6, days_left=10)
    assert after < before * 0.3
    assert reason is Reason.CARRIER_SILENT


def test_a_night_without_scans_is_not_silence() -> None:
    sparse = [NOW - timedelta(hours=6 + 24 * day) for day in range(7)]  # a few scans a day
    health = carrier_health({("yanwen", "CN"): sparse}, NOW, SETTINGS)[("yanwen", "CN")]
    assert not health.silent(SETTINGS)


def test_the_state_survives_its_json_round_trip() -> None:
    state = state_of(healthy_history(LANE, days=10))
    state.health = carrier_health({("yanwen", "CN"): [NOW - timedelta(hours=h) for h in range(100)]}, NOW, SETTINGS)
    again = ModelState.from_json(state.as_json())
    assert again.health == state.health
    for key, histogram in state.histograms.items():
        assert again.histograms[key].events == pytest.approx(histogram.events, abs=1e-3)
    assert estimate(Model(again, SETTINGS), LANE, hours_ago=20, days_left=5) == pytest.approx(
        estimate(Model(state, SETTINGS), LANE, hours_ago=20, days_left=5), abs=2e-3
    )


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_the_model_does_not_depend_on_the_order_packages_are_seen(rnd: random.Random) -> None:
    packages = healthy_history(LANE, days=12, per_day=3, rng=random.Random(9))
    shuffled = list(packages)
    rnd.shuffle(shuffled)
    first, second = Model(state_of(packages), SETTINGS), Model(state_of(shuffled), SETTINGS)
    for milestone in Milestone:
        assert first.curve(LANE, milestone).survival == pytest.approx(second.curve(LANE, milestone).survival)


def test_probabilities_stay_in_range_for_every_elapsed_time() -> None:
    model = Model(state_of(healthy_history(LANE)), SETTINGS)
    for hours in range(0, 24 * 40, 7):
        for full in (False, True):
            probability, _ = estimate(model, LANE, hours_ago=hours, days_left=3, full=full)
            assert 0.0 <= probability <= 1.0
    assert len(model.curve(LANE, Milestone.FIRST_SCAN).survival) == BUCKETS + 1


def test_the_stored_state_is_per_lane_whatever_the_number_of_sellers() -> None:
    sellers = [(f"seller-{i}", *LANE[1:]) for i in range(30)]
    packages = [package for seller in sellers for package in healthy_history(seller, days=6, per_day=2)]  # type: ignore[arg-type]
    state = state_of(packages)
    stored = state.lanes_only()
    assert len(state.histograms) == 30 * 2 and len(stored.histograms) == 2
    for milestone in PACKAGE_MILESTONES:
        total = sum(sum(h.events) for (lane, m), h in state.histograms.items() if m is milestone)
        assert sum(stored.histograms[(("", *LANE[1:]), milestone)].events) == pytest.approx(total)  # type: ignore[index]


# -- silences between scans -----------------------------------------------------------

#: A parcel's path: (status, hours after its first scan); the delivery comes last.
ON_TIME_PATH = (("ACCEPTED", 0.0), ("IN_TRANSIT", 18.0), ("IN_TRANSIT", 60.0), ("ARRIVED_DESTINATION", 110.0),
                ("OUT_FOR_DELIVERY", 140.0), ("DELIVERED", 146.0))  # fmt: skip


def scanned_parcels(
    lane: LaneKey, *, days: int, per_day: int, lost_share: float, rng: random.Random, lost_after: int = 3
) -> list[tuple[LaneKey, datetime, list[tuple[str, datetime]]]]:
    """Parcels first scanned 0..days ago on ON_TIME_PATH (each at its own pace); ``lost_share`` of them
    stop after their ``lost_after`` first scans."""
    parcels = []
    for day in range(days):
        for _ in range(per_day):
            first = NOW - timedelta(days=day, hours=rng.uniform(0, 20))
            stop = lost_after if rng.random() < lost_share else len(ON_TIME_PATH)
            pace = rng.uniform(0.85, 1.15)
            path = [(status, first + timedelta(hours=hours * pace)) for status, hours in ON_TIME_PATH[:stop]]
            parcels.append((lane, first - timedelta(hours=6), [(status, at) for status, at in path if at <= NOW]))
    return parcels


def state_with_scans(parcels: list[tuple[LaneKey, datetime, list[tuple[str, datetime]]]]) -> ModelState:
    """What build_model_state makes of these parcels: milestones, silences, the recent cohort."""
    state = ModelState(computed_at=NOW, recent_hours=SETTINGS.recent_hours)
    for lane, confirmed, scans in parcels:
        first = scans[0][1] if scans else None
        delivery = next((at for status, at in scans if status == "DELIVERED"), None)
        for observation in observations_of(lane, confirmed, first, delivery, NOW, SETTINGS):
            state.add(observation)
        for observation in silence_observations(("", *lane[1:]), scans, NOW, SETTINGS):  # type: ignore[arg-type]
            state.add(observation)
        if first is not None:
            last_status, last_at = scans[-1]
            age, silent = (NOW - first).total_seconds() / 3600, (NOW - last_at).total_seconds() / 3600
            state.in_flight.append(InFlight(lane, age, delivery is not None, STAGE_OF_SCAN.get(last_status), silent))
    return state


def scanned_estimate(model: Model, lane: LaneKey, *, scanned_hours_ago: float, silent_hours: float,
                     last_status: str = "IN_TRANSIT", days_left: float = 6) -> tuple[float, Reason]:  # fmt: skip
    return model.estimate(
        lane,
        full_tracking=True,
        physical_scans=2,
        first_scan_at=NOW - timedelta(hours=scanned_hours_ago),
        confirmed_at=NOW - timedelta(hours=scanned_hours_ago + 6),
        deadline=NOW + timedelta(days=days_left),
        now=NOW,
        malformed=False,
        last_scan_at=NOW - timedelta(hours=silent_hours),
        last_scan_status=last_status,
    )


def test_silences_run_from_scan_to_scan_and_a_delivery_ends_them() -> None:
    at = [NOW - timedelta(hours=h) for h in (100, 80, 20, 10)]
    path = list(zip(("ACCEPTED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"), at, strict=True))
    delivered = silence_observations(LANE, path, NOW, SETTINGS)
    assert [(o.milestone, round(o.elapsed_hours), o.reached) for o in delivered] == [
        (Milestone.GAP_TRANSIT, 20, True),
        (Milestone.GAP_TRANSIT, 60, True),
        (Milestone.GAP_LAST_MILE, 10, True),
    ]
    silent = silence_observations(LANE, [("ACCEPTED", at[0]), ("ARRIVED_DESTINATION", at[1])], NOW, SETTINGS)
    assert [(o.milestone, round(o.elapsed_hours), o.reached) for o in silent] == [
        (Milestone.GAP_TRANSIT, 20, True),
        (Milestone.GAP_DESTINATION, 80, False),  # still silent: censored, not a failure
    ]


def test_a_parcel_silent_far_longer_than_its_stage_allows_is_stalled_before_it_is_overdue() -> None:
    history = scanned_parcels(LANE, days=40, per_day=8, lost_share=0.005, rng=random.Random(11))
    model = Model(state_with_scans(history), SETTINGS)
    # Both before the lane's usual delivery (6 days after the first scan); the lane's
    # longest usual silence is about 2.5 days.
    usual, usual_reason = scanned_estimate(model, LANE, scanned_hours_ago=96, silent_hours=30)
    stalled, stalled_reason = scanned_estimate(model, LANE, scanned_hours_ago=130, silent_hours=120)
    assert usual > 0.9 and usual_reason is Reason.AWAITING_DELIVERY_SCAN
    assert stalled < 0.3 and stalled_reason is Reason.STALLED_IN_TRANSIT
    # Out for delivery a day ago and no delivery scan: the lane delivers within hours.
    missing, _ = scanned_estimate(model, LANE, scanned_hours_ago=150, silent_hours=24, last_status="OUT_FOR_DELIVERY")
    assert missing < 0.2
    # Without the last scan (an older caller), the model falls back to the milestones alone.
    unknown, _ = scanned_estimate(model, LANE, scanned_hours_ago=130, silent_hours=120, last_status="")
    assert unknown > 0.9


def test_a_sellers_parcels_going_silent_lower_that_sellers_young_parcels_only() -> None:
    rng = random.Random(12)
    history = scanned_parcels(LANE, days=40, per_day=6, lost_share=0.005, rng=rng)
    history = [parcel for parcel in history if parcel[1] < NOW - timedelta(days=9)]
    stalling = scanned_parcels(LANE, days=9, per_day=6, lost_share=0.5, rng=rng)
    others = scanned_parcels(OTHER_SELLER, days=40, per_day=12, lost_share=0.005, rng=rng)
    model = Model(state_with_scans(history + stalling + others), SETTINGS)
    steady = scanned_parcels(LANE, days=9, per_day=6, lost_share=0.005, rng=rng)
    healthy = Model(state_with_scans(history + steady + others), SETTINGS)
    assert model.going_silent(LANE) > 0.1
    assert model.going_silent(OTHER_SELLER) < 0.05 and healthy.going_silent(LANE) < 0.05
    # Scanned this morning, silent for a few hours only: its own record says nothing yet,
    # its lane's recent parcels do.
    young, _ = scanned_estimate(model, LANE, scanned_hours_ago=8, silent_hours=4, days_left=10)
    young_other, _ = scanned_estimate(model, OTHER_SELLER, scanned_hours_ago=8, silent_hours=4, days_left=10)
    young_healthy, _ = scanned_estimate(healthy, LANE, scanned_hours_ago=8, silent_hours=4, days_left=10)
    assert young < young_healthy - 0.15
    assert young_other > 0.9 and young_healthy > 0.9
    # A confirmation not scanned yet needs the same delivery scan: lowered too.
    unscanned, _ = estimate(model, LANE, hours_ago=4, days_left=12, full=True)
    unscanned_healthy, _ = estimate(healthy, LANE, hours_ago=4, days_left=12, full=True)
    assert unscanned < unscanned_healthy - 0.15


def test_the_mixture_credits_a_sellers_stall_beyond_its_peers_and_not_a_shared_one() -> None:
    """The going-silent share of a seller's lane as a mixture (silence_share_mixture): the
    parcels whose silence cannot tell yet weigh nothing instead of diluting the share, so it
    credits more than the summed excess; silence the carrier's other sellers share is a
    delay for everyone (a congested hub), not this seller's loss: then only the summed
    excess speaks."""
    rng = random.Random(14)
    history = scanned_parcels(LANE, days=40, per_day=6, lost_share=0.005, rng=rng)
    history = [parcel for parcel in history if parcel[1] < NOW - timedelta(days=7)]
    stalling = scanned_parcels(LANE, days=7, per_day=6, lost_share=0.6, rng=rng)
    peers: list[LaneKey] = [(f"seller-{i}", *LANE[1:]) for i in range(3, 7)]  # type: ignore[misc]
    healthy = [p for lane in peers for p in scanned_parcels(lane, days=40, per_day=6, lost_share=0.005, rng=rng)]
    state = state_with_scans(history + stalling + healthy)
    mixture, summed = Model(state, SETTINGS), Model(state, replace(SETTINGS, silence_share_mixture=False))
    assert mixture.going_silent(LANE) > summed.going_silent(LANE) + 0.005
    assert mixture.going_silent(peers[0]) < 0.01
    # Every seller of the carrier shows the same silences: no one's loss beyond the others'.
    everyone = [p for lane in peers for p in scanned_parcels(lane, days=7, per_day=6, lost_share=0.6, rng=rng)]
    shared = state_with_scans(history + stalling + healthy + everyone)
    with_peers = Model(shared, SETTINGS)
    without = Model(shared, replace(SETTINGS, silence_share_mixture=False))
    assert with_peers.going_silent(LANE) == pytest.approx(without.going_silent(LANE))


def test_a_parcels_silence_only_counts_while_its_carrier_is_heard_from() -> None:
    """When no scan of the carrier arrives at all (the carrier or the webhook that brings its
    scans is down), every parcel is silent: carrier health says so, once, instead of every
    parcel looking stalled."""
    history = scanned_parcels(LANE, days=40, per_day=8, lost_share=0.005, rng=random.Random(13))
    alone = Model(state_with_scans(history), SETTINGS)
    state = state_with_scans(history)
    state.health = {("yanwen", "CN"): CarrierHealth("yanwen", "CN", silent_hours=100.0, usual_rate=2.0)}
    quiet_carrier = Model(state, SETTINGS)
    assert quiet_carrier.parcel_silence(LANE, 120) == pytest.approx(20.0)
    assert alone.parcel_silence(LANE, 120) == pytest.approx(120.0)
    stalled, reason = scanned_estimate(alone, LANE, scanned_hours_ago=130, silent_hours=120)
    assert reason is Reason.STALLED_IN_TRANSIT
    unheard, reason = scanned_estimate(quiet_carrier, LANE, scanned_hours_ago=130, silent_hours=120)
    assert reason is Reason.CARRIER_SILENT
    # Priced as a parcel silent for the 20 hours its carrier was heard from, times the
    # silent carrier's factor: not as a stalled parcel on top of it.
    heard_for_20_hours, _ = scanned_estimate(alone, LANE, scanned_hours_ago=130, silent_hours=20)
    factor = state.health[("yanwen", "CN")].factor(SETTINGS)
    assert unheard == pytest.approx(heard_for_20_hours * factor, abs=0.002)
    assert heard_for_20_hours * factor > stalled * factor + 0.01
