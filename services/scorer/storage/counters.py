"""The daily counters (``daily_counts``, ``daily_reasons``): evaluated packages' deltas added in
key order, so concurrent transactions lock rows in the same order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Deltas
from services.scorer.storage.dialect import insert_rows
from services.scorer.storage.outbox import OUTBOX_MARK, mark_changed_statement
from services.scorer.storage.schema import (
    daily_counts,
    daily_reasons,
    outbox,
)
from services.scorer.storage.staging import COUNT_COLUMNS, REASON_COLUMNS, SCOPE_ORDER, copy_to_staging, staging_name


def delta_statements(connection: AsyncConnection, deltas: Deltas) -> list[tuple[Any, Any]]:
    """The statements (and their parameters) that apply ``deltas``: pure CPU work, so that
    :func:`reevaluate` can build them while the database writes the packages."""
    statements: list[tuple[Any, Any]] = []
    records = delta_records(deltas)
    count_rows = [dict(zip(COUNT_COLUMNS, row, strict=True)) for row in records.counts]
    if count_rows:
        statement, parameters = insert_rows(connection, daily_counts, count_rows)
        statement = statement.on_conflict_do_update(
            index_elements=list(daily_counts.primary_key.columns),
            set_={name: daily_counts.c[name] + statement.excluded[name] for name in _COUNTED},
        )
        statements.append((statement, parameters))
    reason_rows = [dict(zip(REASON_COLUMNS, row, strict=True)) for row in records.reasons]
    if reason_rows:
        statement, parameters = insert_rows(connection, daily_reasons, reason_rows)
        statement = statement.on_conflict_do_update(
            index_elements=list(daily_reasons.primary_key.columns),
            set_={"count": daily_reasons.c.count + statement.excluded["count"]},
        )
        statements.append((statement, parameters))
    if records.scopes:
        statements.append(mark_changed_statement(connection, records.scopes))
    return statements


@dataclass(slots=True)
class DeltaRecords:
    """``Deltas`` as the rows COPY sends (see :func:`copy_deltas`), sorted by key."""

    counts: list[tuple[Any, ...]]
    reasons: list[tuple[Any, ...]]
    scopes: list[tuple[str, str, str]]


def delta_records(deltas: Deltas) -> DeltaRecords:
    """What :func:`delta_statements` writes, as COPY rows: pure CPU work."""
    counts = [(*key, *value) for key, value in sorted(deltas.counts.items()) if any(value)]
    reasons = [(*key, value) for key, value in sorted(deltas.reasons.items()) if value]
    scopes = sorted(deltas.scopes) if counts or reasons else []
    return DeltaRecords(counts, reasons, scopes)


async def copy_deltas(connection: AsyncConnection, staged: DeltaRecords) -> None:
    """Add the counter deltas and mark the outbox, as :func:`delta_statements` does, through
    COPY into staging tables, then one upsert per table (in key order, as before), sent
    together: one round trip."""
    upserts: list[str] = []
    driver: Any = None
    if staged.counts:
        driver = await copy_to_staging(connection, daily_counts, staged.counts)
        upserts.append(COUNTS_UPSERT)
    if staged.reasons:
        driver = await copy_to_staging(connection, daily_reasons, staged.reasons)
        upserts.append(REASONS_UPSERT)
    if staged.scopes:
        driver = await copy_to_staging(connection, outbox, staged.scopes)
        upserts.append(OUTBOX_MARK)
    if upserts:
        await driver.execute(";\n".join(upserts))


_COUNTED = ("valid", "invalid", "pending", "expected_valid_micro", "variance_micro")


COUNTS_UPSERT = f"""
INSERT INTO daily_counts AS d ({", ".join(COUNT_COLUMNS)})
SELECT {", ".join(COUNT_COLUMNS)} FROM {staging_name(daily_counts)} ORDER BY {SCOPE_ORDER}, promised_date
ON CONFLICT (seller_id, marketplace, category, promised_date) DO UPDATE SET
{", ".join(f"{name} = d.{name} + excluded.{name}" for name in _COUNTED)}
"""  # noqa: S608 (the names of our own columns)


REASONS_UPSERT = f"""
INSERT INTO daily_reasons AS d ({", ".join(REASON_COLUMNS)})
SELECT {", ".join(REASON_COLUMNS)} FROM {staging_name(daily_reasons)}
ORDER BY {SCOPE_ORDER}, promised_date, state COLLATE "C", reason COLLATE "C"
ON CONFLICT (seller_id, marketplace, category, promised_date, state, reason)
DO UPDATE SET count = d.count + excluded.count
"""  # noqa: S608 (the names of our own columns)
