"""Server-side SVG charts for the console (pure: numbers in, markup out).

No script, no external file: the SVG is inlined in the page, every text is escaped, and
each chart has a ``<title>`` and ``<desc>`` for screen readers (the same numbers are in a
table next to it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

WIDTH = 760
HEIGHT = 280
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 16, 36

#: Colours of the reasons chart, in the order the reasons are listed (then repeated).
PALETTE = ("#c0392b", "#e67e22", "#8e44ad", "#2980b9", "#16a085", "#7f8c8d", "#d35400", "#2c3e50")


@dataclass(frozen=True)
class Point:
    day: date
    vtr: float | None
    p10: float | None = None
    p90: float | None = None


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _grid(y: Callable[[float], float], y_min: float, y_max: float) -> list[str]:
    """Horizontal grid lines every percentage point (every 5 when the range is wide)."""
    step = 1 if (y_max - y_min) <= 0.12 else 5
    lines = []
    for tick in range(round(y_min * 100), 101):
        if tick % step == 0:
            ty = y(tick / 100)
            lines.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(ty)}" y2="{_fmt(ty)}" class="grid"/>'
                f'<text x="{LEFT - 6}" y="{_fmt(ty + 4)}" text-anchor="end" class="axis">{tick}%</text>'
            )
    return lines


def _polylines(
    indexed: Sequence[tuple[int, Point]],
    css: str,
    x: Callable[[int], float],
    y: Callable[[float], float],
) -> list[str]:
    """The points as polylines, broken where a point has no VTR."""
    lines: list[str] = []
    segment: list[str] = []
    for i, p in indexed:
        if p.vtr is None:
            if len(segment) > 1:
                lines.append(f'<polyline points="{" ".join(segment)}" class="{css}"/>')
            segment = []
            continue
        segment.append(f"{_fmt(x(i))},{_fmt(y(p.vtr))}")
    if len(segment) > 1:
        lines.append(f'<polyline points="{" ".join(segment)}" class="{css}"/>')
    return lines


def vtr_chart(
    history: Sequence[Point],
    today: Point,
    forecast: Sequence[Point],
    *,
    floor: float,
    title: str,
    labels: Mapping[str, str],
) -> str:
    """History (solid), today (dot), forecast (dashed) with its p10-p90 band, and the floor."""
    points = [*history, today, *forecast]
    values = [v for p in points for v in (p.vtr, p.p10, p.p90) if v is not None]
    low = min([*values, floor]) if values else floor
    y_min = max(0.0, min(floor - 0.02, int(low * 100 - 1) / 100))
    y_max = 1.0
    n = len(points)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (y_max - v) / (y_max - y_min)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" '
        f'aria-labelledby="vtr-title vtr-desc">',
        f'<title id="vtr-title">{escape(title)}</title>',
        f'<desc id="vtr-desc">{escape(labels["desc"])}</desc>',
    ]
    parts.extend(_grid(y, y_min, y_max))
    # Band of the forecast (and of today, so it joins the line).
    band = [(i, p) for i, p in enumerate(points) if p.p10 is not None and p.p90 is not None]
    if len(band) >= 2:
        upper = " ".join(f"{_fmt(x(i))},{_fmt(y(p.p90))}" for i, p in band if p.p90 is not None)
        lower = " ".join(f"{_fmt(x(i))},{_fmt(y(p.p10))}" for i, p in reversed(band) if p.p10 is not None)
        parts.append(
            f'<polygon points="{upper} {lower}" class="band"><title>{escape(labels["band"])}</title></polygon>'
        )
    # The floor.
    fy = y(floor)
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(fy)}" y2="{_fmt(fy)}" class="floor"/>'
        f'<text x="{WIDTH - RIGHT - 4}" y="{_fmt(fy - 5)}" text-anchor="end" class="floor-label">'
        f"{escape(labels['floor'])}</text>"
    )

    def polyline(indexed: Sequence[tuple[int, Point]], css: str) -> None:
        parts.extend(_polylines(indexed, css, x, y))

    today_index = len(history)
    polyline(list(enumerate(points))[: today_index + 1], "history")
    polyline(list(enumerate(points))[today_index:], "forecast")
    # Today's marker and label.
    tx = x(today_index)
    parts.append(
        f'<line x1="{_fmt(tx)}" x2="{_fmt(tx)}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" class="today"/>'
        f'<text x="{_fmt(tx)}" y="{HEIGHT - BOTTOM + 28}" text-anchor="middle" class="axis">'
        f"{escape(labels['today'])}</text>"
    )
    if today.vtr is not None:
        parts.append(f'<circle cx="{_fmt(tx)}" cy="{_fmt(y(today.vtr))}" r="4" class="today-dot"/>')
    for i, p in enumerate(points):
        if p.vtr is not None and i != today_index:
            css = "dot-below" if p.vtr < floor else "dot"
            parts.append(
                f'<circle cx="{_fmt(x(i))}" cy="{_fmt(y(p.vtr))}" r="2.5" class="{css}">'
                f"<title>{p.day.isoformat()}: {p.vtr * 100:.1f}%</title></circle>"
            )
    # Date labels: first, every 7th, last.
    for i, p in enumerate(points):
        at_end = i in (0, n - 1)
        if at_end or ((i - today_index) % 7 == 0 and min(i, n - 1 - i) >= 3):
            parts.append(
                f'<text x="{_fmt(x(i))}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" class="axis">'
                f"{p.day.strftime('%m-%d')}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def reasons_chart(
    days: Sequence[date], counts: Sequence[Mapping[str, int]], names: Mapping[str, str], *, title: str
) -> str:
    """Stacked bars: invalid packages in each day's window, by reason."""
    reasons = sorted({r for day in counts for r in day}, key=lambda r: -sum(day.get(r, 0) for day in counts))
    height = HEIGHT - 40
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = height - TOP - BOTTOM
    peak = max([sum(day.values()) for day in counts] + [1])
    bar = plot_w / max(1, len(days))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height + 20 * ((len(reasons) + 2) // 3)}" '
        f'role="img" class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" class="axis">{peak}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="axis">0</text>',
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" class="grid"/>',
    ]
    for i, (day, by_reason) in enumerate(zip(days, counts, strict=True)):
        base = float(TOP + plot_h)
        for j, reason in enumerate(reasons):
            count = by_reason.get(reason, 0)
            if not count:
                continue
            h = plot_h * count / peak
            base -= h
            parts.append(
                f'<rect x="{_fmt(LEFT + i * bar + 1)}" y="{_fmt(base)}" width="{_fmt(max(1.0, bar - 2))}" '
                f'height="{_fmt(h)}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{day.isoformat()}: {count} × {escape(names.get(reason, reason))}</title></rect>"
            )
        last = len(days) - 1
        if i == last or (i % 7 == 0 and last - i >= 3):
            parts.append(
                f'<text x="{_fmt(LEFT + i * bar + bar / 2)}" y="{TOP + plot_h + 14}" text-anchor="middle" '
                f'class="axis">{day.strftime("%m-%d")}</text>'
            )
    for j, reason in enumerate(reasons):
        lx = LEFT + (j % 3) * (plot_w / 3)
        ly = height + 4 + 20 * (j // 3)
        parts.append(
            f'<rect x="{_fmt(lx)}" y="{ly - 10}" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{_fmt(lx + 18)}" y="{ly}" class="legend">{escape(names.get(reason, reason))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
