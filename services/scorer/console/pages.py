"""The console's pages: ``/console/{seller_id}`` (overview), ``.../notifications`` (what the
seller was sent), ``.../category`` (one marketplace x category). Access: ``access.py``;
exports: ``exports.py``."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from services.scorer.api.deps import SellerId, ServiceDep
from services.scorer.console import charts
from services.scorer.console.access import Access, gate
from services.scorer.console.filters import ReasonFilter, StateFilter, reason_of
from services.scorer.console.i18n import KIND_NAMES, LEVEL_LABELS, REASON_LABELS, STATUS_NAMES, STRINGS, Language
from services.scorer.console.notifier_client import NotifierReader
from services.scorer.console.render import (
    RequestLanguage,
    console_now,
    message_page,
    page,
    seller_path,
    state_name,
)
from services.scorer.runtime.service import ScorerService
from services.scorer.storage import console as queries
from services.scorer.storage.amazon import seller_comparisons
from shared.console_links import CONSOLE_PREFIX, TOKEN_PARAMETER, sign
from shared.schemas import UNCATEGORISED_FLAGS, Level, PackageView, Reason
from shared.wording import action_for, carrier_text, reason_label

router = APIRouter(prefix=CONSOLE_PREFIX, tags=["console"], include_in_schema=False)

CHART_LABELS = {"desc": "chart_desc", "band": "band", "floor": "floor", "today": "today"}


def _common(service: ScorerService, seller_id: str, language: Language, access: Access) -> dict[str, Any]:
    return {
        "seller_id": seller_id,
        "today": service.today().isoformat(),
        "base": seller_path(seller_id),
        "levels": {level.value: LEVEL_LABELS[language][level] for level in Level},
        "staff": access.staff,
    }


@router.get("/{seller_id}", response_class=HTMLResponse)
async def overview_page(
    service: ServiceDep, request: Request, language: RequestLanguage, seller_id: SellerId
) -> Response:
    access = gate(service, request, seller_id)
    if isinstance(access, Response):
        return access
    async with service.engine.connect() as connection:
        rows = await queries.overview(service.scoring, connection, seller_id)
        amazon = await seller_comparisons(connection, seller_id)
    return page(
        request,
        "overview.html",
        {
            **_common(service, seller_id, language, access),
            "rows": rows,
            "amazon": amazon,
            "connect_amazon": connect_amazon_links(service, seller_id),
            "category_url": lambda row: (
                f"{seller_path(seller_id)}/category?"
                + urlencode({"marketplace": row.marketplace, "category": row.category})
            ),
        },
    )


#: How long the console's "Connect Amazon" links open the ingest's authorize route.
CONNECT_LINK_LIFETIME = timedelta(hours=1)
#: Amazon's regions, as the connect route names them (docs/amazon.md).
AMAZON_REGIONS = ("na", "eu", "fe")


def connect_amazon_links(service: ScorerService, seller_id: str) -> list[tuple[str, str]]:
    """(region, URL) of the ingest's ``/v1/amazon/authorize`` for this seller per region,
    each carrying a fresh signed console link (an hour), so that a seller without an ERP key
    connects from here; none when ``VTR_INGEST_PUBLIC_URL`` is not set."""
    base = service.settings.ingest_public_url.rstrip("/")
    if not base:
        return []
    secret = service.settings.console_secret.get_secret_value().encode()
    token = sign(secret, seller_id, int((datetime.now(UTC) + CONNECT_LINK_LIFETIME).timestamp()))
    return [
        (
            region,
            f"{base}/v1/amazon/authorize?"
            + urlencode({"seller_id": seller_id, "region": region, TOKEN_PARAMETER: token}),
        )
        for region in AMAZON_REGIONS
    ]


@router.get("/{seller_id}/notifications", response_class=HTMLResponse)
async def notifications_page(
    service: ServiceDep, request: Request, language: RequestLanguage, seller_id: SellerId
) -> Response:
    access = gate(service, request, seller_id)
    if isinstance(access, Response):
        return access
    reader: NotifierReader = request.app.state.console_notifier
    view = await reader.read(seller_id)
    return page(
        request,
        "notifications.html",
        {
            **_common(service, seller_id, language, access),
            "view": view,
            "kinds": KIND_NAMES[language],
            "statuses": STATUS_NAMES[language],
        },
    )


def _charts(
    service: ScorerService, numbers: dict[str, Any], past: list[queries.HistoryDay], language: Language
) -> dict[str, Any]:
    """The category page's VTR chart (history, today, forecast band) and reasons chart."""
    words = STRINGS[language]
    forecast = [
        charts.Point(date.fromisoformat(p["date"]), p.get("vtr"), p.get("p10"), p.get("p90"))
        for p in numbers["forecast"]
    ]
    today_point = charts.Point(service.today(), numbers.get("vtr"))
    chart = charts.vtr_chart(
        [charts.Point(day.day, day.vtr) for day in past],
        today_point,
        forecast,
        floor=service.settings.vtr_floor,
        title=words["chart_title"],
        labels={key: words[name] for key, name in CHART_LABELS.items()},
    )
    reason_names = {r.value: REASON_LABELS[language][r] for r in Reason}
    reasons_svg = charts.reasons_chart(
        [day.day for day in past], [day.reasons for day in past], reason_names, title=words["reasons_over_time"]
    )
    return {
        "forecast": forecast,
        "has_band": any(p.p10 is not None and p.p90 is not None for p in forecast),
        "chart": chart,
        "reasons_chart": reasons_svg,
        "reason_options": sorted(reason_names.items(), key=lambda item: item[1]),
    }


def _reasons(numbers: dict[str, Any], language: Language) -> dict[str, Any]:
    """The category's invalid and pending packages by reason, most first."""
    return {
        "reasons_now": sorted(
            ((reason_label(r, language), count) for r, count in numbers["reasons"].items() if count),
            key=lambda item: -item[1],
        ),
        "pending_reasons": sorted(
            ((reason_label(r, language), count) for r, count in numbers["pending_reasons"].items()),
            key=lambda item: -item[1],
        ),
    }


@router.get("/{seller_id}/category", response_class=HTMLResponse)
async def category_page(
    service: ServiceDep,
    request: Request,
    language: RequestLanguage,
    seller_id: SellerId,
    marketplace: Annotated[str, Query(pattern=r"^[A-Z]{2}$")],
    category: Annotated[str, Query(min_length=1, max_length=200)],
    state: StateFilter = queries.DEFAULT_STATE_FILTER,
    reason: ReasonFilter = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    access = gate(service, request, seller_id)
    if isinstance(access, Response):
        return access
    reason_filter = reason_of(reason)
    size = service.settings.console_page_size
    async with service.engine.connect() as connection:
        scores = await service.scoring.scores(connection, seller_id, service.today(), scope=(marketplace, category))
        found = next((c for c in scores if (c.marketplace, c.category) == (marketplace, category)), None)
        if found is None:
            return message_page(request, "not_found", 404)
        numbers = found.as_json()
        past = await queries.history(service.scoring, connection, seller_id, marketplace, category)
        lanes = await queries.lanes(service.scoring, connection, seller_id, marketplace, category)
        listed = await queries.package_list(
            service.scoring,
            connection,
            seller_id,
            marketplace=marketplace,
            category=category,
            state=state,
            reason=reason_filter,
            offset=(page_number - 1) * size,
            limit=size,
        )
    filters = {"marketplace": marketplace, "category": category, "state": state}
    if reason_filter is not None:
        filters["reason"] = reason_filter.value
    base = f"{seller_path(seller_id)}/category"
    moment = console_now(service)
    return page(
        request,
        "category.html",
        {
            **_common(service, seller_id, language, access),
            **_charts(service, numbers, past, language),
            **_reasons(numbers, language),
            "n": numbers,
            "history": past,
            "carrier_health": numbers["carrier_health"],
            "lanes": lanes,
            "packages": [_package_row(view, language, moment) for view in listed.views],
            "total_packages": listed.total,
            "page": page_number,
            "pages": max(1, math.ceil(listed.total / size)),
            "page_url": lambda number: base + "?" + urlencode({**filters, "page": number}),
            "export_url": lambda kind: f"{seller_path(seller_id)}/packages.{kind}?" + urlencode(filters),
            "states": queries.PACKAGE_FILTERS,
            "selected_reason": reason_filter.value if reason_filter else "",
            "selected_state": state,
            "breach_probability": numbers.get("breach_probability"),
        },
    )


def _package_row(view: PackageView, language: Language, now: datetime) -> dict[str, Any]:
    return {
        "order_id": view.order_id,
        "tracking_number": view.tracking_number,
        "carrier": carrier_text(view, language),
        "service": view.service or "",
        "order_value": f"{view.order_value.amount} {view.order_value.currency}",
        "promised": view.promised_delivery_date.isoformat(),
        "state": view.state.value,
        "state_label": state_name(view, language),
        "reason": REASON_LABELS[language][view.reason] if view.reason else "",
        "scans": view.physical_scans,
        "probability": view.probability_valid,
        "action": action_for(view, language, now) if view.reason else "",
        "source": view.source,
        "source_label": STRINGS[language].get(f"source_{view.source}", view.source),
        "category_notes": [STRINGS[language][flag] for flag in view.risk_flags if flag in UNCATEGORISED_FLAGS],
    }
