"""Who may read a seller's console: an API key with ``console:read`` (``Authorization:
Bearer``, docs/security.md) opens every seller for staff and service keys and its own
seller for a seller key (another seller: the 404 page), unless ``VTR_CONSOLE_STAFF_TOKENS``
turns bearer keys off (the default in prod, where the console has a public host); a signed
link (``?t=``, see :mod:`shared.console_links`) opens one seller.

A valid link is exchanged for an HttpOnly cookie scoped to that seller's path and the
browser is redirected to the same page without the token, so the token leaves the address
bar and the history and is not sent on as a Referer. Anything else gets a page that says
why and a 403: never another seller's data. Nothing about the seller is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from services.scorer.console.render import HEADERS, message_page, seller_path
from services.scorer.runtime.service import ScorerService
from shared.console_links import TOKEN_PARAMETER, Verdict, expiry, verify
from shared.credentials.access import KeyGate, Refusal
from shared.credentials.scopes import Scope as KeyScope

log = logging.getLogger(__name__)

SESSION_COOKIE = "vtr_console"


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


def gate(service: ScorerService, request: Request, seller_id: str) -> Access | Response:
    """The request's access to ``seller_id``'s console, or the response to send instead: the
    denied page, or the redirect that exchanges a link's token for the session cookie."""
    try:
        access = authorize(service, request, seller_id)
    except Denied as error:
        return message_page(request, error.message_key, error.status)
    if access.redirect_to is not None and access.token is not None:
        response = RedirectResponse(access.redirect_to, status_code=303, headers=HEADERS)
        expires = expiry(access.token) or 0
        response.set_cookie(
            SESSION_COOKIE,
            access.token,
            max_age=max(0, expires - int(datetime.now(UTC).timestamp())),
            path=seller_path(seller_id),
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )
        return response
    return access
