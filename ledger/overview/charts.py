"""The overview's SVG: several series over the same days as lines, on one scale.

Built as the portal's bar chart is (accounts/charts.py): the y labels and the dates in SVGs that
are never scaled, the plot alone stretched sideways by its viewBox, so text keeps its size.
"""

import datetime
from dataclasses import dataclass

from accounts.charts import DATES_HEIGHT, DIGIT_EM, PLOT_WIDTH, TOP, Tick, nice_ceiling

PLOT_HEIGHT = 160
LABEL_FONT_PX = 13  # the admin's text size


@dataclass(frozen=True)
class Line:
    key: str  # the CSS class: series-<key>
    label: str
    points: str  # SVG polyline points, plot units
    total: int


@dataclass(frozen=True)
class LineChart:
    plot_width: int
    plot_height: int
    gutter: int
    dates_height: int
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    baseline: float


def line_chart(days: list[datetime.date], series: list[tuple[str, str, list[int]]]) -> LineChart:
    """`series`: (key, label, one value per day). Negative values (a net staff cut) draw at zero."""
    top = nice_ceiling(max((v for _, _, values in series for v in values), default=0))
    plot_h = PLOT_HEIGHT - TOP
    baseline = TOP + plot_h
    step = PLOT_WIDTH / max(len(days), 1)

    def y(value: int) -> float:
        return round(baseline - plot_h * max(value, 0) / top, 2)

    lines = [
        Line(
            key=key,
            label=label,
            points=" ".join(f"{round((i + 0.5) * step, 2)},{y(v)}" for i, v in enumerate(values)),
            total=sum(values),
        )
        for key, label, values in series
    ]
    labels = [(f"{int(top * f):,}", round(baseline - plot_h * f, 2)) for f in (0, 0.5, 1) if top * f == int(top * f)]
    gutter = int(max(len(label) for label, _ in labels) * DIGIT_EM * LABEL_FONT_PX) + 10
    y_ticks = [Tick(x=gutter - 6, y=y_, label=label, anchor="end") for label, y_ in labels]
    x_ticks = []
    if days:
        ends = {0: ("start", "0%"), len(days) - 1: ("end", "100%")}
        for i in sorted({0, len(days) // 2, len(days) - 1}):
            anchor, x = ends.get(i, ("middle", f"{(i + 0.5) / len(days) * 100:.2f}%"))
            x_ticks.append(Tick(x=x, y=DATES_HEIGHT - 8, label=days[i].strftime("%b %-d"), anchor=anchor))
    return LineChart(
        plot_width=PLOT_WIDTH,
        plot_height=PLOT_HEIGHT,
        gutter=gutter,
        dates_height=DATES_HEIGHT,
        lines=lines,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        baseline=baseline,
    )
