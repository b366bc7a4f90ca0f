"""The console over HTTP against a real database (SQLite and PostgreSQL): the same numbers
as the API, the package list and its exports, and who may see what."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.settings import NotifierSettings
from services.scorer.settings import ScorerSettings
from shared.console_links import ConsoleLinks
from tests.scorer.conftest import TODAY
from tests.scorer.console.conftest import OTHER_SELLER, SECRET, SELLER, STAFF_KEY, Console

STAFF = {"Authorization": f"Bearer {STAFF_KEY}"}
AE = {"marketplace": "AE", "category": "Home & Kitchen"}


async def api(console: Console, path: str, **params: str) -> Any:
    response = await console.client.get(path, params=params, headers=STAFF)
    assert response.status_code == 200, response.text
    return response.json()


async def test_history_is_the_api_as_of_each_of_the_last_30_days(console: Console) -> None:
    from services.scorer.storage.console import history

    service = console.app.state.service
    async with service.engine.connect() as connection:
        days = await history(service.scoring, connection, SELLER, "AE", "Home & Kitchen")
    assert [d.day for d in days] == [TODAY - timedelta(days=30 - k) for k in range(30)]
    for entry in days:
        body = await api(console, f"/v1/sellers/{SELLER}/vtr", as_of=entry.day.isoformat())
        expected = next(c for c in body["categories"] if c["marketplace"] == "AE")
        assert (entry.total, entry.valid, entry.vtr, entry.reasons) == (
            expected["total"],
            expected["valid"],
            expected["vtr"],
            expected["reasons"],
        ), entry.day
    # The carrier stopped scanning: the rate really moved over the month.
    assert len({d.vtr for d in days}) > 1


async def test_history_with_a_window_lag_is_still_the_api_as_of_each_day(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one pass works out which days' windows hold each package; with a lag the
    windows move back, and the days must still agree with the API's."""
    from services.scorer.storage.console import history

    service = console.app.state.service
    lagged = service.settings.model_copy(update={"window_lag_days": 3})
    # The scores and the console's reads both take the window from the service's Scoring.
    monkeypatch.setattr(service.scoring, "settings", lagged)
    monkeypatch.setattr(service.scoring, "rules", replace(service.scoring.rules, lag_days=3))
    async with service.engine.connect() as connection:
        days = await history(service.scoring, connection, SELLER, "AE", "Home & Kitchen")
    for entry in days:
        body = await api(console, f"/v1/sellers/{SELLER}/vtr", as_of=entry.day.isoformat())
        expected = next(c for c in body["categories"] if c["marketplace"] == "AE")
        assert (entry.total, entry.valid, entry.reasons) == (
            expected["total"],
            expected["valid"],
            expected["reasons"],
        ), entry.day
    assert len({d.vtr for d in days}) > 1


async def test_history_follows_scans_that_come_after_the_promised_date(console: Console, evaluator: Any) -> None:
    """A package re-evaluated only when another scan has occurred: one scanned late turns
    from invalid to valid in the middle of its days in the window, as the API says."""
    from services.scorer.storage.console import history
    from services.scorer.storage.plan import apply_records
    from shared.schemas import CanonicalStatus
    from tests.scorer.conftest import NOW, event, record, shipment

    seller = "C3LATE"
    messages: list[Any] = []
    for k in range(10):
        promised = TODAY - timedelta(days=25 - 2 * k)
        number = f"YT{k + 7000:016d}"
        late = datetime.combine(promised + timedelta(days=3), NOW.time(), NOW.tzinfo)
        messages += [
            shipment(
                f"late-{k}",
                seller_id=seller,
                marketplace="AE",
                category="Late scans",
                tracking_number=number,
                carrier="yunexpress",
                carrier_name="YunExpress",
                promised=promised,
                confirmed_at=late - timedelta(days=10),
            ),
            event(tracking_number=number, occurred_at=late),
            event(CanonicalStatus.DELIVERED, tracking_number=number, occurred_at=late + timedelta(days=1)),
        ]
    service = console.app.state.service
    async with service.engine.begin() as connection:
        await apply_records(connection, evaluator, [record(m) for m in messages], TODAY)
    async with service.engine.connect() as connection:
        days = await history(service.scoring, connection, seller, "AE", "Late scans")
    for entry in days:
        body = await api(console, f"/v1/sellers/{seller}/vtr", as_of=entry.day.isoformat())
        expected = next((c for c in body["categories"] if c["category"] == "Late scans"), None)
        if expected is None:
            assert entry.total == 0, entry.day
            continue
        assert (entry.total, entry.valid, entry.reasons) == (
            expected["total"],
            expected["valid"],
            expected["reasons"],
        ), entry.day
    # Some days count a late package as invalid, later days the same one as valid.
    assert any(0 < d.valid < d.total for d in days) and any(d.total and d.valid == d.total for d in days)


async def test_overview_lanes_and_list_count_the_states_alike(console: Console) -> None:
    """The overview's counts, the lanes and the list's filters come from one definition
    of the states (StateConditions): the same packages in each."""
    from services.scorer.storage.console import lanes, overview, package_list

    service = console.app.state.service
    async with service.engine.connect() as connection:
        totals = {
            state: (
                await package_list(
                    service.scoring, connection, SELLER, **AE, state=state, reason=None, offset=0, limit=1
                )
            ).total
            for state in ("invalid", "at_risk", "pending", "valid", "to_fix", "all")
        }
        (ae,) = [row for row in await overview(service.scoring, connection, SELLER) if row.marketplace == "AE"]
        found_lanes = await lanes(service.scoring, connection, SELLER, "AE", "Home & Kitchen")
    assert (ae.invalid_packages, ae.at_risk_packages) == (totals["invalid"], totals["at_risk"])
    assert sum(lane.invalid for lane in found_lanes) == totals["invalid"]
    assert sum(lane.valid for lane in found_lanes) == totals["valid"]
    assert sum(lane.pending for lane in found_lanes) == totals["pending"]
    assert totals["to_fix"] == totals["invalid"] + totals["at_risk"]
    assert totals["all"] == totals["invalid"] + totals["pending"] + totals["valid"]
    assert 0 < totals["at_risk"] < totals["pending"]


def test_every_state_filter_has_a_label_in_every_language() -> None:
    from services.scorer.console.i18n import STRINGS
    from services.scorer.storage.console import DEFAULT_STATE_FILTER, PACKAGE_FILTERS

    assert DEFAULT_STATE_FILTER in PACKAGE_FILTERS
    for words in STRINGS.values():
        assert all(words.get(name) for name in PACKAGE_FILTERS)


async def test_overview_lists_every_category_of_the_api_most_urgent_first(console: Console) -> None:
    response = await console.client.get(f"/console/{SELLER}", headers=STAFF)
    assert response.status_code == 200
    html = response.text
    body = await api(console, f"/v1/sellers/{SELLER}/vtr")
    positions = []
    for category in body["categories"]:
        marker = (
            f'data-marketplace="{category["marketplace"]}" data-category="{category["category"].replace("&", "&amp;")}"'
        )
        assert marker in html
        positions.append((html.index(marker), category["level"]))
    levels = [level for _, level in sorted(positions)]
    assert levels == ["AT_RISK", "WATCH", "OK"]
    assert "secret-category-of-another-seller" not in html


async def test_package_filters_match_the_shipments_api(console: Console) -> None:
    from services.scorer.storage.console import package_list
    from shared.schemas import Reason

    service = console.app.state.service
    by_state: dict[str, set[str]] = {}
    for state in ("invalid", "at_risk", "pending", "valid"):
        listed = await api(console, f"/v1/sellers/{SELLER}/shipments", state=state, limit="500", **AE)
        async with service.engine.connect() as connection:
            page = await package_list(
                service.scoring, connection, SELLER, **AE, state=state, reason=None, offset=0, limit=500
            )
        assert page.total == len(page.views) == len(listed["packages"]), state
        assert {v.order_id for v in page.views} == {p["order_id"] for p in listed["packages"]}
        by_state[state] = {p["order_id"] for p in listed["packages"]}
    # The default filter, to_fix, is the API's invalid and at-risk packages together.
    async with service.engine.connect() as connection:
        to_fix = await package_list(
            service.scoring, connection, SELLER, **AE, state="to_fix", reason=None, offset=0, limit=500
        )
    assert to_fix.total == len(to_fix.views)
    assert {v.order_id for v in to_fix.views} == by_state["invalid"] | by_state["at_risk"]
    assert by_state["invalid"] and by_state["at_risk"]
    async with service.engine.connect() as connection:
        everything = await package_list(
            service.scoring, connection, SELLER, **AE, state="all", reason=None, offset=0, limit=1000
        )
        for reason in Reason:
            only = await package_list(
                service.scoring, connection, SELLER, **AE, state="all", reason=reason, offset=0, limit=1000
            )
            assert {v.order_id for v in only.views} == {v.order_id for v in everything.views if v.reason is reason}
    assert any(v.reason is Reason.NO_PHYSICAL_SCAN for v in everything.views)


async def test_category_page_pages_through_packages(console: Console) -> None:
    seen: list[str] = []
    page = 1
    while True:
        response = await console.client.get(
            f"/console/{SELLER}/category", params={**AE, "state": "all", "page": str(page)}, headers=STAFF
        )
        assert response.status_code == 200
        rows = [line for line in response.text.splitlines() if line.startswith("<tr data-order=")]
        seen += [row.split('"')[1] for row in rows]
        if 'id="next-page"' not in response.text:
            break
        page += 1
    # Promised from the window's first day (today - 30) to today + 9: 40 days x 8 parcels, 50 a page.
    assert page == 7
    assert len(seen) == len(set(seen)) == 320


async def test_unknown_category_is_404_and_bad_filters_are_422(console: Console) -> None:
    response = await console.client.get(
        f"/console/{SELLER}/category", params={"marketplace": "AE", "category": "Nope"}, headers=STAFF
    )
    assert response.status_code == 404
    response = await console.client.get(f"/console/{SELLER}/category", params={**AE, "state": "x"}, headers=STAFF)
    assert response.status_code == 422


async def test_csv_has_a_bom_and_chinese_text_and_xlsx_opens(console: Console) -> None:
    response = await console.client.get(
        f"/console/{SELLER}/packages.csv", params={**AE, "state": "all"}, headers={**STAFF, "Accept-Language": "zh-CN"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][0] == "订单"
    assert len(rows) == 321
    assert {row[5] for row in rows[1:]} == {"云途全球专线挂号"}
    assert any(row[9] == "无实物扫描" for row in rows[1:])
    response = await console.client.get(f"/console/{SELLER}/packages.xlsx", params=AE, headers=STAFF)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as workbook:
        strings = workbook.read("xl/sharedStrings.xml").decode()
    assert "Tracking number" in strings and "云途全球专线挂号" in strings


def link(seller_id: str, now: datetime | None = None, secret: str = SECRET) -> str:
    url = ConsoleLinks("http://scorer", secret.encode()).link(seller_id, now or datetime.now(UTC))
    return url.removeprefix("http://scorer")


async def test_a_valid_link_becomes_a_cookie_for_that_seller_only(console: Console) -> None:
    client = console.client
    response = await client.get(link(SELLER))
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/{SELLER}"
    cookie = response.headers["set-cookie"]
    assert f"Path=/console/{SELLER}" in cookie and "HttpOnly" in cookie
    assert "t=" not in response.headers["location"]
    client.cookies.clear()
    token = cookie.split(";")[0].split("=", 1)[1]
    # Set for every path here, so the other seller's pages get it too (a browser would not send it there).
    client.cookies.set("vtr_console", token)
    ok = await client.get(f"/console/{SELLER}")
    assert ok.status_code == 200 and "Home &amp; Kitchen" in ok.text
    other = await client.get(f"/console/{OTHER_SELLER}")
    assert other.status_code == 403 and "secret-category-of-another-seller" not in other.text
    for path in (
        f"/console/{OTHER_SELLER}/packages.csv",
        f"/console/{OTHER_SELLER}/notifications",
        f"/console/{OTHER_SELLER}/category?marketplace=US&category=x",
    ):
        denied = await client.get(path)
        assert denied.status_code == 403


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda: link(SELLER, datetime.now(UTC) - timedelta(days=8)), "expired"),
        (lambda: link(SELLER)[:-2] + "xx", "not valid"),
        (lambda: link(SELLER, secret="another-secret"), "not valid"),
        (lambda: link(SELLER).replace(SELLER, OTHER_SELLER), "not valid"),
        (lambda: f"/console/{SELLER}", "needs the link"),
        (lambda: f"/console/{SELLER}?t=", "not valid"),
        (lambda: f"/console/{SELLER}?t=999999999999999999.abc", "not valid"),
    ],
)
async def test_refused_links_get_a_page_that_says_why_and_403(console: Console, make: Any, phrase: str) -> None:
    console.client.cookies.clear()
    response = await console.client.get(make(), headers={"Accept-Language": "en"})
    assert response.status_code == 403
    assert phrase in response.text
    assert "Home &amp; Kitchen" not in response.text and "secret-category" not in response.text
    assert "set-cookie" not in {k.lower() for k in response.headers}


async def test_staff_tokens_open_every_seller_and_wrong_ones_nothing(console: Console) -> None:
    for seller in (SELLER, OTHER_SELLER):
        assert (await console.client.get(f"/console/{seller}", headers=STAFF)).status_code == 200
    wrong = await console.client.get(f"/console/{SELLER}", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403


async def test_with_staff_tokens_off_no_token_opens_the_console_and_links_still_do(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VTR_CONSOLE_STAFF_TOKENS=false (prod's default): a right API key and a wrong one get
    the same 403 page, so the public console tells nobody which keys are right; a signed
    link works as before, and the API still takes the key."""
    service = console.app.state.service
    monkeypatch.setattr(service, "settings", service.settings.model_copy(update={"console_staff_tokens": False}))
    right = await console.client.get(f"/console/{SELLER}", headers=STAFF)
    wrong = await console.client.get(f"/console/{SELLER}", headers={"Authorization": "Bearer nope"})
    assert right.status_code == wrong.status_code == 403
    assert right.text == wrong.text
    assert "Staff tokens do not open this console" in right.text and "python -m tools.console_link" in right.text
    export = await console.client.get(f"/console/{SELLER}/packages.csv", params=AE, headers=STAFF)
    assert export.status_code == 403 and "Home & Kitchen" not in export.text
    missing = await console.client.get(f"/console/{OTHER_SELLER}")
    assert missing.status_code == 403
    assert "needs the link from a vtrwatch message." in missing.text and "staff token" not in missing.text
    opened = await console.client.get(link(SELLER), follow_redirects=True)
    assert opened.status_code == 200 and "staff view" not in opened.text
    assert (await console.client.get(f"/v1/sellers/{SELLER}/vtr", headers=STAFF)).status_code == 200


def test_staff_tokens_on_the_console_default_to_off_in_prod_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("VTR_")]:
        monkeypatch.delenv(name)
    assert ScorerSettings().console_accepts_staff_tokens() is True
    prod = {
        "env": "prod",
        "database_url": "postgresql+asyncpg://x/y",
        "api_keys": "k",
        "notifier_api_key": "k",
        "console_secret": "s3cret",
    }
    assert ScorerSettings(**prod).console_accepts_staff_tokens() is False
    # An explicit choice wins either way, read from the environment like every setting.
    monkeypatch.setenv("VTR_CONSOLE_STAFF_TOKENS", "true")
    assert ScorerSettings(**prod).console_accepts_staff_tokens() is True
    monkeypatch.setenv("VTR_CONSOLE_STAFF_TOKENS", "false")
    assert ScorerSettings().console_accepts_staff_tokens() is False
    monkeypatch.setenv("VTR_CONSOLE_STAFF_TOKENS", "maybe")
    with pytest.raises(ValueError, match="console_staff_tokens"):
        ScorerSettings()


async def test_language_from_accept_language_and_the_switch(console: Console) -> None:
    zh = await console.client.get(f"/console/{SELLER}", headers={**STAFF, "Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-CN">' in zh.text and "总览" in zh.text
    en = await console.client.get(f"/console/{SELLER}", headers={**STAFF, "Accept-Language": "fr;q=1,en;q=0.5"})
    assert '<html lang="en">' in en.text
    switched = await console.client.get(
        f"/console/{SELLER}", params={"lang": "en"}, headers={**STAFF, "Accept-Language": "zh-CN"}
    )
    assert '<html lang="en">' in switched.text and "vtr_lang=en" in switched.headers["set-cookie"]


def test_prod_refuses_a_missing_or_development_console_secret() -> None:
    base: dict[str, Any] = {"env": "prod", "database_url": "postgresql+asyncpg://x/y", "api_keys": "k"}
    scorer = {**base, "notifier_api_key": "k"}
    with pytest.raises(ValueError, match="VTR_CONSOLE_SECRET"):
        ScorerSettings(**scorer)
    with pytest.raises(ValueError, match="VTR_CONSOLE_SECRET"):
        ScorerSettings(**scorer, console_secret="")
    with pytest.raises(ValueError, match="VTR_NOTIFIER_API_KEY"):
        ScorerSettings(**base, console_secret="s3cret")
    assert ScorerSettings(**scorer, console_secret="s3cret").console_secret.get_secret_value() == "s3cret"
    notifier = {**base, "scorer_api_key": "k", "smtp_url": "smtp://mail:25"}
    with pytest.raises(ValueError, match="VTR_CONSOLE_SECRET"):
        NotifierSettings(**notifier)
    assert NotifierSettings(**notifier, console_secret="s3cret").console_base == "http://127.0.0.1:8001"


async def test_notifications_page_reads_the_notifiers_api(console: Console, tmp_path: Any) -> None:
    import asyncio

    import httpx

    from services.notifier.__main__ import MIGRATIONS_DIR
    from services.notifier.app import create_app as create_notifier
    from services.scorer.console.notifier_client import NotifierReader
    from shared.db import upgrade_database
    from tools.localstack import free_port

    url = f"sqlite+aiosqlite:///{tmp_path}/notifier.db"
    await asyncio.to_thread(upgrade_database, MIGRATIONS_DIR, url)
    notifier = create_notifier(NotifierSettings(database_url=url, api_keys="notifier-key"))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=notifier)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        response = await client.put(
            f"/v1/sellers/{SELLER}/subscription",
            json={"emails": ["ops@seller.example"], "language": "zh-CN"},
            headers={"Authorization": "Bearer notifier-key"},
        )
        assert response.status_code == 200, response.text
    console.app.state.console_notifier = NotifierReader("http://notifier", "notifier-key", transport=transport)
    page = await console.client.get(f"/console/{SELLER}/notifications", headers={**STAFF, "Accept-Language": "en"})
    assert page.status_code == 200
    assert "ops@seller.example" in page.text and "No notification yet." in page.text
    # Another seller has no subscription; a wrong key or an unreachable notifier says so, and nothing breaks.
    other = await console.client.get(f"/console/{OTHER_SELLER}/notifications", headers=STAFF)
    assert "no subscription" in other.text
    console.app.state.console_notifier = NotifierReader("http://notifier", "wrong-key", transport=transport)
    refused = await console.client.get(f"/console/{SELLER}/notifications", headers=STAFF)
    assert refused.status_code == 200 and 'id="notifier-unavailable"' in refused.text
    console.app.state.console_notifier = NotifierReader(f"http://127.0.0.1:{free_port()}", "notifier-key")
    down = await console.client.get(f"/console/{SELLER}/notifications", headers=STAFF)
    assert down.status_code == 200 and 'id="notifier-unavailable"' in down.text
    await notifier.state.engine.dispose()


async def test_a_seller_id_with_reserved_characters_keeps_its_cookie_path(console: Console) -> None:
    seller = "A1:shop@example"
    response = await console.client.get(link(seller))
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/console/A1%3Ashop%40example")
    assert "Path=/console/A1%3Ashop%40example" in response.headers["set-cookie"]


async def test_nothing_about_the_seller_or_the_token_is_logged(
    console: Console, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    import asyncio
    import logging

    import httpx

    from services.notifier.__main__ import MIGRATIONS_DIR
    from services.notifier.app import create_app as create_notifier
    from services.scorer.console.notifier_client import NotifierReader
    from shared.db import upgrade_database
    from shared.observability import quiet_request_loggers
    from tools.localstack import free_port

    url = f"sqlite+aiosqlite:///{tmp_path}/notifier.db"
    await asyncio.to_thread(upgrade_database, MIGRATIONS_DIR, url)
    notifier = create_notifier(NotifierSettings(database_url=url, api_keys="notifier-key"))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=notifier)
    good = link(SELLER)
    token = good.split("t=")[1]
    levels = {name: logging.getLogger(name).level for name in ("uvicorn.access", "httpx", "httpcore")}
    quiet_request_loggers()  # as the services' logging set-up does
    try:
        with caplog.at_level(logging.INFO):  # the services log at INFO (VTR_LOG_LEVEL)
            console.client.cookies.clear()
            assert (await console.client.get(good)).status_code == 303
            assert (await console.client.get(good[:-2] + "xx")).status_code == 403
            assert (await console.client.get(link(SELLER, datetime.now(UTC) - timedelta(days=9)))).status_code == 403
            console.app.state.console_notifier = NotifierReader("http://notifier", "notifier-key", transport=transport)
            page = await console.client.get(f"/console/{SELLER}/notifications", headers=STAFF)
            assert "not-subscribed" in page.text
            console.app.state.console_notifier = NotifierReader(f"http://127.0.0.1:{free_port()}", "notifier-key")
            await console.client.get(f"/console/{SELLER}/notifications", headers=STAFF)
            await console.client.get(f"/console/{SELLER}/packages.csv", headers=STAFF)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        await notifier.state.engine.dispose()
    messages = [record.getMessage() for record in caplog.records]
    assert "console link refused" in messages and "notifier unreachable from the console" in messages
    logged = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    for secret_or_data in (SELLER, token, token.split(".")[1], STAFF_KEY, "Home & Kitchen"):
        assert secret_or_data not in logged


async def test_the_new_forecast_fields_are_shown_when_the_scorer_sends_them(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stand-in for the forecast rework (not merged here): ``as_json`` with the additive
    fields of shared/schemas.py filled in. The console draws the band, shows the breach
    probability, pending reasons and carrier health, and sorts by breach probability."""
    from services.scorer.domain.scores import CategoryScore

    original = CategoryScore.as_json

    def with_new_fields(self: CategoryScore) -> dict[str, Any]:
        body = original(self)
        probability = {"Home & Kitchen": 0.81, "toys": 0.12, "Books": 0.0}[self.category]
        body["breach_probability"] = probability
        for point in body["forecast"]:
            if point["vtr"] is not None:
                point.update(p10=point["vtr"] - 0.02, p50=point["vtr"], p90=min(1.0, point["vtr"] + 0.01))
        body["pending_reasons"] = {"stalled_in_transit": 7, "carrier_silent": 3}
        body["carrier_health"] = [
            {
                "carrier": "yunexpress",
                "origin": "CN",
                "silent_hours": 30.4,
                "received_scans": 2,
                "expected_scans": 140.0,
                "affected_packages": 9,
            }
        ]
        return body

    monkeypatch.setattr(CategoryScore, "as_json", with_new_fields)
    en = {**STAFF, "Accept-Language": "en"}
    overview = (await console.client.get(f"/console/{SELLER}", headers=en)).text
    assert "81.0%" in overview and "12.0%" in overview
    page = (await console.client.get(f"/console/{SELLER}/category", params=AE, headers=en)).text
    assert page.count("<polygon") == 1 and 'id="band-missing"' not in page
    assert 'data-field="breach_probability">81.0%' in page
    assert "no scan for longer than usual" in page and "carrier silent for all sellers" in page
    assert "silent for 30 h: 2 scans received, about 140 expected; 9 of your pending packages affected" in page

    # Without them (a scorer from before the forecast model): no band, a dash, a sentence instead.
    def without_new_fields(self: CategoryScore) -> dict[str, Any]:
        body = original(self)
        body["breach_probability"] = None
        for point in body["forecast"]:
            point.update(p10=None, p50=None, p90=None, breach_probability=None)
        return body

    monkeypatch.setattr(CategoryScore, "as_json", without_new_fields)
    page = (await console.client.get(f"/console/{SELLER}/category", params=AE, headers=en)).text
    assert "<polygon" not in page and 'id="band-missing"' in page
    assert 'data-field="breach_probability">–' in page


async def test_the_package_list_names_the_last_mile_like_the_messages(console: Console) -> None:
    from services.ingest.carriers import seventeen_track
    from services.scorer.storage.plan import apply_records
    from tests.scorer.conftest import NOW, last_mile_push, record, shipment

    handed_over = "LK123456785CN"
    messages = [
        shipment(
            "lm-1",
            seller_id=SELLER,
            marketplace="US",
            category="Last mile",
            tracking_number=handed_over,
            promised=TODAY + timedelta(days=3),
        ),
        *seventeen_track.parse(last_mile_push(handed_over), NOW),
    ]
    service = console.app.state.service
    async with service.engine.begin() as connection:
        await apply_records(connection, service.evaluator, [record(message) for message in messages], TODAY)
    response = await console.client.get(
        f"/console/{SELLER}/category",
        params={"marketplace": "US", "category": "Last mile", "state": "all"},
        headers=STAFF,
    )
    assert response.status_code == 200, response.text
    row = next(line for line in response.text.splitlines() if line.startswith('<tr data-order="lm-1"'))
    assert "last mile usps 9400111899223197428490" in row


async def test_scores_of_one_scope_are_that_scope_of_all_scores(console: Console) -> None:
    service = console.app.state.service
    async with service.engine.connect() as connection:
        for as_of in (TODAY, TODAY - timedelta(days=4)):
            every = await service.scoring.scores(connection, SELLER, as_of)
            assert len(every) == 3
            for category in every:
                scope = (category.marketplace, category.category)
                only = await service.scoring.scores(connection, SELLER, as_of, scope=scope)
                assert [c.as_json() for c in only] == [category.as_json()], (as_of, scope)
            assert await service.scoring.scores(connection, SELLER, as_of, scope=("AE", "Nope")) == []
