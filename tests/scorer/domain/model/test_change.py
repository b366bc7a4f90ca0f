"""The recent cohorts' noise guard (services/scorer/domain/model/change.py): the two
standard deviations of old with the excess beyond them (``lower_bound``, the default for the
summed excess) or the garrote's estimate, and the Bayesian change point that moves before them."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from services.scorer.domain.model.change import credited_excess, shrunk_change
from services.scorer.domain.model.parameters import ModelSettings

GUARD = ModelSettings()
GARROTE = replace(GUARD, excess_estimate="garrote")
BAYES = replace(GUARD, change_prior=0.05)

excesses = st.floats(min_value=-50.0, max_value=200.0, allow_nan=False)
spreads = st.floats(min_value=0.01, max_value=30.0, allow_nan=False)


@given(excess=excesses, spread=spreads)
def test_the_guard_credits_only_what_lies_beyond_two_standard_deviations(excess: float, spread: float) -> None:
    assert credited_excess(excess, spread, 0.0, GUARD) == max(0.0, excess - 2.0 * spread)


@given(excess=excesses, spread=spreads, more=st.floats(min_value=0.0, max_value=50.0))
def test_the_change_point_credits_part_of_the_excess_and_more_for_more(
    excess: float, spread: float, more: float
) -> None:
    credited = credited_excess(excess, spread, 0.0, BAYES)
    assert 0.0 <= credited <= max(0.0, excess)
    assert credited_excess(excess + more, spread, 0.0, BAYES) >= credited - 1e-9


def test_the_change_point_moves_before_two_standard_deviations() -> None:
    # 1.5 standard deviations: nothing for the guard, a little for the change point.
    assert credited_excess(3.0, 2.0, 0.0, GUARD) == 0.0
    assert 0.0 < credited_excess(3.0, 2.0, 0.0, BAYES) < 0.5
    # Three standard deviations: the change point credits most of it, the guard a third.
    assert credited_excess(6.0, 2.0, 0.0, BAYES) > 4.5 > credited_excess(6.0, 2.0, 0.0, GUARD)


@given(excess=excesses, spread=spreads)
def test_the_garrote_credits_nothing_within_the_guard_and_more_than_the_excess_beyond_it(
    excess: float, spread: float
) -> None:
    garrote, beyond = credited_excess(excess, spread, 0.0, GARROTE), credited_excess(excess, spread, 0.0, GUARD)
    if excess <= 2.0 * spread:
        assert garrote == 0.0
    else:
        # Never less than the excess beyond the guard, never more than the whole excess.
        assert beyond - 1e-9 <= garrote <= excess


@given(guard=st.floats(min_value=0.01, max_value=10.0), more=st.floats(min_value=0.0, max_value=100.0))
def test_the_garrote_is_continuous_at_the_guard_and_grows_with_the_estimate(guard: float, more: float) -> None:
    assert shrunk_change(guard, guard, "garrote") == 0.0
    assert shrunk_change(guard * 1.001, guard, "garrote") < 0.01 * guard
    assert shrunk_change(guard + more, guard, "garrote") <= shrunk_change(guard + more + 1.0, guard, "garrote")


def test_the_garrote_tends_to_the_whole_estimate_where_the_guard_stays_biased() -> None:
    # Three standard deviations (a guard of two): the guard credits a third of it, the
    # garrote five ninths.
    assert credited_excess(6.0, 2.0, 0.0, GUARD) == 2.0
    assert abs(credited_excess(6.0, 2.0, 0.0, GARROTE) - 6.0 * 5.0 / 9.0) < 1e-12
    # Ten standard deviations: the guard still misses a fifth of it, the garrote 4%.
    assert credited_excess(20.0, 2.0, 0.0, GUARD) == 16.0
    assert abs(credited_excess(20.0, 2.0, 0.0, GARROTE) - 19.2) < 1e-12


def test_an_unknown_estimate_is_refused() -> None:
    try:
        credited_excess(5.0, 1.0, 0.0, replace(GARROTE, excess_estimate="median"))
    except ValueError:
        return
    raise AssertionError("an unknown change estimate was accepted")


def test_below_the_floor_nothing_counts_either_way() -> None:
    for settings in (GARROTE, GUARD, BAYES):
        assert credited_excess(0.9, 0.1, 1.0, settings) == 0.0
