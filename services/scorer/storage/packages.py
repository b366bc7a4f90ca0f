"""Packages, scans and cancellations in the database: the batch's reads, the
version-checked package upsert, and re-evaluating stored packages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Deltas, EvaluatedPackages, Evaluator
from services.scorer.domain.packages import (
    PACKAGE_COLUMNS,
    PACKAGE_VALUE_NAMES,
    Cancellation,
    PackageRow,
    package_from_row,
    package_values,
)
from services.scorer.domain.policy import (
    Scan,
)
from services.scorer.domain.records import SCAN_COLUMNS
from services.scorer.storage.counters import copy_deltas, delta_records, delta_statements
from services.scorer.storage.dialect import (
    chunks,
    driver_connection,
    execute_rows,
    in_groups,
    insert_rows,
    one_of,
    overlapped,
    uses_copy,
)
from services.scorer.storage.schema import (
    cancellations,
    packages,
    scans,
)
from services.scorer.storage.staging import copy_to_staging, staging_name


class ConcurrentUpdate(RuntimeError):
    """A package changed under this transaction (another writer won); retry the batch."""


#: The hot reads of a batch, sent as they are on the driver connection (no statement to
#: build and compile, no result rows to wrap): one array parameter each.
SCANS_OF_NUMBERS = "SELECT tracking_number, status, occurred_at FROM scans WHERE tracking_number = ANY($1::varchar[])"


CANCELLATIONS_OF_NUMBERS = (
    "SELECT tracking_number, seller_id, order_id, cancelled_at FROM cancellations "
    "WHERE tracking_number = ANY($1::varchar[])"
)


PACKAGES_OF_NUMBERS = f"SELECT {', '.join(PACKAGE_COLUMNS)} FROM packages WHERE tracking_number = ANY($1::varchar[])"  # noqa: S608


PACKAGES_OF_KEYS = (
    f"SELECT {', '.join('p.' + name for name in PACKAGE_COLUMNS)} FROM packages AS p "  # noqa: S608
    "JOIN unnest($1::varchar[], $2::varchar[]) AS k (seller_id, order_id) "
    "ON p.seller_id = k.seller_id AND p.order_id = k.order_id"
)


async def load_scans(connection: AsyncConnection, tracking_numbers: Iterable[str]) -> dict[str, list[Scan]]:
    found: dict[str, list[Scan]] = defaultdict(list)
    if uses_copy(connection):
        numbers = sorted(set(tracking_numbers))
        if numbers:
            driver = await driver_connection(connection)
            for tracking_number, status, occurred_at in await driver.fetch(SCANS_OF_NUMBERS, numbers):
                found[tracking_number].append(Scan(status, occurred_at))
        return found
    for chunk in in_groups(connection, tracking_numbers):
        result = await connection.execute(
            select(scans.c.tracking_number, scans.c.status, scans.c.occurred_at).where(
                one_of(connection, scans.c.tracking_number, chunk)
            )
        )
        for tracking_number, status, occurred_at in result.all():
            found[tracking_number].append(Scan(status, occurred_at))
    return found


async def load_cancellations(
    connection: AsyncConnection, tracking_numbers: Iterable[str]
) -> dict[str, list[Cancellation]]:
    found: dict[str, list[Cancellation]] = defaultdict(list)
    if uses_copy(connection):
        numbers = sorted(set(tracking_numbers))
        if numbers:
            driver = await driver_connection(connection)
            for tracking_number, seller_id, order_id, cancelled_at in await driver.fetch(
                CANCELLATIONS_OF_NUMBERS, numbers
            ):
                found[tracking_number].append(Cancellation(seller_id, order_id, cancelled_at))
        return found
    for chunk in in_groups(connection, tracking_numbers):
        result = await connection.execute(
            select(
                cancellations.c.tracking_number,
                cancellations.c.seller_id,
                cancellations.c.order_id,
                cancellations.c.cancelled_at,
            ).where(one_of(connection, cancellations.c.tracking_number, chunk))
        )
        for tracking_number, seller_id, order_id, cancelled_at in result:
            found[tracking_number].append(Cancellation(seller_id, order_id, cancelled_at))
    return found


async def reevaluate(
    connection: AsyncConnection,
    evaluator: Evaluator,
    changes: Sequence[tuple[PackageRow | None, PackageRow]],
    today: date,
    now: datetime | None = None,
    *,
    rewrite: bool = False,
) -> int:
    """Evaluate ``(before, after)`` pairs and write whatever changed; returns packages written.

    Each ``after`` is evaluated in place: callers pass a row of their own (a clone or a new one).
    ``rewrite`` writes unchanged packages too (the clock job's reviews move ``review_at``).
    """
    if not changes:
        return 0
    tracking_numbers = {after.tracking_number for _, after in changes}
    found_scans = await load_scans(connection, tracking_numbers)
    found_cancellations = await load_cancellations(connection, tracking_numbers)
    evaluated = EvaluatedPackages([], Deltas.empty())
    evaluated.add(evaluator, changes, found_scans, found_cancellations, today, now, rewrite=rewrite)
    await write_evaluated(connection, evaluated)
    return len(evaluated.writes)


async def write_evaluated(connection: AsyncConnection, evaluated: EvaluatedPackages) -> None:
    """Write the packages (version-checked) and add their counter deltas."""
    if uses_copy(connection):
        # Build the counter rows while the database writes the packages.
        _, staged = await overlapped(
            write_packages(connection, evaluated.writes), lambda: delta_records(evaluated.deltas)
        )
        await copy_deltas(connection, staged)
        return
    _, statements = await overlapped(
        write_packages(connection, evaluated.writes), lambda: delta_statements(connection, evaluated.deltas)
    )
    for statement, parameters in statements:
        await execute_rows(connection, statement, parameters)


async def write_packages(connection: AsyncConnection, rows: Sequence[PackageRow]) -> None:
    if not rows:
        return
    ordered = sorted(rows, key=lambda row: row.key)
    if uses_copy(connection):
        driver = await copy_to_staging(connection, packages, [package_values(row) for row in ordered])
        written = int(await driver.fetchval(PACKAGES_UPSERT))
    else:
        statement, parameters = insert_rows(connection, packages, [row.as_values() for row in ordered])
        updatable = [name for name in PACKAGE_COLUMNS if name not in ("id", "seller_id", "order_id")]
        statement = statement.on_conflict_do_update(
            index_elements=[packages.c.seller_id, packages.c.order_id],
            set_={name: statement.excluded[name] for name in updatable},
            where=packages.c.version == statement.excluded.version - 1,
        ).returning(packages.c.id)
        written = len((await execute_rows(connection, statement, parameters)).all())
    if written != len(ordered):
        raise ConcurrentUpdate(f"{len(ordered) - written} package(s) changed concurrently")


#: The version-checked upsert of the staged packages; counts the rows it wrote (a package
#: whose version moved under this transaction is not written, hence ConcurrentUpdate).
#: In key order (bytewise, as Python sorts) so that concurrent writers lock rows in the same order.
PACKAGES_UPSERT = f"""
WITH written AS (
    INSERT INTO packages AS p ({", ".join(PACKAGE_VALUE_NAMES)})
    SELECT {", ".join(PACKAGE_VALUE_NAMES)} FROM {staging_name(packages)}
    ORDER BY seller_id COLLATE "C", order_id COLLATE "C"
    ON CONFLICT (seller_id, order_id) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in PACKAGE_VALUE_NAMES if name not in ("seller_id", "order_id"))}
    WHERE p.version = excluded.version - 1
    RETURNING 1
)
SELECT count(*) FROM written
"""  # noqa: S608 (the names of our own columns)


async def store_scans(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store new scans (rows of distinct events, in event id order); returns how many were
    not stored already."""
    if not rows:
        return 0
    if uses_copy(connection):
        driver = await copy_to_staging(connection, scans, [tuple(row.values()) for row in rows])
        return int(await driver.fetchval(SCANS_INSERT))
    statement, parameters = insert_rows(connection, scans, list(rows))
    statement = statement.on_conflict_do_nothing().returning(scans.c.event_id)
    return len((await execute_rows(connection, statement, parameters)).all())


#: Stores the staged scans not stored yet (by event id, in that order); returns how many.
SCANS_INSERT = f"""
WITH written AS (
    INSERT INTO scans ({", ".join(SCAN_COLUMNS)})
    SELECT {", ".join(SCAN_COLUMNS)} FROM {staging_name(scans)} ORDER BY event_id COLLATE "C"
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM written
"""  # noqa: S608 (the names of our own columns)


async def store_cancellations(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store new cancellations (distinct, in ``cancel_key`` order); returns how many were not
    stored already."""
    if not rows:
        return 0
    statement, parameters = insert_rows(connection, cancellations, list(rows))
    statement = statement.on_conflict_do_nothing().returning(cancellations.c.cancel_key)
    return len((await execute_rows(connection, statement, parameters)).all())


async def stored_keys(connection: AsyncConnection, column: Any, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` (values of a table's primary key ``column``) are stored."""
    found: set[str] = set()
    if not keys:
        return found
    if uses_copy(connection):
        driver = await driver_connection(connection)
        query = f"SELECT {column.name} FROM {column.table.name} WHERE {column.name} = ANY($1::varchar[])"  # noqa: S608
        return {row[0] for row in await driver.fetch(query, sorted(keys))}
    for chunk in in_groups(connection, keys):
        found.update(row[0] for row in await connection.execute(select(column).where(column.in_(chunk))))
    return found


async def _load_packages_on_driver(
    connection: AsyncConnection, tracking_numbers: Iterable[str], order_keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], PackageRow]:
    """:func:`load_packages` as two statements sent as they are on the asyncpg connection."""
    found: dict[tuple[str, str], PackageRow] = {}
    driver = await driver_connection(connection)
    numbers = sorted(set(tracking_numbers))
    if numbers:
        for row in await driver.fetch(PACKAGES_OF_NUMBERS, numbers):
            package = PackageRow(*row)
            found[package.key] = package
    pairs = sorted(set(order_keys) - set(found))
    if pairs:
        for row in await driver.fetch(PACKAGES_OF_KEYS, [p[0] for p in pairs], [p[1] for p in pairs]):
            package = PackageRow(*row)
            found[package.key] = package
    return found


async def load_packages(
    connection: AsyncConnection, tracking_numbers: Iterable[str], order_keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], PackageRow]:
    if uses_copy(connection):
        return await _load_packages_on_driver(connection, tracking_numbers, order_keys)
    found: dict[tuple[str, str], PackageRow] = {}
    columns = [packages.c[name] for name in PACKAGE_COLUMNS]
    for chunk in in_groups(connection, tracking_numbers):
        query = select(*columns).where(one_of(connection, packages.c.tracking_number, chunk))
        for row in (await connection.execute(query)).all():
            package = package_from_row(row)
            found[package.key] = package
    wanted = set(order_keys) - set(found)
    if not wanted:
        return found
    if connection.dialect.name == "postgresql":
        # Join the (seller_id, order_id) pairs as two arrays: one index probe per pair.
        pairs = sorted(wanted)
        keys = (
            select(
                func.unnest(bindparam("sellers", [p[0] for p in pairs], type_=postgresql.ARRAY(String()))).label("s"),
                func.unnest(bindparam("orders", [p[1] for p in pairs], type_=postgresql.ARRAY(String()))).label("o"),
            )
        ).subquery()
        query = select(*columns).join(keys, and_(packages.c.seller_id == keys.c.s, packages.c.order_id == keys.c.o))
        queries = [query]
    else:
        sellers = sorted({seller_id for seller_id, _ in wanted})
        queries = [
            select(*columns).where(packages.c.seller_id.in_(sellers), packages.c.order_id.in_(chunk))
            for chunk in chunks(sorted({order_id for _, order_id in wanted}))
        ]
    for query in queries:
        for row in await connection.execute(query):
            if (row.seller_id, row.order_id) in wanted:
                package = package_from_row(row)
                found[package.key] = package
    return found
