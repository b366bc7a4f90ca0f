"""The model's state computed from columns at once (services/scorer/domain/model/batch.py,
services/scorer/storage/model_columns.py) equals the state built one package at a time from
``observations_of``, ``silence_observations`` and ``carrier_health`` (the model's
specification), on random histories, within float rounding."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scorer.domain.model.carrier_health import carrier_health
from services.scorer.domain.model.lanes import STAGE_OF_SCAN, LaneKey
from services.scorer.domain.model.observations import (
    InFlight,
    in_silence_cohort,
    observations_of,
    selected_from,
    silence_observations,
)
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.state import ModelState
from services.scorer.domain.packages import counted_deadline, service_key
from services.scorer.domain.policy import STRUCTURAL_REASONS
from services.scorer.storage.model_columns import StoredRows, micros
from services.scorer.storage.model_state import model_state_of_rows
from shared.schemas import DELIVERY_SCAN_STATUSES, PackageState, Reason

NOW = datetime(2026, 6, 15, 12, 0, 0, 250_000)
SETTINGS = ModelSettings()
LANES = (
    ("s1", "yanwen", "line", "CN", "SG"),
    ("s2", "yanwen", "line", "CN", "SG"),
    ("s1", "4px", "standard", "HK", "MX"),
)
STATUSES = ("ACCEPTED", "IN_TRANSIT", "ARRIVED_DESTINATION", "OUT_FOR_DELIVERY", "DELIVERED", "EXCEPTION", "RETURNED",
            "ATTEMPT_FAIL")  # fmt: skip


@dataclass
class Package:
    lane: tuple[str, str, str, str, str]
    confirmed: datetime
    first: datetime | None
    delivery: datetime | None
    last: datetime | None
    state: str
    reason: str | None
    number: str
    promised: object
    scans: list[tuple[str, datetime, str]]


hours_st = st.floats(min_value=-30.0, max_value=60 * 24.0, allow_nan=False)


@st.composite
def packages_st(draw: st.DrawFn, index: int) -> Package:
    lane = draw(st.sampled_from(LANES))
    confirmed = NOW - timedelta(hours=draw(st.floats(min_value=-5.0, max_value=56 * 24.0)), microseconds=draw(
        st.integers(0, 999_999)))  # fmt: skip
    first = confirmed + timedelta(hours=draw(hours_st)) if draw(st.booleans()) else None
    delivery = first + timedelta(hours=draw(hours_st)) if first is not None and draw(st.booleans()) else None
    last = draw(st.sampled_from([first, delivery, confirmed + timedelta(hours=draw(hours_st))]))
    state = draw(st.sampled_from([PackageState.VALID.value, PackageState.PENDING.value, PackageState.INVALID.value]))
    reason = draw(st.sampled_from([None, Reason.CARRIER_NOT_INTEGRATED.value, Reason.AWAITING_FIRST_SCAN.value]))
    promised = (confirmed + timedelta(days=draw(st.integers(-3, 40)))).date()
    # A few packages share a tracking number (one parcel, several orders).
    number = f"N{draw(st.integers(0, index + 2))}"
    scans = []
    if first is not None:
        for _ in range(draw(st.integers(0, 5))):
            moment = first + timedelta(hours=draw(st.floats(min_value=-2.0, max_value=400.0)))
            scans.append((draw(st.sampled_from(STATUSES)), moment, draw(st.sampled_from(["17track", "yanwen"]))))
        if scans and draw(st.booleans()):
            scans.append(scans[0])  # the same scan twice, from another source
    return Package(lane, confirmed, first, delivery, last, state, reason, number, promised, scans)


def reference_state(stored: list[Package], now: datetime) -> ModelState:
    """The state as the model's specification builds it, one package after the other."""
    state = ModelState(computed_at=now, recent_hours=SETTINGS.recent_hours)
    silence_since = now - timedelta(days=SETTINGS.silence_history_days)
    items = [p for p in stored if p.confirmed >= now - timedelta(days=SETTINGS.history_days)]
    # A tracking number shared by packages teaches its silences once, with the first of them
    # (the lowest id: ``items`` are in id order).
    complete_from = selected_from((p.lane[0], p.promised, p.delivery is not None) for p in items)
    scan_times: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    scanned: dict[str, tuple[LaneKey, datetime, datetime | None, datetime]] = {}
    for p in items:
        if p.reason in STRUCTURAL_REASONS or (p.state == PackageState.VALID.value and p.first is None):
            continue
        seller, carrier, service, origin, marketplace = p.lane
        lane: LaneKey = (seller, carrier, service_key(service), origin, marketplace)
        deadline = counted_deadline(p.promised)  # type: ignore[arg-type]
        if p.first is not None and p.first <= now and p.confirmed >= silence_since:
            scanned.setdefault(p.number, (lane, p.first, p.delivery, deadline))
        first_complete = complete_from.get(seller)
        waiting = first_complete is not None and p.promised < first_complete
        for observation in observations_of(lane, p.confirmed, p.first, p.delivery, now, SETTINGS, deadline, waiting):
            state.add(observation)
        for moment in {p.first, p.delivery, p.last}:
            if moment is not None:
                scan_times[(carrier, origin)].append(moment)
    state.health = carrier_health(scan_times, now, SETTINGS)
    add_reference_silences(state, stored, items, scanned, now)
    return state


def add_reference_silences(
    state: ModelState,
    stored: list[Package],
    items: list[Package],
    scanned: dict[str, tuple[LaneKey, datetime, datetime | None, datetime]],
    now: datetime,
) -> None:
    silence_since = now - timedelta(days=SETTINGS.silence_history_days)
    by_number: dict[str, set[tuple[datetime, bool, str]]] = defaultdict(set)
    recent_numbers = {p.number for p in items if p.confirmed >= silence_since}
    for p in stored:
        if p.number in recent_numbers:
            for status, moment, _ in p.scans:
                if moment <= now:
                    by_number[p.number].add((moment, status in DELIVERY_SCAN_STATUSES, status))
    for number, (lane, first, delivery, deadline) in scanned.items():
        ordered = [(status, moment) for moment, _, status in sorted(by_number.get(number, ()))]
        for observation in silence_observations(("", *lane[1:]), ordered, now, SETTINGS):  # type: ignore[arg-type]
            state.add(observation)
        last_status, last_at = ordered[-1] if ordered else (None, first)
        parcel = InFlight(lane, (now - first).total_seconds() / 3600.0, delivery is not None and delivery <= now,
                          STAGE_OF_SCAN.get(last_status or ""), (now - last_at).total_seconds() / 3600.0,
                          (deadline - first).total_seconds() / 3600.0)  # fmt: skip
        if in_silence_cohort(parcel.age_hours, SETTINGS):
            state.in_flight.append(parcel)


def column_state(items: list[Package], now: datetime) -> ModelState:
    return model_state_of_rows(stored_rows(items, now), now, SETTINGS)[1]


def stored_rows(items: list[Package], now: datetime) -> StoredRows:
    """The same packages as the storage keeps them (flat columns; a package's id is its
    index, a tracking number's its first package's)."""
    since = now - timedelta(days=SETTINGS.history_days)
    rows = StoredRows()
    numbers: dict[str, int] = {}
    for id_, p in enumerate(items, start=1):
        number = numbers.setdefault(p.number, id_)
        if p.confirmed < since:
            continue
        learns = not (p.reason in STRUCTURAL_REASONS or (p.state == PackageState.VALID.value and p.first is None))
        values = (id_, number, micros(p.confirmed), micros(p.first), micros(p.delivery), micros(p.last),
                  micros(counted_deadline(p.promised)), learns, True)  # type: ignore[arg-type]  # fmt: skip
        names = ("id", "number", "confirmed", "first", "delivery", "last", "deadline", "learns", "kept")
        rows.add_packages(p.lane, {name: [value] for name, value in zip(names, values, strict=True)})
    for p in items:
        for status, moment, source in p.scans:
            rows.add_scans(status, source, [numbers[p.number]], [micros(moment)])
    return rows


def assert_close(a: float, b: float) -> None:
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (a, b)


def assert_same_state(expected: ModelState, found: ModelState) -> None:
    assert set(found.histograms) == set(expected.histograms)
    for key, histogram in expected.histograms.items():
        other = found.histograms[key]
        for mine, theirs in zip(histogram.as_json(), other.as_json(), strict=True):
            for a, b in zip(mine, theirs, strict=True):
                assert_close(a, b)
    assert sorted(found.health) == sorted(expected.health)
    for key, health in expected.health.items():
        assert found.health[key].usual_rate == health.usual_rate
        assert_close(found.health[key].silent_hours, health.silent_hours)
    key = lambda parcel: (parcel.lane, parcel.age_hours, parcel.silent_hours)  # noqa: E731
    assert sorted(found.in_flight, key=key) == sorted(expected.in_flight, key=key)


@st.composite
def histories(draw: st.DrawFn) -> list[Package]:
    count = draw(st.integers(0, 25))
    return [draw(packages_st(index)) for index in range(count)]


@settings(max_examples=150, deadline=None)
@given(histories(), st.floats(min_value=0.0, max_value=20 * 24.0))
def test_the_columns_give_the_state_the_packages_give(items: list[Package], later_hours: float) -> None:
    assert_same_state(reference_state(items, NOW), column_state(items, NOW))
    # Time passes: waiting packages age, old ones leave the learning period.
    later = NOW + timedelta(hours=later_hours)
    assert_same_state(reference_state(items, later), column_state(items, later))


def test_an_empty_history_gives_an_empty_state() -> None:
    state = column_state([], NOW)
    assert state.histograms == {} and state.health == {} and state.in_flight == []


@settings(max_examples=100, deadline=None)
@given(histories())
def test_recent_scans_count_per_source_for_the_carrier_of_their_tracking_number(items: list[Package]) -> None:
    """Each physical scan of a tracking number confirmed in the silences' period counts once,
    for the carrier x origin of the number's package of lowest id (domain/sources.py)."""
    since = NOW - timedelta(days=SETTINGS.history_days)
    silence_since = NOW - timedelta(days=SETTINGS.silence_history_days)
    window = [(id_, p) for id_, p in enumerate(items, start=1) if p.confirmed >= since]
    recent = {p.number for _, p in window if p.confirmed >= silence_since}
    carrier_of: dict[str, tuple[str, str]] = {}
    for _, p in window:
        carrier_of.setdefault(p.number, (p.lane[1], p.lane[3]))
    expected: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for p in items:
        if p.number in recent:
            for _, moment, source in p.scans:
                if moment <= NOW:
                    expected[carrier_of[p.number]][source] += 1
    found = model_state_of_rows(stored_rows(items, NOW), NOW, SETTINGS)[0].source_counts
    assert found == {key: counts for key, counts in expected.items() if counts}
