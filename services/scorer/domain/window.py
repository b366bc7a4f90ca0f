"""Window arithmetic (domain.md section 3): which promised dates an evaluation day counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

WINDOW_DAYS = 30
FORECAST_DAYS = 14


@dataclass(frozen=True, slots=True)
class Window:
    """Promised delivery dates ``first .. last`` inclusive."""

    first: date
    last: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last


def window(day: date, lag_days: int = 0) -> Window:
    """window(d) = promised dates [d-30, d-1], shifted back by ``lag_days``."""
    last = day - timedelta(days=1 + lag_days)
    return Window(last - timedelta(days=WINDOW_DAYS - 1), last)


def counted_range(day: date, lag_days: int = 0, forecast_days: int = FORECAST_DAYS) -> Window:
    """Every promised date today's score and its forecast read: the window and what enters it."""
    return Window(window(day, lag_days).first, window(day + timedelta(days=forecast_days), lag_days).last)


#: Today's date (UTC); tests and tools pin another day.
TodayFunction = Callable[[], date]


def utc_today() -> date:
    return datetime.now(UTC).date()
