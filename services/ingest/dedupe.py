"""Remembers the ids of events recently put on Kafka, so the history that every push
re-sends is not produced again and again. Purely an optimisation: the scorer dedupes by
``event_id`` anyway, and an id is only remembered after the broker acknowledged it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """A bounded set that forgets the oldest ids first (capacity 0 remembers nothing)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        # An OrderedDict, not a dict: evicting a dict's oldest key with next(iter(...))
        # scans every slot freed by earlier evictions, so once full each push paid up to
        # ~0.2 ms per event; popitem(last=False) is O(1).
        self._ids: OrderedDict[str, None] = OrderedDict()

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
            ids.popitem(last=False)
