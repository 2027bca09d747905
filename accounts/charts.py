"""Server-side SVG bar charts: the geometry here, the markup in
templates/accounts/_usage_chart.html. No JavaScript, no build step."""

import datetime
import math
from dataclasses import dataclass

WIDTH, HEIGHT = 360, 150
LEFT, RIGHT, TOP, BOTTOM = 34, 4, 10, 22  # room for the axis labels
ZERO_MARK = 2.0


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: datetime.date
    value: int


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    label: str
    anchor: str = "middle"  # SVG text-anchor


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    plot_left: int
    plot_right: int
    baseline: float


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^k that is at least `value` (1 for nothing)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    raise AssertionError("unreachable")


def bar_chart(days: list[tuple[datetime.date, int]]) -> BarChart:
    """One bar per day, scaled to a rounded maximum, with three y ticks and dates at both ends and the middle."""
    top = nice_ceiling(max((v for _, v in days), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    gap = min(2.0, slot * 0.2)
    baseline = TOP + plot_h
    bars = []
    for i, (day, value) in enumerate(days):
        h = plot_h * value / top
        if value and h < 1:
            h = 1.0  # a day with any use stays visible
        if not value:
            h = ZERO_MARK  # a thin mark, so a quiet day reads as zero rather than missing
        bars.append(
            Bar(
                x=round(LEFT + i * slot + gap / 2, 2),
                y=round(baseline - h, 2),
                width=round(slot - gap, 2),
                height=round(h, 2),
                day=day,
                value=value,
            )
        )
    y_ticks = [
        Tick(x=LEFT - 6, y=round(baseline - plot_h * f, 2), label=f"{int(top * f):,}")
        for f in (0, 0.5, 1)
        if f == 0 or top * f == int(top * f)
    ]
    x_ticks = []
    if days:
        ends = {0: ("start", LEFT), len(days) - 1: ("end", WIDTH - RIGHT)}  # the end labels stay inside the box
        for i in sorted({0, len(days) // 2, len(days) - 1}):
            anchor, x = ends.get(i, ("middle", LEFT + (i + 0.5) * slot))
            x_ticks.append(Tick(x=round(x, 2), y=HEIGHT - 6, label=days[i][0].strftime("%b %-d"), anchor=anchor))
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        plot_left=LEFT,
        plot_right=WIDTH - RIGHT,
        baseline=baseline,
    )
