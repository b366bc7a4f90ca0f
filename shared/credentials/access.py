"""The one check every seller-scoped route makes, as a FastAPI dependency
(:meth:`KeyGate.require`) and as a plain call for the ASGI fast paths
(:meth:`KeyGate.check`).

In order: a bearer token that names a valid key (else 401), the key's rate limit (429
with ``Retry-After``), the seller (a seller key asking about another seller gets the
route's own "no such seller" 404, so a key cannot probe who is a customer), the scope
(403 naming it). Every outcome is counted by key id (never the token).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import REGISTRY, Metric
from prometheus_client.core import CounterMetricFamily

from shared.console_links import TOKEN_PARAMETER, Verdict, verify
from shared.credentials.follower import CredentialFollower, RecordHook
from shared.credentials.limits import Limit, RateLimiter, parse_overrides
from shared.credentials.registry import CredentialRegistry, CredentialsNotLoaded
from shared.credentials.scopes import KeyKind, Principal, Scope
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


class KeyRequestCounts:
    """``vtr_api_key_requests_total``: plain integers bumped on the request path (a
    prometheus_client counter takes a lock per increment, which cost more than the key check
    itself) and exported as a counter family when scraped. One per process."""

    NAME = "vtr_api_key_requests"
    HELP = "Requests on the key-protected APIs by key id (never the token) and outcome."

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.NAME, self.HELP, labels=("key_id", "outcome"))]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.NAME, self.HELP, labels=("key_id", "outcome"))
        for (key_id, outcome), count in list(self.counts.items()):
            family.add_metric((key_id, outcome), count)
        yield family


KEY_REQUESTS = KeyRequestCounts()
REGISTRY.register(KEY_REQUESTS)
#: Outcomes of the check (the ``outcome`` label).
ALLOWED = "allowed"
UNAUTHENTICATED = "unauthenticated"
RATE_LIMITED = "rate_limited"
OTHER_SELLER = "other_seller"
MISSING_SCOPE = "missing_scope"
NOT_LOADED = "not_loaded"
#: The ``key_id`` label of a request that named no valid key.
NO_KEY = "none"

UNAUTHENTICATED_DETAIL = "missing or invalid bearer token"
NOT_LOADED_SECONDS = 2

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key: `vtr_sk_...` issued with `python -m shared.credentials issue` (docs/security.md).",
)
#: The console's session cookie (set from a signed link; see services/scorer/console).
CONSOLE_COOKIE = "vtr_console"
CONSOLE_LINK_KEY_ID = "console-link"

NotFound = Callable[[str], str]


class Refusal(NamedTuple):
    status: int
    detail: str
    headers: dict[str, str] | None = None

    def exception(self) -> HTTPException:
        return HTTPException(self.status, self.detail, self.headers)


_UNAUTHENTICATED = Refusal(401, UNAUTHENTICATED_DETAIL, {"WWW-Authenticate": "Bearer"})
_NOT_LOADED = Refusal(
    503, "API keys are still being loaded; retry in a moment", {"Retry-After": str(NOT_LOADED_SECONDS)}
)


def bearer_token(authorization: bytes | str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    raw = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
    scheme, _, token = raw.partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


class KeyGate:
    def __init__(self, registry: CredentialRegistry, limiter: RateLimiter) -> None:
        self.registry = registry
        self.limiter = limiter
        self._counts = KEY_REQUESTS.counts

    def _count(self, key_id: str, outcome: str) -> None:
        label = (key_id, outcome)
        self._counts[label] = self._counts.get(label, 0) + 1

    def authenticate(self, token: bytes | None) -> Principal | Refusal:
        if token is None:
            self._count(NO_KEY, UNAUTHENTICATED)
            return _UNAUTHENTICATED
        try:
            principal = self.registry.authenticate(token)
        except CredentialsNotLoaded:
            self._count(NO_KEY, NOT_LOADED)
            return _NOT_LOADED
        if principal is None:
            self._count(NO_KEY, UNAUTHENTICATED)
            return _UNAUTHENTICATED
        return principal

    def authorise(
        self, principal: Principal, scope: Scope, seller_id: str | None, not_found: str | None = None
    ) -> Principal | Refusal:
        """The checks after authentication; ``seller_id`` None: the route names no seller
        in its path (it checks bodies with :meth:`Principal.sees` itself)."""
        wait = self.limiter.wait_seconds(principal)
        if wait > 0:
            self._count(principal.key_id, RATE_LIMITED)
            seconds = max(1, math.ceil(wait))
            return Refusal(
                429,
                f"rate limit of key {principal.key_id} exceeded; retry after {seconds} s",
                {"Retry-After": str(seconds)},
            )
        if seller_id is not None and not principal.sees(seller_id):
            self._count(principal.key_id, OTHER_SELLER)
            return Refusal(404, not_found or "not found")
        if not principal.allows(scope.value):
            self._count(principal.key_id, MISSING_SCOPE)
            return Refusal(403, f"this key lacks the scope {scope.value}")
        self._count(principal.key_id, ALLOWED)
        return principal

    def check(
        self,
        authorization: bytes | str | None,
        scope: Scope,
        seller_id: str | None = None,
        not_found: str | None = None,
    ) -> Principal | Refusal:
        principal = self.authenticate(bearer_token(authorization))
        if isinstance(principal, Refusal):
            return principal
        return self.authorise(principal, scope, seller_id, not_found)

    def require(self, scope: Scope, not_found: NotFound | None = None) -> Callable[..., Awaitable[Principal]]:
        """A dependency for a route: with ``not_found``, the route's ``seller_id`` (path, or
        query parameter) is the seller, and ``not_found(seller_id)`` the detail of its 404."""

        async def require_key(
            request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
        ) -> Principal:
            # The seller the route names: its path, or its query (``?seller_id=``).
            named = request.path_params.get("seller_id") or request.query_params.get("seller_id")
            seller_id = named if not_found is not None else None
            detail = not_found(seller_id) if not_found is not None and seller_id is not None else None
            outcome = self.check(request.headers.get("authorization"), scope, seller_id, detail)
            if isinstance(outcome, Refusal):
                raise outcome.exception()
            request.state.principal = outcome
            return outcome

        return require_key

    def key_or_console_link(self, scope: Scope, console_secret: bytes) -> Callable[..., Awaitable[Principal]]:
        """A dependency for a seller's page reached from the console: a bearer key (as
        :meth:`require`), or else the seller's signed console link (``?t=``) or the
        console's session cookie. The seller is the ``seller_id`` path or query parameter;
        a link opens only its own seller, with ``scope`` for that request."""

        async def key_or_link(
            request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
        ) -> Principal:
            seller_id = request.path_params.get("seller_id") or request.query_params.get("seller_id")
            if not seller_id:
                raise HTTPException(422, "seller_id is required")
            authorization = request.headers.get("authorization")
            if authorization:
                outcome = self.check(authorization, scope, seller_id, "not found")
                if isinstance(outcome, Refusal):
                    raise outcome.exception()
                request.state.principal = outcome
                return outcome
            token = request.query_params.get(TOKEN_PARAMETER) or request.cookies.get(CONSOLE_COOKIE)
            if token is None or verify(console_secret, seller_id, token, datetime.now(UTC)) is not Verdict.VALID:
                self._count(NO_KEY, UNAUTHENTICATED)
                raise _UNAUTHENTICATED.exception()
            principal = Principal(CONSOLE_LINK_KEY_ID, KeyKind.SELLER, seller_id, frozenset({scope}))
            request.state.principal = principal
            self._count(CONSOLE_LINK_KEY_ID, ALLOWED)
            return principal

        return key_or_link


@dataclass
class Credentials:
    """What a service wires in: the gate its routes use, and the follower that keeps the
    gate's registry current (started and stopped by the app's lifespan)."""

    gate: KeyGate
    follower: CredentialFollower

    @classmethod
    def from_settings(cls, settings: ServiceSettings, on_record: RecordHook | None = None) -> Credentials:
        registry = CredentialRegistry(settings.api_key_values())
        if settings.env == "prod" and registry.env_key_count:
            log.warning(
                "VTR_API_KEYS holds unscoped staff keys (every seller, every scope); issue scoped keys with"
                " python -m shared.credentials and remove them (docs/security.md)",
                extra={"env_keys": registry.env_key_count},
            )
        limiter = RateLimiter(
            Limit(settings.rate_limit_per_second, settings.rate_limit_burst),
            parse_overrides(settings.rate_limit_overrides),
        )
        return cls(KeyGate(registry, limiter), CredentialFollower(settings, registry, on_record))

    async def start(self) -> None:
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    async def ready(self) -> None:
        await self.follower.ready()
