"""The API's dependencies (FastAPI's ``Annotated`` style): the running service and the
seller id path parameter. The API key is required where the routers are included
(``app.py``: ``scores:read``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from services.scorer.runtime.service import ScorerService

UNKNOWN_SELLER = "unknown seller: no package of this seller is known"


def unknown_seller(_seller_id: str) -> str:
    """The 404 detail of a seller with no package, and of another seller than a seller key's own."""
    return UNKNOWN_SELLER


SellerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[\w.:@-]+$")]


def get_service(request: Request) -> ScorerService:
    service: ScorerService = request.app.state.service
    return service


ServiceDep = Annotated[ScorerService, Depends(get_service)]
