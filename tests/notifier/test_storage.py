"""Migrations match the tables the code uses; concurrent workers never send a row twice."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from services.notifier.db import metadata, outbox
from services.notifier.delivery import SmtpConfig, SmtpEmailSender, WebhookSlackSender
from services.notifier.outbox import OutboxWorker, RetryPolicy
from services.notifier.scorer_client import ScorerClient
from shared.db import create_engine
from shared.schemas import SCORE_CODEC, Level
from tests.notifier.conftest import SCORER_KEY, FakeClock, HttpStandIns, SmtpServer, make_snapshot


async def test_migrations_create_exactly_the_declared_schema(notifier_db: str) -> None:
    engine = create_engine(notifier_db)

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_two_workers_racing_deliver_each_row_exactly_once(
    notifier_db: str, smtp_server: SmtpServer, stand_ins: HttpStandIns, clock: FakeClock
) -> None:
    engines = [create_engine(notifier_db), create_engine(notifier_db)]
    snapshot = SCORE_CODEC.encode(make_snapshot(Level.BREACH)).decode()
    rows = [
        {
            "dedupe_key": f"key-{index}",
            "seller_id": "A1SELLER",
            "marketplace": "SG",
            "category": "Toys & Games",
            "kind": "escalated",
            "previous_level": "OK",
            "level": "BREACH",
            "notice_seq": 1,
            "channel": "email" if index % 2 else "slack",
            "recipient": f"user{index}@example.com" if index % 2 else stand_ins.slack.url(f"hook{index}"),
            "language": "en",
            "snapshot": snapshot,
            "status": "pending",
            "attempts": 0,
            "created_at": clock.now,
            "next_attempt_at": clock.now,
        }
        for index in range(20)
    ]
    scorer = ScorerClient(stand_ins.scorer.base_url, SCORER_KEY, 5)
    try:
        async with engines[0].begin() as connection:
            await connection.execute(insert(outbox), rows)
        workers = [
            OutboxWorker(
                engine=engine,
                email_sender=SmtpEmailSender(SmtpConfig.from_url(smtp_server.url), "alerts@vtrwatch.test", 5),
                slack_sender=WebhookSlackSender(5, allow_private_addresses=True),
                package_source=scorer,
                policy=RetryPolicy(1, 4, 3600, 120),
                clock=clock,
                batch_size=20,
            )
            for engine in engines
        ]
        handled = await asyncio.gather(*(worker.run_once() for worker in workers))
        assert sum(handled) == 20
        assert sorted(str(message["To"]) for message in smtp_server.handler.messages) == sorted(
            f"user{index}@example.com" for index in range(1, 20, 2)
        )
        assert sorted(post.hook for post in stand_ins.slack.posts) == sorted(
            f"hook{index}" for index in range(0, 20, 2)
        )
        async with engines[0].connect() as connection:
            statuses = (await connection.execute(select(outbox.c.status))).scalars().all()
        assert set(statuses) == {"sent"}
    finally:
        await scorer.close()
        for engine in engines:
            await engine.dispose()
