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


def test_keeps_exactly_the_latest_ids_long_after_it_filled_up() -> None:
    recent = RecentIds(1_000)
    ids = [f"event-{index}" for index in range(20_000)]
    for start in range(0, len(ids), 100):
        recent.remember(ids[start : start + 100])
    assert len(recent) == 1_000
    assert all(event_id in recent for event_id in ids[-1_000:])
    assert not any(event_id in recent for event_id in ids[:-1_000])
