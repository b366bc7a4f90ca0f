"""Compose alert messages (pure: the caller supplies the snapshot, the packages and the clock).

Wording lives in two places: sentence structure in the Jinja2 templates under
``templates/<language>/`` and the short phrases in tables, so a translator edits data,
not code: level names, reason labels and the action for each
:class:`~shared.schemas.Reason` in :mod:`shared.wording` (the console and the scorer's API
say the same), the messages' own below.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from services.notifier.alerts import NoticeKind
from services.notifier.email_chart import forecast_chart_html
from shared.carriers import carrier_display_name
from shared.schemas import Level, PackageView, ScoreSnapshot
from shared.wording import LEVEL_LABELS, Language, action_for, carrier_text, reason_label

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

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
