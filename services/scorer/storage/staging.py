"""Bulk writes through COPY (PostgreSQL with asyncpg): per-session staging tables, their
columns, and the COPY into them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Table,
)
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer.domain.packages import PACKAGE_VALUE_NAMES
from services.scorer.domain.records import SCAN_COLUMNS
from services.scorer.storage.dialect import driver_connection
from services.scorer.storage.schema import (
    daily_counts,
    daily_reasons,
    outbox,
    packages,
    scans,
)

log = logging.getLogger(__name__)


async def copy_to_staging(connection: AsyncConnection, table: Table, records: Sequence[tuple[Any, ...]]) -> Any:
    """COPY ``records`` (tuples in the order of ``table``'s ``STAGED_COLUMNS``) into its staging table, a
    temporary table of this database session emptied at every commit (and by a rollback);
    returns the driver connection to go on with in the same transaction.

    Binary COPY is much cheaper for the server than parsing the rows out of one JSON
    document (``insert_rows``), and for the scorer than encoding them into one."""
    driver = await driver_connection(connection)
    staging = staging_name(table)
    columns = STAGED_COLUMNS[table]
    if not connection.info.get(STAGING_READY_KEY):
        await driver.execute(staging_table_ddl(table))
    # A commit or a rollback empties the table; a second use in the same transaction must
    # not write the first one's rows again (counters would be added twice).
    transaction = connection.sync_connection.get_transaction() if connection.sync_connection else None
    staged: tuple[Any, set[str]] | None = connection.info.get(STAGED_KEY)
    if staged is None or staged[0] is not transaction:
        staged = connection.info[STAGED_KEY] = (transaction, set())
    if staging in staged[1]:
        await driver.execute(f"DELETE FROM {staging}")  # noqa: S608 (our names)
    staged[1].add(staging)
    await driver.copy_records_to_table(staging, records=records, columns=list(columns))
    return driver


def staging_table_ddl(table: Table) -> str:
    return (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging_name(table)} ON COMMIT DELETE ROWS AS "  # noqa: S608 (our names)
        f"SELECT {', '.join(STAGED_COLUMNS[table])} FROM {table.name} WITH NO DATA"
    )


#: In a pooled connection's ``info``: its staging tables were created when it connected.
STAGING_READY_KEY = "vtr_staging_ready"


def create_staging_tables_on_connect(engine: AsyncEngine) -> None:
    """Create the staging tables once per new database connection (outside any transaction,
    so no rolled-back batch can take them away) rather than before every COPY: five round
    trips and catalogue lookups less per batch. Until the schema exists (a first start
    before ``migrate``) each COPY creates its table itself, as without this."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "asyncpg":
        return
    ddl = ";\n".join(staging_table_ddl(table) for table in STAGED_COLUMNS)

    @sa_event.listens_for(engine.sync_engine, "connect")
    def create(dbapi_connection: Any, record: Any) -> None:
        try:
            dbapi_connection.run_async(lambda driver: driver.execute(ddl))
        except Exception:
            log.info("staging tables not created on connect; created on first use", exc_info=True)
            return
        record.info[STAGING_READY_KEY] = True


#: In ``connection.info``: the transaction and the staging tables it has filled.
STAGED_KEY = "vtr_staged_tables"


def staging_name(table: Table) -> str:
    return f"staging_{table.name}"


COUNT_COLUMNS = (
    "seller_id",
    "marketplace",
    "category",
    "promised_date",
    "valid",
    "invalid",
    "pending",
    "expected_valid_micro",
    "variance_micro",
)


REASON_COLUMNS = ("seller_id", "marketplace", "category", "promised_date", "state", "reason", "count")


SCOPE_COLUMNS = ("seller_id", "marketplace", "category")


SCOPE_ORDER = 'seller_id COLLATE "C", marketplace COLLATE "C", category COLLATE "C"'


#: Every table written through a staging table (:func:`copy_to_staging`), and the columns
#: its staging table has, in the order COPY sends them.
STAGED_COLUMNS: dict[Table, Sequence[str]] = {
    packages: PACKAGE_VALUE_NAMES,
    scans: SCAN_COLUMNS,
    daily_counts: COUNT_COLUMNS,
    daily_reasons: REASON_COLUMNS,
    outbox: SCOPE_COLUMNS,
}
