"""End to end with the real broker and PostgreSQL: shipments and events in through Kafka,
numbers out of the API equal to an independent computation, across SIGKILLs, with two
instances sharing the partitions, with three instances joining, leaving and killed while a
feed runs, and the clock job publishing a snapshot."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import metrics
from services.scorer.runtime.service import ScorerService, TopicLayoutError
from services.scorer.settings import ScorerSettings
from services.scorer.storage.schema import offsets, packages, scans
from shared.db import create_engine
from shared.kafka import ensure_topics, make_consumer
from shared.schemas import SCORE_CODEC, ShipmentConfirmed, TrackingEvent
from shared.topics import INPUT_TOPICS, SCORES, SCORES_TOPIC
from tests.scorer.conftest import Message, migrate, shipment
from tests.scorer.processes import API_KEY, Scorer, api_numbers, dataset, produce, real_today, wait_for_numbers
from tools.localstack import TansuBroker

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def scorer_env(fresh_broker: TansuBroker, new_postgres_database: Callable[[], str]) -> dict[str, str]:
    database_url = new_postgres_database()
    migrate(database_url)
    settings = ScorerSettings(kafka_bootstrap=fresh_broker.bootstrap, kafka_topic_partitions=4)
    asyncio.run(ensure_topics(settings, [*INPUT_TOPICS, SCORES_TOPIC]))
    return {
        **os.environ,
        "VTR_KAFKA_BOOTSTRAP": fresh_broker.bootstrap,
        "VTR_DATABASE_URL": database_url,
        "VTR_API_KEYS": API_KEY,
        "VTR_KAFKA_TOPIC_PARTITIONS": "4",
        "VTR_LOG_LEVEL": os.environ.get("SCORER_TEST_LOG_LEVEL", "WARNING"),
        "VTR_BATCH_MAX_RECORDS": "200",
        # A short session: the local broker completes a join faster, and a killed member is
        # dropped from the group sooner.
        "VTR_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "VTR_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    }


@pytest.fixture
def scorers(scorer_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Scorer]]:
    started: list[Scorer] = []

    def make(**extra_env: str) -> Scorer:
        scorer = Scorer({**scorer_env, **extra_env}, tmp_path / f"scorer-{len(started)}.log")
        started.append(scorer)
        return scorer

    yield make
    for scorer in started:
        scorer.stop()


async def test_sigkill_mid_stream_and_restart_gives_exact_numbers(
    scorer_env: dict[str, str], scorers: Callable[..., Scorer]
) -> None:
    messages, expected = dataset(seed=7)
    scorer = scorers(VTR_SCORER_INSTANCE_ID="scorer-a").start()
    chunk = len(messages) // 4
    for kill in range(3):
        await produce(scorer_env["VTR_KAFKA_BOOTSTRAP"], messages[kill * chunk : (kill + 1) * chunk])
        await asyncio.sleep(0.5 + 0.4 * kill)  # kill while the batches are being applied
        scorer.kill()
        scorer.start()
    await produce(scorer_env["VTR_KAFKA_BOOTSTRAP"], messages[3 * chunk :])
    await wait_for_numbers(scorer.port, expected)
    # Redelivering everything (as a producer retry would) changes nothing either.
    await produce(scorer_env["VTR_KAFKA_BOOTSTRAP"], messages[: len(messages) // 3])
    await asyncio.sleep(2)
    assert await api_numbers(scorer.port, real_today()) == expected


async def test_two_instances_split_the_partitions_and_agree(
    scorer_env: dict[str, str], scorers: Callable[..., Scorer]
) -> None:
    messages, expected = dataset(seed=11)
    first, second = scorers().start(), scorers().start()
    await produce(scorer_env["VTR_KAFKA_BOOTSTRAP"], messages)
    await wait_for_numbers(first.port, expected)
    await wait_for_numbers(second.port, expected)
    await assert_every_record_stored(scorer_env["VTR_DATABASE_URL"], messages)
    # Under load the second member may join after the first has applied everything; the
    # rebalance that follows must still hand it half of the partitions.
    engine = create_engine(scorer_env["VTR_DATABASE_URL"])
    try:
        for _ in range(150):
            async with engine.connect() as connection:
                owners = (await connection.execute(select(func.count(func.distinct(offsets.c.owner))))).scalar_one()
            if owners == 2:
                break
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    assert owners == 2
    assert await api_numbers(first.port, real_today()) == expected


async def test_a_backlog_planned_ahead_by_two_instances_one_killed_gives_exact_numbers(
    scorer_env: dict[str, str], scorers: Callable[..., Scorer]
) -> None:
    """Two instances apply a backlog with the next batch planned while one is written
    (small batches: many plans, consecutive batches sharing parcels); one is SIGKILLed while
    plans are in use and comes back (a rebalance each way: batches cut ahead are dropped and
    fetched again). The numbers are exact, every record is stored, and plans were used."""
    messages, expected = dataset(seed=31, parcels=1200)
    await produce(scorer_env["VTR_KAFKA_BOOTSTRAP"], messages)
    first, second = scorers(VTR_BATCH_MAX_RECORDS="40").start(), scorers(VTR_BATCH_MAX_RECORDS="40").start()
    used = 0.0
    deadline = asyncio.get_running_loop().time() + 60
    while used == 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        used = await plans_used(first.port) + await plans_used(second.port)
    first.kill()  # while the backlog is applied with plans
    first.start()
    await wait_for_numbers(first.port, expected)
    await wait_for_numbers(second.port, expected)
    await assert_every_record_stored(scorer_env["VTR_DATABASE_URL"], messages)
    assert used > 0, "no batch was planned ahead"


async def plans_used(port: int) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        try:
            text = (await client.get("/metrics")).text
        except httpx.HTTPError:  # not listening yet
            return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('vtr_scorer_batches_planned_ahead_total{outcome="used"}')
    )


async def feed(bootstrap: str, messages: list[Message], chunks: int, pause: float) -> None:
    """Produce ``messages`` in ``chunks`` slices, ``pause`` seconds apart (a steady feed)."""
    size = -(-len(messages) // chunks)
    for start in range(0, len(messages), size):
        await produce(bootstrap, messages[start : start + size])
        await asyncio.sleep(pause)


async def assert_every_record_stored(database_url: str, messages: list[Message]) -> None:
    """Every distinct scan and every order is in the database: no record was skipped."""
    event_ids = {m.event_id for m in messages if isinstance(m, TrackingEvent)}
    orders = {(m.seller_id, m.order_id) for m in messages if isinstance(m, ShipmentConfirmed)}
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            stored_scans = (await connection.execute(select(func.count()).select_from(scans))).scalar_one()
            stored_packages = (await connection.execute(select(func.count()).select_from(packages))).scalar_one()
    finally:
        await engine.dispose()
    assert (stored_scans, stored_packages) == (len(event_ids), len(orders))


async def test_three_instances_joining_leaving_and_killed_give_exact_numbers(
    scorer_env: dict[str, str], scorers: Callable[..., Scorer]
) -> None:
    """Instances join, leave (SIGTERM) and are SIGKILLed while a seeded feed runs; at most
    three run at once. The final numbers are the reference's, and every record is stored.
    ``VTR_CHAOS_SEED`` picks another feed and another schedule."""
    seed = int(os.environ.get("VTR_CHAOS_SEED", "23"))
    rnd = random.Random(seed)
    messages, expected = dataset(seed=seed, parcels=1200)
    bootstrap = scorer_env["VTR_KAFKA_BOOTSTRAP"]

    async def start(**extra_env: str) -> Scorer:
        return await asyncio.to_thread(scorers(**extra_env).start)

    async def pause() -> None:
        await asyncio.sleep(rnd.uniform(0.3, 2.0))

    feeding = asyncio.create_task(feed(bootstrap, messages, chunks=30, pause=0.3))
    try:
        a = await start()
        await pause()
        b, c = await asyncio.gather(start(), start())  # 3 instances
        await pause()
        b.kill()  # mid-batch
        await pause()
        b = await start()  # back
        await pause()
        a.stop()  # leaves
        await pause()
        d = await start()  # joins
        await pause()
        c.kill()
        await feeding
    finally:
        feeding.cancel()
    await wait_for_numbers(b.port, expected)
    await wait_for_numbers(d.port, expected)
    await assert_every_record_stored(scorer_env["VTR_DATABASE_URL"], messages)


async def test_clock_job_expires_a_package_and_publishes_its_snapshot(
    fresh_broker: TansuBroker, database_url: str
) -> None:
    """In process (the test sets the date), consumer, clock job and publisher together, on
    SQLite (one process shares the file) and PostgreSQL."""
    await asyncio.to_thread(migrate, database_url)
    settings = ScorerSettings(
        kafka_bootstrap=fresh_broker.bootstrap,
        database_url=database_url,
        clock_interval_seconds=0.2,
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
        publish_interval_seconds=0.1,
    )
    day = {"today": date(2026, 6, 15)}
    engine = create_engine(database_url)
    service = ScorerService(settings, engine, today=lambda: day["today"])
    await service.start()
    try:
        await produce(fresh_broker.bootstrap, [shipment("late-1", seller_id="dora", promised=date(2026, 6, 15))])
        # Joining the group on a fresh broker takes seconds on a loaded machine.
        assert await package_state_becomes(engine, "pending") == "pending"
        day["today"] = date(2026, 6, 16)  # the promised date has passed, no scan came
        # A snapshot published before every partition was fetched once says caught_up=False;
        # the scorer publishes it again once caught up, and that one is what alerts rely on.
        snapshot = await next_snapshot(settings, lambda s: s.seller_id == "dora" and s.invalid == 1 and s.caught_up)
        assert (snapshot.total, snapshot.valid, snapshot.vtr, snapshot.level.value) == (1, 0, 0.0, "BREACH")
        assert snapshot.reasons == {"no_physical_scan": 1}
        # The read path counts an overdue pending package as invalid already, so the
        # snapshot can come before the clock job has committed the expiry: wait for it.
        assert await package_state_becomes(engine, "invalid") == "invalid"
        # Counted right after the expiry's commit, which this test's read may see first.
        for _ in range(50):
            if metrics.EXPIRED_PACKAGES._value.get() >= 1:
                break
            await asyncio.sleep(0.1)
        assert metrics.EXPIRED_PACKAGES._value.get() >= 1
        assert metrics.SCORES_PUBLISHED._value.get() >= 1
        await service.clock.refresh_gauges()
        assert metrics.PACKAGES.labels("invalid")._value.get() == 1
        assert metrics.SELLER_CATEGORIES.labels("BREACH", "US")._value.get() == 1
    finally:
        await service.stop()
        await engine.dispose()


async def package_state_becomes(engine: AsyncEngine, wanted: str, timeout_seconds: float = 30.0) -> str | None:
    """The (only) package's state once it is ``wanted``, or the last one seen at the timeout."""
    state = None
    for _ in range(int(timeout_seconds * 10)):
        async with engine.connect() as connection:
            state = (await connection.execute(select(packages.c.state))).scalar()
        if state == wanted:
            break
        await asyncio.sleep(0.1)
    return state


async def next_snapshot(settings: ScorerSettings, wanted: Callable[..., bool]):  # type: ignore[no-untyped-def]
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(SCORES, p) for p in consumer.partitions_for_topic(SCORES) or {0}]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    snapshot = SCORE_CODEC.decode(record.value)
                    if wanted(snapshot):
                        return snapshot
        raise AssertionError("no matching snapshot on vtr.scores.v1")
    finally:
        await consumer.stop()


async def test_refuses_to_start_when_the_inputs_are_not_co_partitioned(
    fresh_broker: TansuBroker, tmp_path: Path
) -> None:
    await ensure_topics(
        ScorerSettings(kafka_bootstrap=fresh_broker.bootstrap, kafka_topic_partitions=2), INPUT_TOPICS[:1]
    )
    await ensure_topics(
        ScorerSettings(kafka_bootstrap=fresh_broker.bootstrap, kafka_topic_partitions=3), INPUT_TOPICS[1:]
    )
    settings = ScorerSettings(
        kafka_bootstrap=fresh_broker.bootstrap, database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db"
    )
    engine = create_engine(settings.database_url)
    service = ScorerService(settings, engine)
    try:
        with pytest.raises(TopicLayoutError, match="co-partitioned"):
            await service.start()
        assert service.consumer is None
    finally:
        await engine.dispose()
