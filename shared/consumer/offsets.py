"""The consumer offsets table and every statement on it: claiming partitions (fencing
generations), the fenced offset write of a batch, reading and deliberately moving the
stored offsets. The consumer and the ``offsets show|reset`` command both use this store.

A row per (group, topic, partition) holds the next offset to apply (Kafka's convention
for committed offsets), the instance that owns the partition and the generation of its
claim. Every batch updates its offsets only ``WHERE owner = me AND generation = mine``: an
instance that lost a partition without noticing yet cannot move its offset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import TopicPartition
from sqlalchemy import BigInteger, Column, ColumnElement, Integer, MetaData, String, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

#: Stored when a partition has been claimed but no record of it applied yet.
NO_OFFSET = -1


def consumer_offsets_table(metadata: MetaData, name: str = "consumer_offsets") -> Table:
    """The offsets table; add it to the service's MetaData so its migrations create it."""
    return Table(
        name,
        metadata,
        Column("group_id", String(200), primary_key=True),
        Column("topic", String(200), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        #: The offset of the next record to apply (Kafka's convention for committed offsets).
        Column("next_offset", BigInteger, nullable=False),
        Column("owner", String(100), nullable=False),
        Column("generation", BigInteger, nullable=False),
    )


class Fenced(RuntimeError):
    """Another instance owns some partitions of this batch now; the batch was rolled back."""

    def __init__(self, partitions: Sequence[TopicPartition]) -> None:
        super().__init__(", ".join(f"{tp.topic}:{tp.partition}" for tp in partitions) + " claimed by another instance")
        self.partitions = list(partitions)


class OffsetsStore:
    """One consumer group's rows of the offsets table."""

    def __init__(self, engine: AsyncEngine, table: Table, group_id: str) -> None:
        self.engine = engine
        self.table = table
        self.group_id = group_id

    async def claim(self, partitions: Sequence[TopicPartition], owner: str) -> dict[TopicPartition, tuple[int, int]]:
        """Take ownership of ``partitions`` for ``owner``; returns (next offset, generation).

        One ``UPDATE .. RETURNING`` per partition, in the order given (callers sort): on
        PostgreSQL it waits for a batch of the previous owner that is still committing and
        then returns the offset that batch stored (a separate read could return the older one).
        """
        table = self.table
        claims: dict[TopicPartition, tuple[int, int]] = {}
        async with self.engine.begin() as connection:
            await self._insert_missing(connection, partitions)
            for tp in partitions:
                row = (
                    await connection.execute(
                        update(table)
                        .where(*self._row(tp))
                        .values(owner=owner, generation=table.c.generation + 1)
                        .returning(table.c.next_offset, table.c.generation)
                    )
                ).one()
                claims[tp] = (int(row.next_offset), int(row.generation))
        return claims

    async def write_fenced(
        self,
        connection: AsyncConnection,
        next_offsets: Mapping[TopicPartition, int],
        owner: str,
        generations: Mapping[TopicPartition, int],
    ) -> list[TopicPartition]:
        """Store each partition's next offset inside the batch's transaction, only where
        ``owner`` still holds the claim of ``generations``; returns the partitions fenced
        (claimed by another instance since), whose rows were left alone."""
        table = self.table
        fenced: list[TopicPartition] = []
        # Same row order as claims, so a claim and a batch never deadlock each other.
        for tp, next_offset in sorted(next_offsets.items()):
            result = await connection.execute(
                update(table)
                .where(*self._row(tp), table.c.owner == owner, table.c.generation == generations[tp])
                .values(next_offset=next_offset)
            )
            if result.rowcount != 1:
                fenced.append(tp)
        return fenced

    async def stored(self) -> dict[TopicPartition, int]:
        """Every stored next offset of the group (``NO_OFFSET`` where none was applied yet)."""
        table = self.table
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(table.c.topic, table.c.partition, table.c.next_offset).where(
                        table.c.group_id == self.group_id
                    )
                )
            ).all()
        return {TopicPartition(row.topic, int(row.partition)): int(row.next_offset) for row in rows}

    async def move(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """Set stored offsets deliberately (``offsets reset``). Owner and generation stay:
        the instance holding a partition keeps it, and resumes from the moved offset."""
        async with self.engine.begin() as connection:
            await self._insert_missing(connection, list(next_offsets))
            for tp, offset in next_offsets.items():
                await connection.execute(update(self.table).where(*self._row(tp)).values(next_offset=offset))

    def _row(self, tp: TopicPartition) -> tuple[ColumnElement[bool], ...]:
        table = self.table
        return (table.c.group_id == self.group_id, table.c.topic == tp.topic, table.c.partition == tp.partition)

    async def _insert_missing(self, connection: AsyncConnection, partitions: Sequence[TopicPartition]) -> None:
        if not partitions:
            return
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        await connection.execute(
            dialect.insert(self.table).on_conflict_do_nothing(),
            [
                {
                    "group_id": self.group_id,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "next_offset": NO_OFFSET,
                    "owner": "",
                    "generation": 0,
                }
                for tp in partitions
            ],
        )
