"""Drive the real HTTP APIs with a replay plan, and read the scorer back.

Shipments go through ``POST /v1/shipments`` (bearer token), cancellations through
``POST /v1/shipments/{tracking_number}/cancel``, scans through each carrier's webhook.
A 503 is retried after its ``Retry-After``, as a carrier would; anything else that is not
accepted stops the replay with the reply, because the simulator only sends valid requests.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx

from tools.simulate.plan import Step
from tools.simulate.scenario import Package, Scenario
from tools.simulate.truth import Tally, vtr_by_key
from tools.simulate.webhooks import HttpRequest, Push, WebhookSecrets, render

SHIPMENTS_PER_REQUEST = 1000
MAX_ATTEMPTS = 8


class ReplayError(RuntimeError):
    """The system refused a request the simulator knows to be valid."""


@dataclass
class ReplayStats:
    shipments: int = 0
    cancellations: int = 0
    pushes: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        pushes = ", ".join(f"{source} {count}" for source, count in sorted(self.pushes.items()))
        return (
            f"{self.shipments} shipments, {self.cancellations} cancellations, "
            f"{sum(self.pushes.values())} pushes ({pushes}), {self.retries} retries, {self.seconds:.1f}s"
        )


def shipment_json(package: Package) -> dict[str, Any]:
    service = package.service
    return {
        "order_id": package.order_id,
        "seller_id": package.seller_id,
        "marketplace": package.marketplace,
        "category": package.category,
        "carrier": service.carrier_name,
        "service": service.service,
        "tracking_number": package.tracking_number,
        "order_value": {"amount": str(package.value), "currency": package.currency},
        "ship_from_country": package.ship_from,
        "confirmed_at": package.confirmed_at.isoformat(),
        "promised_delivery_date": package.promised_date.isoformat(),
        "buy_shipping": package.buy_shipping,
    }


class Driver:
    def __init__(
        self,
        ingest_url: str,
        api_key: str,
        secrets: WebhookSecrets,
        concurrency: int = 16,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.api_key = api_key
        self.secrets = secrets
        self.stats = ReplayStats()
        self._limit = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(
            base_url=ingest_url,
            timeout=timeout_seconds,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Driver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, build: Callable[[], HttpRequest], what: str) -> None:
        """Send, retrying 503s and dropped connections; the request is rebuilt per attempt
        (YunExpress signs a fresh timestamp)."""
        async with self._limit:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                request = build()
                try:
                    response = await self._client.post(request.path, content=request.body, headers=request.headers)
                except httpx.TransportError as error:
                    if attempt == MAX_ATTEMPTS:
                        raise ReplayError(f"{what}: {error!r}") from error
                    self.stats.retries += 1
                    await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
                    continue
                if request.accepted(response.status_code, response.content):
                    return
                if response.status_code == 503 or (response.status_code == 200 and attempt < MAX_ATTEMPTS):
                    # 503, or a carrier ack that asks for a retry (China Post S00001).
                    self.stats.retries += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                raise ReplayError(f"{what}: HTTP {response.status_code} {response.text[:500]}")
            raise ReplayError(f"{what}: not accepted after {MAX_ATTEMPTS} attempts")

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}", "content-type": "application/json"}

    async def send_shipments(self, packages: Iterable[Package]) -> None:
        batch = [shipment_json(package) for package in packages]
        for index in range(0, len(batch), SHIPMENTS_PER_REQUEST):
            chunk = batch[index : index + SHIPMENTS_PER_REQUEST]
            body = httpx.Request("POST", "/", json=chunk).content
            expected = len(chunk)

            def build(body: bytes = body, expected: int = expected) -> HttpRequest:
                return HttpRequest(
                    "/v1/shipments",
                    body,
                    self._auth(),
                    accepted=lambda status, reply: status == 202 and _all_accepted(reply, expected),
                )

            await self._send(build, f"POST /v1/shipments ({len(chunk)})")
            self.stats.shipments += len(chunk)

    async def send_cancellation(self, package: Package) -> None:
        assert package.cancelled_at is not None
        body = httpx.Request(
            "POST", "/", json={"cancelled_at": package.cancelled_at.isoformat(), "order_id": package.order_id}
        ).content
        path = f"/v1/shipments/{package.tracking_number}/cancel"
        await self._send(
            lambda: HttpRequest(path, body, self._auth(), accepted=lambda status, _: status == 202), f"POST {path}"
        )
        self.stats.cancellations += 1

    async def send_push(self, push: Push) -> None:
        await self._send(lambda: render(push, self.secrets, datetime.now(UTC)), f"{push.source} push")
        self.stats.pushes[push.source.value] += 1

    async def run_step(self, step: Step) -> None:
        await self.send_shipments(step.shipments)
        await asyncio.gather(*(self.send_push(push) for push in step.pushes))
        await asyncio.gather(*(self.send_cancellation(package) for package in step.cancellations))

    async def replay(
        self,
        steps: list[Step],
        day_seconds: float = 0.0,
        after_step: Callable[[Step], Awaitable[None]] | None = None,
    ) -> ReplayStats:
        """Play every step; ``day_seconds`` paces the simulated days for people watching."""
        started = time.monotonic()
        for step in steps:
            step_started = time.monotonic()
            await self.run_step(step)
            if after_step is not None:
                await after_step(step)
            await asyncio.sleep(max(0.0, day_seconds - (time.monotonic() - step_started)))
        self.stats.seconds = time.monotonic() - started
        return self.stats


def _all_accepted(reply: bytes, expected: int) -> bool:
    import json

    try:
        answer = json.loads(reply)
    except ValueError:
        return False
    return bool(answer.get("accepted") == expected and not answer.get("rejected"))


class ScorerClient:
    def __init__(self, scorer_url: str, api_key: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=scorer_url, timeout=30.0, headers={"authorization": f"Bearer {api_key}"}
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def vtr(self, seller_id: str, as_of: date | None = None) -> dict[str, Any] | None:
        params = {"as_of": as_of.isoformat()} if as_of else {}
        response = await self._client.get(f"/v1/sellers/{seller_id}/vtr", params=params)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@dataclass(frozen=True)
class Mismatch:
    key: tuple[str, str, str]
    truth: Tally
    scorer: Tally | None

    def __str__(self) -> str:
        seller, marketplace, category = self.key
        got = f"{self.scorer.valid}/{self.scorer.total}" if self.scorer else "missing"
        return f"{seller} {marketplace} {category}: truth {self.truth.valid}/{self.truth.total}, scorer {got}"


async def compare_with_scorer(
    scenario: Scenario, scorer: ScorerClient, as_of: date, known_at: datetime
) -> tuple[dict[tuple[str, str, str], Tally], list[Mismatch]]:
    """Truth vs the scorer's ``GET /v1/sellers/{id}/vtr`` for every seller-category."""
    truth = vtr_by_key(scenario, as_of, known_at)
    reported: dict[tuple[str, str, str], Tally] = {}
    for seller in scenario.config.sellers:
        answer = await scorer.vtr(seller.seller_id, as_of)
        for category in (answer or {}).get("categories", []):
            if category.get("total", 0):
                key = (seller.seller_id, category["marketplace"], category["category"])
                reported[key] = Tally(int(category["total"]), int(category["valid"]))
    mismatches = [
        Mismatch(key, truth.get(key, Tally()), reported.get(key))
        for key in sorted(set(truth) | set(reported))
        if truth.get(key, Tally()) != reported.get(key)
    ]
    return truth, mismatches


async def wait_for_agreement(
    scenario: Scenario,
    scorer: ScorerClient,
    as_of: date,
    known_at: datetime,
    timeout_seconds: float = 90.0,
    poll_seconds: float = 1.0,
) -> tuple[dict[tuple[str, str, str], Tally], list[Mismatch]]:
    """Poll until the scorer has caught up and agrees, or the timeout passes (returns the last diff)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            truth, mismatches = await compare_with_scorer(scenario, scorer, as_of, known_at)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(poll_seconds)
            continue
        if not mismatches or time.monotonic() > deadline:
            return truth, mismatches
        await asyncio.sleep(poll_seconds)
