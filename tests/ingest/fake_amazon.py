"""A local HTTP server that answers as Amazon documents (real HTTP over real sockets): the
Login with Amazon token endpoint and the SP-API operations vtrwatch calls.

Every answer body starts from the models' own ``x-amzn-api-sandbox`` static responses
(``amazon_models/sandbox_responses.json``, copied from amzn/selling-partner-api-models):
orders are the sandbox's merchant-fulfilled UK order with its package, re-dated and given
the marketplace, carrier and tracking number a test needs; the catalogue item is the
sandbox's getCatalogItem answer; the report flow answers createReport, getReport
(IN_PROGRESS first, as the sandbox's example, then DONE) and getReportDocument in their
shapes, and the document is the account health schema's own example, gzipped.

- ``POST /auth/o2/token`` (form): ``grant_type=authorization_code`` + a known, unused
  ``code`` -> ``{"access_token", "refresh_token", "token_type", "expires_in"}``;
  ``grant_type=refresh_token`` + a live refresh token -> an access token; otherwise
  ``400 {"error": "invalid_grant", "error_description": ...}`` (LWA's error shape).
- SP-API calls need ``x-amz-access-token`` of a live access token (else 403 with
  ``errors[].code`` ``Unauthorized``), and answer ``x-amzn-RateLimit-Limit``. ``throttle``
  makes the next calls answer 429 with that header.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gzip
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from services.ingest.amazon.client import USAGE_PLANS
from tools.localstack import free_port

SANDBOX = json.loads((Path(__file__).parent / "amazon_models" / "sandbox_responses.json").read_text())
CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "test-lwa-secret"
APPLICATION_ID = "amzn1.sp.solution.test"


def mfn_order(
    order_id: str,
    *,
    marketplace_id: str,
    carrier: str,
    tracking_number: str,
    ship_time: str,
    deliver_by_latest: str,
    asin: str,
    total: tuple[str, str] = ("34.99", "GBP"),
    updated: str = "2026-12-01T10:00:00Z",
    status: str = "SHIPPED",
) -> dict[str, Any]:
    """The sandbox's merchant-fulfilled order (searchOrders static case 2) with these values."""
    order: dict[str, Any] = copy.deepcopy(SANDBOX["searchOrders"][1]["orders"][0])
    order["orderId"] = order_id
    order["lastUpdatedTime"] = updated
    order["salesChannel"]["marketplaceId"] = marketplace_id
    order["fulfillment"]["fulfillmentStatus"] = status
    order["fulfillment"]["deliverByWindow"]["latestDateTime"] = deliver_by_latest
    order["proceeds"]["grandTotal"] = {"amount": total[0], "currencyCode": total[1]}
    order["orderItems"][0]["product"]["asin"] = asin
    package = order["packages"][0]
    package.update(carrier=carrier, trackingNumber=tracking_number, shipTime=ship_time)
    package["packageStatus"] = {"status": "SHIPPED", "detailedStatus": "SHIPPED"}
    return order


def catalog_item(asin: str, marketplace_id: str, display_group: str | None) -> dict[str, Any]:
    """The sandbox's getCatalogItem answer for ``asin`` in ``marketplace_id``."""
    item: dict[str, Any] = copy.deepcopy(SANDBOX["getCatalogItem"][0])
    item["asin"] = asin
    for entry in (*item["summaries"], *item["classifications"]):
        entry["marketplaceId"] = marketplace_id
    if display_group is None:
        item["summaries"][0].pop("websiteDisplayGroup")
        item["classifications"][0]["classifications"][0]["parent"]["parent"]["parent"]["displayName"] = "Collectibles"
    else:
        item["summaries"][0]["websiteDisplayGroup"] = display_group
    return item


def performance_report(marketplaces: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The account health schema's example with one entry per marketplace id (its
    ``validTrackingRate`` replaced by the given one)."""
    example = SANDBOX["accountHealthReport_example"]
    metrics = []
    for marketplace_id, vtr in marketplaces.items():
        entry = copy.deepcopy(example["performanceMetrics"][0])
        entry["marketplaceId"] = marketplace_id
        entry["validTrackingRate"] = vtr
        metrics.append(entry)
    return {**copy.deepcopy(example), "performanceMetrics": metrics}


@dataclass
class FakeAmazon:
    url: str = ""
    #: consent codes LWA will exchange once, -> the refresh token it issues
    codes: dict[str, str] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    #: pages of searchOrders, answered in order for one search (each page's orders)
    order_pages: list[list[dict[str, Any]]] = field(default_factory=list)
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the report document's JSON, and how getReport ends (DONE or FATAL, in turn)
    report: dict[str, Any] = field(default_factory=dict)
    report_endings: list[str] = field(default_factory=list)
    throttle: int = 0
    #: createReport bodies, in order
    report_requests: list[dict[str, Any]] = field(default_factory=list)
    #: every request: (operation, query or form, headers)
    calls: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    #: With a value, a first-page searchOrders waits up to that many seconds for a second
    #: search to be in flight (the worker serving sellers side by side); the most seen at once.
    hold_searches_seconds: float | None = None
    searches_in_flight: int = 0
    most_searches_in_flight: int = 0
    _two_searching: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _report_checks: dict[str, int] = field(default_factory=dict)

    def operations(self) -> list[str]:
        return [name for name, _, _ in self.calls]


def _rate_headers(operation: str) -> dict[str, str]:
    return {"x-amzn-RateLimit-Limit": str(USAGE_PLANS[operation][0]), "x-amzn-RequestId": "test-request"}


def _app(amazon: FakeAmazon) -> web.Application:  # noqa: C901 - one handler per Amazon operation, side by side as Amazon documents them
    def refuse_grant(description: str) -> web.Response:
        return web.json_response({"error": "invalid_grant", "error_description": description}, status=400)

    async def token(request: web.Request) -> web.Response:
        form = dict(await request.post())
        amazon.calls.append(("lwa", {k: str(v) for k, v in form.items() if k == "grant_type"}, dict(request.headers)))
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"}, status=401
            )
        access = f"Atza|access-{next(amazon._ids)}"
        if form.get("grant_type") == "authorization_code":
            refresh = amazon.codes.pop(str(form.get("code")), None)
            if refresh is None:
                return refuse_grant("The authorization code is invalid or has expired")
            amazon.refresh_tokens.add(refresh)
            amazon.access_tokens.add(access)
            return web.json_response(
                {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": 3600}
            )
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in amazon.refresh_tokens:
            amazon.access_tokens.add(access)
            return web.json_response({"access_token": access, "token_type": "bearer", "expires_in": 3600})
        return refuse_grant("The request has an invalid grant parameter : refresh_token")

    def guarded(operation: str, handler: Any) -> Any:
        async def serve(request: web.Request) -> web.Response:
            amazon.calls.append((operation, dict(request.query), dict(request.headers)))
            if request.headers.get("x-amz-access-token") not in amazon.access_tokens:
                body = {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied."}]}
                return web.json_response(body, status=403, headers=_rate_headers(operation))
            if amazon.throttle:
                amazon.throttle -= 1
                body = {
                    "errors": [
                        {"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}
                    ]
                }
                return web.json_response(body, status=429, headers=_rate_headers(operation))
            status, body = await handler(request)
            return web.Response(
                body=orjson.dumps(body),
                status=status,
                content_type="application/json",
                headers=_rate_headers(operation),
            )

        return serve

    async def search_orders(request: web.Request) -> tuple[int, Any]:
        query = request.query
        if query.get("fulfilledBy") != "MERCHANT" or "lastUpdatedAfter" not in query or "createdAfter" in query:
            return 400, SANDBOX["searchOrders_400"][0]
        page = int(query.get("paginationToken", "page-0").removeprefix("page-"))
        if amazon.hold_searches_seconds is not None and page == 0:
            amazon.searches_in_flight += 1
            amazon.most_searches_in_flight = max(amazon.most_searches_in_flight, amazon.searches_in_flight)
            if amazon.searches_in_flight >= 2:
                amazon._two_searching.set()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(amazon._two_searching.wait(), amazon.hold_searches_seconds)
            finally:
                amazon.searches_in_flight -= 1
        pages = amazon.order_pages or [[]]
        body: dict[str, Any] = {"orders": pages[page], "lastUpdatedBefore": "2026-12-01T12:00:00Z"}
        if page + 1 < len(pages):
            body["pagination"] = {"nextToken": f"page-{page + 1}"}
        return 200, body

    async def get_catalog_item(request: web.Request) -> tuple[int, Any]:
        item = amazon.catalog.get(request.match_info["asin"])
        if item is None:
            return 404, {"errors": [{"code": "NotFound", "message": "Requested item not found."}]}
        return 200, item

    async def create_report(request: web.Request) -> tuple[int, Any]:
        body = await request.json()
        amazon.report_requests.append(body)
        if body.get("reportType") != "GET_V2_SELLER_PERFORMANCE_REPORT" or not body.get("marketplaceIds"):
            return 400, {"errors": [{"code": "InvalidInput", "message": "Invalid input"}]}
        report_id = f"{SANDBOX['createReport'][0]['reportId']}-{next(amazon._ids)}"
        amazon._report_checks[report_id] = 0
        return 202, {"reportId": report_id}

    async def get_report(request: web.Request) -> tuple[int, Any]:
        report_id = request.match_info["report_id"]
        report = {**SANDBOX["getReport"][0], "reportId": report_id, "reportType": "GET_V2_SELLER_PERFORMANCE_REPORT"}
        checks = amazon._report_checks[report_id] = amazon._report_checks.get(report_id, 0) + 1
        if checks == 1:
            return 200, report  # IN_PROGRESS, as the sandbox's example
        ending = amazon.report_endings.pop(0) if amazon.report_endings else "DONE"
        amazon._report_checks[report_id] = -1000  # keep answering this ending
        report["processingStatus"] = ending
        if ending == "DONE":
            report["reportDocumentId"] = f"doc-{report_id}"
        return 200, report

    async def get_report_document(request: web.Request) -> tuple[int, Any]:
        document_id = request.match_info["document_id"]
        return 200, {
            **SANDBOX["getReportDocument"][0],
            "reportDocumentId": document_id,
            "url": f"{amazon.url}/download/{document_id}",
            "compressionAlgorithm": "GZIP",
        }

    async def download(request: web.Request) -> web.Response:
        amazon.calls.append(("download", {}, dict(request.headers)))
        return web.Response(body=gzip.compress(orjson.dumps(amazon.report)), content_type="application/octet-stream")

    app = web.Application()
    app.router.add_post("/auth/o2/token", token)
    app.router.add_get("/orders/2026-01-01/orders", guarded("searchOrders", search_orders))
    app.router.add_get("/catalog/2022-04-01/items/{asin}", guarded("getCatalogItem", get_catalog_item))
    app.router.add_post("/reports/2021-06-30/reports", guarded("createReport", create_report))
    app.router.add_get("/reports/2021-06-30/reports/{report_id}", guarded("getReport", get_report))
    app.router.add_get("/reports/2021-06-30/documents/{document_id}", guarded("getReportDocument", get_report_document))
    app.router.add_get("/download/{document_id}", download)
    return app


@asynccontextmanager
async def amazon_server() -> AsyncIterator[FakeAmazon]:
    amazon = FakeAmazon()
    runner = web.AppRunner(_app(amazon))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    amazon.url = f"http://127.0.0.1:{port}"
    try:
        yield amazon
    finally:
        await runner.cleanup()
