"""The failure correlation learnt from matured cohorts (services/scorer/domain/model/correlation.py):
draws of known day-to-day over-dispersion give back their ρ and c, a failure that sets in
and stays does not count as one, the degenerate inputs give nothing, and the levels are
shrunk from the prior to the seller's lane."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

import pytest

from services.scorer.domain.model.correlation import (
    MAX_CORRELATION,
    Cohort,
    LaneCorrelations,
    dispersion,
    learn_correlations,
    shrunk,
)

LANE = ("yunexpress", "standard", "CN", "US")
OTHER = ("4px", "express", "CN", "DE")


def beta_binomial(rng: random.Random, sizes: list[int], rate: float, icc: float) -> list[tuple[int, int]]:
    """Cohorts whose failure rate is drawn from a beta of mean ``rate`` and intra-class
    correlation ``icc`` (α + β = 1/ρ - 1), then ``n`` coins of that rate."""
    cohorts = []
    for n in sizes:
        if icc > 0:
            strength = 1.0 / icc - 1.0
            day_rate = rng.betavariate(rate * strength, (1.0 - rate) * strength)
        else:
            day_rate = rate
        cohorts.append((n, sum(rng.random() < day_rate for _ in range(n))))
    return cohorts


@pytest.mark.parametrize(
    ("rate", "icc"),
    [(0.05, 0.02), (0.1, 0.05), (0.3, 0.1), (0.03, 0.005)],
)
def test_over_dispersed_draws_give_back_their_icc_and_correlation(rate: float, icc: float) -> None:
    rng = random.Random(20)
    sizes = [rng.randint(20, 80) for _ in range(3000)]
    found = dispersion([beta_binomial(rng, sizes, rate, icc)])
    assert found is not None
    assert found.cohorts == 2999  # pairs of consecutive days
    assert found.failure_rate == pytest.approx(rate, rel=0.05)
    assert found.icc == pytest.approx(icc, rel=0.2)
    # The forecast's scale: Var(rate) / rate² = ρ (1 - q) / q.
    assert found.correlation == pytest.approx(icc * (1.0 - rate) / rate, rel=0.2)


def test_independent_coins_show_no_correlation() -> None:
    rng = random.Random(7)
    sizes = [rng.randint(10, 100) for _ in range(3000)]
    found = dispersion([beta_binomial(rng, sizes, 0.04, 0.0)])
    assert found is not None
    # Estimated ρ near 0 (noise of the estimator only), far below any over-dispersed lane.
    assert found.icc < 0.002
    assert found.correlation < 0.05


def test_the_moments_of_consecutive_cohorts_by_hand() -> None:
    # Pairs (10, 1) -> (10, 3): w = 5, d = 0.2; (10, 3) -> (20, 2): w = 20/3, d = -0.2.
    # q = 6/40; σ² = (Σ w d² - 2 q(1-q)) / (2 Σw - 2).
    found = dispersion([[(10, 1), (10, 3), (20, 2)]])
    assert found is not None
    squares = 5 * 0.04 + 20 / 3 * 0.04
    expected = (squares - 2 * 0.15 * 0.85) / (2 * (5 + 20 / 3) - 2)
    assert found.rate_variance == pytest.approx(expected)
    assert found.rate_variance == pytest.approx(0.0099219, abs=1e-6)
    assert (found.cohorts, found.packages, found.failure_rate) == (2, 40, 0.15)
    assert found.correlation == pytest.approx(expected / 0.15**2)


def test_a_failure_that_sets_in_and_stays_is_not_day_to_day_correlation() -> None:
    # 14 days at 1 of 30, then 14 days at 12 of 30: the model follows such a step (its
    # curves, its recent cohorts); only one pair of days differs.
    step = [(30, 1)] * 14 + [(30, 12)] * 14
    found = dispersion([step])
    assert found is not None
    assert found.correlation == 0.0
    # The same days shuffled (the rate jumping from day to day) are strongly correlated.
    shuffled = [(30, 1), (30, 12)] * 14
    jumping = dispersion([shuffled])
    assert jumping is not None and jumping.correlation > 0.5
    # Two sellers' sequences are not compared with each other.
    assert dispersion([[(30, 1)] * 14, [(30, 12)] * 14]).correlation == 0.0  # type: ignore[union-attr]


def test_cohorts_that_cannot_tell_give_nothing() -> None:
    assert dispersion([]) is None
    assert dispersion([[]]) is None
    assert dispersion([[(40, 3)], [(20, 1)]]) is None
    # Cohorts of one package each: a Bernoulli is never over-dispersed.
    assert dispersion([[(1, 0), (1, 1), (1, 0)]]) is None
    # Empty cohorts are ignored; a count out of range is clipped.
    found = dispersion([[(0, 0), (10, 12), (10, -1)]])
    assert found is not None and found.failure_rate == 0.5


def test_no_failure_is_no_correlation_and_all_failed_days_are_capped() -> None:
    none_failed = dispersion([[(30, 0), (25, 0), (40, 0)]])
    assert none_failed is not None and none_failed.correlation == 0.0 and none_failed.icc == 0.0
    # Whole cohorts lost on some days, none on the others: ρ = 1, c capped.
    all_or_nothing = dispersion([[(50, 50), (50, 0), (50, 50), (50, 0), (50, 50)]])
    assert all_or_nothing is not None
    assert all_or_nothing.icc == pytest.approx(1.0, abs=0.05)
    assert all_or_nothing.correlation == MAX_CORRELATION


def test_shrinkage_moves_from_the_parent_to_the_data_with_the_cohorts() -> None:
    few = dispersion([[(50, 10), (50, 0), (50, 10)]])
    assert few is not None and few.correlation > 0.5
    assert shrunk(None, 0.05, 14.0) == 0.05
    value = shrunk(few, 0.05, 14.0)
    assert value == pytest.approx((few.weight * few.correlation + 14 * 0.05) / (few.weight + 14))
    rng = random.Random(3)
    many = dispersion([beta_binomial(rng, [50] * 2000, 0.05, 0.0)])
    assert many is not None
    assert shrunk(many, 0.05, 14.0) == pytest.approx((many.weight * many.raw_correlation + 0.7) / (many.weight + 14))
    assert shrunk(many, 0.05, 14.0) == pytest.approx(many.raw_correlation, abs=0.002)


def test_without_matured_cohorts_every_level_is_the_prior() -> None:
    learnt = learn_correlations([])
    assert learnt.everyone(0.05) == 0.05
    assert learnt.of_lane("s1", LANE, 0.05) == 0.05
    assert learnt.of_category("s1", [(LANE, 10)], 0.05) == 0.05
    assert LaneCorrelations().of_category("s1", [], 0.2) == 0.2


DAY = date(2026, 11, 1)


def _cohorts(
    rng: random.Random, seller: str, lane: tuple[str, str, str, str], days: int, rate: float, icc: float
) -> list[Cohort]:
    sizes = [rng.randint(20, 40) for _ in range(days)]
    return [
        Cohort(seller, lane, DAY + timedelta(days=day), n, x)
        for day, (n, x) in enumerate(beta_binomial(rng, sizes, rate, icc))
    ]


def test_a_failing_sellers_lane_stands_out_and_its_neighbours_borrow_less() -> None:
    rng = random.Random(11)
    cohorts = (
        _cohorts(rng, "steady", LANE, 28, 0.03, 0.0)
        + _cohorts(rng, "steady2", LANE, 28, 0.03, 0.0)
        + _cohorts(rng, "steady", OTHER, 28, 0.03, 0.0)
        # Half its days lost a third of the parcels: a stall that comes and goes.
        + [Cohort("failing", LANE, DAY + timedelta(days=day), 30, 10 if day % 2 else 1) for day in range(28)]
    )
    learnt = learn_correlations(cohorts)
    failing = learnt.of_lane("failing", LANE, 0.05)
    steady = learnt.of_lane("steady", OTHER, 0.05)
    assert failing > 0.3
    assert steady < failing / 2
    # The lane shared with the failing seller is more dispersed than the other one ...
    assert learnt.of_lane("steady", LANE, 0.05) > steady
    # ... and a seller new to it borrows the lane's value.
    assert learnt.of_lane("newcomer", LANE, 0.05) == pytest.approx(
        shrunk(learnt.lanes[LANE], learnt.everyone(0.05), learnt.pseudo_cohorts)
    )
    # A category on both lanes: its pending packages' lanes, weighted by their counts.
    mixed = learnt.of_category("failing", [(LANE, 30), (OTHER, 10)], 0.05)
    assert mixed == pytest.approx((30 * failing + 10 * learnt.of_lane("failing", OTHER, 0.05)) / 40)
    assert learnt.of_category("failing", [(LANE, 0)], 0.05) == learnt.everyone(0.05)


def test_the_pooled_value_weighs_each_lane_against_its_own_rate() -> None:
    # Two lanes with steady but different failure rates: pooled they would look
    # over-dispersed, each against its own rate they are not. Exactly the same count every
    # day is less spread than the binomial: the raw estimate is below 0 (kept for the
    # average, so that the clipping at 0 biases nothing upwards) ...
    cohorts = [Cohort("a", LANE, DAY + timedelta(days=day), 100, 2) for day in range(20)] + [
        Cohort("b", OTHER, DAY + timedelta(days=day), 100, 20) for day in range(20)
    ]
    learnt = learn_correlations(cohorts)
    assert learnt.pooled is not None and learnt.pooled < 0.0
    assert all(estimate.correlation == 0.0 for estimate in learnt.lanes.values())
    assert learnt.pooled_weight == pytest.approx(19 * (2 / 3) ** 2 + 19 * (20 / 21) ** 2)
    # ... and the value used is never below 0.
    assert learnt.everyone(0.05) == max(
        0.0, (learnt.pooled_weight * learnt.pooled + 14 * 0.05) / (learnt.pooled_weight + 14)
    )
    assert learnt.everyone(0.5) > 0.0


def test_a_lane_with_rare_failures_weighs_little_whatever_its_estimate() -> None:
    # 0.7% of 30 parcels a day, one unlucky day with 3: c hits its cap, but a cohort has a
    # failure every fifth day, so the estimate weighs less than one pseudo-cohort.
    rare = dispersion([([(30, 0)] * 13 + [(30, 3)]) * 2])
    assert rare is not None
    assert rare.correlation == MAX_CORRELATION
    assert rare.weight < 2.0
    assert shrunk(rare, 0.05, 14.0) < 0.2
    # A lane failing 6 of 30 a day, as jumpy: its weight is most of its pairs.
    busy = dispersion([[(30, 3), (30, 9)] * 14])
    assert busy is not None and busy.weight > 0.6 * busy.cohorts


def test_cohorts_are_taken_in_date_order_whatever_order_they_come_in() -> None:
    days = [Cohort("s", LANE, DAY + timedelta(days=day), 30, 12 if day >= 14 else 1) for day in range(28)]
    in_order = learn_correlations(days)
    reversed_order = learn_correlations(list(reversed(days)))
    assert in_order.seller_lanes[("s", LANE)] == reversed_order.seller_lanes[("s", LANE)]
    # A step is no day-to-day correlation: below the prior, which is the floor by default ...
    assert in_order.of_lane("s", LANE, 0.05) == 0.05
    # ... and without the floor, the learnt value.
    assert replace(in_order, prior_is_floor=False).of_lane("s", LANE, 0.05) < 0.05


def test_the_prior_is_the_least_a_lane_takes_unless_told_otherwise() -> None:
    steady = [Cohort("s", LANE, DAY + timedelta(days=day), 100, 3) for day in range(28)]
    jumpy = [Cohort("j", OTHER, DAY + timedelta(days=day), 30, 12 if day % 2 else 1) for day in range(28)]
    learnt = learn_correlations(steady + jumpy)
    assert learnt.of_lane("s", LANE, 0.05) == 0.05
    assert learnt.of_lane("j", OTHER, 0.05) > 0.3
    unfloored = replace(learnt, prior_is_floor=False)
    assert unfloored.of_lane("s", LANE, 0.05) < 0.05
    assert unfloored.of_lane("j", OTHER, 0.05) == learnt.of_lane("j", OTHER, 0.05)
