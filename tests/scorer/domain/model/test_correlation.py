"""The failure correlation learnt from matured cohorts (services/scorer/domain/model/correlation.py):
draws of known over-dispersion give back their ρ and c, the degenerate inputs give nothing,
and the levels are shrunk from the prior to the seller's lane."""

from __future__ import annotations

import random

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
    found = dispersion(beta_binomial(rng, sizes, rate, icc))
    assert found is not None
    assert found.cohorts == 3000
    assert found.failure_rate == pytest.approx(rate, rel=0.05)
    assert found.icc == pytest.approx(icc, rel=0.2)
    # The forecast's scale: Var(rate) / rate² = ρ (1 - q) / q.
    assert found.correlation == pytest.approx(icc * (1.0 - rate) / rate, rel=0.2)


def test_independent_coins_show_no_correlation() -> None:
    rng = random.Random(7)
    sizes = [rng.randint(10, 100) for _ in range(3000)]
    found = dispersion(beta_binomial(rng, sizes, 0.04, 0.0))
    assert found is not None
    # Estimated ρ near 0 (noise of the estimator only), far below any over-dispersed lane.
    assert found.icc < 0.002
    assert found.correlation < 0.05


def test_equal_cohorts_against_the_textbook_anova_estimator() -> None:
    # With equal sizes n the moment estimator is the one-way ANOVA estimator of ρ:
    # (MSB - MSW) / (MSB + (n - 1) MSW).
    cohorts = [(10, 0), (10, 1), (10, 5), (10, 2), (10, 0), (10, 4)]
    found = dispersion(cohorts)
    assert found is not None
    n, k = 10, len(cohorts)
    shares = [x / n for _, x in cohorts]
    q = sum(shares) / k
    msb = n * sum((s - q) ** 2 for s in shares) / (k - 1)
    msw = sum(n * s * (1 - s) for s in shares) / (k * (n - 1))
    anova = (msb - msw) / (msb + (n - 1) * msw)
    # The two differ only in how q(1-q) is split within cohorts (an O(1/n) difference).
    assert found.icc == pytest.approx(anova, abs=0.03)
    assert found.failure_rate == pytest.approx(q)


def test_cohorts_that_cannot_tell_give_nothing() -> None:
    assert dispersion([]) is None
    assert dispersion([(40, 3)]) is None
    # Cohorts of one package each: a Bernoulli is never over-dispersed.
    assert dispersion([(1, 0), (1, 1), (1, 0)]) is None
    # Empty cohorts are ignored; a count out of range is clipped.
    found = dispersion([(0, 0), (10, 12), (10, -1)])
    assert found is not None and found.failure_rate == 0.5


def test_no_failure_is_no_correlation_and_all_failed_days_are_capped() -> None:
    none_failed = dispersion([(30, 0), (25, 0), (40, 0)])
    assert none_failed is not None and none_failed.correlation == 0.0 and none_failed.icc == 0.0
    # Whole cohorts lost on some days, none on the others: ρ = 1, c capped.
    all_or_nothing = dispersion([(50, 50), (50, 0), (50, 0), (50, 0), (50, 0)])
    assert all_or_nothing is not None
    assert all_or_nothing.icc == pytest.approx(1.0, abs=0.05)
    assert all_or_nothing.correlation == MAX_CORRELATION


def test_shrinkage_moves_from_the_parent_to_the_data_with_the_cohorts() -> None:
    few = dispersion([(50, 10), (50, 0)])
    assert few is not None and few.correlation > 0.5
    assert shrunk(None, 0.05, 14.0) == 0.05
    value = shrunk(few, 0.05, 14.0)
    assert value == pytest.approx((2 * few.correlation + 14 * 0.05) / 16)
    rng = random.Random(3)
    many = dispersion(beta_binomial(rng, [50] * 2000, 0.05, 0.0))
    assert many is not None
    assert shrunk(many, 0.05, 14.0) == pytest.approx(many.correlation, abs=0.05 * 14 / 2014 + 1e-9)


def test_without_matured_cohorts_every_level_is_the_prior() -> None:
    learnt = learn_correlations([])
    assert learnt.everyone(0.05) == 0.05
    assert learnt.of_lane("s1", LANE, 0.05) == 0.05
    assert learnt.of_category("s1", [(LANE, 10)], 0.05) == 0.05
    assert LaneCorrelations().of_category("s1", [], 0.2) == 0.2


def _cohorts(rng: random.Random, seller: str, lane: tuple[str, str, str, str], days: int, rate: float, icc: float):
    return [
        Cohort(seller, lane, n, x) for n, x in beta_binomial(rng, [rng.randint(20, 40) for _ in range(days)], rate, icc)
    ]


def test_a_failing_sellers_lane_stands_out_and_its_neighbours_borrow_less() -> None:
    rng = random.Random(11)
    cohorts = (
        _cohorts(rng, "steady", LANE, 28, 0.03, 0.0)
        + _cohorts(rng, "steady2", LANE, 28, 0.03, 0.0)
        + _cohorts(rng, "steady", OTHER, 28, 0.03, 0.0)
        # Half its days lost a third of the parcels: a stall that comes and goes.
        + [Cohort("failing", LANE, 30, 10 if day % 2 else 1) for day in range(28)]
    )
    learnt = learn_correlations(cohorts)
    failing = learnt.of_lane("failing", LANE, 0.05)
    steady = learnt.of_lane("steady", OTHER, 0.05)
    assert failing > 0.3
    assert steady < failing / 4
    # The lane shared with the failing seller is more dispersed than the other one ...
    assert learnt.of_lane("steady", LANE, 0.05) > steady
    # ... and a seller new to it borrows the lane's value.
    assert learnt.of_lane("newcomer", LANE, 0.05) == pytest.approx(
        shrunk(learnt.lanes[LANE], learnt.everyone(0.05), learnt.pseudo_cohorts)
    )
    # A category on both lanes: its pending packages' lanes, weighted by their counts.
    mixed = learnt.of_category("failing", [(LANE, 30), (OTHER, 10)], 0.05)
    assert mixed == pytest.approx(
        (30 * failing + 10 * learnt.of_lane("failing", OTHER, 0.05)) / 40
    )
    assert learnt.of_category("failing", [(LANE, 0)], 0.05) == learnt.everyone(0.05)


def test_the_pooled_value_weighs_each_lane_against_its_own_rate() -> None:
    # Two lanes with steady but different failure rates: pooled they would look
    # over-dispersed, each against its own rate they are not.
    cohorts = [Cohort("a", LANE, 100, 2) for _ in range(20)] + [Cohort("b", OTHER, 100, 20) for _ in range(20)]
    learnt = learn_correlations(cohorts)
    assert learnt.pooled == 0.0
    assert learnt.pooled_cohorts == 40
    assert learnt.everyone(0.05) == pytest.approx(14 * 0.05 / 54)
