"""The offsets store on both databases: claims bump the generation, wait for a batch of
the previous owner still committing, and a write is fenced by owner and generation."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from sqlalchemy import update

from shared.consumer.offsets import NO_OFFSET, OffsetsStore
from tests.shared.consumer.helpers import migrated_engine, offsets


async def test_a_claim_waits_for_the_previous_owners_commit_and_sees_its_offset(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    topic = "test.claims"
    tp = TopicPartition(topic, 0)
    store = OffsetsStore(engine, offsets, "group")
    assert await store.claim([tp], owner="previous") == {tp: (NO_OFFSET, 1)}

    # The previous owner's batch is still committing (its transaction holds the row) when
    # the new owner claims: the claim must return the offset that batch stores, not the old one.
    async with engine.connect() as batch:
        await batch.begin()
        await batch.execute(update(offsets).where(offsets.c.topic == topic).values(next_offset=100))
        claim = asyncio.create_task(store.claim([tp], owner="newcomer"))
        await asyncio.sleep(0.5)
        assert not claim.done()
        await batch.commit()
    assert await asyncio.wait_for(claim, 30) == {tp: (100, 2)}
    await engine.dispose()


async def test_only_the_current_claim_moves_an_offset_and_a_reset_keeps_the_owner(database_url: str) -> None:
    engine = await migrated_engine(database_url)
    first, second = TopicPartition("test.fence", 0), TopicPartition("test.fence", 1)
    store = OffsetsStore(engine, offsets, "group")
    claims = await store.claim([first, second], owner="a")
    generations = {tp: generation for tp, (_offset, generation) in claims.items()}
    await store.claim([second], owner="b")  # b takes one partition over
    async with engine.begin() as connection:
        fenced = await store.write_fenced(connection, {first: 10, second: 20}, "a", generations)
    assert fenced == [second]
    assert await store.stored() == {first: 10, second: NO_OFFSET}
    await store.move({second: 7, TopicPartition("test.fence", 2): 3})
    assert await store.stored() == {first: 10, second: 7, TopicPartition("test.fence", 2): 3}
    # The move left b's claim in place: b's next batch still commits.
    async with engine.begin() as connection:
        assert await store.write_fenced(connection, {second: 8}, "b", {second: 2}) == []
    assert (await store.stored())[second] == 8
    assert await OffsetsStore(engine, offsets, "another group").stored() == {}
    await engine.dispose()
