"""API keys through the running services: rate limits per key, the audit trail, the
console-link dependency, and a database and topic dump that holds no token."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI

from shared.console_links import sign
from shared.credentials.access import Credentials
from shared.credentials.scopes import Principal, Scope
from shared.credentials.tokens import TOKEN_PATTERN
from shared.kafka import make_consumer
from shared.settings import ServiceSettings
from shared.topics import DEADLETTER, SHIPMENTS
from tests.credentials.stack import (
    SERVICES,
    Issued,
    credentials_environment,
    issue,
    migrate,
    revoke,
    running,
    seller_key,
    settings_for,
    wait_until,
)
from tests.credentials.test_route_matrix import SUBSCRIPTION, confirmation
from tools.localstack import TansuBroker

pytestmark = [pytest.mark.postgres]


async def test_a_runaway_key_gets_429_with_retry_after_and_other_keys_are_served(
    kafka_broker: TansuBroker, tmp_path: object
) -> None:
    with credentials_environment(kafka_broker) as env:
        url = f"sqlite+aiosqlite:///{tmp_path}/notifier.db"
        await asyncio.to_thread(migrate, "notifier", url)
        settings = settings_for("notifier", env, url, rate_limit_per_second=0.5, rate_limit_burst=3)
        async with running("notifier", settings) as notifier:
            runaway, calm = (
                await asyncio.to_thread(seller_key, "A1RUNAWAY"),
                await asyncio.to_thread(seller_key, "B2CALM"),
            )
            for issued, seller in ((runaway, "A1RUNAWAY"), (calm, "B2CALM")):
                await wait_until([notifier], issued, seller, accepted=True, within=60)  # spends one request each
            path = "/v1/sellers/{}/notifications"
            statuses = [
                (await notifier.client.get(path.format("A1RUNAWAY"), headers=runaway.auth)).status_code
                for _ in range(4)
            ]
            assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]
            limited = await notifier.client.get(path.format("A1RUNAWAY"), headers=runaway.auth)
            assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 2
            assert runaway.key_id in limited.json()["detail"]
            assert [
                (await notifier.client.get(path.format("B2CALM"), headers=calm.auth)).status_code for _ in range(2)
            ] == [
                200,
                200,
            ]
            metrics = (await notifier.client.get("/metrics")).text
            assert f'vtr_api_key_requests_total{{key_id="{runaway.key_id}",outcome="rate_limited"}} 3.0' in metrics
            assert runaway.token not in metrics and calm.token not in metrics


async def test_the_audit_trail_records_keys_and_subscription_changes(
    kafka_broker: TansuBroker, tmp_path: object
) -> None:
    with credentials_environment(kafka_broker) as env:
        url = f"sqlite+aiosqlite:///{tmp_path}/notifier.db"
        await asyncio.to_thread(migrate, "notifier", url)
        async with running("notifier", settings_for("notifier", env, url)) as notifier:
            staff = await asyncio.to_thread(issue, "--staff")
            own = await asyncio.to_thread(seller_key, "A1AUDIT")
            other = await asyncio.to_thread(seller_key, "B2AUDIT")
            await wait_until([notifier], own, "A1AUDIT", accepted=True, within=60)
            await wait_until([notifier], staff, "A1AUDIT", accepted=True, within=60)
            client = notifier.client
            assert (
                await client.put("/v1/sellers/A1AUDIT/subscription", json=SUBSCRIPTION, headers=own.auth)
            ).status_code == 200
            changed = {**SUBSCRIPTION, "slack_webhook_url": "https://hooks.slack.com/services/T0/B0/secretsecret"}
            assert (
                await client.put("/v1/sellers/A1AUDIT/subscription", json=changed, headers=own.auth)
            ).status_code == 200
            assert (await client.delete("/v1/sellers/A1AUDIT/subscription", headers=staff.auth)).status_code == 204
            await asyncio.to_thread(revoke, other.key_id)
            await wait_until([notifier], other, "B2AUDIT", accepted=False)
            await wait_until([notifier], staff, "A1AUDIT", accepted=True, within=60)
            events = (await client.get("/v1/audit?seller=A1AUDIT", headers=staff.auth)).json()
            actions = [(event["action"], event["key_id"]) for event in reversed(events)]
            assert actions == [
                ("key.issued", own.key_id),
                ("subscription.updated", own.key_id),
                ("subscription.updated", own.key_id),
                ("subscription.deleted", staff.key_id),
            ]
            second = events[-3]["changes"]
            assert second["before"]["slack_webhook_url"] is None
            assert second["after"]["slack_webhook_url"].startswith("https://hooks.slack.com/")
            assert "secretsecret" not in str(events)
            assert events[-1]["changes"]["scopes"] and events[-1]["at"]
            b_events = (await client.get("/v1/audit?seller=B2AUDIT", headers=staff.auth)).json()
            assert [event["action"] for event in reversed(b_events)] == ["key.issued", "key.revoked"]
            # A seller key reads its own trail, and another seller's answers as none.
            assert (await client.get("/v1/audit", headers=own.auth)).json() == events
            assert (await client.get("/v1/audit?seller=B2AUDIT", headers=own.auth)).status_code == 404
            everyone = (await client.get("/v1/audit", headers=staff.auth)).json()
            assert any(event["key_id"] == staff.key_id and event["action"] == "key.issued" for event in everyone)


async def test_the_console_link_dependency_opens_one_seller(kafka_broker: TansuBroker) -> None:
    with credentials_environment(kafka_broker):
        credentials = Credentials.from_settings(ServiceSettings())
        await credentials.start()
        try:
            secret = b"console-secret"
            app = FastAPI()
            key_or_link = Depends(credentials.gate.key_or_console_link(Scope.CONSOLE_READ, secret))

            @app.get("/v1/amazon/authorize")
            async def authorize(principal: Principal = key_or_link) -> dict[str, Any]:
                return {"seller": principal.seller_id, "key_id": principal.key_id}

            expires = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                linked = await client.get(
                    "/v1/amazon/authorize", params={"seller_id": "A1", "t": sign(secret, "A1", expires)}
                )
                assert linked.json() == {"seller": "A1", "key_id": "console-link"}
                forged = await client.get(
                    "/v1/amazon/authorize", params={"seller_id": "B2", "t": sign(secret, "A1", expires)}
                )
                assert forged.status_code == 401
                assert (await client.get("/v1/amazon/authorize", params={"seller_id": "A1"})).status_code == 401
                issued = await asyncio.to_thread(seller_key, "A1", ["console:read"])
                for _ in range(200):
                    if credentials.follower.loaded and credentials.gate.registry.authenticate(issued.token.encode()):
                        break
                    await asyncio.sleep(0.05)
                keyed = await client.get("/v1/amazon/authorize", params={"seller_id": "A1"}, headers=issued.auth)
                assert keyed.json() == {"seller": "A1", "key_id": issued.key_id}
                other = await client.get("/v1/amazon/authorize", params={"seller_id": "B2"}, headers=issued.auth)
                assert other.status_code == 404
        finally:
            await credentials.stop()


async def _topic_bytes(settings: ServiceSettings, topics: list[str]) -> bytes:
    from shared.credentials.follower import read_topic_to_end

    chunks: list[bytes] = []
    for topic in topics:
        consumer = make_consumer(settings, group_id=None)
        await consumer.start()
        try:
            await read_topic_to_end(
                consumer, topic, lambda key, value: chunks.extend(part for part in (key, value) if part is not None)
            )
        finally:
            await consumer.stop()
    return b"\n".join(chunks)


async def _database_text(url: str) -> str:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'"
        )
        rows = []
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            rows += [str(row[0]) for row in await connection.fetch(f"SELECT row_to_json(t)::text FROM {name} t")]  # noqa: S608
        return "\n".join(rows)
    finally:
        await connection.close()


async def test_no_token_in_clear_in_any_database_topic_or_log(
    kafka_broker: TansuBroker,
    new_postgres_database: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with credentials_environment(kafka_broker) as env:
        urls = {service: await asyncio.to_thread(new_postgres_database) for service in ("scorer", "notifier")}
        async with AsyncExitStack() as stack:
            instances = []
            for service in SERVICES:
                url = urls.get(service)
                if url is not None:
                    await asyncio.to_thread(migrate, service, url)
                instances.append(await stack.enter_async_context(running(service, settings_for(service, env, url))))
            ingest, scorer, notifier = instances
            keys: list[Issued] = [
                await asyncio.to_thread(seller_key, "A1DUMP"),
                await asyncio.to_thread(issue, "--staff", "--scope", "admin"),
                await asyncio.to_thread(issue, "--service", "notifier", "--scope", "scores:read"),
            ]
            for issued in keys:
                await wait_until(instances, issued, "A1DUMP", accepted=True, within=60)
            own, staff, _service = keys
            # Every kind of request that stores something, and some refused ones.
            shipments = [confirmation("A1DUMP")]
            assert (await ingest.client.post("/v1/shipments", json=shipments, headers=own.auth)).status_code == 202
            assert (await ingest.client.post("/v1/shipments", content=b"[", headers=own.auth)).status_code == 400
            wrong = await ingest.client.post("/v1/shipments", json=[confirmation("B2DUMP")], headers=own.auth)
            assert wrong.status_code == 403
            put = await notifier.client.put("/v1/sellers/A1DUMP/subscription", json=SUBSCRIPTION, headers=own.auth)
            assert put.status_code == 200
            assert (await scorer.client.get("/v1/sellers/A1DUMP/vtr", headers=own.auth)).status_code in (200, 404)
            assert (await scorer.client.get("/console/A1DUMP", headers=staff.auth)).status_code == 200
            bad = Issued(own.key_id, own.token[:-1] + ("A" if own.token[-1] != "A" else "B"))
            assert (await notifier.client.get("/v1/audit", headers=bad.auth)).status_code == 401
            await asyncio.to_thread(revoke, own.key_id)
            await wait_until(instances, own, "A1DUMP", accepted=False)
            await asyncio.sleep(1.0)  # one usage report from every instance
            dumps = [await _database_text(url) for url in urls.values()]
            settings = ServiceSettings()
            topics = [env["VTR_CREDENTIALS_TOPIC"], env["VTR_CREDENTIAL_USAGE_TOPIC"], SHIPMENTS, DEADLETTER]
            dump = "\n".join(dumps) + (await _topic_bytes(settings, topics)).decode("utf-8", "replace")
            assert own.key_id in dump, "the dump is of the stack that used the keys"
            for issued in (*keys, bad):
                secret = issued.token[len("vtr_sk_") + 13 :]  # after the prefix and the key id
                assert issued.token not in dump and secret not in dump
            assert not TOKEN_PATTERN.search(dump)
            logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
            assert not TOKEN_PATTERN.search(logged)
