"""When the model is rebuilt besides its timer, and what counts as a learnt lane (pure)."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.scorer.domain.freshness import (
    FreshnessRules,
    InputChange,
    ModelBuild,
    RefreshReason,
    coverage,
    refresh_reason,
)

RULES = FreshnessRules(new_share=0.1, lane_min_packages=20)
KNOWN = ("yunexpress", "line", "CN", "AE")
NEW = ("4px", "standard", "CN", "MX")
LATER = datetime(2026, 12, 7, 12, 2)
BUILD = ModelBuild(datetime(2026, 12, 7, 12), packages=1000, newest_package_id=1000, lane_packages={KNOWN: 1000})


def reason(
    change: InputChange, flags: dict[str, bool] | None = None, build: ModelBuild = BUILD
) -> RefreshReason | None:
    options = {"timer_due": False, "caught_up": True, "just_caught_up": False, **(flags or {})}
    return refresh_reason(build, change, RULES, now=LATER, **options)


@pytest.mark.parametrize(
    ("change", "flags", "expected"),
    [
        (InputChange({KNOWN: 5}), {}, None),
        (InputChange({KNOWN: 99}), {}, None),
        (InputChange({KNOWN: 100}), {}, RefreshReason.NEW_PACKAGES),
        (InputChange({NEW: 19}), {}, None),
        (InputChange({NEW: 20}), {}, RefreshReason.NEW_LANES),
        (InputChange({KNOWN: 1}), {"just_caught_up": True}, RefreshReason.BACKLOG_DRAINED),
        (InputChange({}), {"just_caught_up": True}, None),
        (InputChange({KNOWN: 5000, NEW: 500}), {"caught_up": False}, None),
        (InputChange({}), {"caught_up": False, "timer_due": True}, RefreshReason.TIMER),
        (InputChange({}, records=100), {}, RefreshReason.NEW_PACKAGES),
        (InputChange({}, records=3), {"just_caught_up": True}, RefreshReason.BACKLOG_DRAINED),
    ],
)
def test_the_model_is_rebuilt_when_its_input_changed_enough(
    change: InputChange, flags: dict[str, bool], expected: RefreshReason | None
) -> None:
    assert reason(change, flags) is expected


def test_a_model_never_built_is_built_first() -> None:
    assert reason(InputChange(), build=ModelBuild()) is RefreshReason.FIRST


def test_an_empty_build_is_rebuilt_by_the_first_packages_once_caught_up() -> None:
    empty = ModelBuild(datetime(2026, 12, 7, 12))
    assert reason(InputChange({KNOWN: 1})) is None
    assert reason(InputChange({KNOWN: 1}), build=empty) is RefreshReason.NEW_PACKAGES


def test_triggers_wait_a_minute_after_a_build_that_had_data() -> None:
    soon = datetime(2026, 12, 7, 12, 0, 30)
    options = {"timer_due": False, "caught_up": True, "just_caught_up": True}
    assert refresh_reason(BUILD, InputChange({NEW: 500}), RULES, now=soon, **options) is None
    empty = ModelBuild(datetime(2026, 12, 7, 12))
    assert refresh_reason(empty, InputChange({NEW: 5}), RULES, now=soon, **options) is RefreshReason.BACKLOG_DRAINED


def test_a_category_is_learnt_when_every_pending_package_is_on_a_learnt_lane() -> None:
    assert coverage(BUILD, [(KNOWN, 30)], RULES).learnt
    mixed = coverage(BUILD, [(KNOWN, 30), (NEW, 4)], RULES)
    assert (mixed.learnt, mixed.pending, mixed.unlearnt_pending) == (False, 34, 4)
    assert not coverage(ModelBuild(), [(KNOWN, 1)], RULES).learnt
