"""Server-side SVG bar charts: the geometry here, the markup in
templates/accounts/_usage_chart.html. No JavaScript, no build step.

The labels are drawn at the page's own text size, whatever the chart's width: a viewBox would
scale them with the chart (at 720 px wide, 12 px labels showed at 24 px). So the chart is three
SVGs side by side in CSS: the y labels in a gutter, the plot (the only one with a viewBox,
stretched to the width left, and only sideways: its height is in CSS pixels), and the dates
under it, placed in percent of that width. Text sits only in the two that are never scaled.
"""

import datetime
import math
from dataclasses import dataclass

PLOT_WIDTH = 300  # the plot's own units across; stretched to whatever width it gets
PLOT_HEIGHT = 130  # CSS pixels, the bars' full height included
TOP = 10  # room above the highest gridline for half its label
DATES_HEIGHT = 24  # the strip of dates under the plot, in CSS pixels
LABEL_FONT_PX = 16  # the body text size (portal.css); the gutter is sized for labels this big
DIGIT_EM = 0.6  # a digit or comma's width, generously, in a system sans-serif
ZERO_MARK = 2.0


@dataclass(frozen=True)
class Bar:
    x: float  # plot units
    y: float  # CSS pixels
    width: float
    height: float
    day: datetime.date
    value: int


@dataclass(frozen=True)
class Tick:
    x: float | str  # y labels: CSS pixels in the gutter; dates: a percentage of the plot's width ("50%")
    y: float
    label: str
    anchor: str = "middle"  # SVG text-anchor


@dataclass(frozen=True)
class BarChart:
    plot_width: int
    plot_height: int
    gutter: int  # CSS pixels left of the plot, for the y labels
    dates_height: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
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
    plot_h = PLOT_HEIGHT - TOP
    slot = PLOT_WIDTH / max(len(days), 1)
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
                x=round(i * slot + gap / 2, 2),
                y=round(baseline - h, 2),
                width=round(slot - gap, 2),
                height=round(h, 2),
                day=day,
                value=value,
            )
        )
    labels = [(f"{int(top * f):,}", round(baseline - plot_h * f, 2)) for f in (0, 0.5, 1) if top * f == int(top * f)]
    gutter = math.ceil(max(len(label) for label, _ in labels) * DIGIT_EM * LABEL_FONT_PX) + 8
    y_ticks = [Tick(x=gutter - 6, y=y, label=label, anchor="end") for label, y in labels]
    x_ticks = []
    if days:
        ends = {0: ("start", "0%"), len(days) - 1: ("end", "100%")}  # the end labels stay inside the box
        for i in sorted({0, len(days) // 2, len(days) - 1}):
            anchor, x = ends.get(i, ("middle", f"{(i + 0.5) / len(days) * 100:.2f}%"))
            x_ticks.append(Tick(x=x, y=DATES_HEIGHT - 6, label=days[i][0].strftime("%b %-d"), anchor=anchor))
    return BarChart(
        plot_width=PLOT_WIDTH,
        plot_height=PLOT_HEIGHT,
        gutter=gutter,
        dates_height=DATES_HEIGHT,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        baseline=baseline,
    )
