"""Compose alert messages (pure: the caller supplies the snapshot, the packages and the clock).

Wording lives in two places: sentence structure in the Jinja2 templates under
``templates/<language>/`` and the short phrases (level names, reason labels, the action
for each :class:`~shared.schemas.Reason`) in the tables below, so a translator edits
data, not code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from services.notifier.alerts import NoticeKind
from services.notifier.email_chart import forecast_chart_html
from shared.carriers import carrier_display_name
from shared.schemas import Level, PackageView, Reason, ScoreSnapshot


class Language(StrEnum):
    EN = "en"
    ZH_CN = "zh-CN"


TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

LEVEL_LABELS: Mapping[Language, Mapping[Level, str]] = {
    Language.EN: {Level.OK: "OK", Level.WATCH: "WATCH", Level.AT_RISK: "AT RISK", Level.BREACH: "BREACH"},
    Language.ZH_CN: {Level.OK: "正常", Level.WATCH: "关注", Level.AT_RISK: "有风险", Level.BREACH: "已跌破红线"},
}

#: The bracketed tag that opens a subject, by kind of message.
KIND_TAGS: Mapping[Language, Mapping[NoticeKind, str]] = {
    Language.EN: {
        NoticeKind.ESCALATED: "{level}",
        NoticeKind.IMPROVED: "IMPROVED: {level}",
        NoticeKind.RECOVERED: "RECOVERED",
        NoticeKind.REMINDER: "REMINDER: {level}",
        NoticeKind.DIGEST: "DAILY DIGEST",
    },
    Language.ZH_CN: {
        NoticeKind.ESCALATED: "{level}",
        NoticeKind.IMPROVED: "好转：{level}",
        NoticeKind.RECOVERED: "已恢复",
        NoticeKind.REMINDER: "提醒：{level}",
        NoticeKind.DIGEST: "每日汇总",
    },
}

REASON_LABELS: Mapping[Language, Mapping[Reason, str]] = {
    Language.EN: {
        Reason.CARRIER_NOT_INTEGRATED: "carrier not integrated",
        Reason.NO_PHYSICAL_SCAN: "no carrier scan",
        Reason.MISSING_DELIVERY_SCAN: "missing delivery scan",
        Reason.SERVICE_LACKS_DELIVERY_SCAN: "service has no delivery scans",
        Reason.MALFORMED_TRACKING_NUMBER: "malformed tracking number",
        Reason.AWAITING_FIRST_SCAN: "awaiting first scan",
        Reason.OVERDUE_FIRST_SCAN: "no scan since confirmation",
        Reason.AWAITING_DELIVERY_SCAN: "awaiting delivery scan",
        Reason.STALLED_IN_TRANSIT: "no scan for longer than usual",
        Reason.CARRIER_SILENT: "carrier silent for all sellers",
        Reason.SERVICE_RARELY_SCANS_DELIVERY: "service rarely scans delivery",
        Reason.TRACKING_STOPPED: "aggregator stopped tracking",
        Reason.CANCELLED: "cancelled",
    },
    Language.ZH_CN: {
        Reason.CARRIER_NOT_INTEGRATED: "承运商未与亚马逊对接",
        Reason.NO_PHYSICAL_SCAN: "无实物扫描",
        Reason.MISSING_DELIVERY_SCAN: "缺少妥投扫描",
        Reason.SERVICE_LACKS_DELIVERY_SCAN: "物流服务无妥投扫描",
        Reason.MALFORMED_TRACKING_NUMBER: "追踪号格式错误",
        Reason.AWAITING_FIRST_SCAN: "等待首次扫描",
        Reason.OVERDUE_FIRST_SCAN: "确认发货后迟迟无扫描",
        Reason.AWAITING_DELIVERY_SCAN: "等待妥投扫描",
        Reason.STALLED_IN_TRANSIT: "长时间无新扫描",
        Reason.CARRIER_SILENT: "承运商整体停止回传扫描",
        Reason.SERVICE_RARELY_SCANS_DELIVERY: "该物流服务极少有妥投扫描",
        Reason.TRACKING_STOPPED: "查询平台已停止追踪",
        Reason.CANCELLED: "已取消",
    },
}

#: What the seller should do, per reason. Placeholders: {threshold} (the marketplace's
#: full-tracking threshold), {days} (days since confirmation), {carrier_name}, {marketplace}.
ACTIONS: Mapping[Language, Mapping[Reason, str]] = {
    Language.EN: {
        Reason.CARRIER_NOT_INTEGRATED: (
            'the carrier name "{carrier_name}" is not a carrier Amazon integrates for {marketplace}: '
            "upload the exact name of an integrated carrier or ship with one"
        ),
        Reason.NO_PHYSICAL_SCAN: (
            "no carrier scan {days} days after confirmation: check the carrier pickup and the tracking number "
            "uploaded to Amazon"
        ),
        Reason.MISSING_DELIVERY_SCAN: (
            "full tracking is required for orders of {threshold} or more: ask the carrier to record the "
            "delivery or delivery-attempt scan"
        ),
        Reason.SERVICE_LACKS_DELIVERY_SCAN: (
            "full tracking is required for orders of {threshold} or more: use a service with delivery scans"
        ),
        Reason.MALFORMED_TRACKING_NUMBER: (
            "the tracking number does not match the carrier's format: correct it in Seller Central"
        ),
        Reason.AWAITING_FIRST_SCAN: "waiting for the first carrier scan: make sure the parcel was handed over",
        Reason.OVERDUE_FIRST_SCAN: (
            "no carrier scan {days} days after confirmation: check the carrier pickup and the tracking number "
            "uploaded to Amazon before the promised date passes"
        ),
        Reason.AWAITING_DELIVERY_SCAN: (
            "full tracking is required for orders of {threshold} or more: follow the parcel until the carrier "
            "records delivery"
        ),
        Reason.STALLED_IN_TRANSIT: (
            "scanned, then no scan for much longer than this lane usually takes: ask {carrier_name} where the "
            "parcel is before the promised date passes"
        ),
        Reason.CARRIER_SILENT: (
            "{carrier_name} is sending far fewer scans than usual for every seller: scans may arrive late; if the "
            "silence lasts, contact the carrier and consider another one for new orders"
        ),
        Reason.SERVICE_RARELY_SCANS_DELIVERY: (
            "recent parcels of this service almost never got a delivery scan, and orders of {threshold} or more "
            "need full tracking: use a service with delivery scans for them"
        ),
        Reason.TRACKING_STOPPED: (
            "the tracking aggregator stopped tracking this number: register it again so its scans reach us"
        ),
        Reason.CANCELLED: "cancelled: nothing to do",
    },
    Language.ZH_CN: {
        Reason.CARRIER_NOT_INTEGRATED: (
            "承运商名称“{carrier_name}”不是亚马逊在 {marketplace} 站点对接的承运商："
            "请上传对接承运商的准确名称，或改用对接承运商"
        ),
        Reason.NO_PHYSICAL_SCAN: (
            "确认发货 {days} 天后仍无承运商扫描：请核实承运商是否已揽收，以及上传到亚马逊的追踪号是否正确"
        ),
        Reason.MISSING_DELIVERY_SCAN: "订单金额 {threshold} 及以上需要全程追踪：请联系承运商补录妥投或尝试投递扫描",
        Reason.SERVICE_LACKS_DELIVERY_SCAN: "订单金额 {threshold} 及以上需要全程追踪：请改用有妥投扫描的物流服务",
        Reason.MALFORMED_TRACKING_NUMBER: "追踪号不符合承运商格式：请在卖家平台更正",
        Reason.AWAITING_FIRST_SCAN: "等待承运商首次扫描：请确认包裹已交给承运商",
        Reason.OVERDUE_FIRST_SCAN: (
            "确认发货 {days} 天后仍无承运商扫描：请在承诺送达日之前核实承运商是否已揽收，"
            "以及上传到亚马逊的追踪号是否正确"
        ),
        Reason.AWAITING_DELIVERY_SCAN: "订单金额 {threshold} 及以上需要全程追踪：请跟进包裹直至承运商记录妥投",
        Reason.STALLED_IN_TRANSIT: (
            "已有扫描，但之后长时间无新扫描（远超该线路的正常间隔）：请在承诺送达日之前向 {carrier_name} 查询包裹位置"
        ),
        Reason.CARRIER_SILENT: (
            "{carrier_name} 对所有卖家的扫描回传都明显少于平时：扫描可能延迟到达；"
            "若持续，请联系承运商，新订单可考虑改用其他承运商"
        ),
        Reason.SERVICE_RARELY_SCANS_DELIVERY: (
            "该物流服务近期的包裹几乎都没有妥投扫描，而订单金额 {threshold} 及以上需要全程追踪："
            "请改用有妥投扫描的物流服务"
        ),
        Reason.TRACKING_STOPPED: "查询平台已停止追踪此单号：请重新注册该单号，以便继续接收扫描",
        Reason.CANCELLED: "已取消：无需处理",
    },
}

#: Wording when the scorer did not say the marketplace's threshold (older scorer versions).
DEFAULT_THRESHOLD: Mapping[Language, str] = {Language.EN: "5 USD (converted)", Language.ZH_CN: "5 美元（折算）"}

#: Where a seller appeals a category whose selling privileges are restricted (Account Health).
SELLER_CENTRAL_HOSTS: Mapping[str, str] = {
    "US": "sellercentral.amazon.com",
    "CA": "sellercentral.amazon.ca",
    "MX": "sellercentral.amazon.com.mx",
    "BR": "sellercentral.amazon.com.br",
    "UK": "sellercentral.amazon.co.uk",
    "GB": "sellercentral.amazon.co.uk",
    **dict.fromkeys(("DE", "FR", "IT", "ES", "NL", "SE", "PL", "BE"), "sellercentral-europe.amazon.com"),
    "JP": "sellercentral.amazon.co.jp",
    "AU": "sellercentral.amazon.com.au",
    "SG": "sellercentral.amazon.sg",
    "AE": "sellercentral.amazon.ae",
    "SA": "sellercentral.amazon.sa",
    "EG": "sellercentral.amazon.eg",
    "TR": "sellercentral.amazon.com.tr",
    "IN": "sellercentral.amazon.in",
}
APPEAL_PATH = "/performance/account/health"

NOT_AVAILABLE: Mapping[Language, str] = {Language.EN: "n/a", Language.ZH_CN: "无数据"}

#: A silent carrier, in words (carrier health across sellers, services/scorer/domain/model/).
CARRIER_NOTES: Mapping[Language, str] = {
    Language.EN: (
        "{carrier} has sent no scans from {origin} for {hours} hours, for every seller and not only you "
        "(about {expected} were expected); {affected} of your pending packages depend on it"
    ),
    Language.ZH_CN: (
        "{carrier} 已 {hours} 小时没有回传来自 {origin} 的扫描，所有卖家都受影响，不只是您"
        "（按平时约应有 {expected} 条）；您有 {affected} 个待定包裹受此影响"
    ),
}


def carrier_notes(snapshot: ScoreSnapshot, language: Language) -> list[str]:
    return [
        CARRIER_NOTES[language].format(
            carrier=carrier_display_name(note.carrier),
            origin=note.origin,
            hours=round(note.silent_hours),
            expected=round(note.expected_scans),
            affected=note.affected_packages,
        )
        for note in snapshot.carrier_health
    ]


def forecast_band(snapshot: ScoreSnapshot, language: Language) -> list[tuple[str, str, str | None]]:
    """Each forecast day: the expected VTR and, when the scorer sent it, the likely range
    (10th to 90th percentile)."""
    rows: list[tuple[str, str, str | None]] = []
    for point in snapshot.forecast:
        band = None
        if point.p10 is not None and point.p90 is not None:
            band = f"{percent(point.p10, language)}–{percent(point.p90, language)}"
        rows.append((point.date.isoformat(), percent(point.vtr, language), band))
    return rows


#: Amazon's floor, as the messages word it ("below 95%").
FLOOR = 0.95

#: Words of the e-mail's forecast chart.
CHART_LABELS: Mapping[Language, Mapping[str, str]] = {
    Language.EN: {
        "title": "expected VTR",
        "floor": "95% floor",
        "band": "likely range",
        "crosses": "may fall below 95%",
        "below": "expected below 95%",
    },
    Language.ZH_CN: {
        "title": "预计有效追踪率",
        "floor": "95% 红线",
        "band": "可能范围",
        "crosses": "可能低于 95%",
        "below": "预计低于 95%",
    },
}


def appeal_url(marketplace: str) -> str:
    return "https://" + SELLER_CENTRAL_HOSTS.get(marketplace, "sellercentral.amazon.com") + APPEAL_PATH


def percent(value: float | None, language: Language) -> str:
    return NOT_AVAILABLE[language] if value is None else f"{value * 100:.1f}%"


@dataclass(frozen=True)
class AlertMessage:
    """What to say: one notice about one seller x marketplace x category."""

    kind: NoticeKind
    previous_level: Level
    level: Level
    snapshot: ScoreSnapshot
    #: None when the scorer's package list could not be fetched.
    packages: Sequence[PackageView] | None
    language: Language
    #: Signed link to this category in the seller's console (None: no link configured).
    console_url: str | None = None


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


def action_for(package: PackageView, language: Language, now: datetime) -> str:
    if package.reason is None:
        return package.action
    limit = package.full_tracking_threshold
    threshold = f"{limit.amount} {limit.currency}" if limit is not None else DEFAULT_THRESHOLD[language]
    days = max(0, (now - package.confirmed_at).days)
    return ACTIONS[language][package.reason].format(
        threshold=threshold, days=days, carrier_name=package.carrier_name, marketplace=package.marketplace
    )


#: How the last-mile carrier is named after the seller's carrier, per language.
LAST_MILE = {Language.EN: "{carrier}, last mile {last_mile}", Language.ZH_CN: "{carrier}，尾程 {last_mile}"}


def carrier_text(package: PackageView, language: Language) -> str:
    """The seller's carrier, and who has the parcel on the last mile when a source said so
    ("which carrier lost the parcel" is the first question a seller asks)."""
    if not package.last_mile_carrier:
        return package.carrier_name
    last_mile = " ".join(part for part in (package.last_mile_carrier, package.last_mile_tracking_number) if part)
    return LAST_MILE[language].format(carrier=package.carrier_name, last_mile=last_mile)


def reason_label(reason: str, language: Language) -> str:
    """A reason's label in this language; an unknown reason (a newer scorer's) as it came."""
    try:
        return REASON_LABELS[language][Reason(reason)]
    except ValueError:
        return reason


def template_context(message: AlertMessage) -> dict[str, Any]:
    snapshot, language = message.snapshot, message.language
    labels = LEVEL_LABELS[language]
    level_label = labels[message.level]
    tag = KIND_TAGS[language][message.kind].format(level=level_label)
    packages = [
        {
            "order_id": package.order_id,
            "tracking_number": package.tracking_number,
            "carrier": carrier_text(package, language),
            "reason": reason_label(package.reason, language) if package.reason else "",
            "action": action_for(package, language, snapshot.computed_at),
        }
        for package in (message.packages or ())
    ]
    reasons = sorted(snapshot.reasons.items(), key=lambda item: (-item[1], item[0]))
    return {
        "kind": message.kind.value,
        "level": message.level.value,
        "previous_level": message.previous_level.value,
        "level_label": level_label,
        "previous_label": labels[message.previous_level],
        "tag": tag,
        "seller_id": snapshot.seller_id,
        "marketplace": snapshot.marketplace,
        "category": snapshot.category,
        "vtr": percent(snapshot.vtr, language),
        "headroom": snapshot.headroom,
        "total": snapshot.total,
        "valid": snapshot.valid,
        "invalid": snapshot.invalid,
        "pending": snapshot.pending,
        "days_to_breach": snapshot.days_to_breach,
        "breached": snapshot.level is Level.BREACH,
        "as_of": snapshot.as_of.isoformat(),
        "window_from": snapshot.window_from.isoformat(),
        "window_to": snapshot.window_to.isoformat(),
        "computed_at": snapshot.computed_at.strftime("%Y-%m-%d %H:%M UTC"),
        "forecast": [(point.date.isoformat(), percent(point.vtr, language)) for point in snapshot.forecast],
        "reasons": [(reason_label(reason, language), count) for reason, count in reasons if count > 0],
        "packages": packages,
        "packages_unavailable": message.packages is None,
        "appeal_url": appeal_url(snapshot.marketplace) if snapshot.level is Level.BREACH else None,
        "console_url": message.console_url,
        "forecast_chart": Markup(forecast_chart_html(snapshot.forecast, FLOOR, CHART_LABELS[language])),  # noqa: S704 - built from numbers and escaped labels
        "forecast_band": forecast_band(snapshot, language),
        "carrier_notes": carrier_notes(snapshot, language),
        "pending_reasons": [
            (reason_label(reason, language), count)
            for reason, count in sorted(snapshot.pending_reasons.items(), key=lambda item: (-item[1], item[0]))
            if count > 0
        ],
        "breach_probability": percent(snapshot.breach_probability, language)
        if snapshot.breach_probability is not None
        else None,
    }


def slack_escape(text: str) -> str:
    """Slack mrkdwn treats ``&``, ``<`` and ``>`` as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["slack_escape"] = slack_escape
    return environment


_ENVIRONMENT = _environment()


def _render(language: Language, name: str, context: Mapping[str, Any]) -> str:
    return _ENVIRONMENT.get_template(f"{language.value}/{name}").render(context)


def _subject(message: AlertMessage, context: Mapping[str, Any]) -> str:
    # The template puts each clause on its own line for readability; a subject is one line.
    lines = _render(message.language, "email_subject.txt", context).splitlines()
    return "".join(line.strip() for line in lines)


def compose_email(message: AlertMessage) -> EmailContent:
    context = template_context(message)
    return EmailContent(
        subject=_subject(message, context),
        text=_render(message.language, "email.txt", context),
        html=_render(message.language, "email.html", context),
    )


def compose_slack(message: AlertMessage) -> dict[str, Any]:
    """A Block Kit payload (``text`` is the notification fallback)."""
    context = template_context(message)
    context["subject"] = _subject(message, context)
    payload: dict[str, Any] = json.loads(_render(message.language, "slack.json", context))
    return payload


@dataclass(frozen=True)
class DigestEntry:
    #: The level the seller was last told for this category.
    level: Level
    snapshot: ScoreSnapshot


@dataclass(frozen=True)
class DigestMessage:
    """The daily digest: every category of one seller still at a warning level."""

    seller_id: str
    entries: Sequence[DigestEntry]
    language: Language
    #: Signed link to the seller's console overview (None: no link configured).
    console_url: str | None = None


def digest_context(message: DigestMessage) -> dict[str, Any]:
    language = message.language
    labels = LEVEL_LABELS[language]
    ordered = sorted(
        message.entries,
        key=lambda entry: (-entry.level.severity, entry.snapshot.marketplace, entry.snapshot.category),
    )
    worst = ordered[0]
    return {
        "tag": KIND_TAGS[language][NoticeKind.DIGEST],
        "seller_id": message.seller_id,
        "count": len(ordered),
        "worst_label": labels[worst.level],
        "worst_category": worst.snapshot.category,
        "worst_marketplace": worst.snapshot.marketplace,
        "entries": [
            {
                "level": entry.level.value,
                "level_label": labels[entry.level],
                "marketplace": entry.snapshot.marketplace,
                "category": entry.snapshot.category,
                "vtr": percent(entry.snapshot.vtr, language),
                "headroom": entry.snapshot.headroom,
                "days_to_breach": entry.snapshot.days_to_breach,
                "breached": entry.snapshot.level is Level.BREACH,
                "appeal_url": appeal_url(entry.snapshot.marketplace) if entry.snapshot.level is Level.BREACH else None,
            }
            for entry in ordered
        ],
        "computed_at": max(entry.snapshot.computed_at for entry in ordered).strftime("%Y-%m-%d %H:%M UTC"),
        "console_url": message.console_url,
    }


def compose_digest_email(message: DigestMessage) -> EmailContent:
    context = digest_context(message)
    lines = _render(message.language, "digest_subject.txt", context).splitlines()
    return EmailContent(
        subject="".join(line.strip() for line in lines),
        text=_render(message.language, "digest.txt", context),
        html=_render(message.language, "digest.html", context),
    )


def compose_digest_slack(message: DigestMessage) -> dict[str, Any]:
    context = digest_context(message)
    context["subject"] = compose_digest_email(message).subject
    payload: dict[str, Any] = json.loads(_render(message.language, "digest_slack.json", context))
    return payload
