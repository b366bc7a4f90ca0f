"""The read API: a seller's VTR per marketplace and category, and the packages behind it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status

from services.scorer.api.deps import UNKNOWN_SELLER, SellerId, ServiceDep
from services.scorer.domain.views import decode_cursor
from services.scorer.storage.counts import seller_exists
from shared.schemas import PACKAGE_PAGE_CODEC

#: Past days further back than this are refused (and would overflow the date arithmetic near year 1).
OLDEST_AS_OF = timedelta(days=3650)

router = APIRouter(prefix="/v1/sellers", tags=["scores"])


@router.get("/{seller_id}/vtr")
async def seller_vtr(
    service: ServiceDep,
    seller_id: SellerId,
    as_of: Annotated[date | None, Query(description="Evaluation day (UTC), YYYY-MM-DD; default today.")] = None,
) -> Response:
    today = service.today()
    day = as_of or today
    if day > today:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"as_of {day} is in the future (today is {today})")
    if day < today - OLDEST_AS_OF:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"as_of {day} is more than {OLDEST_AS_OF.days} days ago"
        )
    body = await service.reads.answer(seller_id, day)
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, UNKNOWN_SELLER)
    return Response(body, media_type="application/json")


def _after_id(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return decode_cursor(cursor)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor: not a cursor from this API") from error


@router.get("/{seller_id}/shipments")
async def seller_shipments(
    service: ServiceDep,
    seller_id: SellerId,
    marketplace: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    state: Literal["invalid", "at_risk", "pending", "valid"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    after_id = _after_id(cursor)
    async with service.engine.connect() as connection:
        if not await seller_exists(connection, seller_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, UNKNOWN_SELLER)
        page = await service.scoring.shipments(
            connection,
            seller_id,
            marketplace=marketplace,
            category=category,
            state=state,
            limit=limit,
            after_id=after_id,
        )
    return Response(PACKAGE_PAGE_CODEC.encode(page), media_type="application/json")
