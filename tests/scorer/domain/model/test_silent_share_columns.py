"""The going-silent shares on columns (``Model._silent_shares``, services/scorer/domain/model/silent_share.py
``Cohort``) against the per-parcel reading they replace, kept here as the reference: the
same shares, up to rounding, over random cohorts and lanes."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scorer.domain.model.carrier_health import CarrierHealth
from services.scorer.domain.model.change import credited_excess
from services.scorer.domain.model.curves import Histogram
from services.scorer.domain.model.estimator import Model
from services.scorer.domain.model.lanes import GAP_MILESTONES, LaneKey, Milestone, levels, parent_level
from services.scorer.domain.model.observations import InFlight, halving, in_silence_cohort
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.silent_share import (
    BISECTION_STEPS,
    CohortParcel,
    by_stage,
    combined,
    credible_share,
    likeliest_share,
    peer_silent_shares,
)
from services.scorer.domain.model.state import ModelState

NOW = datetime(2026, 6, 15, 12, 0)
STAGES: list[Milestone | None] = [None, *sorted(GAP_MILESTONES)]
RELATIVE = 1e-9


def close(new: float, old: float) -> bool:
    return math.isclose(new, old, rel_tol=RELATIVE, abs_tol=1e-15)


# --- The per-parcel reading, as it was: one parcel at a time, lists of CohortParcel. ---


def _ref_log_likelihood(parcels: Sequence[CohortParcel], share: float) -> float:
    total = 0.0
    kept = max(1e-12, 1.0 - share)
    for parcel in parcels:
        if parcel.delivered or parcel.passed:
            total += parcel.weight * math.log(kept)
        if parcel.delivered:
            continue
        alive = parcel.prior_alive * kept
        total += parcel.weight * math.log(max(1e-300, alive * parcel.shown + 1.0 - alive))
    return total


def _ref_slope(parcels: Sequence[CohortParcel], share: float) -> float:
    kept = max(1e-12, 1.0 - share)
    total = 0.0
    for parcel in parcels:
        if parcel.delivered or parcel.passed:
            total -= parcel.weight / kept
        if parcel.delivered:
            continue
        alive = parcel.prior_alive * kept
        observed = max(1e-300, alive * parcel.shown + 1.0 - alive)
        total += parcel.weight * parcel.prior_alive * (1.0 - parcel.shown) / observed
    return total


def ref_likeliest_share(parcels: Sequence[CohortParcel]) -> float:
    if _ref_slope(parcels, 0.0) <= 0.0:
        return 0.0
    low, high = 0.0, 1.0 - 1e-9
    if _ref_slope(parcels, high) >= 0.0:
        return high
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if _ref_slope(parcels, middle) > 0.0:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def ref_credible_share(parcels: Sequence[CohortParcel], z: float, estimate: str = "lower_bound") -> float:
    best = ref_likeliest_share(parcels)
    if best <= 0.0:
        return 0.0
    top = _ref_log_likelihood(parcels, best)
    evidence = 2.0 * (top - _ref_log_likelihood(parcels, 0.0))
    if evidence <= z * z:
        return 0.0
    if estimate == "garrote":
        return best * (1.0 - z * z / evidence)
    low, high = 0.0, best
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if 2.0 * (top - _ref_log_likelihood(parcels, middle)) > z * z:
            low = middle
        else:
            high = middle
    return high


_CAME_THROUGH = CohortParcel(1.0, True, 1.0, 0.0)


def ref_by_stage(parcels: Sequence[CohortParcel]) -> tuple[list[CohortParcel], list[CohortParcel]]:
    transit: list[CohortParcel] = []
    after: list[CohortParcel] = []
    for parcel in parcels:
        if parcel.delivered:
            delivered = replace(parcel, passed=False) if parcel.passed else parcel
            transit.append(delivered)
            after.append(delivered)
        elif parcel.passed:
            transit.append(replace(_CAME_THROUGH, weight=parcel.weight))
            after.append(replace(parcel, passed=False))
        else:
            transit.append(parcel)
    return transit, after


def ref_peer_silent_shares(
    cohorts: Mapping[tuple[str, ...], Sequence[CohortParcel]], min_parcels: float, staged: bool
) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    pooled: dict[tuple[str, str, str], list[CohortParcel]] = defaultdict(list)
    for level, parcels in cohorts.items():
        if level[0] == "seller":
            _, seller, carrier, _, origin, _ = level
            pooled[(carrier, origin, seller)].extend(parcels)
    found: dict[tuple[str, str], dict[str, tuple[float, float]]] = defaultdict(dict)
    for (carrier, origin, seller), parcels in pooled.items():
        if len(parcels) >= min_parcels:
            if staged:
                transit, after = ref_by_stage(parcels)
                found[(carrier, origin)][seller] = (ref_likeliest_share(transit), ref_likeliest_share(after))
            else:
                found[(carrier, origin)][seller] = (ref_likeliest_share(parcels), 0.0)
    return dict(found)


def ref_seller_silent_share(
    model: Model,
    level: tuple[str, ...],
    cohorts: Mapping[tuple[str, ...], list[CohortParcel]],
    peers: Mapping[tuple[str, str], dict[str, tuple[float, float]]],
) -> float:
    _, seller, carrier, service, origin, marketplace = level
    if model.delivery_clock((seller, carrier, service, origin, marketplace)) is not Milestone.DELIVERY:
        return 0.0
    options = model.settings
    others = [shares for name, shares in peers.get((carrier, origin), {}).items() if name != seller]

    def median_peer(index: int) -> float:
        if len(others) < options.peer_min_sellers:
            return 0.0
        return sorted(shares[index] for shares in others)[len(others) // 2]

    def beyond_peers(parcels: list[CohortParcel], shared: float) -> float:
        guarded = [replace(parcel, prior_alive=parcel.prior_alive * (1.0 - shared)) for parcel in parcels]
        return ref_credible_share(guarded, options.silence_mixture_z, options.change_estimate)

    cohort = cohorts[level]
    if options.silence_loss_stages:
        transit, after = ref_by_stage(cohort)
        raw = combined(beyond_peers(transit, median_peer(0)), beyond_peers(after, median_peer(1)))
    else:
        raw = beyond_peers(cohort, median_peer(0))
    return raw if raw * len(cohort) >= 1.0 else 0.0


def ref_silent_shares(model: Model, in_flight: Iterable[InFlight]) -> dict[tuple[str, ...], float]:
    """``Model._silent_shares`` one parcel at a time, through the model's per-parcel methods."""
    options = model.settings
    sums: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0] * 6)
    cohorts: dict[tuple[str, ...], list[CohortParcel]] = defaultdict(list)
    for parcel in in_flight:
        if not in_silence_cohort(parcel.age_hours, options):
            continue
        weight = halving(parcel.age_hours, options.silence_cohort_half_life_days)
        if parcel.delivered:
            lost = expected = 0.0
            member = CohortParcel(weight, True, 1.0, 0.0)
        else:
            silent = model.parcel_silence(parcel.lane, parcel.silent_hours)
            prior_alive, factor = model.lost_given_silence(
                parcel.lane, parcel.age_hours, parcel.stage, silent, until_hours=parcel.until_hours
            )
            expected, lost = 1.0 - prior_alive, 1.0 - prior_alive * factor
            shown = 1.0 if parcel.stage is None else model.silence_survival(parcel.lane, parcel.stage, silent)
            passed = parcel.stage is not None and parcel.stage is not Milestone.GAP_TRANSIT
            member = CohortParcel(weight, False, prior_alive, shown, passed)
        for level in levels(parcel.lane)[1:]:
            totals = sums[level]
            totals[0] += 1.0
            totals[1] += weight
            totals[2] += weight * weight
            totals[3] += weight * (lost - expected)
            totals[4] += weight * expected
            totals[5] += weight * weight * expected * (1.0 - expected)
            cohorts[level].append(member)
    peers = (
        ref_peer_silent_shares(cohorts, options.peer_min_parcels, options.silence_loss_stages)
        if options.silence_share_mixture
        else {}
    )
    shares: dict[tuple[str, ...], float] = {}
    for level, (count, total, squares, excess, expected, variance) in sorted(
        sums.items(), key=lambda item: len(item[0])
    ):
        parent_key = parent_level(level)
        parent = shares.get(parent_key, 0.0) if parent_key is not None else 0.0
        usual = expected / total
        credited = credited_excess(excess, math.sqrt(variance), total / count, options)
        raw = max(0.0, min(1.0, credited / total / (1.0 - usual))) if usual < 1.0 else 0.0
        if options.silence_share_mixture and level[0] == "seller":
            raw = max(raw, ref_seller_silent_share(model, level, cohorts, peers))
        effective = total * total / squares
        shares[level] = (effective * raw + options.recent_weight * parent) / (effective + options.recent_weight)
    return shares


# --- Random worlds. ---


def _history(rng: random.Random, follows_promise: bool) -> dict[Milestone, Histogram]:
    """A lane's histograms: deliveries on either clock (so that either can win), and gaps."""
    found = {milestone: Histogram() for milestone in (Milestone.DELIVERY, Milestone.DELIVERY_BY_PROMISE)}
    for stage in GAP_MILESTONES:
        found[stage] = Histogram()
    for _ in range(rng.randint(5, 60)):
        fold = rng.randint(0, 1)
        transit = rng.uniform(60.0, 400.0)
        promise = rng.uniform(150.0, 500.0)
        delivered = rng.random() < 0.9
        spread = rng.uniform(-48.0, 24.0) if follows_promise else rng.uniform(-200.0, 200.0)
        found[Milestone.DELIVERY].add(transit, delivered, 1.0, fold=fold)
        on_promise = 480.0 - promise
        found[Milestone.DELIVERY_BY_PROMISE].add(
            on_promise + promise + spread, delivered, 1.0, entry_hours=on_promise, fold=fold
        )
        for stage in GAP_MILESTONES:
            found[stage].add(rng.expovariate(1.0 / rng.uniform(10.0, 90.0)), rng.random() < 0.95, 1.0)
    return found


def world(seed: int) -> tuple[ModelState, list[InFlight]]:
    rng = random.Random(seed)
    lanes: list[LaneKey] = [
        (f"seller-{seller}", carrier, "line", origin, marketplace)
        for carrier, origin in (("yanwen", "CN"), ("4px", "CN"), ("yanwen", "HK"))
        for marketplace in ("SG", "JP")
        for seller in range(rng.randint(1, 6))
        if rng.random() < 0.8
    ] or [("seller-0", "yanwen", "line", "CN", "SG")]
    state = ModelState(computed_at=NOW)
    for lane in lanes:
        if rng.random() < 0.6:  # the others have no history of their own
            for milestone, histogram in _history(rng, rng.random() < 0.5).items():
                state.histograms[(lane, milestone)] = histogram
    for carrier, origin in (("yanwen", "CN"), ("4px", "CN")):
        if rng.random() < 0.5:
            state.health[(carrier, origin)] = CarrierHealth(carrier, origin, rng.uniform(0.0, 30.0), 5.0)
    in_flight = [
        InFlight(
            lane,
            rng.uniform(80.0, 260.0),  # some outside the cohort's ages
            rng.random() < 0.3,
            rng.choice(STAGES),
            rng.uniform(0.0, 300.0),
            None if rng.random() < 0.3 else rng.uniform(20.0, 600.0),
        )
        for _ in range(rng.randint(0, 80))
        for lane in [rng.choice(lanes)]
    ]
    return state, in_flight


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["lower_bound", "garrote"]),
    st.sampled_from([1.0, 3.0]),
)
def test_the_shares_on_columns_are_the_per_parcel_ones(
    seed: int, mixture: bool, stages: bool, estimate: str, min_parcels: float
) -> None:
    state, in_flight = world(seed)
    options = replace(
        ModelSettings(),
        silence_share_mixture=mixture,
        silence_loss_stages=stages,
        change_estimate=estimate,
        peer_min_parcels=min_parcels,
        peer_min_sellers=1,
    )
    model = Model(state, options)
    expected = ref_silent_shares(model, in_flight)
    found = model._silent_shares(in_flight)
    assert list(found) == list(expected)
    for level, share in expected.items():
        assert close(found[level], share), (level, found[level], share)


parcels = st.lists(
    st.builds(
        CohortParcel,
        weight=st.floats(min_value=0.05, max_value=1.0),
        delivered=st.booleans(),
        prior_alive=st.floats(min_value=0.0, max_value=0.99),
        shown=st.floats(min_value=0.0, max_value=1.0),
        passed=st.booleans(),
    ),
    min_size=1,
    max_size=60,
)


@given(parcels, st.floats(min_value=0.5, max_value=3.0), st.sampled_from(["lower_bound", "garrote"]))
def test_the_mixture_on_columns_is_the_per_parcel_one(found: list[CohortParcel], z: float, estimate: str) -> None:
    assert close(likeliest_share(found), ref_likeliest_share(found))
    assert close(credible_share(found, z, estimate), ref_credible_share(found, z, estimate))
    transit, after = by_stage(found)
    ref_transit, ref_after = ref_by_stage(found)
    assert list(transit) == ref_transit
    assert list(after) == ref_after
    cohorts: dict[tuple[str, ...], Sequence[CohortParcel]] = {
        ("seller", f"s{index}", "yanwen", "line", "CN", "SG"): found for index in range(3)
    }
    for staged in (False, True):
        new, old = peer_silent_shares(cohorts, 1.0, staged), ref_peer_silent_shares(cohorts, 1.0, staged)
        assert new.keys() == old.keys()
        for key, sellers in old.items():
            assert new[key].keys() == sellers.keys()
            for seller, (transit_share, after_share) in sellers.items():
                assert close(new[key][seller][0], transit_share)
                assert close(new[key][seller][1], after_share)
