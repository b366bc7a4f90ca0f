"""Real parts for the test suite: a Tansu broker, SQLite and PostgreSQL databases.

PostgreSQL is the server at ``VTR_TEST_POSTGRES_URL`` (default: the machine's
127.0.0.1:5432, user ``postgres``, trust auth). Each test session creates its own
database there and drops it at the end. When the server is unreachable the PostgreSQL
tests skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator

import asyncpg
import pytest

from tools.localstack import TansuBroker

POSTGRES_ADMIN_URL = os.environ.get("VTR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One Tansu broker on a free port for the whole session (topics are namespaced per test where needed)."""
    broker = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A broker of the test's own, for tests that stop and restart it."""
    broker = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    yield broker
    broker.stop()


async def _admin_execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _drop_databases(names: list[str]) -> None:
    """Drop the session's databases side by side: each DROP DATABASE waits for a checkpoint
    (about a second here), and concurrent drops share one, so a session's hundred databases
    go in seconds instead of two minutes one after the other."""
    at_once = asyncio.Semaphore(16)

    async def drop(name: str) -> None:
        async with at_once:
            await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    await asyncio.gather(*(drop(name) for name in names))


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A database of this test session's own on the PostgreSQL server (asyncpg URL)."""
    name = f"vtrwatch_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        message = f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {error!r}"
        if _running_in_ci():
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(_drop_databases([name]))


@pytest.fixture(scope="session")
def new_postgres_database(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """Factory: a new empty PostgreSQL database (inside this session's server), as a URL."""
    created: list[str] = []

    def make() -> str:
        name = f"vtrwatch_test_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return postgres_server_url.rsplit("/", 1)[0] + "/" + name

    yield make
    asyncio.run(_drop_databases(created))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """An empty database of each kind, for tests that must pass on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/test.db"
    factory: Callable[[], str] = request.getfixturevalue("new_postgres_database")
    return factory()


def _parked_records() -> float:
    from shared.consumer.failures import PARKED_RECORDS

    return sum(sample.value for sample in PARKED_RECORDS.collect()[0].samples if sample.name.endswith("_total"))


@pytest.fixture
def parking_allowed() -> None:
    """Requested by a test that parks records on purpose (see :func:`nothing_parked`)."""


@pytest.fixture(autouse=True)
def nothing_parked(request: pytest.FixtureRequest) -> Iterator[None]:
    """No test parks a record unless it says so: a record applied twice fails the test's
    database write (a primary key), and parking it after retries would otherwise hide that."""
    before = _parked_records()
    yield
    if "parking_allowed" not in request.fixturenames:
        assert _parked_records() == before, "a record was parked: it failed to apply (applied twice?)"
