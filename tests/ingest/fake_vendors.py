"""Local HTTP servers that answer like the vendors' documented APIs, for the registrar and
the Yanwen poller (real HTTP over real sockets; only the vendor is stood in for).

- 17TRACK API v2.2 ``POST /register``: header ``17token``; body a JSON array of at most 40
  ``{"number", "carrier"?}``; reply ``{"code": 0, "data": {"accepted": [{"origin": 1,
  "number", "carrier"}], "rejected": [{"number", "error": {"code", "message"}}]}}``; a number
  registered before is rejected with ``-18019901`` ("already registered"); more than 40
  numbers is a whole-request error (``code`` -18010013 here, data errors).
- AfterShip Tracking API ``POST /trackings``: header ``as-api-key``; body
  ``{"tracking_number", "slug"?}``; ``201 {"meta": {"code": 201}, "data": {...}}``, a
  duplicate ``400 {"meta": {"code": 4003, "type": "BadRequest", "message": "Tracking already exists."}}``.
- Yanwen tracking query ``GET /api/tracking?nums=A,B``: header ``Authorization: <token>``, at
  most 30 numbers; reply ``{"code": 0, "message": "success", "result": [parcel, ...]}``.

Each server can be told to fail the next N calls with a status (429/503) to exercise retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tools.localstack import free_port


@dataclass
class FakeVendor:
    url: str = ""
    #: every request: (path, headers, parsed JSON body or query)
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    #: statuses to answer the next calls with before behaving normally
    fail_next: list[int] = field(default_factory=list)
    registered: set[str] = field(default_factory=set)
    #: numbers the vendor refuses outright (17TRACK: invalid number)
    refuse: set[str] = field(default_factory=set)
    #: Yanwen: number -> parcel in the tracking result
    parcels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _failing(self) -> web.Response | None:
        if self.fail_next:
            return web.json_response({"code": -1, "message": "try later"}, status=self.fail_next.pop(0))
        return None


KEY_17TRACK = "test-17track-key"
KEY_AFTERSHIP = "test-aftership-key"
TOKEN_YANWEN = "test-yanwen-token"


def _seventeen_track(vendor: FakeVendor) -> web.Application:
    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        vendor.requests.append((request.path, dict(request.headers), body))
        if request.headers.get("17token") != KEY_17TRACK:
            return web.json_response(
                {"code": -18010002, "data": {"errors": [{"code": -18010002, "message": "invalid key"}]}}, status=401
            )
        if (failure := vendor._failing()) is not None:
            return failure
        if not isinstance(body, list) or len(body) > 40:
            return web.json_response(
                {"code": -18010013, "data": {"errors": [{"code": -18010013, "message": "more than 40 numbers"}]}}
            )
        accepted, rejected = [], []
        for item in body:
            number = item["number"]
            if number in vendor.refuse:
                rejected.append(
                    {"number": number, "error": {"code": -18019909, "message": "No tracking information at this time."}}
                )
            elif number in vendor.registered:
                rejected.append(
                    {
                        "number": number,
                        "error": {
                            "code": -18019901,
                            "message": f"The tracking number '{number}' is already registered.",
                        },
                    }
                )
            else:
                vendor.registered.add(number)
                accepted.append({"origin": 1, "number": number, "carrier": item.get("carrier", 0)})
        return web.json_response({"code": 0, "data": {"accepted": accepted, "rejected": rejected}})

    app = web.Application()
    app.router.add_post("/track/v2.2/register", register)
    return app


def _aftership(vendor: FakeVendor) -> web.Application:
    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        vendor.requests.append((request.path, dict(request.headers), body))
        if request.headers.get("as-api-key") != KEY_AFTERSHIP:
            return web.json_response(
                {"meta": {"code": 401, "type": "Unauthorized", "message": "Invalid API key."}}, status=401
            )
        if (failure := vendor._failing()) is not None:
            return failure
        number = body.get("tracking_number")
        if number in vendor.registered:
            return web.json_response(
                {"meta": {"code": 4003, "type": "BadRequest", "message": "Tracking already exists."}, "data": {}},
                status=400,
            )
        vendor.registered.add(number)
        return web.json_response(
            {"meta": {"code": 201}, "data": {"tracking_number": number, "slug": body.get("slug"), "tag": "Pending"}},
            status=201,
        )

    app = web.Application()
    app.router.add_post("/tracking/2024-04/trackings", create)
    return app


def _yanwen(vendor: FakeVendor) -> web.Application:
    async def tracking(request: web.Request) -> web.Response:
        numbers = [n for n in request.query.get("nums", "").split(",") if n]
        vendor.requests.append((request.path, dict(request.headers), numbers))
        if request.headers.get("Authorization") != TOKEN_YANWEN:
            return web.json_response({"code": 401, "message": "invalid token", "result": []}, status=401)
        if (failure := vendor._failing()) is not None:
            return failure
        if len(numbers) > 30:
            return web.json_response({"code": 1, "message": "at most 30 numbers", "result": []})
        result = [
            vendor.parcels.get(number, {"tracking_number": number, "tracking_status": "NOTFOUND", "checkpoints": []})
            for number in numbers
        ]
        return web.json_response({"code": 0, "message": "success", "result": result})

    app = web.Application()
    app.router.add_get("/api/tracking", tracking)
    return app


@asynccontextmanager
async def serving(make: Callable[[FakeVendor], web.Application], base_path: str) -> AsyncIterator[FakeVendor]:
    vendor = FakeVendor()
    runner = web.AppRunner(make(vendor))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    vendor.url = f"http://127.0.0.1:{port}{base_path}"
    try:
        yield vendor
    finally:
        await runner.cleanup()


def seventeen_track_server() -> Any:
    return serving(_seventeen_track, "/track/v2.2")


def aftership_server() -> Any:
    return serving(_aftership, "/tracking/2024-04")


def yanwen_server() -> Any:
    return serving(_yanwen, "")
