"""The whole notifier against a real broker: snapshots on Kafka in, e-mail and Slack out.

Runs the app's real lifespan (transactional consumer, tick, outbox worker) with the
real clock and timings shrunk to fractions of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from services.notifier.app import Runtime, create_app
from services.notifier.db import outbox
from services.notifier.settings import NotifierSettings
from shared.kafka import make_producer
from shared.schemas import SCORE_CODEC, Level, ScoreSnapshot
from tests.notifier.conftest import (
    EXAMPLE_PACKAGES,
    SCORER_KEY,
    HttpStandIns,
    SmtpServer,
    eventually,
    make_snapshot,
)
from tools.localstack import TansuBroker

AUTH = {"Authorization": "Bearer test-key"}
SELLER = "A1SELLER"
ADDRESS = "ops@example.cn"
EXPECTED_SUBJECTS = [
    "[有风险] Toys & Games（SG）：VTR 96.0%，预计 5 天后低于 95%",
    "[已跌破红线] Toys & Games（SG）：VTR 94.0%，已低于 95%",
    "[已恢复] Toys & Games（SG）：VTR 99.0%，已恢复正常",
]
EXPECTED_SLACK_HEADERS = ["有风险：Toys & Games（SG）", "已跌破红线：Toys & Games（SG）", "已恢复：Toys & Games（SG）"]


def notifier_settings(
    broker: TansuBroker, database_url: str, smtp: SmtpServer, web: HttpStandIns, topic: str, group: str
) -> NotifierSettings:
    return NotifierSettings(
        database_url=database_url,
        api_keys="test-key",  # type: ignore[arg-type]
        kafka_bootstrap=broker.bootstrap,
        kafka_topic_partitions=2,
        scores_topic=topic,
        consumer_group=group,
        smtp_url=smtp.url,  # type: ignore[arg-type]
        slack_allowed_prefixes=web.slack.base_url + "/services/",  # type: ignore[arg-type]
        slack_allow_private_addresses=True,  # the Slack stand-in listens on 127.0.0.1
        scorer_url=web.scorer.base_url,
        scorer_api_key=SCORER_KEY,  # type: ignore[arg-type]
        debounce_seconds=0.3,
        deescalation_hold_seconds=0.6,
        reminder_interval_seconds=3600,
        tick_seconds=0.05,
        outbox_poll_seconds=0.05,
        retry_base_seconds=0.2,
        retry_max_seconds=1,
    )


@pytest.fixture
def topic() -> str:
    return f"vtr.scores.test-{uuid.uuid4().hex[:8]}"


class Producer:
    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.sent: list[ScoreSnapshot] = []

    async def send(self, *snapshots: ScoreSnapshot) -> None:
        producer = make_producer(self.settings)
        await producer.start()
        try:
            for snapshot in snapshots:
                await producer.send_and_wait(
                    self.settings.scores_topic, SCORE_CODEC.encode(snapshot), key=snapshot.seller_id.encode()
                )
        finally:
            await producer.stop()
        self.sent.extend(snapshots)


@contextlib.asynccontextmanager
async def run_app(settings: NotifierSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as client,
    ):
        yield app, client


async def test_ok_at_risk_breach_ok_then_full_replay(
    kafka_broker: TansuBroker, notifier_db: str, smtp_server: SmtpServer, stand_ins: HttpStandIns, topic: str
) -> None:
    key = (SELLER, "SG", "Toys & Games")
    stand_ins.scorer.packages[(*key, "invalid")] = list(EXAMPLE_PACKAGES)
    settings = notifier_settings(kafka_broker, notifier_db, smtp_server, stand_ins, topic, f"g-{uuid.uuid4().hex[:8]}")
    producer = Producer(settings)

    def now() -> datetime:
        return datetime.now(UTC)

    def subjects() -> list[str]:
        return [str(message["Subject"]) for message in smtp_server.messages_to(ADDRESS)]

    def slack_headers() -> list[str]:
        return [payload["blocks"][0]["text"]["text"] for payload in stand_ins.slack.delivered("team")]

    async with run_app(settings) as (_app, client):
        response = await client.put(
            f"/v1/sellers/{SELLER}/subscription",
            json={"emails": [ADDRESS], "slack_webhook_url": stand_ins.slack.url("team"), "language": "zh-CN"},
            headers=AUTH,
        )
        assert response.status_code == 200
        await producer.send(make_snapshot(Level.OK, computed_at=now()), make_snapshot(Level.AT_RISK, computed_at=now()))
        await eventually(lambda: len(subjects()) == 1 and len(slack_headers()) == 1, message="AT_RISK alert")
        # A dip the scorer reports while catching up is not an alert, however long it lasts.
        await producer.send(make_snapshot(Level.BREACH, computed_at=now(), caught_up=False))
        await producer.send(make_snapshot(Level.BREACH, computed_at=now()))
        await eventually(lambda: len(subjects()) == 2 and len(slack_headers()) == 2, message="BREACH alert")
        await producer.send(make_snapshot(Level.OK, computed_at=now()))
        await eventually(lambda: len(subjects()) == 3 and len(slack_headers()) == 3, message="recovered")

        assert subjects() == EXPECTED_SUBJECTS
        assert slack_headers() == EXPECTED_SLACK_HEADERS
        breach_text = smtp_server.messages_to(ADDRESS)[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "https://sellercentral.amazon.sg/performance/account/health" in breach_text
        assert "请改用有妥投扫描的物流服务" in breach_text
        # The sender marks a row sent just after SMTP or Slack accepted it: wait for the mark.
        expected_rows = sorted(
            (channel, level, "sent") for channel in ("email", "slack") for level in ("AT_RISK", "BREACH", "OK")
        )
        listed: list[tuple[str, str, str]] = []
        for _ in range(200):
            rows = (await client.get(f"/v1/sellers/{SELLER}/notifications", headers=AUTH)).json()
            listed = sorted((row["channel"], row["level"], row["status"]) for row in rows)
            if listed == expected_rows:
                break
            await asyncio.sleep(0.05)
        assert listed == expected_rows
        metrics_text = (await client.get("/metrics")).text
        assert 'vtr_notifier_notifications_total{channel="email",level="BREACH",outcome="sent"}' in metrics_text
        assert SELLER not in metrics_text and ADDRESS not in metrics_text

    # Replay: a new consumer group reads the whole topic again, and every snapshot is sent twice more.
    await producer.send(*producer.sent)
    replay = settings.model_copy(update={"consumer_group": f"g-{uuid.uuid4().hex[:8]}"})
    async with run_app(replay) as (app, _client):
        runtime: Runtime = app.state.runtime
        total = len(producer.sent)
        await eventually(lambda: runtime.consumer.records_applied >= total, message="replay consumed")
        assert runtime.consumer.records_applied == total
        assert await runtime.processor.tick(app.state.engine) == 0
        assert await runtime.worker.run_once() == 0
        async with app.state.engine.connect() as connection:
            assert (await connection.execute(select(func.count()).select_from(outbox))).scalar_one() == 6
    assert subjects() == EXPECTED_SUBJECTS
    assert slack_headers() == EXPECTED_SLACK_HEADERS
