"""The going-silent share as a mixture (services/scorer/domain/model/silent_share.py): each
waiting parcel on its way or lost, the likeliest lost share and the low end of its interval."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from services.scorer.domain.model.silent_share import (
    CohortParcel,
    _log_likelihood,
    by_stage,
    combined,
    credible_share,
    likeliest_share,
    peer_silent_shares,
)

parcels = st.lists(
    st.builds(
        CohortParcel,
        weight=st.floats(min_value=0.05, max_value=1.0),
        delivered=st.booleans(),
        prior_alive=st.floats(min_value=0.5, max_value=0.99),
        shown=st.floats(min_value=0.0, max_value=1.0),
        passed=st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


def cohort(delivered: int, lost: int, on_time: int) -> list[CohortParcel]:
    """Delivered parcels, parcels silent far beyond their stage, parcels scanned lately."""
    return (
        [CohortParcel(1.0, True, 0.99, 0.0)] * delivered
        + [CohortParcel(1.0, False, 0.99, 0.001)] * lost
        + [CohortParcel(1.0, False, 0.99, 1.0)] * on_time
    )


@given(parcels)
def test_the_likeliest_share_is_the_top_of_the_likelihood(found: list[CohortParcel]) -> None:
    best = likeliest_share(found)
    assert 0.0 <= best <= 1.0
    top = _log_likelihood(found, best)
    for share in (i / 50 for i in range(50)):
        assert _log_likelihood(found, share) <= top + 1e-6


@given(parcels, st.floats(min_value=0.5, max_value=3.0))
def test_the_credible_share_is_never_above_the_likeliest(found: list[CohortParcel], z: float) -> None:
    assert 0.0 <= credible_share(found, z) <= likeliest_share(found) + 1e-9


def test_a_cohort_whose_silences_are_ordinary_shows_no_loss() -> None:
    assert credible_share(cohort(delivered=20, lost=0, on_time=20), 2.0) == 0.0
    # One parcel silent too long among many says little.
    assert credible_share(cohort(delivered=20, lost=1, on_time=20), 2.0) == 0.0


def test_parcels_that_cannot_show_anything_yet_do_not_dilute_the_share() -> None:
    # Half of the parcels whose silence can tell are lost, whatever the number of parcels
    # scanned lately (which would be silent as long either way).
    few = likeliest_share(cohort(delivered=10, lost=10, on_time=0))
    many = likeliest_share(cohort(delivered=10, lost=10, on_time=40))
    assert math.isclose(few, many, abs_tol=1e-6)
    assert 0.45 < few < 0.55
    credible = credible_share(cohort(delivered=10, lost=10, on_time=40), 2.0)
    assert 0.2 < credible < few


def test_a_parcel_past_the_transit_stage_is_evidence_against_a_loss() -> None:
    silent = [CohortParcel(1.0, False, 0.99, 0.3)] * 20
    passed = [CohortParcel(1.0, False, 0.99, 0.3, passed=True)] * 20
    assert likeliest_share(passed) < likeliest_share(silent)


def test_peers_are_each_seller_pooled_over_its_lanes_and_need_enough_parcels() -> None:
    lost = cohort(delivered=5, lost=5, on_time=0)
    cohorts = {
        ("seller", "a", "yanwen", "line", "CN", "SG"): lost,
        ("seller", "a", "yanwen", "line", "CN", "JP"): lost,
        ("seller", "b", "yanwen", "line", "CN", "SG"): cohort(delivered=2, lost=0, on_time=0),
        ("lane", "yanwen", "line", "CN", "SG"): lost,
    }
    found = peer_silent_shares(cohorts, 5.0)
    assert set(found) == {("yanwen", "CN")}
    assert set(found[("yanwen", "CN")]) == {"a"}
    assert math.isclose(found[("yanwen", "CN")]["a"][0], likeliest_share(lost + lost), abs_tol=1e-6)


@given(parcels, st.floats(min_value=0.5, max_value=3.0))
def test_the_garrote_clears_the_same_guard_and_credits_between_the_low_end_and_the_likeliest(
    found: list[CohortParcel], z: float
) -> None:
    low, garrote = credible_share(found, z), credible_share(found, z, "garrote")
    # The same decision whether the cohort shows a loss at all ...
    assert (low > 0.0) == (garrote > 0.0) or max(low, garrote) < 1e-6
    # ... and, when it does, never less than the low end of its interval (up to the
    # likelihood's departure from a parabola, small) nor more than the likeliest share.
    assert garrote <= likeliest_share(found) + 1e-9


def test_the_garrote_credits_most_of_a_clear_loss() -> None:
    clear = cohort(delivered=10, lost=10, on_time=40)
    best = likeliest_share(clear)
    assert credible_share(clear, 1.0) < credible_share(clear, 1.0, "garrote") < best
    assert credible_share(clear, 1.0, "garrote") > 0.9 * best
    # An ordinary cohort shows nothing either way.
    assert credible_share(cohort(delivered=20, lost=0, on_time=20), 1.0, "garrote") == 0.0


@given(parcels)
def test_each_parcel_speaks_where_it_can_be_lost(found: list[CohortParcel]) -> None:
    transit, after = by_stage(found)
    # Every parcel is read for a loss in transit; only those that came through it (or were
    # delivered) for a loss after it; no parcel is read as past transit in either view.
    assert len(transit) == len(found)
    assert len(after) == sum(parcel.delivered or parcel.passed for parcel in found)
    assert not any(parcel.passed for parcel in [*transit, *after])
    assert math.isclose(sum(p.weight for p in transit), sum(p.weight for p in found))
    assert 0.0 <= combined(likeliest_share(transit), likeliest_share(after)) <= 1.0


def test_a_last_mile_that_stopped_scanning_deliveries_reads_as_its_size() -> None:
    # 10 delivered, 10 out for delivery and silent far beyond that stage, 20 still in
    # transit and scanned lately: half the parcels that reached the last mile are lost there.
    silent_at_last_mile = [CohortParcel(1.0, False, 0.99, 0.0, passed=True)] * 10
    in_transit = [CohortParcel(1.0, False, 0.99, 1.0)] * 20
    cohort_ = [CohortParcel(1.0, True, 1.0, 0.0)] * 10 + silent_at_last_mile + in_transit
    transit, after = by_stage(cohort_)
    assert likeliest_share(transit) < 0.01
    assert 0.45 < likeliest_share(after) < 0.55
    # Read as one share, each silent parcel counted once for a loss and once against it.
    assert likeliest_share(cohort_) < 0.4
