"""The recent cohorts' noise guard (services/scorer/domain/model/change.py): the two
standard deviations of old, and the Bayesian change point that moves before them."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from services.scorer.domain.model.change import credited_excess
from services.scorer.domain.model.parameters import ModelSettings

GUARD = ModelSettings()
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


def test_below_the_floor_nothing_counts_either_way() -> None:
    for settings in (GUARD, BAYES):
        assert credited_excess(0.9, 0.1, 1.0, settings) == 0.0
