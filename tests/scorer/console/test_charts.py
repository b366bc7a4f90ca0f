"""The console's SVG charts and language choice (pure)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from services.scorer.console.charts import Point, reasons_chart, vtr_chart
from services.scorer.console.i18n import Language, choose_language

LABELS = {"desc": "d", "band": "band", "floor": "95% floor", "today": "today"}
TODAY = date(2026, 6, 15)


def chart(band: bool, title: str = "VTR") -> str:
    history = [Point(TODAY - timedelta(days=30 - k), 0.97 - 0.0005 * k) for k in range(30)]
    forecast = [
        Point(
            TODAY + timedelta(days=k),
            0.96 - 0.002 * k,
            (0.95 - 0.003 * k) if band else None,
            (0.97 - 0.001 * k) if band else None,
        )
        for k in range(1, 15)
    ]
    return vtr_chart(history, Point(TODAY, 0.955), forecast, floor=0.95, title=title, labels=LABELS)


def test_band_only_when_the_forecast_has_percentiles() -> None:
    with_band, without = chart(True), chart(False)
    assert with_band.count("<polygon") == 1 and "<polygon" not in without
    # Both are well-formed SVG with the floor, the past and the forecast.
    for svg in (with_band, without):
        root = ET.fromstring(svg)  # noqa: S314 - our own output
        assert root.tag.endswith("svg")
        assert 'class="floor"' in svg and 'class="history"' in svg and 'class="forecast"' in svg


def test_points_are_placed_by_value_and_the_floor_between_them() -> None:
    svg = chart(False)
    floor_y = float(re.findall(r'y1="([\d.]+)"[^>]*class="floor"', svg)[0])
    below = [float(y) for y in re.findall(r'cy="([\d.]+)" r="2.5" class="dot-below"', svg)]
    above = [float(y) for y in re.findall(r'cy="([\d.]+)" r="2.5" class="dot"', svg)]
    assert below and above
    # SVG y grows downwards: every value under the floor is drawn below its line (one sits on it).
    assert min(below) > floor_y >= max(above)


def test_text_is_escaped() -> None:
    svg = chart(False, title='<script>alert("x")</script>')
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    bars = reasons_chart([TODAY], [{"r": 2}], {"r": "<b>&</b>"}, title="t")
    assert "<b>" not in bars and "&lt;b&gt;&amp;&lt;/b&gt;" in bars


def test_missing_values_break_the_line_instead_of_dropping_to_zero() -> None:
    history = [Point(TODAY - timedelta(days=3), 0.99), Point(TODAY - timedelta(days=2), None)]
    history.append(Point(TODAY - timedelta(days=1), 0.98))
    svg = vtr_chart(history, Point(TODAY, 0.97), [], floor=0.95, title="t", labels=LABELS)
    assert all(len(p.split()) >= 2 for p in re.findall(r'<polyline points="([^"]+)" class="history"', svg))


@pytest.mark.parametrize(
    ("query", "cookie", "header", "expected"),
    [
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", Language.ZH_CN),
        (None, None, "zh-TW", Language.ZH_CN),
        (None, None, "en-US,en;q=0.9,zh-CN;q=0.8", Language.EN),
        (None, None, "de-DE,zh;q=0.5,en;q=0.3", Language.ZH_CN),
        (None, None, "zh;q=0,en;q=0.1", Language.EN),
        (None, None, None, Language.EN),
        (None, None, "garbage;;;q=x", Language.EN),
        (None, "zh-CN", "en", Language.ZH_CN),
        ("en", "zh-CN", "zh-CN", Language.EN),
        ("xx", None, "zh-CN", Language.ZH_CN),
    ],
)
def test_language_choice(query: str | None, cookie: str | None, header: str | None, expected: Language) -> None:
    assert choose_language(query, cookie, header) is expected


def test_urgency_orders_by_level_then_breach_probability_then_days_then_headroom() -> None:
    from services.scorer.storage.console import CategoryOverview

    def row(name: str, level: str, probability: float | None, days: int | None, headroom: int) -> CategoryOverview:
        return CategoryOverview(
            {
                "marketplace": "US",
                "category": name,
                "level": level,
                "breach_probability": probability,
                "days_to_breach": days,
                "headroom": headroom,
                "vtr": 0.96,
            }
        )

    rows = [
        row("ok", "OK", None, None, 30),
        row("watch", "WATCH", 0.2, None, 5),
        row("risk-unlikely", "AT_RISK", 0.3, 9, 3),
        row("risk-likely-later", "AT_RISK", 0.9, 9, 3),
        row("risk-likely-sooner", "AT_RISK", 0.9, 4, 3),
        row("risk-no-probability", "AT_RISK", None, 2, 1),
        row("breach", "BREACH", None, 0, 0),
    ]
    ordered = [r.category for r in sorted(rows, key=CategoryOverview.urgency)]
    assert ordered == [
        "breach",
        "risk-likely-sooner",
        "risk-likely-later",
        "risk-unlikely",
        "risk-no-probability",
        "watch",
        "ok",
    ]
