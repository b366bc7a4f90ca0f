"""Real stand-ins for the notifier's neighbours: an SMTP server (aiosmtpd), a Slack webhook
endpoint and the scorer's shipments API (small aiohttp servers), plus factories."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from services.notifier.__main__ import MIGRATIONS_DIR
from shared.db import upgrade_database
from shared.schemas import (
    PACKAGE_PAGE_CODEC,
    CarrierHealthNote,
    ForecastPoint,
    Level,
    Money,
    PackagePage,
    PackageState,
    PackageView,
    Reason,
    ScoreSnapshot,
    TrackingLevel,
)
from tools.localstack import free_port, wait_for_port

SCORER_KEY = "test-scorer-key"
FIXED_TIME = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

# -- factories ------------------------------------------------------------------------

LEVEL_FIGURES: dict[Level, tuple[int, int, int | None]] = {
    # level: (valid of 400, headroom, days_to_breach)
    Level.OK: (396, 16, None),
    Level.WATCH: (386, 6, None),
    Level.AT_RISK: (384, 4, 5),
    Level.BREACH: (376, 0, 0),
}


def make_snapshot(
    level: Level = Level.AT_RISK,
    *,
    seller_id: str = "A1SELLER",
    marketplace: str = "SG",
    category: str = "Toys & Games",
    computed_at: datetime = FIXED_TIME,
    caught_up: bool = True,
) -> ScoreSnapshot:
    valid, headroom, days_to_breach = LEVEL_FIGURES[level]
    total = 400
    rate = valid / total
    slope = 0.0008 if level is Level.OK else -0.0008
    as_of = computed_at.date()
    return ScoreSnapshot(
        seller_id=seller_id,
        marketplace=marketplace,
        category=category,
        as_of=as_of,
        computed_at=computed_at,
        caught_up=caught_up,
        window_from=as_of - timedelta(days=30),
        window_to=as_of - timedelta(days=1),
        total=total,
        valid=valid,
        invalid=total - valid - 3,
        pending=3,
        vtr=rate,
        headroom=headroom,
        forecast=tuple(
            ForecastPoint(
                as_of + timedelta(days=day),
                expected := round(min(1.0, rate + slope * day), 4),
                round(max(0.0, expected - 0.002 * day), 4),
                expected,
                round(min(1.0, expected + 0.0015 * day), 4),
                round(min(1.0, max(0.0, (0.955 - expected) * 60 + 0.1)), 3) if level is not Level.OK else 0.0,
            )
            for day in range(1, 15)
        ),
        days_to_breach=days_to_breach,
        level=level,
        reasons={"service_lacks_delivery_scan": 9, "no_physical_scan": 6, "carrier_not_integrated": 2}
        if level is not Level.OK
        else {"no_physical_scan": 1},
        breach_probability=0.74 if level is Level.AT_RISK else (1.0 if level is Level.BREACH else 0.01),
        pending_reasons={"carrier_silent": 9, "stalled_in_transit": 4} if level is Level.AT_RISK else {},
        carrier_health=(
            CarrierHealthNote(
                carrier="yunexpress",
                origin="CN",
                silent_hours=30.2,
                received_scans=0,
                expected_scans=146.0,
                affected_packages=9,
            ),
        )
        if level is Level.AT_RISK
        else (),
    )


def make_package(
    order_id: str = "503-1234567-1234567",
    reason: Reason = Reason.SERVICE_LACKS_DELIVERY_SCAN,
    *,
    marketplace: str = "SG",
    category: str = "Toys & Games",
    tracking_number: str = "YT2412345678901234",
    carrier_name: str = "YunExpress",
    confirmed_at: datetime = FIXED_TIME - timedelta(days=6),
) -> PackageView:
    return PackageView(
        order_id=order_id,
        tracking_number=tracking_number,
        marketplace=marketplace,
        category=category,
        carrier_name=carrier_name,
        carrier="yunexpress",
        service="YunExpress Economy",
        order_value=Money("12.90", "SGD"),
        confirmed_at=confirmed_at,
        promised_delivery_date=date(2026, 11, 18),
        state=PackageState.INVALID,
        reason=reason,
        required_tracking=TrackingLevel.FULL,
        physical_scans=1,
        last_scan_at=None,
        probability_valid=0.0,
        action="scorer advice (English)",
        full_tracking_threshold=Money("7", "SGD"),
    )


EXAMPLE_PACKAGES: tuple[PackageView, ...] = (
    make_package("503-1234567-1234567", Reason.SERVICE_LACKS_DELIVERY_SCAN),
    make_package(
        "503-7654321-7654321",
        Reason.NO_PHYSICAL_SCAN,
        tracking_number="RR123456785CN",
        carrier_name="China Post",
    ),
    make_package(
        "503-1111111-2222222", Reason.CARRIER_NOT_INTEGRATED, tracking_number="FC0001234", carrier_name="Fast Cargo"
    ),
)


class FakeClock:
    """Time that only moves when the test says so."""

    def __init__(self, start: datetime = FIXED_TIME) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def notifier_db(database_url: str) -> str:
    """An empty database of each kind with the notifier's migrations applied."""
    await asyncio.to_thread(upgrade_database, MIGRATIONS_DIR, database_url)
    return database_url


# -- SMTP -----------------------------------------------------------------------------


@dataclass
class SmtpHandler:
    messages: list[EmailMessage] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refused:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted"


class SmtpServer:
    """aiosmtpd on a free port, which a test can stop and start again (same port)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = SmtpHandler()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.handler.messages if message["To"] == address]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# -- Slack webhook and scorer API -----------------------------------------------------


@dataclass
class SlackPost:
    hook: str
    payload: dict[str, Any]
    status: int


class SlackSink:
    """Answers ``POST /services/<hook>`` like Slack; scripted answers per hook, else 200 ok."""

    def __init__(self) -> None:
        self.posts: list[SlackPost] = []
        self.script: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        hook = request.match_info["hook"]
        payload = await request.json()
        status, body, headers = (self.script.get(hook) or [(200, "ok", {})])[0]
        if self.script.get(hook):
            self.script[hook].pop(0)
        self.posts.append(SlackPost(hook, payload, status))
        return web.Response(status=status, text=body, headers=headers)

    def url(self, hook: str) -> str:
        return f"{self.base_url}/services/{hook}"

    def delivered(self, hook: str) -> list[dict[str, Any]]:
        return [post.payload for post in self.posts if post.hook == hook and post.status == 200]


class ScorerStandIn:
    """The scorer's ``GET /v1/sellers/{seller_id}/shipments`` answering PackagePage JSON."""

    def __init__(self) -> None:
        self.packages: dict[tuple[str, str, str, str], list[PackageView]] = {}
        self.available = True
        self.requests: list[dict[str, str]] = []
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SCORER_KEY}":
            return web.json_response({"detail": "missing or invalid bearer token"}, status=401)
        if not self.available:
            return web.json_response({"detail": "unavailable"}, status=503)
        seller_id = request.match_info["seller_id"]
        query = request.query
        self.requests.append({"seller_id": seller_id, **query})
        found = self.packages.get((seller_id, query["marketplace"], query["category"], query["state"]), [])
        page = PackagePage(seller_id=seller_id, packages=tuple(found[: int(query["limit"])]), next_cursor=None)
        return web.Response(body=PACKAGE_PAGE_CODEC.encode(page), content_type="application/json")


@dataclass
class HttpStandIns:
    slack: SlackSink
    scorer: ScorerStandIn


@pytest.fixture
async def stand_ins() -> AsyncIterator[HttpStandIns]:
    slack, scorer = SlackSink(), ScorerStandIn()
    app = web.Application()
    app.router.add_post("/services/{hook}", slack.handle)
    app.router.add_get("/v1/sellers/{seller_id}/shipments", scorer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    slack.base_url = scorer.base_url = f"http://127.0.0.1:{port}"
    yield HttpStandIns(slack, scorer)
    await runner.cleanup()


async def eventually(condition: Callable[[], bool], limit_seconds: float = 20.0, message: str = "") -> None:
    """Wait for a condition driven by background work (no timing assertion: the timeout is a safety net)."""
    deadline = asyncio.get_running_loop().time() + limit_seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {limit_seconds}s: {message}")
        await asyncio.sleep(0.05)


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples"
