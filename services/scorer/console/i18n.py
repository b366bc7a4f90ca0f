"""The console's words in zh-CN and en, and the choice of language.

Level names, reason labels and the action per package are the shared tables
(:mod:`shared.wording`), so a seller reads the same words in a message and
in the console; the strings below are the console's own.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.wording import LEVEL_LABELS, REASON_LABELS, Language

LANGUAGE_COOKIE = "vtr_lang"

STRINGS: Mapping[Language, Mapping[str, str]] = {
    Language.EN: {
        "title": "vtrwatch seller console",
        "overview": "Overview",
        "seller": "Seller",
        "as_of": "as of",
        "marketplace": "Marketplace",
        "category": "Category",
        "level": "Level",
        "vtr": "VTR",
        "headroom": "Headroom",
        "breach_probability": "Breach probability",
        "days_to_breach": "Days to breach",
        "packages_to_fix": "Packages to fix",
        "invalid": "invalid",
        "at_risk": "at risk",
        "already_below": "already below 95%",
        "no_breach": "none in 14 days",
        "days": "{n} days",
        "one_day": "1 day",
        "no_categories": "No package of this seller is in the 30-day window yet.",
        "amazon_heading": "Amazon's own VTR beside vtrwatch's",
        "amazon_note": "From Amazon's seller performance report, per marketplace, over Amazon's reporting range;"
        " vtrwatch's numbers are counted over the same range. The difference is vtrwatch minus Amazon.",
        "amazon_range": "Reporting range",
        "amazon_rate": "Amazon VTR",
        "amazon_status": "Amazon status",
        "amazon_counts": "Amazon valid / shipments",
        "vtrwatch_rate": "vtrwatch VTR",
        "vtrwatch_counts": "vtrwatch valid / packages",
        "difference": "Difference (points)",
        "sorted_by_urgency": "Sorted by urgency: level, breach probability, days to breach, headroom.",
        "window": "Window",
        "valid_of_total": "{valid} valid of {total} ({pending} pending to enter the window)",
        "chart_title": "VTR of the last 30 days and the 14-day forecast against the 95% floor",
        "chart_desc": "Solid line: VTR of the window as of each past day; dashed: forecast; shaded: 10th to 90th "
        "percentile; red line: the 95% floor.",
        "band": "10th to 90th percentile of the forecast",
        "floor": "95% floor",
        "today": "today",
        "day": "Day",
        "forecast": "Forecast",
        "p10": "10th pct.",
        "p90": "90th pct.",
        "history_and_forecast": "VTR: last 30 days and forecast",
        "band_missing": "The forecast band is not available from this scorer yet.",
        "reasons_over_time": "Invalid packages by reason, over time",
        "reasons_now": "Reasons in today's window",
        "pending_reasons": "Pending packages at risk, by reason",
        "no_reasons": "No invalid package in the window.",
        "lanes": "Carriers and services of this category (the window and what enters it in 14 days)",
        "carrier": "Carrier",
        "service": "Service",
        "valid": "valid",
        "pending": "pending",
        "share_valid": "Share valid",
        "carrier_health": "Carrier alerts (all sellers)",
        "silent_hours": "silent for {hours} h: {received} scans received, about {expected} expected; "
        "{affected} of your pending packages affected",
        "no_carrier_alert": "No carrier is unusually silent.",
        "filter": "Filter",
        "state": "State",
        "reason": "Reason",
        "any_reason": "any reason",
        "apply": "Apply",
        "to_fix": "to fix (invalid or at risk)",
        "all": "all",
        "order": "Order",
        "tracking_number": "Tracking number",
        "promised": "Promised",
        "order_value": "Order value",
        "scans": "Scans",
        "probability_valid": "Chance valid",
        "what_to_do": "What to do",
        "confirmed_by": "Confirmed by",
        "source_erp": "your ERP",
        "source_amazon": "Amazon",
        "source_amazon+erp": "Amazon (category from your ERP)",
        "category_not_in_catalogue": "Uncategorised: Amazon's catalogue names no category for this product in this "
        "marketplace. Confirm the order from your ERP with its category to move it.",
        "category_not_mapped": "Uncategorised: Amazon's category for this product is not in vtrwatch's table yet. "
        "Confirm the order from your ERP with its category, or ask vtrwatch to map it.",
        "connect_amazon": "Connect Amazon",
        "connect_amazon_help": "Let vtrwatch read your merchant-fulfilled orders and Amazon's own VTR "
        "(read only; you confirm in Seller Central).",
        "region_na": "North America",
        "region_eu": "Europe",
        "region_fe": "Far East",
        "page_of": "Page {page} of {pages} ({total} packages)",
        "previous": "Previous",
        "next": "Next",
        "download_csv": "Download CSV",
        "download_xlsx": "Download XLSX",
        "no_packages": "No package matches this filter.",
        "back": "Back to the overview",
        "language": "中文",
        "denied_title": "This link cannot open the console",
        "denied_expired": "This console link has expired. Open the link in your latest vtrwatch message, or ask "
        "your vtrwatch contact for a new one.",
        "denied_invalid": "This console link is not valid: it may have been changed or cut short when it was "
        "copied. Open the link in your latest vtrwatch message.",
        "denied_missing": "This page needs the link from a vtrwatch message (or a staff token).",
        "denied_missing_link": "This page needs the link from a vtrwatch message.",
        "denied_staff_tokens": "Staff tokens do not open this console. Open the seller's console with a signed "
        "link (python -m tools.console_link).",
        "not_found": "No such category for this seller.",
        "denied_key": "This API key does not open the console: it needs the console:read scope.",
        "denied_rate_limited": "Too many requests with this API key; try again in a few seconds.",
        "no_such_seller": "No such seller.",
        "staff": "staff view",
        "state_valid": "valid",
        "state_invalid": "invalid",
        "state_pending": "pending",
        "footer": "Read-only. Numbers are the scorer's, the same as its API. Links from messages are valid for 7 days.",
        "notifications": "Notifications and subscription",
        "subscription": "Subscription",
        "not_subscribed": "This seller has no subscription: no message is sent.",
        "notifier_unavailable": "The notifier cannot be reached just now; try again later.",
        "emails": "E-mail",
        "slack": "Slack",
        "min_level": "From level",
        "marketplaces": "Marketplaces",
        "all_marketplaces": "all",
        "message_language": "Language of messages",
        "sent_notifications": "Notifications (newest first)",
        "no_notifications": "No notification yet.",
        "when": "Created",
        "kind": "Kind",
        "channel": "Channel",
        "status": "Status",
        "read_only_here": "Read-only here: the subscription is changed through the notifier's API.",
    },
    Language.ZH_CN: {
        "title": "vtrwatch 卖家控制台",
        "overview": "总览",
        "seller": "卖家",
        "as_of": "截至",
        "marketplace": "站点",
        "category": "品类",
        "level": "等级",
        "vtr": "有效追踪率",
        "headroom": "余量",
        "breach_probability": "跌破概率",
        "days_to_breach": "预计跌破天数",
        "packages_to_fix": "待处理包裹",
        "invalid": "无效",
        "at_risk": "有风险",
        "already_below": "已低于 95%",
        "no_breach": "14 天内不会",
        "days": "{n} 天",
        "one_day": "1 天",
        "no_categories": "该卖家在 30 天窗口内还没有包裹。",
        "amazon_heading": "亚马逊自己的有效追踪率与 vtrwatch 对照",
        "amazon_note": "来自亚马逊卖家绩效报告，按站点、按亚马逊的统计区间；"
        "vtrwatch 的数字按同一区间统计。差值为 vtrwatch 减亚马逊。",
        "amazon_range": "统计区间",
        "amazon_rate": "亚马逊 VTR",
        "amazon_status": "亚马逊状态",
        "amazon_counts": "亚马逊 有效 / 发货",
        "vtrwatch_rate": "vtrwatch VTR",
        "vtrwatch_counts": "vtrwatch 有效 / 包裹",
        "difference": "差值（百分点）",
        "sorted_by_urgency": "按紧急程度排序：等级、跌破概率、预计跌破天数、余量。",
        "window": "统计窗口",
        "valid_of_total": "{total} 个包裹中 {valid} 个有效（另有 {pending} 个待进入窗口）",
        "chart_title": "近 30 天有效追踪率与未来 14 天预测（对照 95% 红线）",
        "chart_desc": "实线：过去每天的窗口有效追踪率；虚线：预测；阴影：第 10 至第 90 百分位；红线：95% 红线。",
        "band": "预测的第 10 至第 90 百分位",
        "floor": "95% 红线",
        "today": "今天",
        "day": "日期",
        "forecast": "预测",
        "p10": "第 10 百分位",
        "p90": "第 90 百分位",
        "history_and_forecast": "有效追踪率：近 30 天与预测",
        "band_missing": "当前评分服务尚未提供预测区间。",
        "reasons_over_time": "无效包裹原因变化",
        "reasons_now": "当前窗口内的原因",
        "pending_reasons": "有风险的待定包裹（按原因）",
        "no_reasons": "窗口内没有无效包裹。",
        "lanes": "本品类的承运商与物流服务（当前窗口及未来 14 天进入窗口的包裹）",
        "carrier": "承运商",
        "service": "物流服务",
        "valid": "有效",
        "pending": "待定",
        "share_valid": "有效占比",
        "carrier_health": "承运商异常（全体卖家）",
        "silent_hours": (
            "已 {hours} 小时无扫描：收到 {received} 条扫描，通常约 {expected} 条；影响您 {affected} 个待定包裹"
        ),
        "no_carrier_alert": "没有承运商出现异常的扫描中断。",
        "filter": "筛选",
        "state": "状态",
        "reason": "原因",
        "any_reason": "全部原因",
        "apply": "应用",
        "to_fix": "待处理（无效或有风险）",
        "all": "全部",
        "order": "订单",
        "tracking_number": "追踪号",
        "promised": "承诺送达日",
        "order_value": "订单金额",
        "scans": "扫描数",
        "probability_valid": "有效概率",
        "what_to_do": "处理建议",
        "confirmed_by": "确认来源",
        "source_erp": "您的 ERP",
        "source_amazon": "亚马逊",
        "source_amazon+erp": "亚马逊（品类来自您的 ERP）",
        "category_not_in_catalogue": "未分类：亚马逊商品目录在该站点没有此商品的品类。请从您的 ERP 带品类确认该订单。",
        "category_not_mapped": "未分类：此商品的亚马逊品类尚未在 vtrwatch 的对照表中。请从您的 ERP 带品类确认该订单，"
        "或请 vtrwatch 添加对照。",
        "connect_amazon": "连接亚马逊",
        "connect_amazon_help": "让 vtrwatch 读取您的自发货订单和亚马逊自己的有效追踪率（只读；在卖家平台确认授权）。",
        "region_na": "北美",
        "region_eu": "欧洲",
        "region_fe": "远东",
        "page_of": "第 {page} / {pages} 页（共 {total} 个包裹）",
        "previous": "上一页",
        "next": "下一页",
        "download_csv": "下载 CSV",
        "download_xlsx": "下载 XLSX",
        "no_packages": "没有符合筛选条件的包裹。",
        "back": "返回总览",
        "language": "English",
        "denied_title": "此链接无法打开控制台",
        "denied_expired": "此控制台链接已过期。请打开最新一封 vtrwatch 消息中的链接，或联系 vtrwatch 获取新链接。",
        "denied_invalid": "此控制台链接无效：可能在复制时被修改或截断。请打开最新一封 vtrwatch 消息中的链接。",
        "denied_missing": "此页面需要通过 vtrwatch 消息中的链接（或员工令牌）访问。",
        "denied_missing_link": "此页面需要通过 vtrwatch 消息中的链接访问。",
        "denied_staff_tokens": "此控制台不接受员工令牌。请用签名链接打开卖家的控制台（python -m tools.console_link）。",
        "not_found": "该卖家没有这个品类。",
        "denied_key": "此 API 密钥无法打开控制台：需要 console:read 权限。",
        "denied_rate_limited": "此 API 密钥的请求过多，请几秒后再试。",
        "no_such_seller": "没有这个卖家。",
        "staff": "员工视图",
        "state_valid": "有效",
        "state_invalid": "无效",
        "state_pending": "待定",
        "footer": "只读页面。数据来自评分服务，与其 API 一致。消息中的链接 7 天内有效。",
        "notifications": "通知与订阅",
        "subscription": "订阅",
        "not_subscribed": "该卖家没有订阅：不会发送任何消息。",
        "notifier_unavailable": "暂时无法连接通知服务，请稍后再试。",
        "emails": "邮箱",
        "slack": "Slack",
        "min_level": "起始等级",
        "marketplaces": "站点",
        "all_marketplaces": "全部",
        "message_language": "消息语言",
        "sent_notifications": "通知记录（最新在前）",
        "no_notifications": "暂无通知。",
        "when": "创建时间",
        "kind": "类型",
        "channel": "渠道",
        "status": "状态",
        "read_only_here": "此处只读：订阅通过通知服务的 API 修改。",
    },
}


#: Kinds of notification (the notifier's NoticeKind values) and delivery statuses.
KIND_NAMES: Mapping[Language, Mapping[str, str]] = {
    Language.EN: {
        "escalated": "warning",
        "improved": "improved",
        "recovered": "recovered",
        "reminder": "reminder",
        "digest": "daily digest",
    },
    Language.ZH_CN: {
        "escalated": "预警",
        "improved": "好转",
        "recovered": "已恢复",
        "reminder": "提醒",
        "digest": "每日汇总",
    },
}
STATUS_NAMES: Mapping[Language, Mapping[str, str]] = {
    Language.EN: {"pending": "waiting to be sent", "sent": "sent", "failed": "failed"},
    Language.ZH_CN: {"pending": "等待发送", "sent": "已发送", "failed": "发送失败"},
}


def _named(explicit: str | None) -> Language | None:
    """The language ``explicit`` names (any case), if any."""
    if explicit:
        for language in Language:
            if explicit.lower() == language.value.lower():
                return language
    return None


def _quality(params: str) -> float:
    """An Accept-Language item's ``q=`` (1 when absent, 0 when unreadable)."""
    params = params.strip()
    if not params.startswith("q="):
        return 1.0
    try:
        return float(params[2:])
    except ValueError:
        return 0.0


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> Language:
    """``?lang=`` wins, then the switch's cookie, then the browser's Accept-Language (by q)."""
    for explicit in (query, cookie):
        named = _named(explicit)
        if named is not None:
            return named
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        if tag:
            ranked.append((-_quality(params), position, tag.strip().lower()))
    for negative_quality, _, tag in sorted(ranked):
        if negative_quality >= 0:
            continue
        if tag.startswith("zh"):
            return Language.ZH_CN
        if tag.startswith("en"):
            return Language.EN
    return Language.EN


def other(language: Language) -> Language:
    return Language.EN if language is Language.ZH_CN else Language.ZH_CN


__all__ = [
    "KIND_NAMES",
    "LANGUAGE_COOKIE",
    "LEVEL_LABELS",
    "REASON_LABELS",
    "STATUS_NAMES",
    "STRINGS",
    "Language",
    "choose_language",
    "other",
]
