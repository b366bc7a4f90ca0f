"""A PostgreSQL server of each test's own, to crash, restart, cut and make read-only."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.faults.pg_cluster import PostgresCluster

DATABASE = "vtr_faults"


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    # Not under pytest's tmp_path: run as root, the server's user must reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="vtr-pg-"))
    directory.chmod(0o755)
    server = PostgresCluster(directory / "pg").init()
    server.start()
    yield server
    server.stop("immediate")
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def empty_database(cluster: PostgresCluster) -> str:
    connection = await asyncpg.connect(cluster.admin_url)
    await connection.execute("CREATE DATABASE vtr_faults")
    await connection.close()
    return cluster.url("vtr_faults")


async def terminate_backends(cluster: PostgresCluster) -> int:
    connection = await asyncpg.connect(cluster.admin_url)
    try:
        killed = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = 'vtr_faults' AND pid <> pg_backend_pid()"
        )
        return int(killed or 0)
    finally:
        await connection.close()


async def set_read_only(cluster: PostgresCluster, read_only: bool) -> None:
    """The database refuses every write (as after a failover to a replica, or a full disk
    remounted read-only); existing sessions are cut so the next ones get the setting."""
    connection = await asyncpg.connect(cluster.admin_url)
    try:
        await connection.execute(
            f"ALTER DATABASE {DATABASE} SET default_transaction_read_only = {'on' if read_only else 'off'}"
        )
    finally:
        await connection.close()
    await terminate_backends(cluster)
