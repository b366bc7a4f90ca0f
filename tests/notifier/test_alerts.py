"""The alert state machine, exhaustively and by property (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.alerts import (
    AlertState,
    Notice,
    NoticeKind,
    Timings,
    apply_snapshot,
    escalation_level,
    evaluate,
    next_check_at,
    observe,
    wanted_by,
)
from shared.schemas import Level, ModelNote

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
TIMINGS = Timings.from_seconds(debounce=60, deescalation_hold=3600, reminder_interval=86400)
OK, WATCH, AT_RISK, BREACH = Level.OK, Level.WATCH, Level.AT_RISK, Level.BREACH


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Driver:
    """Feeds snapshots and ticks to the machine the way the service does, collecting notices."""

    def __init__(self, timings: Timings = TIMINGS) -> None:
        self.state = AlertState()
        self.timings = timings
        self.notices: list[Notice] = []

    def snapshot(self, level: Level, computed: float, caught_up: bool = True, now: float | None = None) -> bool:
        result = apply_snapshot(
            self.state, level, at(computed), caught_up, at(computed if now is None else now), self.timings
        )
        if result is None:
            return False
        self.state, notice = result
        if notice:
            self.notices.append(notice)
        return True

    def tick(self, now: float) -> None:
        self.state, notice = evaluate(self.state, at(now), self.timings)
        if notice:
            self.notices.append(notice)

    def kinds(self) -> list[tuple[NoticeKind, Level, Level]]:
        return [(notice.kind, notice.previous_level, notice.level) for notice in self.notices]


def test_escalation_waits_for_the_debounce_then_fires_once() -> None:
    driver = Driver()
    driver.snapshot(OK, 0)
    driver.snapshot(AT_RISK, 10)
    driver.tick(69)
    assert driver.notices == []
    assert next_check_at(driver.state, TIMINGS) == at(70)
    driver.tick(70)
    driver.tick(71)
    driver.tick(500)
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, AT_RISK)]
    assert driver.state.notified_level is AT_RISK


def test_a_dip_shorter_than_the_debounce_sends_nothing() -> None:
    driver = Driver()
    driver.snapshot(OK, 0)
    driver.snapshot(BREACH, 10)
    driver.snapshot(OK, 40)
    for second in range(40, 400, 10):
        driver.tick(second)
    assert driver.notices == []
    assert next_check_at(driver.state, TIMINGS) is None


def test_no_escalation_while_the_scorer_is_catching_up() -> None:
    driver = Driver()
    driver.snapshot(BREACH, 0, caught_up=False)
    driver.tick(1000)
    assert driver.notices == []
    assert next_check_at(driver.state, TIMINGS) is None
    # The run starts at the first caught-up snapshot, not at the backlog's first dip.
    driver.snapshot(BREACH, 1000, caught_up=True)
    driver.tick(1059)
    assert driver.notices == []
    driver.tick(1060)
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, BREACH)]


def test_catching_up_again_pauses_a_pending_escalation() -> None:
    driver = Driver()
    driver.snapshot(AT_RISK, 0)
    driver.snapshot(AT_RISK, 30, caught_up=False)
    driver.tick(100)
    assert driver.notices == []
    driver.snapshot(AT_RISK, 110)
    driver.tick(111)
    # The run that began at 0 continued through the lagging snapshot (same level).
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, AT_RISK)]


def test_escalation_goes_to_the_worst_level_that_held() -> None:
    driver = Driver()
    driver.snapshot(WATCH, 0)
    driver.snapshot(BREACH, 30)
    driver.tick(60)
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, WATCH)]
    driver.tick(90)
    assert driver.kinds()[-1] == (NoticeKind.ESCALATED, WATCH, BREACH)


def test_flapping_between_two_bad_levels_still_escalates_to_the_better_of_them() -> None:
    driver = Driver()
    for second in range(0, 120, 20):
        driver.snapshot(AT_RISK if second % 40 == 0 else BREACH, second)
    driver.tick(120)
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, AT_RISK)]


def test_deescalation_waits_for_the_hold_and_says_recovered_at_ok() -> None:
    driver = Driver()
    driver.snapshot(BREACH, 0)
    driver.tick(60)
    driver.snapshot(OK, 100)
    driver.tick(100 + 3599)
    assert len(driver.notices) == 1
    driver.tick(100 + 3600)
    assert driver.kinds()[-1] == (NoticeKind.RECOVERED, BREACH, OK)
    assert driver.state.notified_level is OK


def test_deescalation_to_a_better_bad_level_is_an_improvement() -> None:
    driver = Driver()
    driver.snapshot(BREACH, 0, now=60)
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, BREACH)]
    driver.snapshot(AT_RISK, 100)
    driver.snapshot(WATCH, 2000)
    driver.tick(3700)
    assert driver.kinds()[-1] == (NoticeKind.IMPROVED, BREACH, AT_RISK)
    driver.tick(5600)
    assert driver.kinds()[-1] == (NoticeKind.IMPROVED, AT_RISK, WATCH)


def test_a_relapse_during_the_hold_cancels_the_deescalation() -> None:
    driver = Driver()
    driver.snapshot(BREACH, 0, now=60)
    driver.snapshot(OK, 100)
    driver.snapshot(BREACH, 2000)
    driver.snapshot(OK, 2100)
    driver.tick(3800)  # 3700 s after the first OK, but only 1700 s after the second one
    assert len(driver.notices) == 1
    driver.tick(2100 + 3600)
    assert driver.kinds()[-1] == (NoticeKind.RECOVERED, BREACH, OK)


def test_reminder_at_most_once_per_interval_while_the_level_holds() -> None:
    driver = Driver()
    driver.snapshot(AT_RISK, 0, now=60)
    driver.tick(60 + 86399)
    assert len(driver.notices) == 1
    driver.tick(60 + 86400)
    driver.tick(60 + 86401)
    assert driver.kinds()[-1] == (NoticeKind.REMINDER, AT_RISK, AT_RISK)
    assert len(driver.notices) == 2
    driver.tick(60 + 2 * 86400)
    assert len(driver.notices) == 3
    assert [notice.seq for notice in driver.notices] == [1, 2, 3]


def test_no_reminder_while_a_change_is_pending_nor_when_ok_nor_in_digest_mode() -> None:
    driver = Driver()
    driver.snapshot(AT_RISK, 0, now=60)
    driver.snapshot(WATCH, 100)
    driver.tick(60 + 86400)
    assert driver.kinds()[-1] == (NoticeKind.IMPROVED, AT_RISK, WATCH)
    quiet = Driver()
    quiet.snapshot(OK, 0)
    quiet.tick(10 * 86400)
    assert quiet.notices == []
    digest = Driver(Timings.from_seconds(60, 3600, 86400, per_category_reminders=False))
    digest.snapshot(AT_RISK, 0, now=60)
    digest.tick(5 * 86400)
    assert len(digest.notices) == 1


@pytest.mark.parametrize("computed", [0, -1, -3600])
def test_stale_and_duplicate_snapshots_change_nothing(computed: float) -> None:
    driver = Driver()
    driver.snapshot(AT_RISK, 0, now=60)
    before = driver.state
    assert driver.snapshot(BREACH, computed, now=10_000) is False
    assert driver.state == before
    assert observe(before, OK, at(computed), True) is None


@pytest.mark.parametrize(
    ("min_level", "previous", "level", "wanted"),
    [
        (WATCH, OK, WATCH, True),
        (AT_RISK, OK, WATCH, False),
        (AT_RISK, WATCH, AT_RISK, True),
        (AT_RISK, AT_RISK, WATCH, True),
        (AT_RISK, WATCH, OK, False),
        (BREACH, AT_RISK, BREACH, True),
        (BREACH, OK, AT_RISK, False),
        (BREACH, BREACH, OK, True),
    ],
)
def test_min_level_filter(min_level: Level, previous: Level, level: Level, wanted: bool) -> None:
    notice = Notice(NoticeKind.ESCALATED, previous, level, 1, T0)
    assert wanted_by(min_level, notice) is wanted


# -- properties -----------------------------------------------------------------------


@dataclass(frozen=True)
class Snap:
    level: Level
    computed: int
    caught_up: bool


@dataclass(frozen=True)
class Tick:
    now: int


snapshots = st.builds(Snap, st.sampled_from(list(Level)), st.integers(0, 20_000), st.booleans())
timelines = st.lists(st.one_of(snapshots, st.builds(Tick, st.integers(0, 200_000))), max_size=40)
SHORT = Timings.from_seconds(debounce=60, deescalation_hold=600, reminder_interval=5000)


def run(events: list[Snap | Tick]) -> Driver:
    """Events in arrival order; the clock never goes backwards."""
    driver = Driver(SHORT)
    now = 0
    for event in events:
        if isinstance(event, Tick):
            now = max(now, event.now)
            driver.tick(now)
        else:
            now = max(now, event.computed)
            driver.snapshot(event.level, event.computed, event.caught_up, now=now)
    return driver


@settings(max_examples=300, deadline=None)
@given(timelines, st.data())
def test_duplicates_and_replays_never_add_or_change_messages(events: list[Snap | Tick], data: st.DataObject) -> None:
    original = run(events)
    seen = [event for event in events if isinstance(event, Snap)]
    with_duplicates = list(events)
    for snap in data.draw(st.lists(st.sampled_from(seen), max_size=10) if seen else st.just([])):
        position = data.draw(st.integers(events.index(snap) + 1, len(with_duplicates)))
        # Insert after the original's position, so it is a redelivery, not a first delivery.
        with_duplicates.insert(max(position, with_duplicates.index(snap) + 1), snap)
    assert run(with_duplicates).kinds() == original.kinds()

    replay = Driver(SHORT)
    replay.state, replay.notices = original.state, list(original.notices)
    for snap in data.draw(st.permutations(seen)):
        assert replay.snapshot(snap.level, snap.computed, snap.caught_up, now=300_000) is False
    assert replay.notices == original.notices


@settings(max_examples=300, deadline=None)
@given(timelines)
def test_messages_form_a_consistent_story(events: list[Snap | Tick]) -> None:
    driver = run(events)
    told = OK
    for expected_seq, notice in enumerate(driver.notices, start=1):
        assert notice.seq == expected_seq
        assert notice.previous_level is told
        if notice.kind is NoticeKind.REMINDER:
            assert notice.level is told and told is not OK
        else:
            assert notice.level is not told
            worse = notice.level.severity > told.severity
            assert (notice.kind is NoticeKind.ESCALATED) is worse
            assert (notice.kind is NoticeKind.RECOVERED) is (notice.level is OK)
        told = notice.level
    assert driver.state.notified_level is told


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots, max_size=30))
def test_an_escalation_is_backed_by_caught_up_snapshots_spanning_the_debounce(snaps: list[Snap]) -> None:
    # Only the first snapshot of a given computed_at is applied; the others are duplicates.
    first_by_time = {snap.computed: snap for snap in reversed(snaps)}
    ordered = [first_by_time[computed] for computed in sorted(first_by_time)]
    events: list[Snap | Tick] = []
    for snap in ordered:
        events += [snap, Tick(snap.computed)]
    driver = run(events)
    for notice in driver.notices:
        if notice.kind is not NoticeKind.ESCALATED:
            continue
        decided = (notice.decided_at - T0).total_seconds()
        window = [s for s in ordered if s.computed <= decided]
        # From some caught-up snapshot at least the debounce ago, every later one is at least this bad.
        starts = [
            s
            for s in window
            if s.caught_up
            and decided - s.computed >= 60
            and all(later.level.severity >= notice.level.severity for later in window if later.computed >= s.computed)
        ]
        assert starts, (notice, window)


@pytest.mark.parametrize(
    ("level", "today_level", "learnt", "expected"),
    [
        (AT_RISK, OK, True, AT_RISK),
        (AT_RISK, OK, False, OK),
        (WATCH, WATCH, False, WATCH),
        (AT_RISK, AT_RISK, False, AT_RISK),
        (BREACH, BREACH, False, BREACH),
        (WATCH, OK, False, OK),
    ],
)
def test_a_snapshot_on_lanes_not_learnt_escalates_no_further_than_today_vtr(
    level: Level, today_level: Level, learnt: bool, expected: Level
) -> None:
    note = ModelNote(built_at=None, packages=0, lanes_learnt=learnt, today_level=today_level)
    assert escalation_level(level, note) is expected
    assert escalation_level(level, None) is level


def test_unlearnt_snapshots_break_an_escalation_run_but_keep_the_told_level() -> None:
    """An AT_RISK run interrupted by a cold-start snapshot starts again; and a seller already
    told AT_RISK is not told "better" by a cold snapshot that says AT_RISK too."""
    driver = Driver()
    driver.snapshot(OK, 0)
    driver.snapshot(AT_RISK, 10)
    driver.state = observe(driver.state, AT_RISK, at(40), True, escalates_to=OK) or driver.state
    driver.tick(75)
    assert driver.notices == []
    driver.snapshot(AT_RISK, 80)
    driver.tick(141)
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, AT_RISK)]
    driver.state = observe(driver.state, AT_RISK, at(200), True, escalates_to=OK) or driver.state
    driver.tick(10_000)
    assert driver.kinds() == [(NoticeKind.ESCALATED, OK, AT_RISK)]
