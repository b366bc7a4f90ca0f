"""Amazon's own VTR status turning BAD is a seller message at once (issue 22): figures on
``vtr.amazon-vtr.v1`` through the real broker, the notifier's real lifespan, e-mail to a
real SMTP server and Slack to a local stand-in; staying BAD sends nothing more, GOOD then
BAD again sends again."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from services.notifier.amazon_status import compose
from services.notifier.messages import Language
from shared.kafka import make_producer
from shared.schemas import AMAZON_CODEC, AmazonConnectionChanged, AmazonVtr, AmazonVtrStatus
from shared.topics import AMAZON_VTR
from tests.notifier.conftest import HttpStandIns, SmtpServer, eventually
from tests.notifier.test_end_to_end import AUTH, notifier_settings, run_app
from tools.localstack import TansuBroker

ADDRESS = "owner@example.cn"


def figure(seller: str, status: AmazonVtrStatus, report: str, minutes: int) -> AmazonVtr:
    return AmazonVtr(
        seller_id=seller,
        marketplace="US",
        marketplace_id="ATVPDKIKX0DER",
        rate=0.925 if status is AmazonVtrStatus.BAD else 0.97,
        shipment_count=40,
        valid_tracking_count=37,
        status=status,
        target_value=0.95,
        reporting_from=date(2026, 11, 7),
        reporting_to=date(2026, 12, 6),
        report_id=report,
        fetched_at=datetime(2026, 12, 7, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes),
    )


async def test_a_status_turning_bad_messages_the_seller_once(
    kafka_broker: TansuBroker, notifier_db: str, smtp_server: SmtpServer, stand_ins: HttpStandIns
) -> None:
    seller = f"AMZ{uuid.uuid4().hex[:8]}"
    settings = notifier_settings(
        kafka_broker, notifier_db, smtp_server, stand_ins, f"vtr.scores.test-{uuid.uuid4().hex[:8]}", "g-amazon"
    )
    producer = make_producer(settings)

    async def send(*figures: AmazonVtr) -> None:
        for item in figures:
            await producer.send_and_wait(AMAZON_VTR, AMAZON_CODEC.encode(item), key=item.seller_id.encode())

    def subjects() -> list[str]:
        return [str(message["Subject"]) for message in smtp_server.messages_to(ADDRESS)]

    def slack_texts() -> list[str]:
        return [payload["text"] for payload in stand_ins.slack.delivered(seller)]

    async with run_app(settings) as (_app, client):
        response = await client.put(
            f"/v1/sellers/{seller}/subscription",
            json={"emails": [ADDRESS], "slack_webhook_url": stand_ins.slack.url(seller), "language": "en"},
            headers=AUTH,
        )
        assert response.status_code == 200
        await producer.start()
        try:
            await send(figure(seller, AmazonVtrStatus.GOOD, "R1", 0), figure(seller, AmazonVtrStatus.BAD, "R2", 1))
            await eventually(lambda: len(subjects()) == 1 and len(slack_texts()) == 1, message="BAD message")
            await send(figure(seller, AmazonVtrStatus.BAD, "R3", 2))  # still BAD: nothing new
            await send(figure(seller, AmazonVtrStatus.GOOD, "R4", 3), figure(seller, AmazonVtrStatus.BAD, "R5", 4))
            await eventually(lambda: len(subjects()) == 2 and len(slack_texts()) == 2, message="BAD again")
            revoked = AmazonConnectionChanged(
                seller_id=seller,
                region="na",
                state="reconnect_needed",
                reason="LWA refused the grant (invalid_grant)",
                changed_at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
            )
            await producer.send_and_wait(AMAZON_VTR, AMAZON_CODEC.encode(revoked), key=seller.encode())
            await producer.send_and_wait(AMAZON_VTR, AMAZON_CODEC.encode(revoked), key=seller.encode())  # re-sent
            await eventually(lambda: len(subjects()) == 3 and len(slack_texts()) == 3, message="reconnect message")
        finally:
            await producer.stop()
    assert subjects() == [
        *["Amazon rates your Valid Tracking Rate in US as BAD"] * 2,
        "vtrwatch can no longer read your Amazon data (North America)",
    ]
    reconnect = smtp_server.messages_to(ADDRESS)[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "GET /v1/amazon/authorize" in reconnect and "invalid_grant" in reconnect
    body = smtp_server.messages_to(ADDRESS)[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "92.5% against Amazon's target of 95.0%, over 2026-11-07 to 2026-12-06" in body
    assert "(37 of 40 shipments with valid tracking)" in body
    assert len(slack_texts()) == 3


def test_the_message_in_chinese_names_the_same_figures() -> None:
    email, slack = compose(figure("S", AmazonVtrStatus.BAD, "R", 0), Language.ZH_CN, "https://console.example/c/S")
    assert email["subject"] == "亚马逊将您在 US 站点的有效追踪率评为 BAD"
    assert "92.5%" in email["text"] and "95.0%" in email["text"] and "https://console.example/c/S" in email["text"]
    assert slack["blocks"][0]["text"]["text"] == email["subject"]
