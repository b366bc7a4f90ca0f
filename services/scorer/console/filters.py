"""The console's query parameters: the package list's filters, shared by its pages and exports."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from services.scorer.storage import console as queries
from shared.schemas import Reason

OptionalMarketplace = Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")]
OptionalCategory = Annotated[str | None, Query(min_length=1, max_length=200)]
StateFilter = Annotated[str, Query(pattern="^(" + "|".join(queries.PACKAGE_FILTERS) + ")$")]
ReasonFilter = Annotated[str | None, Query(max_length=48)]


def reason_of(value: str | None) -> Reason | None:
    if not value:
        return None
    try:
        return Reason(value)
    except ValueError:
        return None
