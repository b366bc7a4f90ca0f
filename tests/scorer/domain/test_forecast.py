"""Window arithmetic, the numbers, the 14-day forecast and the risk levels (domain.md section 3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scorer.domain.forecast import DayCounts, failure_tail, headroom, score
from services.scorer.domain.levels import LevelThresholds, level_of
from services.scorer.domain.scores import ScopeCounts, ScoreRules
from services.scorer.domain.window import counted_range, window
from shared.schemas import Level

D = date(2026, 6, 15)


def days_before(n: int) -> date:
    return D - timedelta(days=n)


def test_window_is_the_30_days_before_the_evaluation_day() -> None:
    current = window(D)
    assert (current.first, current.last) == (date(2026, 5, 16), date(2026, 6, 14))
    assert days_before(30) in current
    assert days_before(1) in current
    assert D not in current
    assert days_before(31) not in current


def test_window_lag_shifts_it_back() -> None:
    lagged = window(D, lag_days=2)
    assert (lagged.first, lagged.last) == (days_before(32), days_before(3))


def test_counted_range_covers_the_window_and_the_next_14_days() -> None:
    span = counted_range(D)
    assert (span.first, span.last) == (days_before(30), D + timedelta(days=13))


@pytest.mark.parametrize(
    ("promised_offset", "counted"), [(30, True), (1, True), (0, False), (31, False), (-1, False)]
)  # fmt: skip
def test_window_edges(promised_offset: int, counted: bool) -> None:
    result = score({days_before(promised_offset): DayCounts(valid=1)}, D)
    assert result.total == (1 if counted else 0)


def test_pending_left_in_the_window_counts_as_invalid() -> None:
    # The clock job has not run since this package's promised date passed.
    result = score({days_before(1): DayCounts(valid=19, pending=1)}, D)
    assert (result.total, result.valid, result.invalid) == (20, 19, 1)
    assert result.vtr == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("valid", "total", "expected"),
    [(0, 0, 0), (95, 100, 0), (97, 100, 2), (100, 100, 5), (19, 20, 0), (1000, 1000, 52)],
)
def test_headroom(valid: int, total: int, expected: int) -> None:
    assert headroom(valid, total) == expected


@given(st.integers(0, 5000), st.integers(0, 5000))
def test_headroom_is_exactly_how_many_more_invalid_packages_keep_95(valid: int, invalid: int) -> None:
    total = valid + invalid
    room = headroom(valid, total)
    assert room >= 0
    if total and valid * 100 >= 95 * total:
        assert valid * 100 >= 95 * (total + room)
        assert valid * 100 < 95 * (total + room + 1)


def test_worked_example_of_docs_scoring_md() -> None:
    """docs/scoring.md: 97 of 100 valid; tomorrow 10 valid packages leave the window and 10
    pending ones (probability 0.6 each) enter it, so the forecast drops to 93%."""
    days = {
        days_before(30): DayCounts(valid=10),
        days_before(10): DayCounts(valid=87, invalid=3),
        D: DayCounts(pending=10, expected_valid=6.0),
    }
    result = score(days, D)
    assert (result.total, result.valid, result.invalid, result.vtr) == (100, 97, 3, 0.97)
    assert result.headroom == 2
    assert result.forecast[0].day == D + timedelta(days=1)
    assert result.forecast[0].vtr == pytest.approx(0.93)
    assert result.days_to_breach == 1
    assert len(result.forecast) == 14
    assert level_of(result) is Level.AT_RISK


def test_no_breach_within_14_days_and_empty_window() -> None:
    steady = score({days_before(d): DayCounts(valid=10) for d in range(1, 31)}, D)
    assert steady.days_to_breach is None
    # Packages leave the window one day at a time and nothing enters: still 100%, then undefined.
    assert all(point.vtr == 1.0 for point in steady.forecast)
    assert level_of(steady) is Level.OK
    empty = score({}, D)
    assert (empty.vtr, empty.days_to_breach, empty.headroom) == (None, None, 0)
    assert all(point.vtr is None for point in empty.forecast)


def test_already_below_the_floor_breaches_on_day_zero() -> None:
    result = score({days_before(5): DayCounts(valid=94, invalid=6)}, D)
    assert result.days_to_breach == 0
    assert level_of(result) is Level.BREACH


def test_exactly_95_percent_is_not_a_breach() -> None:
    result = score({days_before(5): DayCounts(valid=95, invalid=5)}, D)
    assert result.days_to_breach is None
    assert level_of(result) is Level.AT_RISK  # below 95.5%


@pytest.mark.parametrize(
    ("valid", "invalid", "expected"),
    [(1000, 0, Level.OK), (970, 30, Level.OK), (969, 31, Level.WATCH), (955, 45, Level.WATCH),
     (954, 46, Level.AT_RISK), (949, 51, Level.BREACH)],
)  # fmt: skip
def test_levels_from_the_current_rate(valid: int, invalid: int, expected: Level) -> None:
    assert level_of(score({days_before(3): DayCounts(valid=valid, invalid=invalid)}, D)) is expected


def test_forecast_minimum_below_96_is_watch() -> None:
    # 98% now; tomorrow 100 pending packages at 0.75 each enter: 1,055/1,100 = 95.9%
    # expected, and a breach would need 36 of them to fail where 25 are expected.
    days = {
        days_before(3): DayCounts(valid=980, invalid=20),
        D: DayCounts(pending=100, expected_valid=75.0, variance=18.75),
    }
    result = score(days, D)
    assert 0.01 < result.breach_probability < 0.3
    assert result.forecast_minimum is not None and 0.95 <= result.forecast_minimum < 0.96
    assert level_of(result) is Level.WATCH


def test_few_packages_are_never_above_watch_unless_breached() -> None:
    few = {days_before(3): DayCounts(valid=9), D: DayCounts(pending=9, expected_valid=0.0)}
    result = score(few, D)
    assert result.days_to_breach is not None  # the forecast collapses
    assert level_of(result) is Level.WATCH
    assert level_of(score({days_before(3): DayCounts(valid=8, invalid=1)}, D)) is Level.BREACH
    assert level_of(result, LevelThresholds(min_packages=0)) is Level.AT_RISK


def pending(count: int, probability: float) -> DayCounts:
    """``count`` pending packages of one promised day, each valid with ``probability``."""
    return DayCounts(
        pending=count, expected_valid=count * probability, variance=count * probability * (1 - probability)
    )


def at_floor_with_one_entering(probability: float) -> dict[date, DayCounts]:
    # Ten valid packages leave the window tomorrow and one pending package enters it:
    # tomorrow's window holds 18 valid, 1 invalid and that one, and needs 19 of the 20 valid.
    return {
        days_before(30): DayCounts(valid=10),
        days_before(5): DayCounts(valid=18, invalid=1),
        D: pending(1, probability),
    }


@pytest.mark.parametrize("probability", [0.0, 0.3, 0.7, 1.0])
def test_a_days_breach_probability_is_the_chance_too_few_pending_packages_turn_valid(probability: float) -> None:
    tomorrow = score(at_floor_with_one_entering(probability), D).forecast[0]
    # Breach unless the one package turns valid: P = 1 - p (normal approximation, so loosely).
    assert tomorrow.breach_probability == pytest.approx(1 - probability, abs=0.25)
    assert tomorrow.p10 is not None and tomorrow.p90 is not None
    assert tomorrow.p10 <= tomorrow.vtr <= tomorrow.p90  # type: ignore[operator]
    assert tomorrow.p10 >= 18 / 20 - 1e-9 and tomorrow.p90 <= 19 / 20 + 1e-9  # nothing impossible


def test_the_breach_probability_orders_the_outcomes() -> None:
    chances = [score(at_floor_with_one_entering(p), D).breach_probability for p in (0.0, 0.3, 0.7, 1.0)]
    assert chances == sorted(chances, reverse=True)
    assert chances[0] == pytest.approx(1.0, abs=0.02) and chances[-1] == pytest.approx(0.0, abs=0.02)


def test_a_likely_breach_is_at_risk_even_when_the_expected_vtr_stays_above_the_floor() -> None:
    # 40 valid in the window, 60 packages entering over the next days at 0.93 each: the
    # expected VTR stays above 95%, but the chance of falling below it is real.
    days = {days_before(5): DayCounts(valid=40), **{D + timedelta(days=k): pending(6, 0.93) for k in range(10)}}
    result = score(days, D)
    assert result.forecast_minimum is not None and result.forecast_minimum > 0.95
    assert result.days_to_breach is None
    assert result.breach_probability is not None and 0.3 <= result.breach_probability < 0.5
    assert level_of(result) is Level.AT_RISK
    # The expected minimum alone (95.8%) is not below the WATCH bound of this test: the chance is.
    quiet_minimum = LevelThresholds(at_risk_breach_probability=0.5, watch_forecast_below=0.9)
    assert level_of(result, quiet_minimum) is Level.WATCH
    assert level_of(result, replace(quiet_minimum, watch_breach_probability=0.5)) is Level.OK


def test_projected_orders_enter_the_forecast() -> None:
    healthy = {days_before(10): DayCounts(valid=100)}
    with_projection = {**healthy, D: DayCounts(projected=10.0, projected_valid=5.0, projected_variance=2.5)}
    plain, projected = score(healthy, D).forecast[0], score(with_projection, D).forecast[0]
    assert plain.vtr == pytest.approx(1.0)
    assert projected.vtr == pytest.approx(105 / 110)
    assert projected.breach_probability is not None and projected.breach_probability > 0.3
    # Today's numbers never include orders not confirmed yet.
    assert score(with_projection, D).total == score(healthy, D).total == 100


def exact_failure_tail(valid_chances: list[float], at_least: int) -> float:
    """P(at least ``at_least`` failures) of independent packages, by convolution."""
    distribution = [1.0]
    for chance in valid_chances:
        shifted = [0.0] * (len(distribution) + 1)
        for failures, mass in enumerate(distribution):
            shifted[failures] += mass * chance
            shifted[failures + 1] += mass * (1.0 - chance)
        distribution = shifted
    return sum(distribution[at_least:])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=0.5, max_value=0.999), min_size=3, max_size=80),
    st.integers(min_value=1, max_value=8),
)
def test_the_discrete_tail_matches_the_exact_poisson_binomial(valid_chances: list[float], at_least: int) -> None:
    mean = sum(1.0 - chance for chance in valid_chances)
    variance = sum(chance * (1.0 - chance) for chance in valid_chances)
    exact = exact_failure_tail(valid_chances, at_least)
    # Measured: at most 0.017 off over 40,000 random sets (the normal curve: up to 0.10 off;
    # rounding the binomial's trials instead of interpolating: 0.066, with three packages).
    assert failure_tail(mean, variance, at_least) == pytest.approx(exact, abs=0.03)


def test_the_discrete_tail_of_three_packages_hypothesis_found() -> None:
    """Hypothesis' counterexample to the rounded binomial (0.609 against the exact 0.553)."""
    valid_chances = [0.5, 0.96875, 0.921875]
    mean = sum(1.0 - chance for chance in valid_chances)
    variance = sum(chance * (1.0 - chance) for chance in valid_chances)
    assert failure_tail(mean, variance, 1) == pytest.approx(exact_failure_tail(valid_chances, 1), abs=0.03)


def test_correlated_failures_widen_the_tail() -> None:
    independent = failure_tail(2.0, 1.9, 6)
    correlated = failure_tail(2.0, 1.9 + 0.05 * 2.0**2 * 10, 6)  # more spread than a Poisson
    assert 0.0 < independent < correlated < 1.0


def test_a_category_is_scored_with_its_learnt_correlation_or_the_setting() -> None:
    # 30 days at 97% (one failure a day of 33), then 14 days of 33 pending packages each
    # expected to fail 1.2 of them: close enough to the floor for the band to matter.
    days = {days_before(k): DayCounts(valid=32, invalid=1) for k in range(1, 31)}
    days |= {D + timedelta(days=k): DayCounts(pending=33, expected_valid=31.8, variance=1.16) for k in range(14)}
    rules = ScoreRules(lag_days=0, floor=Fraction(95, 100), correlation=0.05, thresholds=LevelThresholds())
    counts = ScopeCounts(days, {})
    setting = rules.category_score("US", "toys", counts, D).score.breach_probability
    assert setting == rules.category_score("US", "toys", counts, D, correlation=None).score.breach_probability
    independent = rules.category_score("US", "toys", counts, D, correlation=0.0).score.breach_probability
    correlated = rules.category_score("US", "toys", counts, D, correlation=0.5).score.breach_probability
    assert setting is not None and independent is not None and correlated is not None
    assert independent < setting < correlated
