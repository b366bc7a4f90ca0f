"""What the console shows of the notifier: the seller's subscription and the notifications
sent, read from the notifier's API (each service reads only its own tables). Read-only; if
the notifier does not answer, the page says so and the rest of the console works."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)


@dataclass
class NotifierView:
    subscription: dict[str, Any] | None
    notifications: list[dict[str, Any]] = field(default_factory=list)


class NotifierReader:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_seconds: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = timeout_seconds
        self._transport = transport

    async def read(self, seller_id: str, limit: int = 50) -> NotifierView | None:
        """None when the notifier cannot be asked (the reason is logged, without the seller)."""
        path = f"/v1/sellers/{quote(seller_id, safe='')}"
        try:
            async with httpx.AsyncClient(
                base_url=self._base_url, headers=self._headers, timeout=self._timeout, transport=self._transport
            ) as client:
                subscription = await client.get(f"{path}/subscription")
                notifications = await client.get(f"{path}/notifications", params={"limit": limit})
        except httpx.HTTPError as error:
            log.warning("notifier unreachable from the console", extra={"error": type(error).__name__})
            return None
        if subscription.status_code not in (200, 404) or notifications.status_code != 200:
            log.warning(
                "notifier refused the console's request",
                extra={"status": [subscription.status_code, notifications.status_code]},
            )
            return None
        return NotifierView(
            subscription=subscription.json() if subscription.status_code == 200 else None,
            notifications=list(notifications.json()),
        )
