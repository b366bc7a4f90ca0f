"""How a console page is answered: the templates, the language of the request, the
security headers, and the denied page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from services.scorer.console.i18n import LANGUAGE_COOKIE, STRINGS, Language, choose_language, other
from services.scorer.runtime.service import ScorerService
from shared.console_links import CONSOLE_PREFIX, TOKEN_PARAMETER
from shared.schemas import PackageView

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Security headers of every console response: no framing, no referrer, no caching of seller data.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


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


def seller_path(seller_id: str) -> str:
    return f"{CONSOLE_PREFIX}/{quote(seller_id, safe='')}"


def language_of(request: Request) -> Language:
    return choose_language(
        request.query_params.get("lang"),
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language"),
    )


RequestLanguage = Annotated[Language, Depends(language_of)]


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


def message_page(request: Request, message_key: str, status_code: int) -> HTMLResponse:
    """The page that only says why (denied, not found)."""
    return page(request, "denied.html", {"message": STRINGS[language_of(request)][message_key]}, status_code)


def console_now(service: ScorerService) -> datetime:
    """The service's day at the current time of day (tests pin the day)."""
    return datetime.combine(service.today(), datetime.now(UTC).time(), UTC)


def state_name(view: PackageView, language: Language) -> str:
    return STRINGS[language].get(f"state_{view.state.value}", view.state.value)
