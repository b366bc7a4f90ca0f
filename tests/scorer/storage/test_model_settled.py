"""Rows kept between refreshes keep the sums of their settled observations
(services/scorer/domain/model/batch.py, ``Settled``): a refresh adds the observations that
settled since and computes only the others. Over random sequences of writes (new packages,
packages rewritten, new scans, packages shipped together) and time passing (packages
settle, leave the silences' period and the learning period), the state from the kept rows
and their sums equals the state computed from scratch, within float rounding.

The kept rows are brought up to date here as ``model_columns._read_changes`` does on
PostgreSQL (tests/scorer/storage/test_model_cache.py runs that one against a database)."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scorer.domain.packages import counted_deadline
from services.scorer.domain.policy import STRUCTURAL_REASONS
from services.scorer.storage.model_columns import StoredRows, member, micros, take_back_settled
from services.scorer.storage.model_state import model_state_of_rows
from shared.schemas import PackageState
from tests.scorer.storage.test_model_columns import (
    NOW,
    SETTINGS,
    STATUSES,
    Package,
    assert_same_state,
    column_state,
    packages_st,
    stored_rows,
)

NAMES = ("id", "number", "confirmed", "first", "delivery", "last", "deadline", "learns", "kept")


def numbering(items: list[Package]) -> dict[str, int]:
    """A tracking number's number: its first package's id (as ``stored_rows`` numbers them)."""
    numbers: dict[str, int] = {}
    for id_, p in enumerate(items, start=1):
        numbers.setdefault(p.number, id_)
    return numbers


def bring_up_to_date(
    rows: StoredRows, items: list[Package], rewritten: set[int], scanned: set[str], now: datetime
) -> None:
    """What ``_read_changes`` does: take back what rows that change or leave settled, drop
    them, add the rewritten packages of the period, and every scan of the numbers touched."""
    since = micros(now - timedelta(days=SETTINGS.history_days))
    now_us = micros(now)
    numbers = numbering(items)
    touched = {numbers[items[id_ - 1].number] for id_ in rewritten} | {numbers[number] for number in scanned}
    touched_numbers = np.asarray(sorted(touched), dtype=np.int64)
    c = rows.columns
    leaving = c["confirmed"] < since
    changed = member(c["id"], np.asarray(sorted(rewritten), dtype=np.int64))
    take_back_settled(rows, leaving | changed, now_us, SETTINGS)
    take_back_settled(rows, member(c["number"], touched_numbers), now_us, SETTINGS, silences_only=True)
    rows.keep_packages(~(leaving | changed))
    for id_ in sorted(rewritten):
        p = items[id_ - 1]
        if micros(p.confirmed) < since:
            continue
        learns = not (p.reason in STRUCTURAL_REASONS or (p.state == PackageState.VALID.value and p.first is None))
        values = (id_, numbers[p.number], micros(p.confirmed), micros(p.first), micros(p.delivery), micros(p.last),
                  micros(counted_deadline(p.promised)), learns, True)  # type: ignore[arg-type]  # fmt: skip
        rows.add_packages(p.lane, {name: [value] for name, value in zip(NAMES, values, strict=True)})
    rows.keep_scans(~member(rows.scans["number"], touched_numbers))
    for p in items:
        if numbers[p.number] in touched:
            for status, moment, source in p.scans:
                rows.add_scans(status, source, [numbers[p.number]], [micros(moment)])
    rows.keep_scans(member(rows.scans["number"], rows.columns["number"]))


@st.composite
def steps(draw: st.DrawFn, count: int) -> list[tuple[float, list[int], list[int], int]]:
    """Per step: hours passing, packages rewritten and packages scanned (indexes drawn
    modulo the packages there are then), and how many new packages."""
    found = []
    for _ in range(count):
        passing = draw(st.sampled_from([0.0, 0.5, 6.0, 30.0, 24.0 * 6, 24.0 * 20]))
        found.append((passing, draw(st.lists(st.integers(0, 10**6), max_size=4)),
                      draw(st.lists(st.integers(0, 10**6), max_size=3)), draw(st.integers(0, 4))))  # fmt: skip
    return found


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 20), st.integers(1, 5))
def test_the_kept_sums_give_the_state_computed_from_scratch(data: st.DataObject, start: int, count: int) -> None:
    items = [data.draw(packages_st(index)) for index in range(start)]
    now = NOW
    rows = stored_rows(items, now)
    rows.kept_between_refreshes = True
    assert_same_state(column_state(items, now), model_state_of_rows(rows, now, SETTINGS)[1])
    settled_packages = settled_silences = False
    for passing, rewrite, rescan, new in data.draw(steps(count)):
        now += timedelta(hours=passing)
        rewritten: set[int] = set()
        for pick in rewrite:
            index = pick % len(items)
            # A rewrite: another package drawn for the same order (same id, number, confirmation).
            drawn = data.draw(packages_st(index))
            shift = now - NOW
            items[index] = replace(drawn, number=items[index].number, confirmed=items[index].confirmed,
                                   first=drawn.first and drawn.first + shift, delivery=drawn.delivery and
                                   drawn.delivery + shift, scans=copy.copy(items[index].scans))  # fmt: skip
            rewritten.add(index + 1)
        scanned: set[str] = set()
        for pick in rescan:
            p = items[pick % len(items)]
            moment = now - timedelta(hours=data.draw(st.floats(min_value=-3.0, max_value=300.0)))
            p.scans.append((data.draw(st.sampled_from(STATUSES)), moment, "17track"))
            scanned.add(p.number)
        for _ in range(new):
            drawn = data.draw(packages_st(len(items)))
            shift = now - NOW
            items.append(replace(drawn, confirmed=drawn.confirmed + shift, first=drawn.first and drawn.first + shift,
                                 delivery=drawn.delivery and drawn.delivery + shift,
                                 scans=[(s, m + shift, src) for s, m, src in drawn.scans]))  # fmt: skip
            rewritten.add(len(items))
        bring_up_to_date(rows, items, rewritten, scanned, now)
        assert_same_state(column_state(items, now), model_state_of_rows(rows, now, SETTINGS)[1])
        settled_packages |= bool(rows.columns["settled"].any())
        settled_silences |= bool(rows.columns["silences_settled"].any())
    # The kept flags describe the kept rows (one per row).
    assert all(len(values) == len(rows.columns["id"]) for values in rows.columns.values())
    SETTLED_EXAMPLES.append((settled_packages, settled_silences))


SETTLED_EXAMPLES: list[tuple[bool, bool]] = []


def test_the_random_sequences_settle_packages_and_silences() -> None:
    """The test above is not vacuous: most of its sequences settle something."""
    if not SETTLED_EXAMPLES:
        test_the_kept_sums_give_the_state_computed_from_scratch()
    packages = sum(example[0] for example in SETTLED_EXAMPLES)
    assert packages >= len(SETTLED_EXAMPLES) // 4, SETTLED_EXAMPLES


def test_a_delivered_parcels_silences_settle_and_are_taken_back_when_it_gets_a_scan() -> None:
    """Drawn histories settle silences rarely (a parcel needs its own tracking number and a
    delivery scan): one written out. Its silences settle once delivered; a late scan takes
    them back, and the state stays the one computed from scratch."""
    lane = ("s1", "yanwen", "line", "CN", "SG")
    confirmed = NOW - timedelta(days=9)
    first = confirmed + timedelta(hours=20)
    delivered = first + timedelta(days=6)
    scans = [
        ("ACCEPTED", first, "yanwen"),
        ("IN_TRANSIT", first + timedelta(hours=30), "yanwen"),
        ("ARRIVED_DESTINATION", first + timedelta(days=4), "yanwen"),
        ("DELIVERED", delivered, "yanwen"),
    ]
    items = [Package(lane, confirmed, first, delivered, delivered, PackageState.VALID.value, None, "N1",
                     (confirmed + timedelta(days=12)).date(), scans)]  # fmt: skip
    rows = stored_rows(items, NOW)
    rows.kept_between_refreshes = True
    assert_same_state(column_state(items, NOW), model_state_of_rows(rows, NOW, SETTINGS)[1])
    assert rows.columns["settled"].tolist() == [True] and rows.columns["silences_settled"].tolist() == [True]
    later = NOW + timedelta(hours=6)
    items[0].scans.append(("OUT_FOR_DELIVERY", first + timedelta(days=5), "17track"))
    bring_up_to_date(rows, items, set(), {"N1"}, later)
    assert rows.columns["silences_settled"].tolist() == [False]
    assert_same_state(column_state(items, later), model_state_of_rows(rows, later, SETTINGS)[1])
    assert rows.columns["silences_settled"].tolist() == [True]
