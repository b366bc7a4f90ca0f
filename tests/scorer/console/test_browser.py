"""The console as a person uses it: Debian's Chromium driven by Playwright against the
scorer app served by uvicorn on a real port, with a seeded seller (SQLite).

Marked ``browser`` (``pytest -m browser`` runs only these); ``make test`` installs
Chromium when it is missing. Without Chromium or Playwright they skip with the reason,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from services.scorer.app import create_app
from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.policy import load_policy
from shared.console_links import sign
from shared.db import create_engine
from tests.scorer.conftest import TODAY, migrate
from tests.scorer.console.conftest import OTHER_SELLER, SECRET, SELLER, STAFF_KEY, console_settings, links, seed
from tools.localstack import free_port, wait_for_port

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("VTR_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the screenshots of docs/console.md are written when VTR_CONSOLE_SCREENSHOTS=1.
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "images"
STAFF = {"Authorization": f"Bearer {STAFF_KEY}"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason + " (CI=true: browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scorer's API and console on a free port, over a seeded SQLite database."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('console')}/scorer.db"
    migrate(url)

    async def fill() -> None:
        engine = create_engine(url)
        await seed(engine, Evaluator(load_policy()))
        await engine.dispose()

    asyncio.run(fill())
    port = free_port()
    app = create_app(console_settings(url), today=lambda: TODAY, background=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", port, timeout_seconds=30)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        _unavailable(f"Chromium not found at {CHROMIUM} (make test installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900}, accept_downloads=True)
    yield context
    context.close()


def api(server: str, path: str, **params: str) -> Any:
    response = httpx.get(server + path, params=params, headers=STAFF, timeout=10)
    response.raise_for_status()
    return response.json()


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def expect(target: Any) -> Any:
    """Playwright's auto-waiting assertions, imported when used: without Playwright the
    ``browser`` fixture has already skipped (or failed under CI) with the reason."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def click_and_load(page: Any, selector: str, url: re.Pattern[str]) -> None:
    """Click a link or submit button that loads another page, and wait until that page has
    loaded. ``page.click`` returns once the click is dispatched, not when the next page is
    there: reading the DOM right after it can read the page being left (a flaky test under
    load). ``url`` must not match the current address, or the wait returns at once."""
    assert not url.search(page.url), f"{url.pattern} already matches {page.url}: the wait would not wait"
    page.click(selector)
    page.wait_for_url(url, wait_until="load")


def open_link(context: Any, server: str, seller_id: str = SELLER, **scope: str) -> Any:
    page = context.new_page()
    response = page.goto(links(server).link(seller_id, datetime.now(UTC), **scope))
    assert response is not None and response.status == 200
    return page


def test_overview_shows_the_numbers_of_the_api_sorted_by_urgency(server: str, context: Any) -> None:
    page = open_link(context, server)
    # The signed link was exchanged for a cookie: the token is no longer in the address.
    assert "t=" not in page.url and page.url.endswith(f"/console/{SELLER}")
    body = api(server, f"/v1/sellers/{SELLER}/vtr")
    rows = page.locator("#overview tbody tr")
    assert rows.count() == len(body["categories"])
    by_scope = {(c["marketplace"], c["category"]): c for c in body["categories"]}
    shown = []
    for i in range(rows.count()):
        row = rows.nth(i)
        scope = (row.get_attribute("data-marketplace"), row.get_attribute("data-category"))
        expected = by_scope[scope]
        assert row.locator("[data-field=vtr]").inner_text() == pct(expected["vtr"])
        assert row.locator("[data-field=headroom]").inner_text() == str(expected["headroom"])
        assert row.get_attribute("data-level") == expected["level"]
        shown.append(scope)
    # AT_RISK first, then WATCH, then OK.
    assert shown == [("AE", "Home & Kitchen"), ("US", "toys"), ("SG", "Books")]
    if os.environ.get("VTR_CONSOLE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "console-overview-en.png"), full_page=True)


def test_language_follows_the_browser_and_the_switch(server: str, browser: Any) -> None:
    context = browser.new_context(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    try:
        page = open_link(context, server)
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert page.locator("h1").inner_text() == "总览"
        assert "有风险" in page.locator("#overview").inner_text()
        if os.environ.get("VTR_CONSOLE_SCREENSHOTS"):
            page.screenshot(path=str(SCREENSHOTS / "console-overview-zh-CN.png"))
        click_and_load(page, "#language-switch", re.compile(r"[?&]lang=en(&|$)"))
        expect(page.locator("html")).to_have_attribute("lang", "en")
        assert page.locator("h1").inner_text() == "Overview"
        # The choice sticks (cookie) over the browser's language.
        page.goto(page.url.split("?")[0])
        expect(page.locator("html")).to_have_attribute("lang", "en")
        click_and_load(page, "#language-switch", re.compile(r"[?&]lang=zh-CN(&|$)"))
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        assert page.locator("h1").inner_text() == "总览"
    finally:
        context.close()


def test_category_page_numbers_chart_and_history(server: str, context: Any) -> None:
    page = open_link(context, server)
    click_and_load(page, "a.category-link >> text=Home & Kitchen", re.compile(r"/category\?"))
    assert page.locator("#category-title").inner_text().startswith("Home & Kitchen")
    ae = next(c for c in api(server, f"/v1/sellers/{SELLER}/vtr")["categories"] if c["marketplace"] == "AE")
    assert page.locator("#numbers [data-field=vtr]").inner_text() == pct(ae["vtr"])
    assert page.locator("#numbers [data-field=headroom]").inner_text() == str(ae["headroom"])
    # The chart is an inline SVG with the floor, the past line and the forecast.
    svg = page.locator("svg.chart").first
    assert svg.locator("line.floor").count() == 1
    assert svg.locator("polyline.history").count() >= 1
    assert svg.locator("polyline.forecast").count() >= 1
    page.click("summary")
    forecast = page.locator("#forecast tbody tr")
    assert forecast.count() == 14
    for i, point in enumerate(ae["forecast"]):
        cells = forecast.nth(i).locator("td")
        assert cells.nth(0).inner_text() == point["date"]
        assert cells.nth(1).inner_text() == pct(point["vtr"])
    # Thirty past days, each as GET .../vtr?as_of= gives it (three checked over HTTP).
    history = page.locator("#history tbody tr")
    assert history.count() == 30
    for offset in (30, 12, 1):
        day = (TODAY - timedelta(days=offset)).isoformat()
        past = api(server, f"/v1/sellers/{SELLER}/vtr", as_of=day)["categories"]
        expected = next(c for c in past if c["marketplace"] == "AE")
        row = history.nth(30 - offset)
        assert row.locator("td").nth(0).inner_text() == day
        assert row.locator("td").nth(1).inner_text() == pct(expected["vtr"])
    if os.environ.get("VTR_CONSOLE_SCREENSHOTS"):
        page.click("summary")
        page.set_viewport_size({"width": 1280, "height": 1500})
        page.screenshot(path=str(SCREENSHOTS / "console-category-en.png"))


def test_packages_filter_page_and_match_the_shipments_api(server: str, context: Any) -> None:
    page = open_link(context, server, marketplace="AE", category="Home & Kitchen")
    page.select_option("#state-filter", "invalid")
    click_and_load(page, "#apply-filter", re.compile(r"[?&]state=invalid(&|$)"))
    # The loaded page says which filter it applied (its select is rendered by the server).
    expect(page.locator("#state-filter")).to_have_value("invalid")
    shown = [row.get_attribute("data-order") for row in page.locator("#packages tbody tr").all()]
    listed = api(
        server, f"/v1/sellers/{SELLER}/shipments", marketplace="AE", category="Home & Kitchen", state="invalid"
    )
    assert sorted(shown) == sorted(p["order_id"] for p in listed["packages"])
    assert shown
    # All packages: several pages, no order on two pages, every page the page size.
    page.select_option("#state-filter", "all")
    click_and_load(page, "#apply-filter", re.compile(r"[?&]state=all(&|$)"))
    expect(page.locator("#state-filter")).to_have_value("all")
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += [row.get_attribute("data-order") or "" for row in page.locator("#packages tbody tr").all()]
        if page.locator("#next-page").count() == 0:
            break
        click_and_load(page, "#next-page", re.compile(rf"[?&]page={pages + 1}(&|$)"))
    assert pages >= 3
    assert len(seen) == len(set(seen))
    total = 0
    cursor = None
    while True:
        params = {"marketplace": "AE", "category": "Home & Kitchen", "limit": "500"}
        if cursor:
            params["cursor"] = cursor
        chunk = api(server, f"/v1/sellers/{SELLER}/shipments", **params)
        total += len(chunk["packages"])
        cursor = chunk["next_cursor"]
        if not cursor:
            break
    assert len(seen) == total
    click_and_load(page, "#previous-page", re.compile(rf"[?&]page={pages - 1}(&|$)"))
    assert f"{pages - 1} / {pages}" in page.locator("#page-of").inner_text().replace("Page ", "").replace(" of ", " / ")


def test_csv_download_opens_with_chinese_text(server: str, browser: Any) -> None:
    context = browser.new_context(locale="zh-CN", accept_downloads=True)
    try:
        page = open_link(context, server, marketplace="AE", category="Home & Kitchen")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        with page.expect_download() as download_info:
            page.click("#download-csv")
        download = download_info.value
        data = Path(download.path()).read_bytes()
        assert data.startswith(b"\xef\xbb\xbf"), "CSV must start with the UTF-8 byte-order mark for Excel"
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        assert rows[0][:2] == ["订单", "追踪号"]
        assert len(rows) > 1
        assert any("云途全球专线挂号" in cell for row in rows[1:] for cell in row) or any(
            "扫描" in row[-1] for row in rows[1:]
        )
        assert all(row[2] == "AE" and row[3] == "Home & Kitchen" for row in rows[1:])
    finally:
        context.close()


def test_signed_links_open_one_seller_only(server: str, context: Any) -> None:
    page = open_link(context, server)
    assert page.locator("#seller-id").inner_text() == SELLER
    # The same browser, another seller's console: the cookie of the first does not open it.
    response = page.goto(f"{server}/console/{OTHER_SELLER}")
    assert response is not None and response.status == 403
    assert "secret-category-of-another-seller" not in page.content()
    # A link signed for SELLER, used on OTHER_SELLER's address.
    token = sign(SECRET.encode(), SELLER, int(time.time()) + 3600)
    response = page.goto(f"{server}/console/{OTHER_SELLER}?t={token}")
    assert response is not None and response.status == 403
    assert page.locator("#denied").is_visible()
    assert "secret-category-of-another-seller" not in page.content()


@pytest.mark.parametrize("change", ["signature", "expiry", "seller"])
def test_tampered_link_gets_a_clear_page_and_403(server: str, browser: Any, change: str) -> None:
    context = browser.new_context(locale="en-US")
    try:
        link = links(server).link(SELLER, datetime.now(UTC))
        if change == "signature":
            tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        elif change == "expiry":
            expires = link.split("t=")[1].split(".")[0]
            tampered = link.replace(f"t={expires}", f"t={int(expires) + 86400}")
        else:
            tampered = link.replace(f"/console/{SELLER}", f"/console/{OTHER_SELLER}")
        page = context.new_page()
        response = page.goto(tampered)
        assert response is not None and response.status == 403
        assert "not valid" in page.locator("#denied").inner_text()
        assert SELLER not in page.locator("main").inner_text() or change == "seller"
    finally:
        context.close()


def test_expired_link_says_so(server: str, browser: Any) -> None:
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        old = links(server).link(SELLER, datetime.now(UTC) - timedelta(days=8))
        response = page.goto(old)
        assert response is not None and response.status == 403
        assert "expired" in page.locator("#denied").inner_text()
    finally:
        context.close()


def test_email_chart_renders_as_bars_in_a_browser_engine(browser: Any, tmp_path: Path) -> None:
    """The e-mail's HTML part in Chromium: 14 bars of the track's width, the floor marked in
    each, and the band drawn when the forecast carries percentiles."""
    import msgspec

    from services.notifier.alerts import NoticeKind
    from services.notifier.email_chart import TRACK_PX
    from services.notifier.messages import AlertMessage, Language, compose_email
    from shared.schemas import ForecastPoint, Level
    from tests.notifier.conftest import EXAMPLE_PACKAGES, make_snapshot

    snapshot = make_snapshot(Level.AT_RISK)
    banded = msgspec.structs.replace(
        snapshot,
        forecast=tuple(
            ForecastPoint(p.date, p.vtr, p10=(p.vtr or 0) - 0.01 - 0.001 * k, p50=p.vtr, p90=(p.vtr or 0) + 0.006)
            for k, p in enumerate(snapshot.forecast)
        ),
        breach_probability=0.63,
    )
    for language in Language:
        message = AlertMessage(
            kind=NoticeKind.ESCALATED,
            previous_level=Level.OK,
            level=Level.AT_RISK,
            snapshot=banded,
            packages=EXAMPLE_PACKAGES,
            language=language,
            console_url="https://vtrwatch.example.com/console/A1SELLER?t=1.x",
        )
        path = tmp_path / f"{language.value}.html"
        path.write_text(compose_email(message).html, encoding="utf-8")
        context = browser.new_context(viewport={"width": 900, "height": 1100})
        try:
            page = context.new_page()
            page.goto(path.as_uri())
            tracks = page.locator(".forecast-chart table[width='280']")
            # The scale row and one bar per forecast day.
            assert tracks.count() == 15
            for i in range(1, 15):
                box = tracks.nth(i).bounding_box()
                assert box is not None and abs(box["width"] - TRACK_PX) <= 1
                cells = tracks.nth(i).locator("td")
                widths = [cells.nth(j).bounding_box()["width"] for j in range(cells.count())]  # type: ignore[index]
                assert abs(sum(widths) - TRACK_PX) <= 2
                # The band (split where the floor crosses it).
                assert tracks.nth(i).locator("td[bgcolor='#a9c4e6']").count() >= 1
            assert page.locator("a", has_text="→").get_attribute("href") == message.console_url
            if os.environ.get("VTR_CONSOLE_SCREENSHOTS"):
                page.screenshot(
                    path=str(SCREENSHOTS / f"email-chart-{language.value}.png"),
                    clip={"x": 0, "y": 0, "width": 760, "height": 640},
                )
        finally:
            context.close()
