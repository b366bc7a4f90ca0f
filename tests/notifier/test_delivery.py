"""Snapshots -> outbox -> SMTP and Slack, with a controlled clock (no Kafka here: the
consumer's batches are fed straight to the processor, in a transaction as the consumer does).

Real parts: SQLite and PostgreSQL, aiosmtpd, an HTTP server standing in for Slack and
for the scorer's shipments API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import metrics
from services.notifier.app import Runtime, create_app
from services.notifier.db import as_utc, delivery_attempts, outbox, subscriptions
from services.notifier.settings import NotifierSettings
from shared.schemas import SCORE_CODEC, Level, ModelNote, ScoreSnapshot
from tests.notifier.conftest import (
    EXAMPLE_PACKAGES,
    SCORER_KEY,
    FakeClock,
    HttpStandIns,
    SmtpServer,
    make_snapshot,
)

AUTH = {"Authorization": "Bearer test-key"}
#: For behaviour that does not depend on the database (the rest runs on SQLite and PostgreSQL).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SELLER = "A1SELLER"
KEY = (SELLER, "SG", "Toys & Games")


@dataclass
class Harness:
    app: FastAPI
    api: httpx.AsyncClient
    clock: FakeClock
    smtp: SmtpServer
    web: HttpStandIns
    offset: int = 0

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def engine(self) -> AsyncEngine:
        engine: AsyncEngine = self.app.state.engine
        return engine

    async def subscribe(self, **overrides: Any) -> None:
        body = {
            "emails": ["ops@example.com", "boss@example.com"],
            "slack_webhook_url": self.web.slack.url("team"),
            "language": "en",
            **overrides,
        }
        response = await self.api.put(f"/v1/sellers/{SELLER}/subscription", json=body, headers=AUTH)
        assert response.status_code == 200, response.text

    async def feed(self, *snapshots: ScoreSnapshot | bytes) -> None:
        records = []
        for snapshot in snapshots:
            value = snapshot if isinstance(snapshot, bytes) else SCORE_CODEC.encode(snapshot)
            key = SELLER.encode()
            records.append(ConsumerRecord("scores", 0, self.offset, 0, 0, key, value, None, len(key), len(value), []))
            self.offset += 1
        async with self.engine.begin() as connection:
            await self.runtime.processor.apply_batch(connection, records)

    async def tick(self) -> int:
        return await self.runtime.processor.tick(self.engine)

    async def deliver(self) -> int:
        return await self.runtime.worker.run_once()

    async def rows(self) -> list[Any]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(select(outbox).order_by(outbox.c.id))).all())

    async def notifications(self, **params: str) -> list[dict[str, Any]]:
        response = await self.api.get(f"/v1/sellers/{SELLER}/notifications", params=params, headers=AUTH)
        assert response.status_code == 200
        rows: list[dict[str, Any]] = response.json()
        return rows

    def at(self, seconds: float) -> Any:
        return self.clock.now + timedelta(seconds=seconds)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Parametrise this name in a test to change the harness's settings."""
    return {}


@pytest.fixture
async def harness(
    notifier_db: str,
    clock: FakeClock,
    smtp_server: SmtpServer,
    stand_ins: HttpStandIns,
    settings_overrides: dict[str, Any],
) -> AsyncIterator[Harness]:
    stand_ins.scorer.packages[(*KEY, "invalid")] = list(EXAMPLE_PACKAGES[:2])
    stand_ins.scorer.packages[(*KEY, "at_risk")] = list(EXAMPLE_PACKAGES[2:])
    settings = NotifierSettings(
        database_url=notifier_db,
        api_keys="test-key",  # type: ignore[arg-type]
        smtp_url=smtp_server.url,  # type: ignore[arg-type]
        mail_from="vtrwatch <alerts@vtrwatch.test>",
        slack_allowed_prefixes=stand_ins.slack.base_url + "/services/",  # type: ignore[arg-type]
        slack_allow_private_addresses=True,  # the Slack stand-in listens on 127.0.0.1
        scorer_url=stand_ins.scorer.base_url,
        scorer_api_key=SCORER_KEY,  # type: ignore[arg-type]
        scorer_wait_seconds=60,
        debounce_seconds=60,
        deescalation_hold_seconds=3600,
        reminder_interval_seconds=86400,
        retry_base_seconds=1,
        retry_max_seconds=4,
        give_up_after_seconds=3600,
        smtp_timeout_seconds=3,
        **settings_overrides,
    )
    app = create_app(settings, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as api:
        yield Harness(app, api, clock, smtp_server, stand_ins)
    await app.state.engine.dispose()


async def test_escalation_is_debounced_then_delivered_once_to_every_recipient(harness: Harness) -> None:
    await harness.subscribe()
    await harness.feed(make_snapshot(Level.OK, computed_at=harness.clock.now))
    await harness.feed(make_snapshot(Level.AT_RISK, computed_at=harness.at(1)))
    harness.clock.advance(30)
    assert await harness.tick() == 0
    assert await harness.rows() == []
    harness.clock.advance(31)
    assert await harness.tick() == 3
    assert await harness.deliver() == 3
    assert await harness.deliver() == 0

    for address in ("ops@example.com", "boss@example.com"):
        [message] = harness.smtp.messages_to(address)
        assert message["Subject"] == "[AT RISK] Toys & Games (SG): VTR 96.0%, forecast below 95% in 5 days"
        assert message["From"] == "vtrwatch <alerts@vtrwatch.test>"
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        for package in EXAMPLE_PACKAGES:
            assert package.order_id in text and package.order_id in html
    [payload] = harness.web.slack.delivered("team")
    assert payload["blocks"][0]["text"]["text"] == "AT RISK: Toys & Games (SG)"
    asked = harness.web.scorer.requests
    assert [request["state"] for request in asked] == ["invalid", "at_risk"]
    assert asked[0]["marketplace"] == "SG" and asked[0]["category"] == "Toys & Games" and asked[0]["limit"] == "20"
    listed = await harness.notifications()
    assert {row["status"] for row in listed} == {"sent"} and len(listed) == 3
    assert all(row["packages_listed"] for row in listed)


async def test_a_forecast_on_lanes_not_learnt_escalates_only_once_they_are(harness: Harness) -> None:
    """Cold start: AT_RISK from a model that has not learnt the category's lanes (today's VTR
    alone says WATCH) sends nothing; the same level once learnt escalates after the debounce."""
    await harness.subscribe(emails=["ops@example.com"], slack_webhook_url=None)
    cold = ModelNote(built_at=None, packages=0, lanes_learnt=False, unlearnt_pending=3, today_level=Level.OK)
    await harness.feed(make_snapshot(Level.OK, computed_at=harness.clock.now))
    for second in (1, 40, 90, 200):
        snapshot = msgspec.structs.replace(make_snapshot(Level.AT_RISK, computed_at=harness.at(second)), model=cold)
        await harness.feed(snapshot)
    harness.clock.advance(400)
    assert await harness.tick() == 0
    assert await harness.rows() == []
    learnt = ModelNote(built_at=harness.clock.now, packages=5000, lanes_learnt=True, today_level=Level.OK)
    learnt_snapshot = make_snapshot(Level.AT_RISK, computed_at=harness.at(1))
    await harness.feed(msgspec.structs.replace(learnt_snapshot, model=learnt))
    harness.clock.advance(62)
    assert await harness.tick() == 1
    [row] = await harness.rows()
    assert (row.kind, row.previous_level, row.level) == ("escalated", "OK", "AT_RISK")


async def test_a_breach_today_escalates_even_before_the_lanes_are_learnt(harness: Harness) -> None:
    await harness.subscribe(emails=["ops@example.com"], slack_webhook_url=None)
    cold = ModelNote(built_at=None, packages=0, lanes_learnt=False, unlearnt_pending=3, today_level=Level.BREACH)
    snapshot = make_snapshot(Level.BREACH, computed_at=harness.clock.now)
    await harness.feed(msgspec.structs.replace(snapshot, model=cold))
    harness.clock.advance(61)
    assert await harness.tick() == 1
    [row] = await harness.rows()
    assert row.level == "BREACH"


async def test_replayed_duplicated_and_out_of_order_snapshots_write_nothing_twice(harness: Harness) -> None:
    await harness.subscribe(emails=["ops@example.com"], slack_webhook_url=None)
    start = harness.clock.now
    history = [
        make_snapshot(Level.OK, computed_at=start),
        make_snapshot(Level.BREACH, computed_at=start + timedelta(seconds=10)),
    ]
    await harness.feed(*history)
    harness.clock.advance(100)
    await harness.tick()
    assert len(await harness.rows()) == 1
    await harness.feed(*history, *reversed(history), make_snapshot(Level.OK, computed_at=start + timedelta(seconds=5)))
    harness.clock.advance(10_000)
    await harness.tick()
    assert len(await harness.rows()) == 1
    await harness.deliver()
    assert len(harness.smtp.handler.messages) == 1


async def test_smtp_down_for_a_while_delays_but_neither_loses_nor_duplicates(harness: Harness) -> None:
    await harness.subscribe()
    harness.smtp.stop()
    await harness.feed(make_snapshot(Level.BREACH, computed_at=harness.clock.now))
    harness.clock.advance(60)
    await harness.tick()
    await harness.deliver()
    for _ in range(3):
        harness.clock.advance(5)
        await harness.deliver()
    rows = await harness.rows()
    emails = [row for row in rows if row.channel == "email"]
    assert {row.status for row in emails} == {"pending"} and all(row.attempts == 4 for row in emails)
    assert all("SMTP unavailable" in row.last_error for row in emails)
    assert len(harness.web.slack.delivered("team")) == 1  # Slack is not held up by SMTP

    harness.smtp.start()
    harness.clock.advance(5)
    await harness.deliver()
    harness.clock.advance(5)
    await harness.deliver()
    assert {row.status for row in await harness.rows()} == {"sent"}
    assert len(harness.smtp.messages_to("ops@example.com")) == 1
    assert len(harness.smtp.messages_to("boss@example.com")) == 1
    async with harness.engine.connect() as connection:
        outcomes = (
            await connection.execute(
                select(delivery_attempts.c.outcome, func.count()).group_by(delivery_attempts.c.outcome)
            )
        ).all()
    assert dict(outcomes) == {"retry": 8, "sent": 3}


@SQLITE_ONLY
async def test_slack_429_retry_after_is_honoured(harness: Harness) -> None:
    await harness.subscribe(emails=[])
    harness.web.slack.script["team"] = [(429, "rate_limited", {"Retry-After": "30"})]
    await harness.feed(make_snapshot(Level.BREACH, computed_at=harness.clock.now))
    harness.clock.advance(60)
    await harness.tick()
    assert await harness.deliver() == 1
    [row] = await harness.rows()
    assert row.status == "pending" and "429" in row.last_error
    assert as_utc(row.next_attempt_at) == harness.at(30)
    harness.clock.advance(29)
    assert await harness.deliver() == 0
    harness.clock.advance(1)
    assert await harness.deliver() == 1
    assert [post.status for post in harness.web.slack.posts] == [429, 200]
    assert len(harness.web.slack.delivered("team")) == 1


@SQLITE_ONLY
async def test_permanent_failures_are_marked_counted_and_listed(harness: Harness) -> None:
    harness.web.slack.script["gone"] = [(404, "no_service", {})]
    harness.smtp.handler.refused.add("nobody@example.com")
    await harness.subscribe(emails=["nobody@example.com"], slack_webhook_url=harness.web.slack.url("gone"))
    failed_before = metrics.NOTIFICATIONS.labels("slack", "BREACH", "failed")._value.get()
    await harness.feed(make_snapshot(Level.BREACH, computed_at=harness.clock.now))
    harness.clock.advance(60)
    await harness.tick()
    await harness.deliver()
    harness.clock.advance(3600)
    assert await harness.deliver() == 0  # failed rows are never retried
    listed = await harness.notifications(status="failed")
    errors = {row["channel"]: row["last_error"] for row in listed}
    assert errors == {"slack": "Slack 404 no_service", "email": "recipient refused (SMTP [550])"}
    slack_row = next(row for row in listed if row["channel"] == "slack")
    assert "/services/gone" not in slack_row["recipient"]
    assert metrics.NOTIFICATIONS.labels("slack", "BREACH", "failed")._value.get() == failed_before + 1
    assert len(harness.web.slack.posts) == 1


@SQLITE_ONLY
async def test_scorer_unreachable_waits_briefly_then_sends_without_the_list(harness: Harness) -> None:
    await harness.subscribe(emails=["ops@example.com"], slack_webhook_url=None, language="zh-CN")
    harness.web.scorer.available = False
    await harness.feed(make_snapshot(Level.AT_RISK, computed_at=harness.clock.now))
    harness.clock.advance(60)
    await harness.tick()
    await harness.deliver()
    [row] = await harness.rows()
    assert row.status == "pending" and "scorer" in row.last_error
    harness.clock.advance(61)
    await harness.deliver()
    [message] = harness.smtp.messages_to("ops@example.com")
    assert message["Subject"].startswith("[有风险] Toys & Games（SG）")
    assert "暂时无法获取需要处理的包裹清单" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [listed] = await harness.notifications()
    assert listed["status"] == "sent" and listed["packages_listed"] is False


@SQLITE_ONLY
async def test_min_level_and_marketplace_filters(harness: Harness) -> None:
    await harness.subscribe(min_level="AT_RISK", marketplaces=["AE"], slack_webhook_url=None)
    await harness.feed(
        make_snapshot(Level.BREACH, computed_at=harness.clock.now),  # SG: not subscribed
        make_snapshot(Level.WATCH, marketplace="AE", computed_at=harness.clock.now),  # below min level
    )
    harness.clock.advance(60)
    await harness.tick()
    assert await harness.rows() == []
    await harness.feed(make_snapshot(Level.AT_RISK, marketplace="AE", computed_at=harness.at(1)))
    harness.clock.advance(61)
    await harness.tick()
    assert {(row.marketplace, row.previous_level, row.level) for row in await harness.rows()} == {
        ("AE", "WATCH", "AT_RISK")
    }


@pytest.mark.parametrize("settings_overrides", [{"reminder_mode": "daily_digest", "digest_check_seconds": 1}])
async def test_daily_digest_replaces_per_category_reminders(harness: Harness) -> None:
    await harness.subscribe(slack_webhook_url=None, emails=["ops@example.com"])
    await harness.feed(
        make_snapshot(Level.AT_RISK, computed_at=harness.clock.now),
        make_snapshot(Level.BREACH, marketplace="AE", category="Home & Kitchen", computed_at=harness.clock.now),
    )
    harness.clock.advance(60)
    assert await harness.tick() == 2
    harness.clock.advance(86399)
    assert await harness.tick() == 0
    harness.clock.advance(1)
    assert await harness.tick() == 1
    harness.clock.advance(100)
    assert await harness.tick() == 0
    await harness.deliver()
    subjects = [str(message["Subject"]) for message in harness.smtp.messages_to("ops@example.com")]
    assert len(subjects) == 3
    assert subjects[-1] == "[DAILY DIGEST] 2 categories need attention; worst: BREACH, Home & Kitchen (AE)"
    digest_text = harness.smtp.messages_to("ops@example.com")[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Toys & Games (SG): VTR 96.0%" in digest_text
    digest_row = (await harness.notifications())[0]
    assert digest_row["kind"] == "digest" and digest_row["status"] == "sent"
    # Once every category is back to OK (and the seller told), digests stop.
    await harness.feed(
        make_snapshot(Level.OK, computed_at=harness.clock.now),
        make_snapshot(Level.OK, marketplace="AE", category="Home & Kitchen", computed_at=harness.clock.now),
    )
    harness.clock.advance(3600)
    assert await harness.tick() == 2  # the two "recovered" messages
    harness.clock.advance(2 * 86400)
    assert await harness.tick() == 0


@SQLITE_ONLY
async def test_malformed_and_oversized_snapshots_are_skipped_and_counted_without_blocking(harness: Harness) -> None:
    await harness.subscribe(slack_webhook_url=None)
    invalid_before = metrics.SNAPSHOTS.labels("invalid")._value.get()
    await harness.feed(
        b'{"seller_id": "A1SELLER", "level": "PANIC"}',
        b"not json",
        make_snapshot(Level.BREACH, category="x" * 201, computed_at=harness.clock.now),
        make_snapshot(Level.BREACH, computed_at=harness.clock.now),
    )
    assert metrics.SNAPSHOTS.labels("invalid")._value.get() == invalid_before + 3
    harness.clock.advance(60)
    assert await harness.tick() == 2
    assert {row.category for row in await harness.rows()} == {"Toys & Games"}


async def test_a_row_that_keeps_failing_unexpectedly_is_parked_and_the_others_are_sent(harness: Harness) -> None:
    """Issue 14, 1b: a corrupt outbox row (its stored rendering is not JSON any more) is
    retried a bounded number of times, then parked (failed, counted); the rows behind it
    are delivered in the same pass."""
    await harness.subscribe(emails=["ops@example.com", "boss@example.com"])
    await harness.feed(make_snapshot(Level.BREACH, computed_at=harness.clock.now))
    harness.clock.advance(60)
    await harness.tick()
    rows = await harness.rows()
    assert len(rows) == 3
    corrupt = rows[0]
    async with harness.engine.begin() as connection:
        await connection.execute(update(outbox).where(outbox.c.id == corrupt.id).values(rendered="{not json"))
    parked_before = metrics.PARKED.labels(corrupt.channel)._value.get()

    assert await harness.deliver() == 3
    by_id = {row.id: row for row in await harness.rows()}
    assert {row.status for row_id, row in by_id.items() if row_id != corrupt.id} == {"sent"}
    assert by_id[corrupt.id].status == "pending"
    assert by_id[corrupt.id].last_error == "unexpected JSONDecodeError"

    for _ in range(10):
        harness.clock.advance(10)  # past the capped backoff, well before the give-up age
        await harness.deliver()
    parked = next(row for row in await harness.rows() if row.id == corrupt.id)
    assert parked.status == "failed"
    assert parked.attempts == 5
    assert parked.last_error.startswith("parked after 5 attempts")
    assert metrics.PARKED.labels(corrupt.channel)._value.get() == parked_before + 1


@SQLITE_ONLY  # PostgreSQL cannot even store the NUL; SQLite took it before the API refused it
async def test_a_stored_address_with_a_nul_does_not_hold_up_another_sellers_alert(harness: Harness) -> None:
    """Issue 14, 1b as reported: a subscription whose address holds a NUL (stored before
    the API refused such input) must not delay another seller's alert."""
    await harness.subscribe(emails=["ops@example.com"], slack_webhook_url=None)
    async with harness.engine.begin() as connection:
        await connection.execute(
            insert(subscriptions).values(
                seller_id="B0BAD",
                emails='["bad\\u0000@example.com"]',
                language="en",
                min_level="WATCH",
                created_at=harness.clock.now,
                updated_at=harness.clock.now,
            )
        )
    await harness.feed(make_snapshot(Level.BREACH, seller_id="B0BAD", computed_at=harness.clock.now))
    await harness.feed(make_snapshot(Level.BREACH, computed_at=harness.clock.now))
    harness.clock.advance(60)
    await harness.tick()
    assert {row.recipient for row in await harness.rows()} == {"bad\x00@example.com", "ops@example.com"}

    await harness.deliver()  # one pass: the bad row first (oldest), the good one still goes out

    assert len(harness.smtp.messages_to("ops@example.com")) == 1
    bad = next(row for row in await harness.rows() if row.seller_id == "B0BAD")
    assert bad.status in ("pending", "failed") and bad.last_error
