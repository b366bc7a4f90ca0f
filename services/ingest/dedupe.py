"""Remembers the ids of events recently put on Kafka, so the history that every push
re-sends is not produced again and again. Purely an optimisation: the scorer dedupes by
``event_id`` anyway, and an id is only remembered after the broker acknowledged it."""

from __future__ import annotations

from collections.abc import Iterable


class RecentIds:
    """A bounded set that forgets the oldest ids first (capacity 0 remembers nothing)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: dict[str, None] = {}

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def remember(self, event_ids: Iterable[str]) -> None:
        if not self._capacity:
            return
        ids = self._ids
        for event_id in event_ids:
            ids[event_id] = None
        while len(ids) > self._capacity:
            del ids[next(iter(ids))]
