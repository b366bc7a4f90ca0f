"""The console's HTTP routes: ``/console/{seller_id}`` (overview), ``.../category`` (one
marketplace x category), ``.../packages.csv`` and ``.../packages.xlsx`` (exports).

Access: an API key with ``console:read`` (``Authorization: Bearer``, docs/security.md)
opens every seller for staff and service keys, its own seller for a seller key (another
seller: the 404 page), unless ``VTR_CONSOLE_STAFF_TOKENS`` turns bearer keys off (the
default in prod, where the console has a public host); a signed link (``?t=``, see
:mod:`shared.console_links`) opens one seller.
A valid link is exchanged for an HttpOnly cookie scoped to that seller's path and the
browser is redirected to the same page without the token, so the token leaves the address
bar and the history and is not sent on as a Referer. Anything else gets a page that says
why and a 403: never another seller's data. Nothing about the seller is logged.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse

from services.notifier.messages import action_for, carrier_text, reason_label
from services.scorer.console import charts, queries
from services.scorer.console.i18n import (
    KIND_NAMES,
    LANGUAGE_COOKIE,
    LEVEL_LABELS,
    REASON_LABELS,
    STATUS_NAMES,
    STRINGS,
    Language,
    choose_language,
    other,
)
from services.scorer.console.notifier_client import NotifierReader
from services.scorer.service import ScorerService
from shared.console_links import CONSOLE_PREFIX, TOKEN_PARAMETER, Verdict, expiry, verify
from shared.credentials.access import KeyGate, Refusal
from shared.credentials.scopes import Scope as KeyScope
from shared.schemas import Level, PackageView, Reason

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
SESSION_COOKIE = "vtr_console"
SellerId = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"^[\w.:@-]+$")]
OptionalMarketplace = Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")]
OptionalCategory = Annotated[str | None, Query(min_length=1, max_length=200)]
StateFilter = Annotated[str, Query(pattern="^(" + "|".join(queries.PACKAGE_FILTERS) + ")$")]
ReasonFilter = Annotated[str | None, Query(max_length=48)]
#: Security headers of every console response: no framing, no referrer, no caching of seller data.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


CHART_LABELS = {"desc": "chart_desc", "band": "band", "floor": "floor", "today": "today"}


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = lambda v: "–" if v is None else f"{v * 100:.1f}%"
    return environment


_ENVIRONMENT = _environment()


class Denied(Exception):
    def __init__(self, message_key: str, status: int = 403) -> None:
        self.message_key = message_key
        self.status = status


#: How the key gate's refusals read on a console page: HTTP status -> (message, status).
KEY_REFUSALS: dict[int, tuple[str, int]] = {
    401: ("denied_invalid", 403),
    403: ("denied_key", 403),
    404: ("no_such_seller", 404),
    429: ("denied_rate_limited", 429),
    503: ("denied_rate_limited", 503),
}


@dataclass(frozen=True)
class Access:
    staff: bool
    #: Set when a valid token arrived in the URL: the cookie to set and the URL to go to.
    redirect_to: str | None = None
    token: str | None = None


def _seller_path(seller_id: str) -> str:
    return f"{CONSOLE_PREFIX}/{quote(seller_id, safe='')}"


def authorize(service: ScorerService, request: Request, seller_id: str) -> Access:
    """Raises :class:`Denied` unless the request may read ``seller_id``'s console."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    staff_tokens = service.settings.console_accepts_staff_tokens()
    if scheme.lower() == "bearer" and credentials:
        if not staff_tokens:
            # Refused before any comparison: the public console must not tell right keys from wrong ones.
            log.info("console staff token refused", extra={"reason": "VTR_CONSOLE_STAFF_TOKENS is off"})
            raise Denied("denied_staff_tokens")
        gate: KeyGate = request.app.state.credentials.gate
        outcome = gate.check(header, KeyScope.CONSOLE_READ, seller_id, "no such seller")
        if isinstance(outcome, Refusal):
            raise Denied(*KEY_REFUSALS.get(outcome.status, ("denied_invalid", 403)))
        return Access(staff=outcome.seller_id is None)
    secret = service.settings.console_secret.get_secret_value().encode()
    now = datetime.now(UTC)
    token = request.query_params.get(TOKEN_PARAMETER)
    if token is not None:
        verdict = verify(secret, seller_id, token, now)
        if verdict is not Verdict.VALID:
            log.info("console link refused", extra={"verdict": verdict.value})
            raise Denied("denied_expired" if verdict is Verdict.EXPIRED else "denied_invalid")
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_PARAMETER]
        # The path as the browser sent it (still percent-encoded), so the cookie's path matches it.
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
        target = path + ("?" + urlencode(rest) if rest else "")
        return Access(staff=False, redirect_to=target, token=token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None:
        verdict = verify(secret, seller_id, cookie, now)
        if verdict is Verdict.VALID:
            return Access(staff=False)
        raise Denied("denied_expired" if verdict is Verdict.EXPIRED else "denied_invalid")
    raise Denied("denied_missing" if staff_tokens else "denied_missing_link")


def console_router(service: ScorerService) -> APIRouter:
    router = APIRouter(prefix=CONSOLE_PREFIX, tags=["console"], include_in_schema=False)

    def language_of(request: Request) -> Language:
        return choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANGUAGE_COOKIE),
            request.headers.get("accept-language"),
        )

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        language = language_of(request)
        words = STRINGS[language]
        switch_query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("lang", TOKEN_PARAMETER)]
        switch_query.append(("lang", other(language).value))
        body = _ENVIRONMENT.get_template(name).render(
            {
                "t": words,
                "lang": language.value,
                "switch_url": request.url.path + "?" + urlencode(switch_query),
                **context,
            }
        )
        response = HTMLResponse(body, status_code=status_code, headers=HEADERS)
        if request.query_params.get("lang") in {item.value for item in Language}:
            response.set_cookie(LANGUAGE_COOKIE, language.value, max_age=365 * 86400, samesite="lax", httponly=True)
        return response

    def denied(request: Request, error: Denied) -> HTMLResponse:
        message = STRINGS[language_of(request)][error.message_key]
        return page(request, "denied.html", {"message": message}, error.status)

    def gate(request: Request, seller_id: str) -> Access | Response:
        try:
            access = authorize(service, request, seller_id)
        except Denied as error:
            return denied(request, error)
        if access.redirect_to is not None and access.token is not None:
            response = RedirectResponse(access.redirect_to, status_code=303, headers=HEADERS)
            expires = expiry(access.token) or 0
            response.set_cookie(
                SESSION_COOKIE,
                access.token,
                max_age=max(0, expires - int(datetime.now(UTC).timestamp())),
                path=_seller_path(seller_id),
                httponly=True,
                secure=request.url.scheme == "https",
                samesite="lax",
            )
            return response
        return access

    def common(seller_id: str, language: Language, access: Access) -> dict[str, Any]:
        return {
            "seller_id": seller_id,
            "today": service.today().isoformat(),
            "base": _seller_path(seller_id),
            "levels": {level.value: LEVEL_LABELS[language][level] for level in Level},
            "staff": access.staff,
        }

    def now() -> datetime:
        """The service's day at the current time of day (tests pin the day)."""
        return datetime.combine(service.today(), datetime.now(UTC).time(), UTC)

    @router.get("/{seller_id}", response_class=HTMLResponse)
    async def overview_page(request: Request, seller_id: SellerId) -> Response:
        access = gate(request, seller_id)
        if isinstance(access, Response):
            return access
        language = language_of(request)
        async with service.engine.connect() as connection:
            rows = await queries.overview(service, connection, seller_id)
        return page(
            request,
            "overview.html",
            {
                **common(seller_id, language, access),
                "rows": rows,
                "category_url": lambda row: (
                    f"{_seller_path(seller_id)}/category?"
                    + urlencode({"marketplace": row.marketplace, "category": row.category})
                ),
            },
        )

    @router.get("/{seller_id}/notifications", response_class=HTMLResponse)
    async def notifications_page(request: Request, seller_id: SellerId) -> Response:
        access = gate(request, seller_id)
        if isinstance(access, Response):
            return access
        language = language_of(request)
        reader: NotifierReader = request.app.state.console_notifier
        view = await reader.read(seller_id)
        return page(
            request,
            "notifications.html",
            {
                **common(seller_id, language, access),
                "view": view,
                "kinds": KIND_NAMES[language],
                "statuses": STATUS_NAMES[language],
            },
        )

    @router.get("/{seller_id}/category", response_class=HTMLResponse)
    async def category_page(
        request: Request,
        seller_id: SellerId,
        marketplace: Annotated[str, Query(pattern=r"^[A-Z]{2}$")],
        category: Annotated[str, Query(min_length=1, max_length=200)],
        state: StateFilter = queries.DEFAULT_STATE_FILTER,
        reason: ReasonFilter = None,
        page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> Response:
        access = gate(request, seller_id)
        if isinstance(access, Response):
            return access
        language = language_of(request)
        words = STRINGS[language]
        reason_filter = _reason(reason)
        size = service.settings.console_page_size
        async with service.engine.connect() as connection:
            scores = await service.scores(connection, seller_id, service.today(), scope=(marketplace, category))
            found = next((c for c in scores if (c.marketplace, c.category) == (marketplace, category)), None)
            if found is None:
                return page(request, "denied.html", {"message": words["not_found"]}, 404)
            numbers = found.as_json()
            past = await queries.history(service, connection, seller_id, marketplace, category)
            lanes = await queries.lanes(service, connection, seller_id, marketplace, category)
            listed = await queries.package_list(
                service,
                connection,
                seller_id,
                marketplace=marketplace,
                category=category,
                state=state,
                reason=reason_filter,
                offset=(page_number - 1) * size,
                limit=size,
            )
        forecast = [
            charts.Point(date.fromisoformat(p["date"]), p.get("vtr"), p.get("p10"), p.get("p90"))
            for p in numbers["forecast"]
        ]
        today_point = charts.Point(service.today(), numbers.get("vtr"))
        floor = service.settings.vtr_floor
        chart = charts.vtr_chart(
            [charts.Point(day.day, day.vtr) for day in past],
            today_point,
            forecast,
            floor=floor,
            title=words["chart_title"],
            labels={key: words[name] for key, name in CHART_LABELS.items()},
        )
        reason_names = {r.value: REASON_LABELS[language][r] for r in Reason}
        reasons_svg = charts.reasons_chart(
            [day.day for day in past], [day.reasons for day in past], reason_names, title=words["reasons_over_time"]
        )
        pages = max(1, math.ceil(listed.total / size))
        filters = {"marketplace": marketplace, "category": category, "state": state}
        if reason_filter is not None:
            filters["reason"] = reason_filter.value
        base = f"{_seller_path(seller_id)}/category"
        moment = now()
        return page(
            request,
            "category.html",
            {
                **common(seller_id, language, access),
                "n": numbers,
                "history": past,
                "forecast": forecast,
                "has_band": any(p.p10 is not None and p.p90 is not None for p in forecast),
                "chart": chart,
                "reasons_chart": reasons_svg,
                "reasons_now": sorted(
                    ((reason_label(r, language), count) for r, count in numbers["reasons"].items() if count),
                    key=lambda item: -item[1],
                ),
                "pending_reasons": sorted(
                    ((reason_label(r, language), count) for r, count in numbers["pending_reasons"].items()),
                    key=lambda item: -item[1],
                ),
                "carrier_health": numbers["carrier_health"],
                "lanes": lanes,
                "packages": [_package_row(view, language, moment) for view in listed.views],
                "total_packages": listed.total,
                "page": page_number,
                "pages": pages,
                "page_url": lambda number: base + "?" + urlencode({**filters, "page": number}),
                "export_url": lambda kind: f"{_seller_path(seller_id)}/packages.{kind}?" + urlencode(filters),
                "states": queries.PACKAGE_FILTERS,
                "reason_options": sorted(reason_names.items(), key=lambda item: item[1]),
                "selected_reason": reason_filter.value if reason_filter else "",
                "selected_state": state,
                "breach_probability": numbers.get("breach_probability"),
            },
        )

    async def export(
        request: Request,
        seller_id: str,
        kind: str,
        marketplace: str | None,
        category: str | None,
        state: str,
        reason: str | None,
    ) -> Response:
        """Every package matching the filter as a ``kind`` (csv or xlsx) attachment."""
        access = gate(request, seller_id)
        if isinstance(access, Response):
            return access
        async with service.engine.connect() as connection:
            views = await queries.export_rows(
                service,
                connection,
                seller_id,
                marketplace=marketplace,
                category=category,
                state=state,
                reason=_reason(reason),
            )
        language = language_of(request)
        media_type, write = EXPORT_FORMATS[kind]
        moment = now()
        rows = [export_header(language), *(export_row(view, language, moment) for view in views)]
        return Response(
            write(rows),
            media_type=media_type,
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{_filename(seller_id, kind)}"'},
        )

    @router.get("/{seller_id}/packages.csv")
    async def packages_csv(
        request: Request,
        seller_id: SellerId,
        marketplace: OptionalMarketplace = None,
        category: OptionalCategory = None,
        state: StateFilter = queries.DEFAULT_STATE_FILTER,
        reason: ReasonFilter = None,
    ) -> Response:
        return await export(request, seller_id, "csv", marketplace, category, state, reason)

    @router.get("/{seller_id}/packages.xlsx")
    async def packages_xlsx(
        request: Request,
        seller_id: SellerId,
        marketplace: OptionalMarketplace = None,
        category: OptionalCategory = None,
        state: StateFilter = queries.DEFAULT_STATE_FILTER,
        reason: ReasonFilter = None,
    ) -> Response:
        return await export(request, seller_id, "xlsx", marketplace, category, state, reason)

    return router


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


def _reason(value: str | None) -> Reason | None:
    if not value:
        return None
    try:
        return Reason(value)
    except ValueError:
        return None


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


def _state_name(view: PackageView, language: Language) -> str:
    return STRINGS[language].get(f"state_{view.state.value}", view.state.value)


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
        _state_name(view, language),
        REASON_LABELS[language][view.reason] if view.reason else "",
        f"{view.probability_valid:.2f}",
        action_for(view, language, now) if view.reason else "",
    ]


def _package_row(view: PackageView, language: Language, now: datetime) -> dict[str, Any]:
    return {
        "order_id": view.order_id,
        "tracking_number": view.tracking_number,
        "carrier": carrier_text(view, language),
        "service": view.service or "",
        "order_value": f"{view.order_value.amount} {view.order_value.currency}",
        "promised": view.promised_delivery_date.isoformat(),
        "state": view.state.value,
        "state_label": _state_name(view, language),
        "reason": REASON_LABELS[language][view.reason] if view.reason else "",
        "scans": view.physical_scans,
        "probability": view.probability_valid,
        "action": action_for(view, language, now) if view.reason else "",
    }
