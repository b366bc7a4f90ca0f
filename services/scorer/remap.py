"""Codes learnt later (issue 11 item 13): scans stored as UNKNOWN get the status the
current code table gives their carrier code, and the packages behind them are evaluated
again, so a package that looked untracked recovers without replaying anything by hand.

``python -m services.scorer remap-codes`` runs it (after a deploy that maps new codes);
it is idempotent and safe while the scorer runs (each batch is one transaction, and the
packages are re-evaluated with the same code path as new scans).

The code table is the ingest's ``services/ingest/status_codes.toml`` (pure data, shipped in
the same image), read per source: a scan's ``source`` is the integration that delivered it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TextIO

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.window import utc_today
from services.scorer.storage.packages import load_packages, reevaluate
from services.scorer.storage.schema import scans
from shared.schemas import CanonicalStatus

#: (source, carrier code) -> canonical status, UNKNOWN when still unmapped.
StatusOf = Callable[[str, str], CanonicalStatus]

BATCH = 1000


def ingest_code_table() -> StatusOf:
    """The ingest's current code table (status_codes.toml), per source."""
    from services.ingest.mapping import MAPPINGS

    def status_of(source: str, code: str) -> CanonicalStatus:
        mapping = MAPPINGS.get(source)
        return mapping.status(code) if mapping is not None else CanonicalStatus.UNKNOWN

    return status_of


@dataclass
class RemapResult:
    examined: int = 0
    remapped: int = 0
    packages_written: int = 0
    #: (source, code) -> scans now mapped to a status
    learnt: dict[str, str] = field(default_factory=dict)


async def remap_batch(
    connection: AsyncConnection, evaluator: Evaluator, status_of: StatusOf, today: date, after: str, result: RemapResult
) -> str | None:
    """Remap one batch of UNKNOWN scans (event ids after ``after``); the last id seen, or
    None when there are no more."""
    rows = (
        await connection.execute(
            select(scans.c.event_id, scans.c.tracking_number, scans.c.source, scans.c.carrier_code)
            .where(
                scans.c.status == CanonicalStatus.UNKNOWN.value, scans.c.carrier_code != "", scans.c.event_id > after
            )
            .order_by(scans.c.event_id)
            .limit(BATCH)
        )
    ).all()
    if not rows:
        return None
    result.examined += len(rows)
    by_status: dict[CanonicalStatus, list[str]] = {}
    numbers: set[str] = set()
    for event_id, tracking_number, source, code in rows:
        status = status_of(source, code)
        if status is CanonicalStatus.UNKNOWN:
            continue
        by_status.setdefault(status, []).append(event_id)
        numbers.add(tracking_number)
        result.learnt[f"{source}:{code}"] = status.value
    for status, event_ids in by_status.items():
        await connection.execute(update(scans).where(scans.c.event_id.in_(event_ids)).values(status=status.value))
        result.remapped += len(event_ids)
    if numbers:
        found = await load_packages(connection, numbers, ())
        result.packages_written += await reevaluate(
            connection, evaluator, [(row, row.clone()) for row in found.values()], today
        )
    return str(rows[-1][0])


async def remap_unknown_scans(
    engine: AsyncEngine, evaluator: Evaluator, status_of: StatusOf, today: date | None = None
) -> RemapResult:
    result = RemapResult()
    after = ""
    while True:
        async with engine.begin() as connection:
            last = await remap_batch(connection, evaluator, status_of, today or utc_today(), after, result)
        if last is None:
            return result
        after = last


def main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    from services.scorer.domain.policy import load_policy
    from services.scorer.settings import ScorerSettings
    from shared.db import create_engine

    parser = argparse.ArgumentParser(
        prog="python -m services.scorer remap-codes",
        description="Give scans stored as UNKNOWN the status today's code table maps their carrier code to.",
    )
    parser.parse_args(argv)
    settings = ScorerSettings()

    async def run() -> RemapResult:
        engine = create_engine(settings.database_url)
        try:
            evaluator = Evaluator(load_policy(settings.policy_file))
            return await remap_unknown_scans(engine, evaluator, ingest_code_table())
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    out.write(orjson.dumps(result.__dict__, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
