"""The console's exports: every package matching the list's filter, as CSV or XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request, Response

from services.notifier.messages import action_for
from services.scorer.api.deps import SellerId, ServiceDep
from services.scorer.console.access import gate
from services.scorer.console.filters import (
    OptionalCategory,
    OptionalMarketplace,
    ReasonFilter,
    StateFilter,
    reason_of,
)
from services.scorer.console.i18n import REASON_LABELS, STRINGS, Language
from services.scorer.console.render import HEADERS, RequestLanguage, console_now, state_name
from services.scorer.storage import console as queries
from shared.console_links import CONSOLE_PREFIX
from shared.schemas import PackageView

router = APIRouter(prefix=CONSOLE_PREFIX, tags=["console"], include_in_schema=False)


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    # UTF-8 with a byte-order mark: Excel then reads Chinese text correctly.
    return "\ufeff" + buffer.getvalue()


def _xlsx(rows: list[list[str]]) -> bytes:
    import xlsxwriter  # imported here: only exports need it

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False})
    sheet = workbook.add_worksheet("packages")
    bold = workbook.add_format({"bold": True})
    header, *body = rows
    sheet.write_row(0, 0, header, bold)
    for index, row in enumerate(body, start=1):
        sheet.write_row(index, 0, row)
    sheet.freeze_panes(1, 0)
    workbook.close()
    return buffer.getvalue()


#: Media type and writer of each export, by file extension (the header row first).
EXPORT_FORMATS: dict[str, tuple[str, Callable[[list[list[str]]], str | bytes]]] = {
    "csv": ("text/csv; charset=utf-8", _csv),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", _xlsx),
}


def _filename(seller_id: str, extension: str) -> str:
    return f"vtrwatch-{seller_id}-packages.{extension}"


EXPORT_COLUMNS = (
    "order",
    "tracking_number",
    "marketplace",
    "category",
    "carrier",
    "service",
    "order_value",
    "promised",
    "state",
    "reason",
    "probability_valid",
    "what_to_do",
)


def export_header(language: Language) -> list[str]:
    return [STRINGS[language][name] for name in EXPORT_COLUMNS]


def export_row(view: PackageView, language: Language, now: datetime) -> list[str]:
    return [
        view.order_id,
        view.tracking_number,
        view.marketplace,
        view.category,
        view.carrier_name,
        view.service or "",
        f"{view.order_value.amount} {view.order_value.currency}",
        view.promised_delivery_date.isoformat(),
        state_name(view, language),
        REASON_LABELS[language][view.reason] if view.reason else "",
        f"{view.probability_valid:.2f}",
        action_for(view, language, now) if view.reason else "",
    ]


async def _export(
    service: ServiceDep,
    request: Request,
    language: Language,
    seller_id: str,
    kind: str,
    marketplace: str | None,
    category: str | None,
    state: str,
    reason: str | None,
) -> Response:
    """Every package matching the filter as a ``kind`` (csv or xlsx) attachment."""
    access = gate(service, request, seller_id)
    if isinstance(access, Response):
        return access
    async with service.engine.connect() as connection:
        views = await queries.export_rows(
            service.scoring,
            connection,
            seller_id,
            marketplace=marketplace,
            category=category,
            state=state,
            reason=reason_of(reason),
        )
    media_type, write = EXPORT_FORMATS[kind]
    moment = console_now(service)
    rows = [export_header(language), *(export_row(view, language, moment) for view in views)]
    return Response(
        write(rows),
        media_type=media_type,
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{_filename(seller_id, kind)}"'},
    )


@router.get("/{seller_id}/packages.csv")
async def packages_csv(
    service: ServiceDep,
    request: Request,
    language: RequestLanguage,
    seller_id: SellerId,
    marketplace: OptionalMarketplace = None,
    category: OptionalCategory = None,
    state: StateFilter = queries.DEFAULT_STATE_FILTER,
    reason: ReasonFilter = None,
) -> Response:
    return await _export(service, request, language, seller_id, "csv", marketplace, category, state, reason)


@router.get("/{seller_id}/packages.xlsx")
async def packages_xlsx(
    service: ServiceDep,
    request: Request,
    language: RequestLanguage,
    seller_id: SellerId,
    marketplace: OptionalMarketplace = None,
    category: OptionalCategory = None,
    state: StateFilter = queries.DEFAULT_STATE_FILTER,
    reason: ReasonFilter = None,
) -> Response:
    return await _export(service, request, language, seller_id, "xlsx", marketplace, category, state, reason)
