"""Issue 14, section 6: PostgreSQL restarted under load, and connections cut in the middle
of transactions. A server of the test's own is crashed (``pg_ctl -m immediate``) and
restarted while records keep arriving, and every backend of the database is terminated
several times: each acknowledged record is applied exactly once, nothing is parked, and
the consumer recovers without a restart."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.settings import ScorerSettings
from shared.consumer.consumer import TransactionalConsumer
from shared.consumer.failures import PARKED_RECORDS
from shared.consumer.offsets import consumer_offsets_table
from shared.db import create_engine, upgrade_database
from shared.kafka import ensure_topics, make_producer
from shared.settings import ServiceSettings
from shared.topics import INPUT_TOPICS, SCORES_TOPIC, TopicSpec
from tests.faults.conftest import terminate_backends
from tests.faults.pg_cluster import PostgresCluster, postgres_bin_dir
from tests.scorer.conftest import MIGRATIONS as SCORER_MIGRATIONS
from tests.scorer.processes import API_KEY, Scorer, dataset, wait_for_numbers
from tests.scorer.processes import produce as produce_messages
from tools.localstack import TansuBroker

pytestmark = pytest.mark.skipif(postgres_bin_dir() is None, reason="no PostgreSQL binaries to run a server")

metadata = MetaData()
offsets = consumer_offsets_table(metadata)
# No key on purpose: a record applied twice shows up as two rows instead of failing.
applied = Table(
    "applied_once",
    metadata,
    Column("topic", String(200), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("value", String(100), nullable=False),
)


async def apply(connection: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
    await connection.execute(
        insert(applied),
        [{"topic": r.topic, "partition": r.partition, "offset": r.offset, "value": r.value.decode()} for r in records],
    )


async def produce(settings: ServiceSettings, topic: str, values: list[str]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value.encode(), key=value.encode())
    finally:
        await producer.stop()


@pytest.fixture
async def database(empty_database: str) -> AsyncIterator[str]:
    url = empty_database
    engine = create_engine(url)
    async with engine.begin() as connection_:
        await connection_.run_sync(metadata.create_all)
    await engine.dispose()
    yield url


async def applied_count(cluster: PostgresCluster) -> int:
    connection = await asyncpg.connect(cluster.admin_url.rsplit("/", 1)[0] + "/vtr_faults")
    try:
        return int(await connection.fetchval("SELECT count(*) FROM applied_once"))
    finally:
        await connection.close()


async def test_a_crash_and_cut_connections_under_load_lose_nothing_and_apply_nothing_twice(
    cluster: PostgresCluster, database: str, kafka_broker: TansuBroker
) -> None:
    settings = ServiceSettings(
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topic_partitions=3,
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
    )
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"test.pgfault.{suffix}", f"group-{suffix}"
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = create_engine(database)
    consumer = TransactionalConsumer(
        settings=settings,
        engine=engine,
        topics=[topic],
        group_id=group,
        offsets=offsets,
        apply_batch=apply,
        max_batch_records=20,
        retry_delay_seconds=0.2,
    )
    parked_before = PARKED_RECORDS.labels(group, topic)._value.get()
    values = [f"r{i:05d}" for i in range(1500)]
    await consumer.start()
    try:
        feeding = asyncio.create_task(produce(settings, topic, values))
        killed, before_crash = 0, -1
        for round_ in range(3):
            await asyncio.sleep(0.7)
            killed += await terminate_backends(cluster)  # connections cut mid-transaction
            if round_ == 1:
                before_crash = await applied_count(cluster)
                await asyncio.to_thread(cluster.stop, "immediate")  # a crash under load
                await asyncio.sleep(2.0)
                await asyncio.to_thread(cluster.start)
        await feeding  # every record acknowledged by the broker
        deadline = asyncio.get_running_loop().time() + 90
        while True:
            try:
                async with engine.connect() as connection:
                    count = (await connection.execute(select(func.count()).select_from(applied))).scalar_one()
            except Exception:  # the pool may still hold connections of the crashed server
                count = -1
            if count >= len(values) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)
        assert consumer.running, "the consumer must recover without a restart"
    finally:
        await consumer.stop()
    async with engine.connect() as connection:
        rows = (await connection.execute(select(applied.c.value))).scalars().all()
    await engine.dispose()
    assert killed > 0, "the test must actually cut connections"
    assert 0 < before_crash < len(values), "the crash must come in the middle of the load"
    assert sorted(rows) == values  # every acknowledged record, each exactly once
    assert PARKED_RECORDS.labels(group, topic)._value.get() == parked_before  # outages are not poison


async def test_the_scorer_keeps_exact_numbers_across_a_database_crash_without_a_restart(
    cluster: PostgresCluster, empty_database: str, fresh_broker: TansuBroker, tmp_path: Path
) -> None:
    """The scorer process (``python -m services.scorer``) is fed while its PostgreSQL
    server crashes and comes back, and while its connections are cut: the same process
    ends with numbers equal to an independent computation (nothing lost, nothing counted
    twice) and is ready again."""
    database = empty_database
    await asyncio.to_thread(upgrade_database, SCORER_MIGRATIONS, database)
    settings = ScorerSettings(kafka_bootstrap=fresh_broker.bootstrap, kafka_topic_partitions=4)
    await ensure_topics(settings, [*INPUT_TOPICS, SCORES_TOPIC])
    env = {
        **os.environ,
        "VTR_KAFKA_BOOTSTRAP": fresh_broker.bootstrap,
        "VTR_DATABASE_URL": database,
        "VTR_API_KEYS": API_KEY,
        "VTR_KAFKA_TOPIC_PARTITIONS": "4",
        "VTR_LOG_LEVEL": "WARNING",
        "VTR_BATCH_MAX_RECORDS": "100",
        "VTR_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "VTR_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    }
    messages, expected = dataset(seed=23)
    scorer = Scorer(env, tmp_path / "scorer.log").start()
    try:
        half = len(messages) // 2
        await produce_messages(fresh_broker.bootstrap, messages[:half])
        await asyncio.sleep(0.5)
        await terminate_backends(cluster)
        await asyncio.to_thread(cluster.stop, "immediate")
        await produce_messages(fresh_broker.bootstrap, messages[half:])  # arrives while the database is down
        await asyncio.sleep(2.0)
        await asyncio.to_thread(cluster.start)
        await terminate_backends(cluster)
        await wait_for_numbers(scorer.port, expected)
        assert scorer.process is not None and scorer.process.poll() is None, "recovered without a restart"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{scorer.port}", timeout=5) as client:
            deadline = asyncio.get_running_loop().time() + 30
            while (ready := await client.get("/readyz")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, ready.text
                await asyncio.sleep(0.5)
    finally:
        scorer.stop()
