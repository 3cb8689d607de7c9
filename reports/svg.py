"""Inline SVG charts for the HTML report, drawn in Python from plain numbers.

Every text that reaches the SVG goes through ``markupsafe.escape``; the result is a ``Markup`` the
template inserts as is. Geometry uses floats; money only appears as text, already formatted from a
``Decimal`` by the caller (no float ever touches an amount).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from markupsafe import Markup, escape

# Colour of a difference code by what it asks of a person (priority 1 red … waiting grey).
PRIORITY_COLOURS = {1: "#c62828", 2: "#ef6c00", 3: "#1565c0", 4: "#9e9e9e"}
MATCHED_COLOUR = "#2e7d32"
NEUTRAL_COLOUR = "#bdbdbd"

BAR_WIDTH = 360          # viewBox width: about one phone screen, scaled by CSS elsewhere
BAR_ROW = 30             # height of one code row: a label line, then the bar
BAR_GROUP_GAP = 26       # height of a channel heading
TREND_WIDTH, TREND_HEIGHT = 360, 190
TREND_LEFT, TREND_RIGHT, TREND_TOP, TREND_BOTTOM = 40, 12, 12, 34


@dataclass(frozen=True)
class Bar:
    channel: str
    code: str
    label: str       # the code as a person reads it, in the report's language
    count: int
    colour: str
    title: str       # hover text, e.g. "ali · missing callback · 2 · 165.00"


@dataclass(frozen=True)
class TrendPoint:
    run_id: int
    business_date: date
    rate: Decimal | None   # matched share 0..1; None when the run had nothing to reconcile


def colour_for(code: str, priority: int | None) -> str:
    """Green for matched, priority colours for exceptions, grey for the rest (unpaid)."""
    if code == "matched":
        return MATCHED_COLOUR
    return PRIORITY_COLOURS.get(priority, NEUTRAL_COLOUR) if priority is not None else NEUTRAL_COLOUR


def _num(value: float) -> str:
    """A compact coordinate: 12.5, 40 (never 40.0 or 1e-05)."""
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def _svg(width: int, height: float, label: str, body: list[str], css_class: str) -> Markup:
    head = (f'<svg class="chart {css_class}" viewBox="0 0 {width} {_num(height)}" role="img" '
            f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">'
            f"<title>{escape(label)}</title>")
    return Markup(head + "".join(body) + "</svg>")


def bar_chart(bars: Sequence[Bar], title: str, empty_text: str) -> Markup:
    """Horizontal bars of result counts, grouped by channel: one ``rect.bar`` per (channel, code)."""
    if not bars:
        return _svg(BAR_WIDTH, 30, title, [f'<text x="0" y="20" class="muted">{escape(empty_text)}</text>'], "bars")
    longest = max(b.count for b in bars) or 1
    span = BAR_WIDTH - 50  # room for the count after the longest bar
    body: list[str] = []
    y = 0.0
    channel: str | None = None
    for bar in bars:
        if bar.channel != channel:
            channel = bar.channel
            body.append(f'<text x="0" y="{_num(y + 18)}" class="group">{escape(channel)}</text>')
            y += BAR_GROUP_GAP
        width = max(span * bar.count / longest, 2.0)
        body.append(
            f'<g class="item" data-channel="{escape(bar.channel)}" data-code="{escape(bar.code)}">'
            f"<title>{escape(bar.title)}</title>"
            f'<text x="0" y="{_num(y + 10)}" class="label">{escape(bar.label)}</text>'
            f'<rect class="bar" x="0" y="{_num(y + 14)}" width="{_num(width)}" height="12" rx="2" '
            f'fill="{escape(bar.colour)}" data-count="{bar.count}"></rect>'
            f'<text x="{_num(width + 6)}" y="{_num(y + 24)}" class="value">{bar.count}</text></g>'
        )
        y += BAR_ROW
    return _svg(BAR_WIDTH, y + 4, title, body, "bars")


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).quantize(Decimal('0.01'))}%"


def trend_chart(points: Sequence[TrendPoint], title: str, empty_text: str, run_word: str) -> Markup:
    """Match rate per run, oldest left: a polyline through one ``circle.point`` per run with a rate."""
    known = [(i, p) for i, p in enumerate(points) if p.rate is not None]
    plot_w = TREND_WIDTH - TREND_LEFT - TREND_RIGHT
    plot_h = TREND_HEIGHT - TREND_TOP - TREND_BOTTOM
    body: list[str] = []
    for tick in (0, 25, 50, 75, 100):
        y = TREND_TOP + plot_h * (1 - tick / 100)
        body.append(f'<line class="grid" x1="{TREND_LEFT}" x2="{TREND_WIDTH - TREND_RIGHT}" '
                    f'y1="{_num(y)}" y2="{_num(y)}"></line>'
                    f'<text class="axis" x="{TREND_LEFT - 4}" y="{_num(y + 4)}" text-anchor="end">{tick}%</text>')
    if not known:
        body.append(f'<text class="muted" x="{TREND_LEFT + 8}" y="{_num(TREND_TOP + plot_h / 2)}">'
                    f"{escape(empty_text)}</text>")
        return _svg(TREND_WIDTH, TREND_HEIGHT, title, body, "trend")

    def x_of(index: int) -> float:
        return TREND_LEFT + (plot_w / 2 if len(points) == 1 else plot_w * index / (len(points) - 1))

    def y_of(rate: Decimal) -> float:
        return TREND_TOP + plot_h * (1 - min(max(float(rate), 0.0), 1.0))

    coords = [(x_of(i), y_of(p.rate)) for i, p in known if p.rate is not None]
    if len(coords) > 1:
        body.append('<polyline class="line" fill="none" points="'
                    + " ".join(f"{_num(x)},{_num(y)}" for x, y in coords) + '"></polyline>')
    for (x, y), (_, p) in zip(coords, known, strict=True):
        rate = p.rate if p.rate is not None else Decimal(0)
        tip = f"{p.business_date.isoformat()} · {run_word} #{p.run_id} · {_percent(rate)}"
        body.append(f'<circle class="point" cx="{_num(x)}" cy="{_num(y)}" r="4" data-run="{p.run_id}" '
                    f'data-rate="{escape(str(rate))}"><title>{escape(tip)}</title></circle>')
    first, last = points[0], points[-1]
    base = TREND_HEIGHT - TREND_BOTTOM + 16
    body.append(f'<text class="axis" x="{TREND_LEFT}" y="{base}">{escape(first.business_date.isoformat())}</text>')
    if len(points) > 1:
        body.append(f'<text class="axis" x="{TREND_WIDTH - TREND_RIGHT}" y="{base}" text-anchor="end">'
                    f"{escape(last.business_date.isoformat())}</text>")
    latest = known[-1][1]
    if latest.rate is not None:
        body.append(f'<text class="axis" x="{TREND_LEFT}" y="{base + 14}">{escape(run_word)} '
                    f"#{latest.run_id}: {_percent(latest.rate)}</text>")
    return _svg(TREND_WIDTH, TREND_HEIGHT, title, body, "trend")
