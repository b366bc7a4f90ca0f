"""Amazon connections in the audit trail (issue 21): a seller connecting through the
consent callback, Amazon refusing the authorisation, an operator's ``amazon connect`` and
``amazon disconnect``, each read back from ``GET /v1/audit?seller=...`` with who, when and
what changed, and never the refresh token. Real broker, the ingest's and the notifier's
real apps, the Amazon worker, the operator commands in their own processes, the
notifier's database of each kind (PostgreSQL included)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx

from services.ingest.settings import IngestSettings
from tests.ingest.conftest import API_KEY, running_ingest
from tests.ingest.fake_amazon import amazon_server
from tests.ingest.samples import unique_number
from tests.ingest.test_amazon import _cli, amazon_settings, connect, running_worker
from tests.notifier.conftest import HttpStandIns, SmtpServer
from tests.notifier.test_end_to_end import AUTH, notifier_settings, run_app
from tools.localstack import TansuBroker


async def _trail(client: httpx.AsyncClient, seller: str, count: int) -> list[dict[str, Any]]:
    """The seller's audit events, oldest first, once ``count`` have arrived (the notifier
    reads the notices in the background; the limit is a safety net, not a timing check)."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        answer = await client.get("/v1/audit", params={"seller": seller}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = list(reversed(answer.json()))
        if len(events) >= count or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.2)


async def test_amazon_connections_are_in_the_audit_trail_without_the_token(
    kafka_broker: TansuBroker, notifier_db: str, smtp_server: SmtpServer, stand_ins: HttpStandIns, tmp_path: Path
) -> None:
    seller = f"seller-{unique_number()}"
    settings = notifier_settings(
        kafka_broker, notifier_db, smtp_server, stand_ins, f"vtr.scores.test-{uuid.uuid4().hex[:8]}", "g-audit"
    )
    settings = settings.model_copy(update={"consumer_group": f"g-audit-{uuid.uuid4().hex[:8]}"})
    token_file = tmp_path / "refresh-token"
    async with run_app(settings) as (_app, notifier), amazon_server() as amazon:

        def make(**overrides: Any) -> IngestSettings:
            return IngestSettings(
                kafka_bootstrap=kafka_broker.bootstrap,
                api_keys=API_KEY,  # type: ignore[arg-type]
                produce_deadline_seconds=5.0,
                **overrides,
            )

        ingest_settings = amazon_settings(make, amazon)
        async with running_ingest(ingest_settings) as ingest:
            refresh = await connect(ingest, amazon, seller)  # the website flow, through the callback
        amazon.refresh_tokens.discard(refresh)  # the seller removed the app in Seller Central
        async with running_worker(ingest_settings):
            revoked = await _trail(notifier, seller, 2)
        assert [event["action"] for event in revoked] == ["amazon.connected", "amazon.reconnect_needed"]

        amazon.refresh_tokens.add("Atzr|operator-token")
        token_file.write_text("Atzr|operator-token\n")
        connect_args = ("--seller", seller, "--selling-partner-id", "SPOP", "--region", "eu")
        code, _, err = await _cli(
            ingest_settings, amazon, "connect", *connect_args, "--refresh-token-file", str(token_file)
        )
        assert code == 0, err
        code, _, err = await _cli(ingest_settings, amazon, "disconnect", "--seller", seller, "--region", "eu")
        assert code == 0, err
        events = await _trail(notifier, seller, 4)

    assert [(e["action"], e["key_id"], e["changes"]["region"]) for e in events] == [
        ("amazon.connected", "amazon", "na"),
        ("amazon.reconnect_needed", "amazon", "na"),
        ("amazon.connected", "operator", "eu"),
        ("amazon.disconnected", "operator", "eu"),
    ]
    consent, refused, by_operator, dropped = events
    assert consent["seller_id"] == seller and consent["at"]
    assert consent["changes"]["via"] == "consent" and consent["changes"]["selling_partner_id"] == f"SP{seller}"
    assert "invalid_grant" in refused["changes"]["reason"]
    assert by_operator["changes"]["via"] == "operator" and by_operator["changes"]["selling_partner_id"] == "SPOP"
    assert by_operator["changes"]["reason"].startswith("amazon connect run by ")
    assert dropped["changes"]["reason"].startswith("amazon disconnect run by ")
    assert refresh not in str(events) and "operator-token" not in str(events) and "Atzr" not in str(events)
