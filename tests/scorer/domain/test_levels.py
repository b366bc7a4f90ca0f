"""The cold-start cap on a category's level (services/scorer/domain/levels.py; pure)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.scorer.domain.levels import capped_level, level_of, today_level
from services.scorer.forecast import DayCounts, Score, score
from shared.schemas import Level

D = date(2026, 12, 7)


def category(valid: int, invalid: int, pending: int = 0, expected_valid: float = 0.0) -> Score:
    days = {D - timedelta(days=5): DayCounts(valid=valid, invalid=invalid)}
    if pending:
        days[D + timedelta(days=2)] = DayCounts(pending=pending, expected_valid=expected_valid)
    return score(days, D)


@pytest.mark.parametrize(
    ("valid", "invalid", "expected"),
    [(990, 10, Level.OK), (969, 31, Level.WATCH), (954, 46, Level.AT_RISK), (949, 51, Level.BREACH)],
)
def test_today_level_reads_today_vtr_only(valid: int, invalid: int, expected: Level) -> None:
    assert today_level(category(valid, invalid)) is expected


def test_a_forecast_on_priors_is_capped_at_watch_unless_today_is_already_low() -> None:
    # 99% today, 150 pending priced at 0.4 (nothing learnt): the forecast says AT_RISK.
    cold = category(990, 10, pending=150, expected_valid=60.0)
    assert level_of(cold) is Level.AT_RISK and today_level(cold) is Level.OK
    assert capped_level(level_of(cold), today_level(cold), lanes_learnt=False) is Level.WATCH
    assert capped_level(level_of(cold), today_level(cold), lanes_learnt=True) is Level.AT_RISK
    low_today = category(953, 47, pending=150, expected_valid=60.0)
    assert capped_level(level_of(low_today), today_level(low_today), lanes_learnt=False) is Level.AT_RISK
    breached = category(940, 60, pending=150, expected_valid=60.0)
    assert capped_level(level_of(breached), today_level(breached), lanes_learnt=False) is Level.BREACH
    calm = category(990, 10)
    assert capped_level(level_of(calm), today_level(calm), lanes_learnt=False) is Level.OK
