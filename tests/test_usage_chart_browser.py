"""The usage chart in Debian's Chromium: its axis labels show at the body text's size, at a
laptop's and a phone's width (issue 12, first hour: at 1280 px they showed at twice that, the
SVG's viewBox scaling 12 px labels with the chart). Screenshots: test-output/screenshots/."""

import pytest

from tests import test_portal_browser as portal_browser

pytestmark = pytest.mark.browser
browser, page, shot = portal_browser.browser, portal_browser.page, portal_browser.shot  # its Chromium fixtures

# The size a text is drawn at on screen: its font size times the scale of every SVG viewBox above it.
RENDERED_PX = """e => {
  const size = parseFloat(getComputedStyle(e).fontSize);
  return e instanceof SVGGraphicsElement ? size * Math.hypot(e.getScreenCTM().c, e.getScreenCTM().d) : size;
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_the_chart_labels_are_drawn_at_the_body_text_size(
    page, live_server, alice, products, purchase, past_usage, width
):
    purchase(alice, products["weather"], 10_000, days_ago=20)
    past_usage(alice, products["weather"], {19: 400, 12: 2_300, 6: 700, 1: 4_100})
    page.set_viewport_size({"width": width, "height": 900})
    portal_browser.log_in(page, live_server, alice.email, portal_browser.PASSWORD)

    chart = page.locator("#product-weather figure.chart")
    chart.scroll_into_view_if_needed()
    shot(page, f"usage-chart-{width}", full_page=False)
    body_px = page.locator("body").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    labels = chart.locator("svg text")
    texts = labels.evaluate_all("texts => texts.map(t => t.textContent)")
    assert texts[:3] == ["0", "2,500", "5,000"] and len(texts) == 6  # three values, then three dates

    sizes = [round(label.evaluate(RENDERED_PX), 1) for label in labels.all()]
    assert sizes == [body_px] * len(texts), f"labels drawn at {sizes} px, body text at {body_px} px"
    box = chart.bounding_box()
    for label in labels.all():  # and none is cut off by the card
        b = label.bounding_box()
        assert box["x"] - 1 <= b["x"] and b["x"] + b["width"] <= box["x"] + box["width"] + 1, (label.text_content(), b)
