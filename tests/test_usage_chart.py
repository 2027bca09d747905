"""The server-side SVG bar chart's geometry (accounts/charts.py)."""

import datetime

import pytest

from accounts.charts import HEIGHT, WIDTH, ZERO_MARK, bar_chart, nice_ceiling


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

    assert chart.bars[0].x >= chart.plot_left
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.plot_right + 0.01
    assert [(t.label, t.anchor) for t in chart.x_ticks] == [("Mar 1", "start"), ("Mar 16", "middle"), ("Mar 30", "end")]
    assert all(0 <= t.x <= WIDTH and 0 <= t.y <= HEIGHT for t in chart.x_ticks + chart.y_ticks)


def test_a_tiny_day_next_to_a_huge_one_is_still_visible():
    chart = bar_chart(days([1, 100_000]))

    assert chart.bars[0].height >= 1
