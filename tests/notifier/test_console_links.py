"""Every message carries a signed link to the seller's console; the e-mail draws the
forecast with table cells (no SVG, no script) and keeps the numbers in the text part."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
import pytest

from services.notifier.alerts import NoticeKind
from services.notifier.email_chart import BAND, BELOW, TRACK_PX, forecast_chart_html
from services.notifier.messages import (
    AlertMessage,
    DigestEntry,
    DigestMessage,
    compose_digest_email,
    compose_digest_slack,
    compose_email,
    compose_slack,
)
from shared.console_links import ConsoleLinks, Verdict, expiry, verify
from shared.schemas import ForecastPoint, Level
from shared.wording import Language
from tests.notifier.conftest import EXAMPLE_PACKAGES, FIXED_TIME, make_snapshot
from tests.notifier.test_delivery import SELLER, Harness, harness, settings_overrides  # noqa: F401 - fixtures

SECRET = b"console-secret-for-tests"
LINKS = ConsoleLinks(base="https://console.example", secret=SECRET)
LABELS = {"title": "expected", "floor": "95% floor", "band": "likely range", "crosses": "may", "below": "below"}


def alert(language: Language = Language.EN, console_url: str | None = "https://console.example/x") -> AlertMessage:
    return AlertMessage(
        kind=NoticeKind.ESCALATED,
        previous_level=Level.OK,
        level=Level.AT_RISK,
        snapshot=make_snapshot(Level.AT_RISK),
        packages=EXAMPLE_PACKAGES,
        language=language,
        console_url=console_url,
    )


def token_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    seller = unquote(parts.path.split("/console/")[1].split("/")[0])
    return seller, parse_qs(parts.query)["t"][0]


@pytest.mark.parametrize("language", list(Language))
def test_email_and_slack_carry_the_console_link(language: Language) -> None:
    url = LINKS.link(SELLER, FIXED_TIME, marketplace="SG", category="Toys & Games")
    content = compose_email(alert(language, url))
    assert url in content.text
    assert f'href="{url.replace("&", "&amp;")}"' in content.html
    slack = compose_slack(alert(language, url))
    buttons = [e for b in slack["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["url"] for b in buttons] == [url]
    assert buttons[0]["type"] == "button"
    # The link opens this seller's console for 7 days, and no other seller's.
    seller, token = token_of(url)
    assert seller == SELLER
    assert verify(SECRET, SELLER, token, FIXED_TIME + timedelta(days=6, hours=23)) is Verdict.VALID
    assert verify(SECRET, SELLER, token, FIXED_TIME + timedelta(days=7, seconds=1)) is Verdict.EXPIRED
    assert verify(SECRET, "A2OTHER", token, FIXED_TIME) is Verdict.INVALID


@pytest.mark.parametrize("language", list(Language))
def test_digest_carries_the_overview_link(language: Language) -> None:
    url = LINKS.link(SELLER, FIXED_TIME)
    digest = DigestMessage(SELLER, [DigestEntry(Level.AT_RISK, make_snapshot(Level.AT_RISK))], language, url)
    content = compose_digest_email(digest)
    assert url in content.text and url.replace("&", "&amp;") in content.html
    blocks = compose_digest_slack(digest)["blocks"]
    assert [e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"]] == [url]


def test_without_a_link_nothing_dangles() -> None:
    content = compose_email(alert(console_url=None))
    assert "console" not in content.text.lower() and "console" not in content.html.lower()
    assert all(block["type"] != "actions" for block in compose_slack(alert(console_url=None))["blocks"])


def test_email_chart_is_table_cells_with_the_numbers_in_the_text_part() -> None:
    content = compose_email(alert())
    html = content.html.lower()
    assert "<svg" not in html and "<script" not in html and "<img" not in html
    assert 'class="forecast-chart"' in html
    for point in make_snapshot(Level.AT_RISK).forecast:
        assert point.vtr is not None
        line = f"{point.date.isoformat()}  {point.vtr * 100:.1f}%"
        assert line in content.text


def _widths(row_html: str) -> list[tuple[int, str]]:
    cells = re.findall(r'<td width="(\d+)" height="\d+" bgcolor="(#[0-9a-f]+)"', row_html)
    return [(int(width), colour) for width, colour in cells]


def test_every_bar_fills_the_track_and_the_floor_is_marked() -> None:
    start = FIXED_TIME.date()
    points = [ForecastPoint(start + timedelta(days=k), 0.99 - 0.004 * k) for k in range(1, 15)]
    html = forecast_chart_html(points, 0.95, LABELS)
    rows = re.findall(r"<tr><td[^>]*>\d\d-\d\d</td>.*?</table></td>", html)
    assert len(rows) == 14
    for row, point in zip(rows, points, strict=True):
        cells = _widths(row)
        # The floor's 2 px border is part of the track.
        assert sum(width for width, _ in cells) + 2 == TRACK_PX
        assert row.count("border-left:2px solid #c0392b") == 1
        assert point.vtr is not None
        assert (f'bgcolor="{BELOW}"' in row) == (point.vtr < 0.95)


def test_band_is_drawn_when_the_forecast_has_percentiles_and_only_then() -> None:
    start = FIXED_TIME.date()
    with_band = [ForecastPoint(start + timedelta(days=k), 0.96, p10=0.94, p50=0.96, p90=0.975) for k in range(1, 15)]
    without = [ForecastPoint(start + timedelta(days=k), 0.96) for k in range(1, 15)]
    assert BAND in forecast_chart_html(with_band, 0.95, LABELS).split("likely range")[0]
    assert "94.0–97.5%" in forecast_chart_html(with_band, 0.95, LABELS)
    assert f'bgcolor="{BAND}"' not in forecast_chart_html(without, 0.95, LABELS)
    # A snapshot from the new forecast: the e-mail shows the band and the breach probability.
    snapshot = msgspec.structs.replace(
        make_snapshot(Level.AT_RISK),
        forecast=tuple(with_band),
        breach_probability=0.42,
    )
    message = replace(alert(), snapshot=snapshot)
    content = compose_email(message)
    assert f'bgcolor="{BAND}"' in content.html
    assert "42.0%" in content.text and "42.0%" in content.html


def test_no_forecast_values_fall_back_to_the_plain_table() -> None:
    snapshot = make_snapshot(Level.AT_RISK)
    empty = msgspec.structs.replace(snapshot, forecast=tuple(ForecastPoint(p.date, None) for p in snapshot.forecast))
    content = compose_email(replace(alert(), snapshot=empty))
    assert 'class="forecast-chart"' not in content.html
    assert "n/a" in content.html


async def test_delivered_messages_link_to_the_console_of_their_seller(harness: Harness) -> None:  # noqa: F811
    await harness.subscribe(emails=["ops@example.com"])
    await harness.feed(make_snapshot(Level.OK, computed_at=harness.clock.now))
    await harness.feed(make_snapshot(Level.AT_RISK, computed_at=harness.at(1)))
    harness.clock.advance(61)
    await harness.tick()
    assert await harness.deliver() == 2
    [message] = harness.smtp.messages_to("ops@example.com")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [url] = re.findall(r"http://\S+/console/\S+", text)
    # Unset VTR_CONSOLE_URL: the base is the scorer's address the notifier already uses.
    assert url.startswith(harness.web.scorer.base_url + "/console/A1SELLER/category?")
    seller, token = token_of(url)
    assert seller == SELLER
    secret = b"dev-console-secret"
    assert verify(secret, SELLER, token, harness.clock.now) is Verdict.VALID
    assert verify(secret, SELLER, token, harness.clock.now + timedelta(days=7, minutes=1)) is Verdict.EXPIRED
    [payload] = harness.web.slack.delivered("team")
    assert [e["url"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]] == [url]
    # The clock of the link is the notifier's, not the wall clock: valid seven days from the delivery.
    assert expiry(token) == int((harness.clock.now + timedelta(days=7)).timestamp())
