"""The server-side SVG bar chart's geometry (accounts/charts.py)."""

import datetime

import pytest

from accounts.charts import PLOT_HEIGHT, PLOT_WIDTH, ZERO_MARK, bar_chart, nice_ceiling


@pytest.mark.parametrize(
    "value, top", [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (64, 100), (1234, 2000)]
)
def test_the_scale_rounds_up_to_1_2_or_5_times_a_power_of_ten(value, top):
    assert nice_ceiling(value) == top


def days(values: list[int]) -> list[tuple[datetime.date, int]]:
    first = datetime.date(2026, 3, 1)
    return [(first + datetime.timedelta(days=i), v) for i, v in enumerate(values)]


def test_the_busiest_day_fills_the_plot_and_quiet_days_get_a_thin_mark():
    chart = bar_chart(days([0] * 28 + [50, 25]))

    assert len(chart.bars) == 30
    tallest, half = chart.bars[28], chart.bars[29]
    assert tallest.height == pytest.approx(chart.baseline - 10)  # the whole plot height: 50 is the scale's top
    assert half.height == pytest.approx(tallest.height / 2)
    assert {b.height for b in chart.bars[:28]} == {ZERO_MARK}
    assert all(b.y + b.height == pytest.approx(chart.baseline) for b in chart.bars)
    assert [t.label for t in chart.y_ticks] == ["0", "25", "50"]


def test_bars_and_labels_stay_inside_the_box():
    chart = bar_chart(days([3] * 30))

    assert chart.bars[0].x >= 0
    assert chart.bars[-1].x + chart.bars[-1].width <= PLOT_WIDTH + 0.01
    assert [(t.label, t.anchor, t.x) for t in chart.x_ticks] == [
        ("Mar 1", "start", "0%"),
        ("Mar 16", "middle", "51.67%"),  # the middle of the 16th of 30 bars
        ("Mar 30", "end", "100%"),
    ]
    assert all(0 <= t.y <= chart.dates_height for t in chart.x_ticks)
    assert all(0 <= t.x <= chart.gutter and 0 <= t.y <= PLOT_HEIGHT for t in chart.y_ticks)


@pytest.mark.parametrize("busiest, widest", [(5, "5"), (64, "100"), (9_000, "10,000"), (4_000_000, "5,000,000")])
def test_the_gutter_holds_the_widest_y_label_at_the_body_text_size(busiest, widest):
    chart = bar_chart(days([busiest]))

    assert chart.y_ticks[-1].label == widest
    assert chart.gutter >= len(widest) * 0.6 * 16 + 6  # a digit is at most 0.6 em wide; 6 px to the plot


def test_a_tiny_day_next_to_a_huge_one_is_still_visible():
    chart = bar_chart(days([1, 100_000]))

    assert chart.bars[0].height >= 1
