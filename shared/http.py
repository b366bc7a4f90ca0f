"""FastAPI building blocks every service uses: ``/healthz``, ``/readyz``, ``/metrics``.
API keys are checked by :mod:`shared.credentials.access`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Request, Response, status

from shared.db import ReadinessProblem
from shared.observability import metrics_payload

ReadinessCheck = Callable[[], Awaitable[object]]


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
