"""Charts as SVG drawn on the server (the finance dashboard): no chart library, no CDN, no script, so the
page works under the admin's Content-Security-Policy and prints as it shows. Two kinds: lines (a value
at each point: subscribers, MRR, a rate) and bars (stacked per point, optionally with a second stack
below the axis: new above, churned below). Every point carries a <title> (the browser's tooltip).

Values are plain numbers (money already in major units); `fmt` turns a value into the axis and
tooltip text."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Distinguishable on white and for the common colour blindness (Okabe-Ito), then a grey for "other".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
OTHER_COLOR = "#999999"

WIDTH, HEIGHT = 1000, 300
LEFT, RIGHT, TOP, BOTTOM = 80, 16, 16, 44
MAX_X_LABELS = 12


@dataclass
class Series:
    name: str
    values: Sequence[float | None]  # one per x label; None: no figures for that point (a gap)
    color: str = PALETTE[0]
    below: Sequence[float] = field(default_factory=tuple)  # bars only: stacked downwards from zero


def color_for(index: int, name: str) -> str:
    return OTHER_COLOR if name == "other" else PALETTE[index % len(PALETTE)]


def nice_step(span: float, ticks: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 x 10^n) giving about `ticks` intervals over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _number(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def chart(*, title: str, x_labels: Sequence[str], series: Sequence[Series], kind: str = "line",
          fmt: Callable[[float], str] = _number, axis_fmt: Callable[[float], str] = _number,
          y_title: str = "") -> SafeString:
    """An SVG chart, `kind` "line" or "bars"; empty series draw an empty frame with a note. `fmt` writes
    the tooltips, `axis_fmt` the y axis (short: the unit is the axis title)."""
    count = len(x_labels)
    top_value = 0.0
    bottom_value = 0.0
    if kind == "bars":
        for i in range(count):
            top_value = max(top_value, sum(s.values[i] or 0 for s in series))
            bottom_value = max(bottom_value, sum(s.below[i] or 0 for s in series if s.below))
    else:
        top_value = max((v for s in series for v in s.values if v is not None), default=0.0)
    step = nice_step(top_value + bottom_value)
    y_max = math.ceil(top_value / step) * step if top_value > 0 else (step if not bottom_value else 0)
    y_min = -math.ceil(bottom_value / step) * step if bottom_value > 0 else 0.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return TOP + plot_h * (y_max - value) / ((y_max - y_min) or 1)

    slot = plot_w / max(count, 1)

    def x(index: int) -> float:
        return LEFT + slot * (index + 0.5)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
             f'role="img" aria-label="{escape(title)}" class="finance-chart" '
             f'style="max-width: {WIDTH}px; font: 12px sans-serif">',
             f"<title>{escape(title)}</title>"]
    # y axis: grid lines and labels
    tick = y_min
    while tick <= y_max + step / 1000:
        ty = y(tick)
        stroke = "#666" if abs(tick) < step / 1000 else "#e5e5e5"
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{stroke}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#333">'
                     f"{escape(axis_fmt(abs(tick) if kind == 'bars' else tick))}</text>")
        tick += step
    if y_title:
        parts.append(f'<text transform="translate(14 {TOP + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
                     f'fill="#333">{escape(y_title)}</text>')
    # x axis: at most MAX_X_LABELS labels, evenly spaced, the last one always shown
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#666"/>')
    every = max(1, math.ceil(count / MAX_X_LABELS))
    for i, label in enumerate(x_labels):
        if i % every == 0 or (i == count - 1 and (count - 1) % every >= every / 2):
            parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
                         f'stroke="#666"/>')
            parts.append(f'<text x="{x(i):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle" fill="#333">'
                         f"{escape(label)}</text>")
    if (not any(any(s.values) or any(s.below) for s in series) and kind == "bars") \
            or not any(v is not None for s in series for v in s.values):
        parts.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
                     f'fill="#777">no data in this range</text>')
    elif kind == "bars":
        parts += _bars(series, x_labels, x, y, slot, fmt)
    else:
        parts += _lines(series, x_labels, x, y, fmt)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every text and attribute above is escaped or a number)


def _bars(series, x_labels, x, y, slot, fmt) -> list[str]:
    parts = []
    bar_w = max(1.0, min(40.0, slot * 0.7))
    for i, label in enumerate(x_labels):
        up = down = 0.0
        for s in series:
            for value, sign in ((s.values[i], 1), (s.below[i] if s.below else None, -1)):
                if not value:
                    continue
                start = up if sign > 0 else down
                end = start + value
                y1, y2 = (y(end), y(start)) if sign > 0 else (y(-start), y(-end))
                opacity = "1" if sign > 0 else "0.55"
                tip = f"{label} · {s.name}: {'-' if sign < 0 else ''}{fmt(value)}"
                parts.append(f'<rect x="{x(i) - bar_w / 2:.1f}" y="{y1:.1f}" width="{bar_w:.1f}" '
                             f'height="{max(y2 - y1, 0.5):.1f}" fill="{s.color}" fill-opacity="{opacity}">'
                             f"<title>{escape(tip)}</title></rect>")
                if sign > 0:
                    up = end
                else:
                    down = end
    return parts


def _lines(series, x_labels, x, y, fmt) -> list[str]:
    parts = []
    dots = len(x_labels) <= 40
    for s in series:
        segment: list[str] = []
        for i, v in enumerate([*s.values, None]):  # a gap (None) ends a line; the next point starts another
            if v is not None:
                segment.append(f"{x(i):.1f},{y(v):.1f}")
            elif segment:
                parts.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{s.color}" '
                             f'stroke-width="2"/>')
                segment = []
        for i, v in enumerate(s.values):
            if v is None:
                continue
            radius = 3 if dots else 6  # invisible but hoverable when the line is dense
            fill = s.color if dots else "transparent"
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{radius}" fill="{fill}">'
                         f"<title>{escape(f'{x_labels[i]} · {s.name}: {fmt(v)}')}</title></circle>")
    return parts
