"""The API's dependencies (FastAPI's ``Annotated`` style): the running service and the
seller id path parameter. The bearer token is required where the routers are included
(``app.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from services.scorer.runtime.service import ScorerService

UNKNOWN_SELLER = "unknown seller: no package of this seller is known"

SellerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[\w.:@-]+$")]


def get_service(request: Request) -> ScorerService:
    service: ScorerService = request.app.state.service
    return service


ServiceDep = Annotated[ScorerService, Depends(get_service)]
