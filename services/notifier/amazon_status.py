"""Amazon's VTR status turning ``BAD`` is a seller message at once (issue 22).

The notifier reads ``vtr.amazon-vtr.v1`` (the ingest's Amazon worker publishes Amazon's
seller performance report there) in its own consumer group, transactionally like the
score snapshots: the last status of each seller x marketplace is kept in
``amazon_statuses``, and a figure whose status is ``BAD`` while the kept one was not (or
there was none) writes one outbox row per recipient of the seller's subscription, in the
same transaction as the offsets. The message is composed here, once (the outbox keeps the
composed content for every retry): it names the marketplace, Amazon's rate against its
target over Amazon's reporting range, and what to do. A report that stays ``BAD`` sends
nothing more; ``GOOD`` then ``BAD`` again sends again.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from sqlalchemy import Column, DateTime, String, Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier import db, metrics
from services.notifier.alerts import Clock
from services.notifier.audit import record_amazon_connections
from services.notifier.db import as_utc, dialect_insert, outbox
from services.notifier.processing import CHANNEL_EMAIL, Subscription, load_subscriptions
from shared.console_links import ConsoleLinks
from shared.schemas import (
    AMAZON_CODEC,
    RECONNECT_NEEDED,
    AmazonConnectionChanged,
    AmazonVtr,
    AmazonVtrStatus,
    ContractError,
)
from shared.scope import SELLER_ID_LENGTH
from shared.scope_columns import marketplace_column, seller_column
from shared.wording import Language

AMAZON_BAD = "amazon_bad"
AMAZON_RECONNECT = "amazon_reconnect"
#: Appended to the notifier's consumer group for its Amazon-status consumer
#: (``vtr-notifier-amazon`` by default): instances that share one group share the other.
AMAZON_GROUP_SUFFIX = "-amazon"

amazon_statuses = Table(
    "amazon_statuses",
    db.metadata,
    seller_column(primary_key=True),
    marketplace_column(primary_key=True),
    Column("status", String(8), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)

#: The message per language: subject, lines (formatted with the figure's fields).
TEXTS: dict[Language, tuple[str, tuple[str, ...]]] = {
    Language.EN: (
        "Amazon rates your Valid Tracking Rate in {marketplace} as BAD",
        (
            "Amazon's own seller performance report rates your Valid Tracking Rate in {marketplace} as BAD:"
            " {rate} against Amazon's target of {target}, over {start} to {end}"
            " ({valid} of {shipments} shipments with valid tracking).",
            "Amazon may restrict your merchant-fulfilled listings in this marketplace while the rate stays"
            " below its target. Fix the packages vtrwatch lists as invalid or at risk first (carrier names"
            " exactly as Amazon's carrier list spells them, tracking numbers, delivery scans).",
            "vtrwatch's own numbers for the same days are on your console's overview, beside Amazon's.",
        ),
    ),
    Language.ZH_CN: (
        "亚马逊将您在 {marketplace} 站点的有效追踪率评为 BAD",
        (
            "亚马逊卖家绩效报告将您在 {marketplace} 站点的有效追踪率评为 BAD：{rate}，亚马逊的目标为 {target}，"
            "统计区间 {start} 至 {end}（{shipments} 个货件中 {valid} 个有有效追踪）。",
            "在该比率低于目标期间，亚马逊可能限制您在该站点的自配送商品。请先处理 vtrwatch 列为无效或有风险的包裹"
            "（承运商名称须与亚马逊承运商列表的拼写完全一致、追踪号、妥投扫描）。",
            "vtrwatch 对同一区间的统计在您控制台的概览页上，与亚马逊的数字并列。",
        ),
    ),
}
CONSOLE_LINE = {Language.EN: "Your console: {url}", Language.ZH_CN: "您的控制台：{url}"}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


RECONNECT_TEXTS: dict[Language, tuple[str, tuple[str, ...]]] = {
    Language.EN: (
        "vtrwatch can no longer read your Amazon data ({region})",
        (
            "Amazon refused vtrwatch's authorisation for your seller account in the {region} region ({reason}):"
            " it was removed in Seller Central, or has expired.",
            "Until you connect again, vtrwatch does not see the orders of these marketplaces that your ERP does"
            " not confirm, nor Amazon's own Valid Tracking Rate, so your numbers may be incomplete.",
            "To reconnect: ask your engineer or your vtrwatch contact for a new connect link"
            " (GET /v1/amazon/authorize) and confirm in Seller Central.",
        ),
    ),
    Language.ZH_CN: (
        "vtrwatch 已无法读取您的亚马逊数据（{region}）",
        (
            "亚马逊拒绝了 vtrwatch 对您 {region} 区域卖家账户的授权（{reason}）：授权已在卖家平台被移除或已过期。",
            "重新连接之前，vtrwatch 看不到这些站点中您的 ERP 未确认的订单，"
            "也看不到亚马逊自己的有效追踪率，您的数字可能不完整。",
            "重新连接：请您的技术人员或 vtrwatch 联系人提供新的连接链接（GET /v1/amazon/authorize），"
            "并在卖家平台确认授权。",
        ),
    ),
}
REGION_NAMES = {"na": "North America", "eu": "Europe", "fe": "Far East"}


def _rendered(subject: str, paragraphs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    email = {
        "subject": subject,
        "text": "\n\n".join(paragraphs) + "\n",
        "html": "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
    }
    slack = {
        "text": subject,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
            *({"type": "section", "text": {"type": "plain_text", "text": p}} for p in paragraphs),
        ],
    }
    return email, slack


def compose_reconnect(notice: AmazonConnectionChanged, language: Language) -> tuple[dict[str, Any], dict[str, Any]]:
    """(e-mail content, Slack message) telling the seller to connect Amazon again."""
    subject_text, lines = RECONNECT_TEXTS[language]
    fields = {"region": REGION_NAMES.get(notice.region, notice.region), "reason": notice.reason[:200]}
    return _rendered(subject_text.format(**fields), [line.format(**fields) for line in lines])


def compose(figure: AmazonVtr, language: Language, console_url: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(e-mail content, Slack message) of a status that turned BAD."""
    subject_text, lines = TEXTS[language]
    fields = {
        "marketplace": figure.marketplace,
        "rate": _percent(figure.rate),
        "target": _percent(figure.target_value),
        "start": figure.reporting_from.isoformat(),
        "end": figure.reporting_to.isoformat(),
        "valid": "–" if figure.valid_tracking_count is None else figure.valid_tracking_count,
        "shipments": "–" if figure.shipment_count is None else figure.shipment_count,
    }
    paragraphs = [line.format(**fields) for line in lines]
    if console_url:
        paragraphs.append(CONSOLE_LINE[language].format(url=console_url))
    return _rendered(subject_text.format(**fields), paragraphs)


def _dedupe(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _decoded(records: Sequence[ConsumerRecord[bytes, bytes]]) -> tuple[list[AmazonVtr], list[AmazonConnectionChanged]]:
    """Amazon's figures and the connections' notices, from a batch (records that
    break the contract counted and skipped, seller ids longer than stored skipped)."""
    figures: list[AmazonVtr] = []
    notices: list[AmazonConnectionChanged] = []
    for record in records:
        try:
            message = AMAZON_CODEC.decode(record.value or b"")
        except ContractError:
            metrics.AMAZON_STATUSES.labels("invalid").inc()
            continue
        if len(message.seller_id) > SELLER_ID_LENGTH:
            continue
        if isinstance(message, AmazonVtr):
            figures.append(message)
        else:
            notices.append(message)
    return figures, notices


class AmazonStatusProcessor:
    def __init__(self, clock: Clock, console_links: ConsoleLinks | None) -> None:
        self._clock = clock
        self._links = console_links

    async def _reconnect_messages(self, connection: AsyncConnection, notices: list[AmazonConnectionChanged]) -> None:
        """One message per notice (its time in the dedupe key: a redelivered record sends nothing new)."""
        if not notices:
            return
        subscriptions = await load_subscriptions(connection, {notice.seller_id for notice in notices})
        now = self._clock()
        rows = []
        for notice in notices:
            subscription = subscriptions.get(notice.seller_id)
            if subscription is None:
                continue
            language = Language(subscription.language)
            identity = (AMAZON_RECONNECT, notice.seller_id, notice.region, notice.changed_at.isoformat())
            rows += _rows(
                subscription,
                identity,
                notice.seller_id,
                "*",
                AMAZON_CODEC.encode(notice).decode(),
                compose_reconnect(notice, language),
                now,
            )
        metrics.AMAZON_STATUSES.labels("reconnect_needed").inc(len(notices))
        await _insert(connection, rows)

    async def apply_batch(self, connection: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        figures, notices = _decoded(records)
        await record_amazon_connections(connection, notices)
        await self._reconnect_messages(connection, [notice for notice in notices if notice.state == RECONNECT_NEEDED])
        if not figures:
            return
        keys = sorted({(figure.seller_id, figure.marketplace) for figure in figures})
        current: dict[tuple[str, str], tuple[str, datetime]] = {
            (row.seller_id, row.marketplace): (row.status, as_utc(row.fetched_at))
            for row in await connection.execute(
                select(amazon_statuses).where(
                    tuple_(amazon_statuses.c.seller_id, amazon_statuses.c.marketplace).in_(keys)
                )
            )
        }
        # In report order, so a GOOD then BAD within one batch is still a turn to BAD.
        fresh: dict[tuple[str, str], AmazonVtr] = {}
        turned_bad: list[AmazonVtr] = []
        applied = 0
        for figure in sorted(figures, key=lambda f: f.fetched_at):
            key = (figure.seller_id, figure.marketplace)
            kept = current.get(key)
            if kept is not None and kept[1] >= figure.fetched_at:
                continue  # re-read or older than what is kept
            if figure.status is AmazonVtrStatus.BAD and (kept is None or kept[0] != AmazonVtrStatus.BAD.value):
                turned_bad.append(figure)
            current[key] = (figure.status.value, figure.fetched_at)
            fresh[key] = figure
            applied += 1
        subscriptions = await load_subscriptions(connection, {figure.seller_id for figure in turned_bad})
        now = self._clock()
        rows = []
        for figure in turned_bad:
            subscription = subscriptions.get(figure.seller_id)
            if subscription is None or (
                subscription.marketplaces is not None and figure.marketplace not in subscription.marketplaces
            ):
                continue
            url = self._links.link(figure.seller_id, now) if self._links else None
            rows += _rows(
                subscription,
                (AMAZON_BAD, figure.seller_id, figure.marketplace, figure.report_id),
                figure.seller_id,
                figure.marketplace,
                AMAZON_CODEC.encode(figure).decode(),
                compose(figure, Language(subscription.language), url),
                now,
            )
        metrics.AMAZON_STATUSES.labels("turned_bad").inc(len(turned_bad))
        metrics.AMAZON_STATUSES.labels("kept").inc(applied - len(turned_bad))
        await _insert(connection, rows)
        if fresh:
            statement = dialect_insert(connection, amazon_statuses)
            statement = statement.on_conflict_do_update(
                index_elements=[amazon_statuses.c.seller_id, amazon_statuses.c.marketplace],
                set_={"status": statement.excluded.status, "fetched_at": statement.excluded.fetched_at},
            )
            await connection.execute(
                statement,
                [
                    {"seller_id": s, "marketplace": m, "status": f.status.value, "fetched_at": f.fetched_at}
                    for (s, m), f in sorted(fresh.items())
                ],
            )


def _rows(
    subscription: Subscription,
    identity: tuple[str, ...],
    seller_id: str,
    marketplace: str,
    source: str,
    composed: tuple[dict[str, Any], dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """One outbox row per recipient, the message already composed (kind: ``identity[0]``)."""
    email, slack = composed
    return [
        {
            "dedupe_key": _dedupe(*identity, channel, recipient),
            "seller_id": seller_id,
            "marketplace": marketplace,
            "category": "*",
            "kind": identity[0],
            "previous_level": "",
            "level": "",
            "notice_seq": 0,
            "channel": channel,
            "recipient": recipient,
            "language": subscription.language,
            "snapshot": source,
            "rendered": orjson.dumps(email if channel == CHANNEL_EMAIL else slack).decode(),
            "packages_listed": False,
            "status": db.OUTBOX_PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for channel, recipient in subscription.recipients()
    ]


async def _insert(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await connection.execute(
            dialect_insert(connection, outbox).values(rows).on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
