"""The alert state machine of one seller x marketplace x category (pure: no I/O, no clock).

The machine remembers what the seller was last told (``notified_level``) and, for every
level, since when the scorer's snapshots have stayed at least that bad (``worse_since``)
and at most that bad (``better_since``). A message is due when such a run has lasted
long enough:

- escalation to the worst level whose run has held for the debounce;
- de-escalation to the best level whose run has held for the de-escalation hold
  ("recovered" when that level is OK);
- a reminder while the observed level equals the notified one, at most once per interval.

Runs start only at snapshots taken while the scorer was caught up, so the dip a scorer
shows while it replays a backlog (shipments applied before their scans) never starts the
clock. A snapshot whose forecast rests on lanes the model has not learnt yet (cold start,
``ScoreSnapshot.model``) counts towards escalation only as far as today's VTR alone goes
(:func:`escalation_level`): a model that has not seen the data never escalates.
Snapshots are ordered by ``computed_at``: one that is not newer than the last one seen
(a replay, a duplicate, an out-of-order delivery) changes nothing, which is what makes
the machine idempotent. Each message gets the next ``notice_seq``; the outbox keys rows
by it, so a transition is written once whatever is replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import msgspec

from shared.schemas import Level, ModelNote

Clock = Callable[[], datetime]
LEVELS: tuple[Level, ...] = tuple(Level)


class NoticeKind(StrEnum):
    ESCALATED = "escalated"
    IMPROVED = "improved"
    RECOVERED = "recovered"
    REMINDER = "reminder"
    #: Not decided by the machine: the per-seller daily digest (``reminder_mode = daily_digest``).
    DIGEST = "digest"


@dataclass(frozen=True)
class Timings:
    debounce: timedelta
    deescalation_hold: timedelta
    reminder_interval: timedelta
    #: False when reminders go out as a per-seller digest instead.
    per_category_reminders: bool = True

    @classmethod
    def from_seconds(
        cls, debounce: float, deescalation_hold: float, reminder_interval: float, per_category_reminders: bool = True
    ) -> Timings:
        return cls(
            timedelta(seconds=debounce),
            timedelta(seconds=deescalation_hold),
            timedelta(seconds=reminder_interval),
            per_category_reminders,
        )


Runs = tuple[datetime | None, ...]
NO_RUNS: Runs = (None,) * len(LEVELS)


class AlertState(msgspec.Struct, frozen=True, kw_only=True):
    notified_level: Level = Level.OK
    observed_level: Level = Level.OK
    #: ``computed_at`` of the newest snapshot applied; older or equal ones are ignored.
    observed_at: datetime | None = None
    caught_up: bool = False
    #: Per level (by severity): since when every snapshot has been at least that bad.
    worse_since: Runs = NO_RUNS
    #: Per level (by severity): since when every snapshot has been at most that bad.
    better_since: Runs = NO_RUNS
    notified_at: datetime | None = None
    #: Number of messages decided so far; the next one gets this value + 1.
    notice_seq: int = 0


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    previous_level: Level
    level: Level
    seq: int
    decided_at: datetime


def _continue_runs(runs: Runs, holds: Callable[[Level], bool], start: datetime | None) -> Runs:
    """Keep the runs the new level continues, end the others, start missing ones at ``start``."""
    return tuple(
        (since if since is not None else start) if holds(level) else None
        for level, since in zip(LEVELS, runs, strict=True)
    )


def escalation_level(level: Level, model: ModelNote | None) -> Level:
    """The level a snapshot may escalate to: its own, or, while its category's lanes are not
    learnt, no worse than what today's VTR alone says (``model.today_level``)."""
    if model is None or model.lanes_learnt:
        return level
    return min(level, model.today_level, key=lambda candidate: candidate.severity)


def observe(
    state: AlertState, level: Level, computed_at: datetime, caught_up: bool, escalates_to: Level | None = None
) -> AlertState | None:
    """Apply one snapshot; None when it is stale (not newer than the newest seen).

    ``escalates_to`` (default ``level``) is the level the snapshot counts as for the runs
    that lead to an escalation; the runs that lead to a de-escalation use ``level``.
    """
    if state.observed_at is not None and computed_at <= state.observed_at:
        return None
    start = computed_at if caught_up else None
    worse = level if escalates_to is None else escalates_to
    return msgspec.structs.replace(
        state,
        observed_level=level,
        observed_at=computed_at,
        caught_up=caught_up,
        worse_since=_continue_runs(state.worse_since, lambda held: worse.severity >= held.severity, start),
        better_since=_continue_runs(state.better_since, lambda held: level.severity <= held.severity, start),
    )


def _held(runs: Runs, level: Level, now: datetime, duration: timedelta) -> bool:
    since = runs[level.severity]
    return since is not None and now - since >= duration


def _due_transition(state: AlertState, now: datetime, timings: Timings) -> tuple[NoticeKind, Level] | None:
    notified = state.notified_level
    worse = [level for level in LEVELS if level.severity > notified.severity]
    for level in reversed(worse):
        if _held(state.worse_since, level, now, timings.debounce):
            return NoticeKind.ESCALATED, level
    better = [level for level in LEVELS if level.severity < notified.severity]
    for level in better:
        if _held(state.better_since, level, now, timings.deescalation_hold):
            return (NoticeKind.RECOVERED if level is Level.OK else NoticeKind.IMPROVED), level
    return None


def _reminder_due_at(state: AlertState, timings: Timings) -> datetime | None:
    if (
        not timings.per_category_reminders
        or state.notified_level is Level.OK
        or state.observed_level is not state.notified_level
        or state.notified_at is None
    ):
        return None
    return state.notified_at + timings.reminder_interval


def evaluate(state: AlertState, now: datetime, timings: Timings) -> tuple[AlertState, Notice | None]:
    """Decide whether a message is due at ``now``; returns the new state and the notice."""
    if not state.caught_up or state.observed_at is None:
        return state, None
    due = _due_transition(state, now, timings)
    if due is None:
        reminder_at = _reminder_due_at(state, timings)
        if reminder_at is None or now < reminder_at:
            return state, None
        due = (NoticeKind.REMINDER, state.notified_level)
    kind, level = due
    seq = state.notice_seq + 1
    notice = Notice(kind=kind, previous_level=state.notified_level, level=level, seq=seq, decided_at=now)
    return msgspec.structs.replace(state, notified_level=level, notified_at=now, notice_seq=seq), notice


def _pending_times(state: AlertState, timings: Timings) -> Iterator[datetime]:
    notified = state.notified_level
    for level in LEVELS:
        worse_since = state.worse_since[level.severity]
        if level.severity > notified.severity and worse_since is not None:
            yield worse_since + timings.debounce
        better_since = state.better_since[level.severity]
        if level.severity < notified.severity and better_since is not None:
            yield better_since + timings.deescalation_hold
    reminder_at = _reminder_due_at(state, timings)
    if reminder_at is not None:
        yield reminder_at


def next_check_at(state: AlertState, timings: Timings) -> datetime | None:
    """When :func:`evaluate` may next decide something without a new snapshot (None: never)."""
    if not state.caught_up:
        return None
    return min(_pending_times(state, timings), default=None)


def apply_snapshot(
    state: AlertState,
    level: Level,
    computed_at: datetime,
    caught_up: bool,
    now: datetime,
    timings: Timings,
    escalates_to: Level | None = None,
) -> tuple[AlertState, Notice | None] | None:
    """Observe then evaluate; None when the snapshot is stale."""
    observed = observe(state, level, computed_at, caught_up, escalates_to)
    if observed is None:
        return None
    return evaluate(observed, now, timings)


def wanted_by(min_level: Level, notice: Notice) -> bool:
    """A subscriber hears about a change that touches their minimum level (either side)."""
    return max(notice.previous_level.severity, notice.level.severity) >= min_level.severity
