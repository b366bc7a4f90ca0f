"""What the consumer knows about each partition it owns, or owned until another
instance fenced it: one ``PartitionState`` per partition instead of parallel maps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition

from shared.consumer.offsets import NO_OFFSET


@dataclass
class PartitionState:
    #: The next offset to apply, as stored (``NO_OFFSET`` until a record of it is applied).
    next_offset: int
    #: The generation of this instance's claim; None once another instance fenced it.
    generation: int | None
    #: Monotonic time of the fence that made this instance give the partition up while the
    #: group still lists it as ours (see ``upkeep.Upkeep.reclaim_abandoned``).
    fenced_at: float | None = None
    #: The first offset of a fetch that started past the stored offset and was fetched
    #: again to check (see ``fetch.Fetcher.records_to_apply``).
    gap_checked: int | None = None
    #: Why the partition is stopped: its stored offset lies outside the broker's log.
    out_of_range: str | None = None


class Partitions:
    """Every partition's state, by partition."""

    def __init__(self) -> None:
        self._states: dict[TopicPartition, PartitionState] = {}

    def owned(self) -> list[TopicPartition]:
        """Partitions claimed by this instance and not fenced since."""
        return [tp for tp, state in self._states.items() if state.generation is not None]

    def fetchable(self) -> list[TopicPartition]:
        """Owned partitions that are not stopped, in order."""
        return sorted(tp for tp in self.owned() if not self._states[tp].out_of_range)

    def owns(self, tp: TopicPartition) -> bool:
        state = self._states.get(tp)
        return state is not None and state.generation is not None

    def state(self, tp: TopicPartition) -> PartitionState:
        return self._states[tp]

    def position(self, tp: TopicPartition) -> int:
        """The next offset to apply (``NO_OFFSET`` if unknown)."""
        state = self._states.get(tp)
        return NO_OFFSET if state is None else state.next_offset

    def generations(self, partitions: Mapping[TopicPartition, object]) -> dict[TopicPartition, int]:
        """This instance's claim generation of each owned partition in ``partitions``."""
        return {tp: generation for tp in partitions if (generation := self._states[tp].generation) is not None}

    def claimed(self, tp: TopicPartition, next_offset: int, generation: int) -> None:
        state = self._states.get(tp)
        if state is None:
            self._states[tp] = PartitionState(next_offset, generation)
            return
        state.next_offset, state.generation, state.fenced_at = next_offset, generation, None

    def advanced(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """The batch that stored ``next_offsets`` has committed."""
        for tp, next_offset in next_offsets.items():
            self._states[tp].next_offset = next_offset

    def fenced(self, tp: TopicPartition, at: float) -> None:
        """Another instance claimed ``tp``: no longer applied here (a stale stop or gap
        check must not outlive the ownership), but remembered for a reclaim."""
        state = self._states.get(tp)
        if state is not None:
            state.generation, state.gap_checked, state.out_of_range, state.fenced_at = None, None, None, at

    def drop(self, tp: TopicPartition) -> None:
        """Revoked by the group (or given up and no longer assigned): forget it entirely."""
        self._states.pop(tp, None)

    def given_up(self) -> dict[TopicPartition, float]:
        """Partitions fenced while the group still lists them as ours: when the fence was."""
        return {tp: state.fenced_at for tp, state in self._states.items() if state.fenced_at is not None}

    def out_of_range(self) -> dict[TopicPartition, str]:
        return {tp: state.out_of_range for tp, state in self._states.items() if state.out_of_range}
