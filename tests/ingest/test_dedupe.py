from __future__ import annotations

from services.ingest.dedupe import RecentIds


def test_forgets_the_oldest_first() -> None:
    recent = RecentIds(3)
    recent.remember(["a", "b", "c"])
    recent.remember(["d"])
    assert "a" not in recent
    assert all(event_id in recent for event_id in "bcd")
    assert len(recent) == 3


def test_capacity_zero_remembers_nothing() -> None:
    recent = RecentIds(0)
    recent.remember(["a"])
    assert "a" not in recent
    assert len(recent) == 0
