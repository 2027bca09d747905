"""The admin's overview in Debian's Chromium at a laptop's 1280 px: the charts draw (one line per
series, inside their box), the figures and "needs a hand" show beside the app list, nothing scrolls
sideways, and the page keeps to its Content-Security-Policy. Screenshot: test-output/screenshots/."""

import datetime

import pytest
from django.utils import timezone

from ledger.models import DriftCheck, LedgerEntry, MirrorOutbox
from ledger.services import credits_adjust, usage_record
from tests import test_portal_browser as portal_browser
from tests.test_admin_browser import log_in_to_admin

pytestmark = pytest.mark.browser
WIDTH = 1280
browser, page, shot = portal_browser.browser, portal_browser.page, portal_browser.shot


@pytest.fixture(autouse=True)
def _no_mirror(settings):
    settings.MIRROR_ENABLED = False


@pytest.fixture
def busy_month(staff, alice, bob, products, purchase):
    """Thirty days of calls with a few purchases, a refund and a staff correction."""
    weather, maps = products["weather"], products["maps"]
    purchase(alice, weather, 5000, days_ago=20)
    purchase(bob, maps, 2000, days_ago=10)
    purchase(bob, weather, 100)
    now = timezone.now()
    LedgerEntry.objects.bulk_create(
        [LedgerEntry(customer=alice, product=weather, kind="usage", amount=-(40 + (d * 7) % 60),
                     created=now - datetime.timedelta(days=d)) for d in range(1, 30)]
        + [LedgerEntry(customer=bob, product=maps, kind="usage", amount=-(10 + (d * 13) % 30),
                       created=now - datetime.timedelta(days=d)) for d in range(1, 12)]
        + [LedgerEntry(customer=bob, product=maps, kind="refund", amount=-300, created=now - datetime.timedelta(days=4))]
        + [LedgerEntry(customer=alice, product=weather, kind="failed_call", amount=3 + d % 4, request_id=f"req-{d}",
                       created=now - datetime.timedelta(days=d)) for d in range(2, 30, 3)]
    )  # fmt: skip
    usage_record(customer=bob, product=weather, amount=95)  # 5 of 100 left: running low
    credits_adjust(customer=alice, product=weather, amount=-25, reason="outage", by=staff)
    MirrorOutbox.objects.create(scope="route", ref="gone00001", attempts=3, error="timeout")
    DriftCheck.objects.create(result="ok", ran=now - datetime.timedelta(hours=7))
    return staff


def test_the_overview_draws_its_charts_and_figures_at_1280_px(page, live_server, busy_month):
    page.set_viewport_size({"width": WIDTH, "height": 900})
    log_in_to_admin(page, live_server, busy_month)

    page.goto(f"{live_server.url}/admin/")
    page.locator("#overview-numbers").wait_for()
    shot(page, "admin-overview-1280")

    total = page.locator("#chart-all")
    assert total.locator("polyline.series").count() == 4  # sold, spent, credited back, taken back
    for chart in total.locator(".cp-chart").all():
        plot = chart.locator("svg.chart-plot").bounding_box()
        assert plot["width"] > 300  # two charts side by side across the overview's column
        for line in chart.locator("polyline.series").all():
            box = line.bounding_box()
            assert box is not None and box["width"] > 0.9 * plot["width"], "a series does not run across the days"
    assert page.locator(".cp-product .cp-chart").count() == 6  # two each: all products, weather, maps
    # The y labels keep the admin's text size (they are outside the stretched plot).
    size = page.locator("#chart-all .chart-y text").first.evaluate("e => getComputedStyle(e).fontSize")
    assert size == "12px"
    assert page.locator("#figure-active-customers").inner_text() == "2"
    assert "1 pending mirror writes" in " ".join(page.locator("#overview-needs li").all_inner_texts()).replace(
        "\n", " "
    )
    spent = page.locator('#overview-numbers tfoot td[data-series="spent"]').inner_text()
    assert int(spent.replace(",", "")) == -sum(
        LedgerEntry.objects.filter(kind="usage").values_list("amount", flat=True)
    )
    # The app list stands beside the overview, and nothing runs off the screen.
    side = page.locator("#content-related").bounding_box()
    main = page.locator("#content-main").bounding_box()
    assert side["x"] >= main["x"] + main["width"] - 1
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    assert page.csp_violations == []
