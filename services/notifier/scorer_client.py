"""Reads the packages to list in a message from the scorer's shipments API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import quote

import httpx

from shared.schemas import PACKAGE_PAGE_CODEC, ContractError, PackageView

#: Listed first: packages already invalid, then those at risk of becoming so.
STATES_TO_LIST = ("invalid", "at_risk")


class PackagesUnavailable(Exception):
    """The scorer could not be asked (down, slow, or answering something unexpected)."""


class PackageSource(Protocol):
    async def packages_to_fix(
        self, seller_id: str, marketplace: str, category: str, limit: int
    ) -> Sequence[PackageView]: ...


class ScorerClient:
    def __init__(self, base_url: str, api_key: str, timeout_seconds: float) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_seconds,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def packages_to_fix(
        self, seller_id: str, marketplace: str, category: str, limit: int
    ) -> Sequence[PackageView]:
        packages: list[PackageView] = []
        for state in STATES_TO_LIST:
            if len(packages) >= limit:
                break
            try:
                response = await self._client.get(
                    f"/v1/sellers/{quote(seller_id, safe='')}/shipments",
                    params={
                        "marketplace": marketplace,
                        "category": category,
                        "state": state,
                        "limit": limit - len(packages),
                    },
                )
            except httpx.HTTPError as error:
                raise PackagesUnavailable(f"scorer unreachable: {type(error).__name__}") from None
            if response.status_code != 200:
                raise PackagesUnavailable(f"scorer answered {response.status_code}")
            try:
                page = PACKAGE_PAGE_CODEC.decode(response.content)
            except ContractError as error:
                raise PackagesUnavailable(str(error)) from None
            packages.extend(page.packages)
        return packages[:limit]
