"""Orders not confirmed yet (services/scorer/domain/projection.py): volume, promise lags, health."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from services.scorer.domain.projection import RecentPackage, project
from services.scorer.model import ModelSettings

TODAY = date(2026, 6, 15)
NOON = datetime(2026, 6, 15, 12, 0)
SETTINGS = ModelSettings()


def confirmed(days_ago: float, lag_days: int, probability: float = 1.0) -> RecentPackage:
    moment = NOON - timedelta(days=days_ago)
    return RecentPackage(moment, moment.date() + timedelta(days=lag_days), probability)


def test_a_steady_category_projects_its_volume_at_its_lag() -> None:
    # Ten orders a day for two weeks, each promised 5 days after confirmation, all valid.
    recent = [confirmed(day + 0.1 * i, 5) for day in range(14) for i in range(10)]
    projected = project(recent, TODAY, NOON, SETTINGS)
    # Today's remaining half day lands 5 days out, then ten a day from the day after.
    assert projected[TODAY + timedelta(days=5)].expected == pytest.approx(5.0, rel=0.1)
    for offset in range(6, 14):
        assert projected[TODAY + timedelta(days=offset)].expected == pytest.approx(10.0, rel=0.1)
    assert all(day >= TODAY + timedelta(days=5) for day in projected)  # nothing before the lag
    assert max(projected) == TODAY + timedelta(days=13)  # the last day that enters the forecast
    assert all(p.expected_valid == pytest.approx(p.expected) and p.variance == 0 for p in projected.values())


def test_the_recent_health_carries_into_the_projection() -> None:
    healthy = [confirmed(day + 0.1 * i, 3) for day in range(5, 14) for i in range(10)]
    # The packages confirmed 1-4 days ago are half dead (a carrier that stopped yesterday).
    failing = [confirmed(day + 0.1 * i, 3, probability=0.5) for day in range(1, 5) for i in range(10)]
    projected = project(healthy + failing, TODAY, NOON, SETTINGS)
    day = projected[TODAY + timedelta(days=6)]
    assert day.expected_valid / day.expected == pytest.approx(0.5, abs=0.05)
    assert day.variance == pytest.approx(day.expected * 0.25, rel=0.05)


def test_nothing_recent_projects_nothing() -> None:
    assert project([], TODAY, NOON, SETTINGS) == {}
    assert project([confirmed(20, 3)], TODAY, NOON, SETTINGS) == {}  # older than the volume period
