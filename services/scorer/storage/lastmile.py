"""The last-mile identity of packages (issue 11 item 6): which carrier had the parcel last
and its number there, from the newest scan whose source named it. Read for the shipments
list only, so the evaluation's hot path does not carry it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.views import LastMile
from services.scorer.storage.dialect import in_groups, one_of
from services.scorer.storage.schema import scans


async def load_last_miles(connection: AsyncConnection, tracking_numbers: Iterable[str]) -> dict[str, LastMile]:
    """tracking number -> the last-mile identity of its newest scan that has one."""
    newest: dict[str, tuple[datetime, LastMile]] = {}
    for chunk in in_groups(connection, tracking_numbers):
        result = await connection.execute(
            select(
                scans.c.tracking_number,
                scans.c.occurred_at,
                scans.c.last_mile_carrier,
                scans.c.last_mile_tracking_number,
            ).where(one_of(connection, scans.c.tracking_number, chunk), scans.c.last_mile_carrier != "")
        )
        for number, occurred_at, carrier, last_number in result.all():
            seen = newest.get(number)
            if seen is None or occurred_at > seen[0]:
                newest[number] = (occurred_at, LastMile(carrier, last_number))
    return {number: last_mile for number, (_, last_mile) in newest.items()}
