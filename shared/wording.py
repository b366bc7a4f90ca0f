"""What the services say about levels and reasons, in every language they speak: one table
per kind of phrase, shared so that a seller reads the same words in an alert, in the
console and in the scorer's API.

- level names and reason labels, per language;
- per reason, the **advice** the scorer's API gives with each package (``PackageView.action``,
  English) and the **action** the messages and the console word per language from the
  package (threshold, days since confirmation, carrier, marketplace).

Pure data and string formatting: no I/O, no framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from shared.schemas import Level, PackageView, Reason


class Language(StrEnum):
    EN = "en"
    ZH_CN = "zh-CN"


LEVEL_LABELS: Mapping[Language, Mapping[Level, str]] = {
    Language.EN: {Level.OK: "OK", Level.WATCH: "WATCH", Level.AT_RISK: "AT RISK", Level.BREACH: "BREACH"},
    Language.ZH_CN: {Level.OK: "正常", Level.WATCH: "关注", Level.AT_RISK: "有风险", Level.BREACH: "已跌破红线"},
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

# --- The scorer's advice per package (English) ---------------------------------------------

NOTHING_TO_DO = "Nothing to do: the tracking is valid."

ADVICE: dict[Reason, str] = {
    Reason.CARRIER_NOT_INTEGRATED: (
        "The carrier name on the shipping confirmation is not a carrier Amazon integrates for this marketplace. "
        "Correct it to the exact integrated carrier name, or ship with an integrated carrier."
    ),
    Reason.NO_PHYSICAL_SCAN: (
        "The carrier recorded no physical scan before the promised date. Check the tracking number on the "
        "confirmation and ask the carrier to scan the parcel; a late scan still counts."
    ),
    Reason.MISSING_DELIVERY_SCAN: (
        "This order needs full tracking (value at or above the marketplace threshold) and has no delivery or "
        "delivery-attempt scan. Ask the carrier for the delivery scan; a late scan still counts."
    ),
    Reason.SERVICE_LACKS_DELIVERY_SCAN: (
        "The shipping service never records a delivery scan, so this order cannot get full tracking. "
        "Use a service with delivery scans for orders at or above the threshold."
    ),
    Reason.MALFORMED_TRACKING_NUMBER: (
        "The tracking number does not look valid for this carrier. Check it and correct it on the shipping "
        "confirmation in Seller Central."
    ),
    Reason.AWAITING_FIRST_SCAN: (
        "No physical scan yet. Make sure the parcel was handed to the carrier and scanned at acceptance "
        "before the promised date."
    ),
    Reason.OVERDUE_FIRST_SCAN: (
        "No carrier scan several days after confirmation: check that the carrier picked the parcel up and "
        "that the tracking number uploaded to Amazon is the right one."
    ),
    Reason.AWAITING_DELIVERY_SCAN: (
        "Full tracking is required: the parcel still needs a delivery or delivery-attempt scan before the "
        "promised date. Follow up with the carrier."
    ),
    Reason.STALLED_IN_TRANSIT: (
        "The parcel was scanned, then nothing for much longer than this lane usually takes between scans. "
        "Ask the carrier where it is before the promised date passes."
    ),
    Reason.CARRIER_SILENT: (
        "The carrier has sent far fewer scans than usual for every seller, not only for you. Scans may "
        "arrive late; if the silence lasts, ask the carrier and consider another carrier for new orders."
    ),
    Reason.SERVICE_RARELY_SCANS_DELIVERY: (
        "Recent parcels of this shipping service almost never got a delivery scan, so orders at or above "
        "the threshold are unlikely to get full tracking. Use a service with delivery scans for them."
    ),
    Reason.TRACKING_STOPPED: (
        "The tracking aggregator stopped tracking this number, so no more scans will reach vtrwatch. "
        "Register the number with the aggregator again."
    ),
    Reason.CANCELLED: "Cancelled orders do not count towards VTR; nothing to do.",
}


def advice_for(reason: Reason | None) -> str:
    return NOTHING_TO_DO if reason is None else ADVICE[reason]


# --- Phrases built from a package ---------------------------------------------------------


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
