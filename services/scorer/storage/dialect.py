"""Where PostgreSQL and SQLite differ, in one place: upserts, bulk rows (one JSON document
or an executemany), IN lists (one array parameter or chunks), and the asyncpg driver
connection under a SQLAlchemy one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import msgspec
from sqlalchemy import (
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")


U = TypeVar("U")


#: Bound on bound parameters per IN list (SQLite and asyncpg both cap parameters per statement).
IN_CHUNK = 2000


JSON_ENCODER = msgspec.json.Encoder()


def dialect_insert(connection: AsyncConnection, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the connection's backend."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_rows(connection: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> tuple[Any, Any]:
    """An INSERT (with ON CONFLICT support) of ``rows`` and the parameters to execute it with.

    On PostgreSQL the rows travel as one JSON document (``INSERT .. SELECT .. FROM
    json_to_recordset(..)``): one statement and one parameter whatever the number of rows.
    msgspec encodes a 5000-row batch in a millisecond or two, where asyncpg's array encoding
    (the earlier ``unnest`` of one array per column) checked every element against the
    collection ABCs and cost the scorer a quarter of its CPU. SQLite gets an executemany.
    """
    if connection.dialect.name != "postgresql":
        return sqlite.insert(table), list(rows)
    names = list(rows[0])
    document = bindparam("rows", JSON_ENCODER.encode(rows).decode(), type_=Text())
    source = (
        func.json_to_recordset(cast(document, postgresql.JSON))
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name="r", with_types=True)
    )
    return postgresql.insert(table).from_select(names, select(*(source.c[name] for name in names))), None


async def execute_rows(connection: AsyncConnection, statement: Any, parameters: Any) -> Any:
    if parameters is None:
        return await connection.execute(statement)
    return await connection.execute(statement, parameters)


async def overlapped(statement: Coroutine[Any, Any, T], work: Callable[[], U]) -> tuple[T, U]:
    """Run ``work`` (CPU only; it must not touch the connection) while ``statement`` waits
    for the database: still one statement at a time on the connection, but the scorer's CPU
    and the server's overlap instead of taking turns."""
    pending = asyncio.ensure_future(statement)
    try:
        await asyncio.sleep(0)  # let the statement reach the server
        result = work()
    except BaseException:
        # Never leave a statement running on a connection that is about to roll back.
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        raise
    return await pending, result


def uses_copy(connection: AsyncConnection) -> bool:
    """Whether bulk writes go through COPY into a staging table (PostgreSQL with asyncpg)."""
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "asyncpg"


async def driver_connection(connection: AsyncConnection) -> Any:
    """The asyncpg connection under ``connection``, inside ``connection``'s transaction.

    SQLAlchemy's asyncpg adapter opens the transaction with its first statement: if none
    has run yet, one does now, so that nothing on the driver runs outside the batch's
    transaction (a COPY there would commit on its own)."""
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    if not driver.is_in_transaction():  # pragma: no cover - would break exactly-once
        raise RuntimeError("no transaction open on the database connection")
    return driver


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def one_of(connection: AsyncConnection, column: Any, values: Sequence[str]) -> Any:
    """``column IN values``; on PostgreSQL one array parameter (``= ANY``), which is much
    cheaper to compile and send than thousands of parameters."""
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String())))
    return column.in_(values)


def in_groups(connection: AsyncConnection, values: Iterable[str]) -> Iterable[Sequence[str]]:
    ordered = sorted(set(values))
    if connection.dialect.name == "postgresql":
        return [ordered] if ordered else []
    return chunks(ordered)
