"""Charts as inline SVG, drawn on the server: a line chart over time (or steps) and a bar chart.

No JavaScript library and no network: the dashboard works offline and its pages can be saved as
they are. Every label is escaped here, so the result can be marked safe in a template. Points
carry a ``<title>``, which browsers show as a tooltip. Gaps (``None``) break a line.

Not here: choosing what to plot (the pages do) or any interactivity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 34
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")

X = float | int | datetime
Series = tuple[str, Sequence[tuple[X, float | None]]]


def _x_value(x: X) -> float:
    return x.timestamp() if isinstance(x, datetime) else float(x)


def _x_label(x: float, is_time: bool, span: float) -> str:
    if is_time:
        moment = datetime.fromtimestamp(x, UTC)
        if span <= 12 * 3600:
            return moment.strftime("%H:%M")
        return moment.strftime("%m-%d %H:%M" if span <= 4 * 86400 else "%m-%d")
    return _tick(x)


def _tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values from at most ``lo`` to at least ``hi`` (1, 2 or 5 times a power of ten
    apart), so every point lies on or inside the grid."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [math.floor(lo / step) * step]
    while ticks[-1] < hi - step * 1e-9 and len(ticks) < 12:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def line_chart(
    series: Sequence[Series],
    *,
    unit: str = "",
    title: str = "",
    x_range: tuple[X, X] | None = None,
) -> str:
    """An SVG line chart of one or more named series of (x, y) points; ``y`` None is a gap.

    ``x_range`` fixes the horizontal axis (a monitoring window, say); by default it spans the
    points. Times (datetimes) are labelled as times.
    """
    points = [(_x_value(x), y) for _, pts in series for x, y in pts if y is not None]
    label = escape(title or "chart")
    if not points:
        return (
            f'<svg class="chart empty" viewBox="0 0 {WIDTH} 60" role="img" aria-label="{label}">'
            f'<text x="{WIDTH / 2}" y="34" text-anchor="middle">no data</text></svg>'
        )
    xs = [p[0] for p in points]
    ys = [p[1] for p in points if p[1] is not None]
    x_lo, x_hi = (_x_value(x_range[0]), _x_value(x_range[1])) if x_range else (min(xs), max(xs))
    is_time = any(isinstance(x, datetime) for _, pts in series for x, _ in pts[:1]) or bool(
        x_range and isinstance(x_range[0], datetime)
    )
    ticks = _nice_ticks(min(0.0, min(ys)), max(ys))
    y_lo, y_hi = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (plot_w * (x - x_lo) / (x_hi - x_lo) if x_hi > x_lo else plot_w / 2)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - (y - y_lo) / (y_hi - y_lo if y_hi > y_lo else 1))

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">',
    ]
    for t in ticks:
        y = py(t)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_tick(t))}</text>"
        )
    span = x_hi - x_lo
    marks = [x_lo + span * k / 4 for k in range(5)] if span > 0 else [x_lo]
    for k, mark in enumerate(marks):
        anchor = "middle" if len(marks) == 1 else ("start", *["middle"] * 3, "end")[k]
        out.append(
            f'<text class="tick" x="{px(mark):.1f}" y="{HEIGHT - 10}" '
            f'text-anchor="{anchor}">{escape(_x_label(mark, is_time, span))}</text>'
        )
    for i, (name, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        path: list[str] = []
        pen_down = False
        dots = []
        for x, value in pts:
            if value is None:
                pen_down = False
                continue
            cx, cy = px(_x_value(x)), py(value)
            path.append(f"{'L' if pen_down else 'M'}{cx:.1f},{cy:.1f}")
            pen_down = True
            tip = f"{name}: {_tick(value)}{unit} at {_x_label(_x_value(x), is_time, 0)}"
            dots.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.extend(dots if len(dots) <= 300 else [])
    out.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>'
        f"{escape(name)}</span>"
        for i, (name, _) in enumerate(series)
    )
    return "".join(out) + (f'<div class="legend">{legend}</div>' if len(series) > 1 else "")


def bar_chart(bars: Sequence[tuple[str, float]], *, unit: str = "", title: str = "") -> str:
    """Horizontal bars, one per (label, value); values below zero are drawn as zero."""
    label = escape(title or "chart")
    if not bars:
        return (
            f'<svg class="chart empty" viewBox="0 0 {WIDTH} 60" role="img" aria-label="{label}">'
            f'<text x="{WIDTH / 2}" y="34" text-anchor="middle">no data</text></svg>'
        )
    row, gap, name_w = 22, 6, 160
    height = len(bars) * (row + gap) + gap
    top = max((v for _, v in bars), default=0.0) or 1.0
    out = [
        f'<svg class="chart bars" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}">'
    ]
    for i, (name, value) in enumerate(bars):
        y = gap + i * (row + gap)
        w = max(0.0, value) / top * (WIDTH - name_w - 80)
        color = PALETTE[i % len(PALETTE)]
        out.append(
            f'<text class="tick" x="{name_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(name[:28])}</text>"
            f'<rect x="{name_w}" y="{y}" width="{w:.1f}" height="{row}" fill="{color}">'
            f"<title>{escape(f'{name}: {_tick(value)}{unit}')}</title></rect>"
            f'<text class="tick" x="{name_w + w + 6:.1f}" y="{y + 15}">'
            f"{escape(_tick(value) + unit)}</text>"
        )
    out.append("</svg>")
    return "".join(out)
