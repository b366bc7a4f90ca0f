"""Database helpers: engines for PostgreSQL (asyncpg) and local SQLite (aiosqlite), and
alembic migrations run programmatically.

Each service that keeps state owns its own database and its own migrations folder; its
alembic ``env.py`` calls :func:`run_alembic_env`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so a reader never blocks the writer.
    Statement parameters are never put in error messages (they may hold addresses and
    webhook URLs, which are secrets)."""
    options.setdefault("hide_parameters", True)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 10)
    options.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **options)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database does not answer; used by readiness checks."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def alembic_config(migrations_dir: Path, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Percent signs in passwords would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Apply the service's migrations (blocking; run it outside an event loop)."""
    command.upgrade(alembic_config(migrations_dir, url), revision)


#: SQLSTATE classes and codes that are about the database, not the data: connection (08),
#: read-only transaction (25006: a replica, a read-only failover), serialization and
#: deadlock (40), insufficient resources such as a full disk (53), operator intervention
#: and shutdown (57), system errors (58), undefined table or column (42P01, 42703: a
#: schema not migrated yet), lock not available (55P03).
_TRANSIENT_SQLSTATES = ("08", "25006", "40", "53", "57", "58", "42P01", "42703", "55P03")
_TRANSIENT_MESSAGES = (
    "connection",
    "does not exist",
    "no such table",
    "no such column",
    "database is locked",
    "readonly database",
    "read-only",
    "disk is full",
    "disk i/o error",
    # The scorer's ConcurrentUpdate: another writer (the clock job) won a race; retry.
    "changed concurrently",
)


def is_transient(error: BaseException) -> bool:
    """A failure that says nothing about the records (the database or the network is
    down, read-only or full, the schema is not migrated yet): retried for as long as it
    lasts, never parked."""
    if isinstance(error, OSError | TimeoutError | ConnectionError | sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _TRANSIENT_MESSAGES)


class ReadinessProblem(RuntimeError):
    """A reason not to be ready whose message is safe to show on ``/readyz`` (no secret)."""


class SchemaNotReady(ReadinessProblem):
    """The service's database schema is missing or not at the head revision of its migrations."""

    def __init__(self, service: str, detail: str) -> None:
        self.command = f"python -m services.{service} migrate"
        super().__init__(f"{detail}; run `{self.command}`")


@functools.cache
def head_revision(migrations_dir: Path) -> str | None:
    """The head revision of a service's migrations (they do not change while it runs, and
    ``/readyz`` asks on every probe: parsed once)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(migrations_dir, "sqlite://")).get_current_head()


async def check_schema(engine: AsyncEngine, migrations_dir: Path, service: str) -> None:
    """Raise :class:`SchemaNotReady` unless the database is at the head revision."""
    head = head_revision(migrations_dir)
    try:
        async with engine.connect() as connection:
            current = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError as error:
        if "alembic_version" not in str(error.orig):
            raise
        current = None
    if current != head:
        found = "never migrated" if current is None else f"at revision {current}"
        raise SchemaNotReady(service, f"the database schema is {found}, the code needs {head}")


async def report_schema(engine: AsyncEngine, migrations_dir: Path, service: str) -> bool:
    """At start-up: log (once, with the command to run) when the schema is not at head.
    The service still starts; ``/readyz`` answers 503 with the reason until it is."""
    try:
        await check_schema(engine, migrations_dir, service)
        return True
    except SchemaNotReady as problem:
        log.error("database schema not at head: not ready", extra={"problem": str(problem), "run": problem.command})
    except Exception as error:
        log.warning("could not check the database schema", extra={"error": type(error).__name__})
    return False


def run_alembic_env(target_metadata: MetaData) -> None:
    """Body of every service's alembic ``env.py`` (online, async engines)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
