"""Score versions (migration 0005): per seller ``(count, sum of versions)`` of its
seller-categories, which changes with every committed change of its numbers; the read
cache's key."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.storage.schema import score_versions

Token = tuple[int, int]
#: One seller's token, as the read cache's asyncpg pool sends it.
VERSIONS_SQL = "SELECT count(*), coalesce(sum(version), 0) FROM score_versions WHERE seller_id = $1"


async def tokens_by_seller(connection: AsyncConnection, sellers: Sequence[str]) -> dict[str, Token]:
    """Each seller's token in one statement (the publisher reads them before its scores)."""
    result = await connection.execute(
        select(score_versions.c.seller_id, func.count(), func.sum(score_versions.c.version))
        .where(score_versions.c.seller_id.in_(sorted(set(sellers))))
        .group_by(score_versions.c.seller_id)
    )
    return {seller: (int(count), int(total)) for seller, count, total in result}
