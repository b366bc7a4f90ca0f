"""The publisher's removal of published outbox marks next to writers marking them again
(PostgreSQL: the services run the consumer, the clock job and the publisher side by side)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.storage.outbox import mark_changed, outbox_batch, outbox_remove
from services.scorer.storage.schema import outbox
from shared.db import create_engine
from tests.scorer.conftest import migrate

pytestmark = pytest.mark.postgres

A, B, C = ("seller-a", "US", "toys"), ("seller-b", "US", "toys"), ("seller-c", "US", "toys")


async def engine_for(new_postgres_database: Callable[[], str]) -> AsyncEngine:
    url = await asyncio.to_thread(new_postgres_database)
    await asyncio.to_thread(migrate, url)
    return create_engine(url)


async def marks(engine: AsyncEngine) -> dict[tuple[str, str, str], int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(outbox.c.seller_id, outbox.c.marketplace, outbox.c.category, outbox.c.version)
        )
        return {(s, m, c): int(v) for s, m, c, v in rows}


async def test_a_mark_being_marked_again_is_left_and_the_others_removed_without_waiting(
    new_postgres_database: Callable[[], str],
) -> None:
    # The deadlock seen through the services: the publisher's delete held some published
    # marks and waited for one a batch had just marked again, while that batch waited for
    # one of the held marks. The delete now skips a mark being marked: it changes anyway.
    engine = await engine_for(new_postgres_database)
    try:
        async with engine.begin() as connection:
            await mark_changed(connection, [A, B, C])
        async with engine.connect() as connection:
            published = await outbox_batch(connection, 10)
        assert [mark[:3] for mark in published] == [A, B, C]

        async with engine.connect() as writer, engine.connect() as publisher:
            await writer.begin()
            await mark_changed(writer, [B])  # holds B's row until it commits
            await publisher.begin()
            # Were the delete to wait for B it would fail here instead of hanging the test.
            await publisher.execute(text("SET LOCAL lock_timeout = '30s'"))
            await outbox_remove(publisher, published)
            # The writer goes on to mark A, which the publisher's transaction has deleted.
            marking_a = asyncio.ensure_future(mark_changed(writer, [A]))
            await publisher.commit()
            await marking_a
            await writer.commit()

        # A deleted then marked anew, B marked again and kept, C published and gone.
        assert await marks(engine) == {A: 1, B: 2}
    finally:
        await engine.dispose()


async def test_a_mark_changed_after_it_was_read_is_not_removed(new_postgres_database: Callable[[], str]) -> None:
    engine = await engine_for(new_postgres_database)
    try:
        async with engine.begin() as connection:
            await mark_changed(connection, [A, B])
        async with engine.connect() as connection:
            published = await outbox_batch(connection, 10)
        async with engine.begin() as connection:
            await mark_changed(connection, [A])
        async with engine.begin() as connection:
            await outbox_remove(connection, published)
        assert await marks(engine) == {A: 2}
    finally:
        await engine.dispose()
