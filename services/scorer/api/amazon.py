"""``GET /v1/sellers/{seller_id}/amazon``: Amazon's own VTR per marketplace (its seller
performance report) beside vtrwatch's over the same reporting range, and the difference
(docs/amazon.md)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from services.scorer.api.deps import SellerId, ServiceDep
from services.scorer.storage.amazon import seller_comparisons

router = APIRouter(prefix="/v1/sellers", tags=["scores"])
NO_REPORT = "no Amazon performance report for this seller yet: connect Amazon (docs/amazon.md)"


def no_report(_seller_id: str) -> str:
    """The 404 detail of a seller without a report, and of another seller than a seller key's own."""
    return NO_REPORT


NO_AMAZON_REPORT = "no Amazon performance report for this seller yet: connect Amazon (docs/amazon.md)"


@router.get("/{seller_id}/amazon")
async def seller_amazon_vtr(service: ServiceDep, seller_id: SellerId) -> dict[str, object]:
    async with service.engine.connect() as connection:
        marketplaces = await seller_comparisons(connection, seller_id)
    if not marketplaces:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_REPORT)
    return {"seller_id": seller_id, "marketplaces": marketplaces}
