"""The forecast as a chart that e-mail clients render: bars built from table cells.

Gmail, Outlook (Word's HTML engine) and Apple Mail all draw nested tables with fixed pixel
widths and background colours; none of them draws SVG reliably or runs script, and an
inline PNG needs an image library and a multipart/related message. So each forecast day is
one row: a track of fixed width cut into cells at today's value, the band's 10th and 90th
percentile when the scorer sends them, and the floor, which is a red left border on the
cell that starts there. The value is printed next to the bar, and every number is in the
text part too. Pure: numbers in, HTML out (everything interpolated is a number, a date or
an escaped label).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from html import escape

from shared.schemas import ForecastPoint

TRACK_PX = 280
ROW_PX = 12
FONT = "font-family:Arial,Helvetica,sans-serif;font-size:12px;color:#333;"
TRACK = "#eef1f4"
BAND = "#a9c4e6"
OK_BAR = "#1f5fa8"
BAND_CROSSES = "#e67e22"
BELOW = "#c0392b"
FLOOR_BORDER_PX = 2
FLOOR_BORDER = f"border-left:{FLOOR_BORDER_PX}px solid #c0392b;"


def _axis_minimum(points: Sequence[ForecastPoint], floor: float) -> float:
    values = [v for p in points for v in (p.vtr, p.p10, p.p90) if v is not None]
    low = min([*values, floor])
    # Whole percentage points, at least 3 below the floor so it never sits on the edge.
    return max(0.0, min(floor - 0.03, int(low * 100 - 1) / 100))


def _cell(width: int, colour: str, extra: str = "") -> str:
    return (
        f'<td width="{width}" height="{ROW_PX}" bgcolor="{colour}" '
        f'style="width:{width}px;height:{ROW_PX}px;background-color:{colour};font-size:1px;line-height:1px;{extra}">'
        "&nbsp;</td>"
    )


def _bar(point: ForecastPoint, floor: float, low: float) -> str:
    def px(value: float) -> int:
        return max(0, min(TRACK_PX, round(TRACK_PX * (value - low) / (1.0 - low))))

    assert point.vtr is not None
    has_band = point.p10 is not None and point.p90 is not None
    lo = px(point.p10 if has_band and point.p10 is not None else point.vtr)
    hi = px(point.p90 if has_band and point.p90 is not None else point.vtr)
    lo, hi = min(lo, hi), max(lo, hi)
    floor_px = px(floor)
    if point.vtr < floor:
        colour = BELOW
    elif has_band and point.p10 is not None and point.p10 < floor:
        colour = BAND_CROSSES
    else:
        colour = OK_BAR
    cuts = sorted({0, lo, hi, floor_px, TRACK_PX})
    cells = []
    for start, end in itertools.pairwise(cuts):
        if end <= start:
            continue
        fill = colour if end <= lo else (BAND if end <= hi else TRACK)
        if start == floor_px and start > 0:
            # The floor's border takes its width out of the cell, so the track stays TRACK_PX wide.
            cells.append(_cell(max(1, end - start - FLOOR_BORDER_PX), fill, FLOOR_BORDER))
        else:
            cells.append(_cell(end - start, fill))
    return (
        f'<table role="presentation" width="{TRACK_PX}" cellpadding="0" cellspacing="0" border="0" '
        f'style="width:{TRACK_PX}px;border-collapse:collapse;table-layout:fixed;"><tr>{"".join(cells)}</tr></table>'
    )


def forecast_chart_html(points: Sequence[ForecastPoint], floor: float, labels: Mapping[str, str]) -> str:
    """A table of 14 bars (or "" when the forecast has no value). ``labels``: ``title``,
    ``floor`` (e.g. "95% floor"), ``band`` (legend of the band), ``crosses`` (a day whose
    band reaches below the floor), ``below`` (a day expected under the floor)."""
    shown = [p for p in points if p.vtr is not None]
    if not shown:
        return ""
    low = _axis_minimum(shown, floor)
    floor_px = round(TRACK_PX * (floor - low) / (1.0 - low))
    rows = [
        # The scale: the axis minimum at the left, the floor where its border is, 100% at the right.
        "<tr>"
        f'<td style="{FONT}padding:0 8px 2px 0;"></td>'
        '<td style="padding:0 0 2px 0;">'
        f'<table role="presentation" width="{TRACK_PX}" cellpadding="0" cellspacing="0" border="0" '
        f'style="width:{TRACK_PX}px;border-collapse:collapse;table-layout:fixed;"><tr>'
        f'<td width="{floor_px}" style="{FONT}width:{floor_px}px;color:#777;">{low * 100:.0f}%</td>'
        f'<td width="{TRACK_PX - floor_px}" style="{FONT}{FLOOR_BORDER}padding-left:3px;color:#c0392b;">'
        f"{escape(labels['floor'])}</td>"
        "</tr></table></td>"
        f'<td style="{FONT}padding:0 0 2px 8px;color:#777;">100%</td>'
        "</tr>"
    ]
    for point in shown:
        assert point.vtr is not None
        value = f"{point.vtr * 100:.1f}%"
        if point.p10 is not None and point.p90 is not None:
            value += f' <span style="color:#777;">({point.p10 * 100:.1f}–{point.p90 * 100:.1f}%)</span>'
        rows.append(
            "<tr>"
            f'<td style="{FONT}padding:1px 8px 1px 0;white-space:nowrap;">{point.date.strftime("%m-%d")}</td>'
            f'<td style="padding:1px 0;">{_bar(point, floor, low)}</td>'
            f'<td style="{FONT}padding:1px 0 1px 8px;white-space:nowrap;">{value}</td>'
            "</tr>"
        )
    banded = any(p.p10 is not None and p.p90 is not None for p in shown)
    keys = [(OK_BAR, "title")]
    if banded:
        keys += [(BAND, "band"), (BAND_CROSSES, "crosses")]
    keys.append((BELOW, "below"))
    legend = " &nbsp; ".join(
        f'<span style="background-color:{colour};">&nbsp;&nbsp;&nbsp;</span> {escape(labels[key])}'
        for colour, key in keys
    )
    rows.append(f'<tr><td></td><td colspan="2" style="{FONT}padding-top:6px;color:#555;">{legend}</td></tr>')
    return (
        '<table role="presentation" cellpadding="0" cellspacing="0" border="0" class="forecast-chart" '
        f'style="border-collapse:collapse;">{"".join(rows)}</table>'
    )
