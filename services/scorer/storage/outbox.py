"""The score outbox: one mark per seller-category whose score changed, published and removed
by the publisher."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.storage.dialect import JSON_ENCODER, chunks, dialect_insert, execute_rows, insert_rows
from services.scorer.storage.schema import (
    outbox,
    score_levels,
)
from services.scorer.storage.staging import SCOPE_ORDER, staging_name
from shared.schemas import Level

#: The score_versions triggers fire on it as on the json_to_recordset upsert.
OUTBOX_MARK = f"""
INSERT INTO score_outbox AS o (seller_id, marketplace, category, version)
SELECT seller_id, marketplace, category, 1 FROM {staging_name(outbox)} ORDER BY {SCOPE_ORDER}
ON CONFLICT (seller_id, marketplace, category) DO UPDATE SET version = o.version + 1
"""  # noqa: S608 (the names of our own columns)


async def mark_changed(connection: AsyncConnection, scopes: Sequence[tuple[str, str, str]]) -> None:
    if not scopes:
        return
    await execute_rows(connection, *mark_changed_statement(connection, scopes))


def mark_changed_statement(connection: AsyncConnection, scopes: Sequence[tuple[str, str, str]]) -> tuple[Any, Any]:
    statement, parameters = insert_rows(
        connection, outbox, [{"seller_id": s, "marketplace": m, "category": c, "version": 1} for s, m, c in scopes]
    )
    statement = statement.on_conflict_do_update(
        index_elements=list(outbox.primary_key.columns), set_={"version": outbox.c.version + 1}
    )
    return statement, parameters


async def outbox_batch(connection: AsyncConnection, limit: int) -> list[tuple[str, str, str, int]]:
    result = await connection.execute(
        select(outbox.c.seller_id, outbox.c.marketplace, outbox.c.category, outbox.c.version)
        .order_by(outbox.c.seller_id, outbox.c.marketplace, outbox.c.category)
        .limit(limit)
    )
    return [(s, m, c, int(v)) for s, m, c, v in result]


async def outbox_remove(connection: AsyncConnection, published: Sequence[tuple[str, str, str, int]]) -> None:
    """Delete published marks unless they changed meanwhile (then they are published again).

    On PostgreSQL a mark locked by a transaction that is marking it again (a batch, a review,
    a model refresh) is skipped, not waited for: that transaction bumps its version, so the
    mark is to be published again anyway, and waiting for it while holding the other marks
    deadlocked with writers that lock them in key order (seen through the services)."""
    if not published:
        return
    if connection.dialect.name == "postgresql":
        # One JSON parameter joined to the table: compiling a 500-term OR per round cost
        # more CPU than the delete itself.
        names = ("seller_id", "marketplace", "category", "version")
        document = bindparam(
            "marks",
            JSON_ENCODER.encode([dict(zip(names, mark, strict=True)) for mark in published]).decode(),
            type_=Text(),
        )
        source = (
            func.json_to_recordset(cast(document, postgresql.JSON))
            .table_valued(*(column(name, outbox.c[name].type) for name in names))
            .render_derived(name="published", with_types=True)
        )
        current = outbox.alias("current_mark")
        unlocked = (
            select(*(current.c[name] for name in names[:3]))
            .where(*(current.c[name] == source.c[name] for name in names))
            .with_for_update(of=current, skip_locked=True)
        )
        keys = tuple_(*(outbox.c[name] for name in names[:3]))
        await connection.execute(delete(outbox).where(keys.in_(unlocked)))
        return
    for chunk in chunks(list(published), 500):
        await connection.execute(
            delete(outbox).where(
                or_(
                    *(
                        and_(
                            outbox.c.seller_id == s,
                            outbox.c.marketplace == m,
                            outbox.c.category == c,
                            outbox.c.version == v,
                        )
                        for s, m, c, v in chunk
                    )
                )
            )
        )


async def outbox_size(connection: AsyncConnection) -> int:
    return int((await connection.execute(select(func.count()).select_from(outbox))).scalar_one())


async def save_levels(connection: AsyncConnection, levels: Iterable[tuple[str, str, str, Level]]) -> None:
    """Remember the level last published per (seller, marketplace, category), in key order."""
    statement = dialect_insert(connection, score_levels)
    statement = statement.on_conflict_do_update(
        index_elements=list(score_levels.primary_key.columns), set_={"level": statement.excluded.level}
    )
    await connection.execute(
        statement,
        [
            {"seller_id": seller_id, "marketplace": marketplace, "category": category, "level": level}
            for seller_id, marketplace, category, level in sorted(levels)
        ],
    )
