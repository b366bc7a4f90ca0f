"""Issue 14, section 5: a broker that lost its log. The broker restarts empty (the local
broker keeps its log in memory; on Kafka: unclean leader election, a re-created topic,
retention passing a stopped consumer), so the offsets stored in the database are beyond
the new log's end. The consumer stops those partitions (metric, log naming the command)
instead of skipping the new records silently; ``offsets reset`` moves them deliberately
and the running consumer resumes without a restart."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, select

from shared.consumer import upkeep
from shared.consumer.offsets_command import ConsumerOffsets, run
from shared.consumer.upkeep import OFFSET_OUT_OF_RANGE
from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from shared.topics import TopicSpec
from tests.shared.consumer.helpers import (
    Recorder,
    applied,
    count_applied,
    migrated_engine,
    offsets,
    produce,
    small_batches,
    wait_for_count,
)
from tools.localstack import TansuBroker


async def _gauge(group: str, topic: str, partition: int) -> float:
    OFFSET_OUT_OF_RANGE.labels(group, topic, str(partition))  # read as 0 if the series is not there
    labels = {"group": group, "topic": topic, "partition": str(partition)}
    value = REGISTRY.get_sample_value("vtr_consumer_offset_out_of_range", labels)
    assert value is not None
    return value


async def test_stored_offsets_beyond_a_lost_log_stop_the_partition_until_moved_deliberately(
    database_url: str,
    fresh_broker: TansuBroker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(upkeep, "RANGE_CHECK_SECONDS", 0.5)
    settings = ServiceSettings(
        kafka_bootstrap=fresh_broker.bootstrap,
        kafka_topic_partitions=2,
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
        database_url=database_url,
    )
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"test.lost.{suffix}", f"group-{suffix}"
    target = ConsumerOffsets(group, [topic], offsets)
    await ensure_topics(settings, [TopicSpec(topic)])
    engine = await migrated_engine(database_url)
    await produce(settings, topic, 40)
    first = small_batches(settings, engine, [topic], group, Recorder())
    await first.start()
    await wait_for_count(engine, 40)
    await first.stop()

    # The broker comes back empty; the producers go on (acknowledged records, new log).
    # The new log reuses offsets 0..: the rows of the old log leave the test's table (its
    # key is the offset; the services' own tables are keyed by content and keep theirs).
    async with engine.begin() as connection:
        await connection.execute(delete(applied))
    fresh_broker.stop()
    fresh_broker.start()
    await ensure_topics(settings, [TopicSpec(topic)])
    await produce(settings, topic, 10, start=1000)

    caplog.set_level(logging.ERROR, logger="shared.consumer.upkeep")
    second = small_batches(settings, engine, [topic], group, Recorder())
    await second.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(second.out_of_range) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the lost log was not noticed"
            await asyncio.sleep(0.1)
        assert all("beyond the log end" in reason for reason in second.out_of_range.values())
        assert [await _gauge(group, topic, p) for p in (0, 1)] == [1.0, 1.0]
        assert not second.caught_up(max_lag=1000)
        runs = [getattr(r, "run", "") for r in caplog.records]
        assert any(f"offsets reset --to earliest|latest|<ISO time> --partition {topic}:0" in run for run in runs)
        await asyncio.sleep(1.0)
        assert await count_applied(engine) == 0  # nothing of the new log applied, nothing skipped either

        out = io.StringIO()
        assert await run(settings, target, ["show"], out) == 1
        assert out.getvalue().count("OUT OF RANGE") == 2
        out = io.StringIO()
        assert await run(settings, target, ["reset", "--to", "earliest", "--partition", "0", "--dry-run"], out) == 0
        assert "dry run" in out.getvalue()
        assert await run(settings, target, ["reset", "--to", "earliest"], io.StringIO()) == 0

        # The running consumer resumes from the moved offsets: every new record, once.
        await wait_for_count(engine, 10)
        await asyncio.sleep(1.0)
        assert await count_applied(engine) == 10
        assert second.out_of_range == {}
        assert [await _gauge(group, topic, p) for p in (0, 1)] == [0.0, 0.0]
        async with engine.connect() as connection:
            values = (await connection.execute(select(applied.c.value))).scalars().all()
        assert sorted(values) == sorted(f"v{i}" for i in range(1000, 1010))
        # In range now: another reset is refused without --force.
        out = io.StringIO()
        assert await run(settings, target, ["reset", "--to", "latest"], out) == 1, out.getvalue()
        assert "refusing" in out.getvalue()
    finally:
        await second.stop()
        await engine.dispose()
