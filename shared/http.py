"""FastAPI building blocks every service uses: bearer-token auth, ``/healthz``,
``/readyz``, ``/metrics``, and error bodies that say what is wrong."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.db import ReadinessProblem
from shared.observability import metrics_payload

ReadinessCheck = Callable[[], Awaitable[object]]

_bearer_scheme = HTTPBearer(auto_error=False, description="One of the keys in VTR_API_KEYS.")


def key_matches(presented: bytes, accepted: list[bytes]) -> bool:
    """Constant-time comparison against every accepted key (no early exit on a match)."""
    matched = False
    for key in accepted:
        matched |= hmac.compare_digest(presented, key)
    return matched


def bearer_auth(accepted_keys: Callable[[], list[bytes]]) -> Callable[..., Awaitable[None]]:
    """A dependency that requires ``Authorization: Bearer <one of the API keys>``."""

    async def require_api_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    ) -> None:
        if credentials is None or not key_matches(credentials.credentials.encode(), accepted_keys()):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_api_key


def operations_router(checks: Mapping[str, ReadinessCheck], timeout_seconds: float = 3.0) -> APIRouter:
    """``/healthz`` (the process answers), ``/readyz`` (its dependencies answer), ``/metrics``."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(response: Response) -> dict[str, object]:
        async def run(check: ReadinessCheck) -> str:
            try:
                await asyncio.wait_for(check(), timeout_seconds)
                return "ok"
            except ReadinessProblem as error:  # says why, and what to do (never a secret)
                return f"failed: {error}"
            except Exception as error:  # a readiness probe reports, it never raises
                return f"failed: {type(error).__name__}"

        names = list(checks)
        results = await asyncio.gather(*(run(checks[name]) for name in names))
        outcome = dict(zip(names, results, strict=True))
        ready = all(result == "ok" for result in results)
        if not ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "ready" if ready else "not ready", "checks": outcome}

    @router.get("/metrics", include_in_schema=False)
    async def metrics(_: Request) -> Response:
        payload, content_type = metrics_payload()
        return Response(payload, media_type=content_type)

    return router
