"""Staff's admin in Debian's Chromium at a laptop's 1280 px: the lists show their key columns
whole, without scrolling sideways (issue 12, first hour). Screenshots: test-output/screenshots/."""

import pytest

from ledger.models import Purchase
from ledger.services import credits_adjust
from ledger.store.orders import purchase_record
from tests import test_portal_browser as portal_browser

pytestmark = pytest.mark.browser
WIDTH = 1280
browser, page, shot = portal_browser.browser, portal_browser.page, portal_browser.shot  # its Chromium fixtures


@pytest.fixture(autouse=True)
def _no_mirror(settings):
    settings.MIRROR_ENABLED = False  # not under test: the admin's pages are


@pytest.fixture
def busy_admin(staff, products, django_capture_on_commit_callbacks):
    """A few purchases and ledger entries with the long values real ones have."""
    with django_capture_on_commit_callbacks(execute=True):
        for n, email in enumerate(["bob@example.com", "margarethe.vanderlinden-okonkwo@example-enterprises.co.uk"]):
            recorded = purchase_record(
                source=Purchase.Source.ZAPIER,
                order_id=f"#10{n:02d}-2026-EU-WEB",
                line_id=f"gid://shopify/LineItem/1384752093{n}",
                email=email,
                name="Margarethe van der Linden-Okonkwo",
                product_ref="WTHR-100",
                quantity=100_000,
            )
        purchase_record(
            source=Purchase.Source.ZAPIER, order_id="#1099", email="carol@example.com", product_ref="UNKNOWN-SKU-500",
            quantity=500,
        )  # fmt: skip
    credits_adjust(
        customer=recorded.purchase.customer,
        product=products["weather"],
        amount=-25,
        reason="Refund of two days of calls during the outage on 3 March, as agreed with support ticket 48213",
        by=staff,
    )
    return staff


def log_in_to_admin(page, live_server, staff) -> None:
    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill("staff password 123")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def header_box(page, text: str) -> dict:
    header = page.locator("#result_list thead th", has_text=text)
    assert header.count() == 1, f"no single column header {text!r}"
    return header.bounding_box()


@pytest.mark.parametrize(
    "path, name, headers",
    [
        ("/admin/ledger/purchase/", "purchases", ["Units", "Status", "Email"]),
        ("/admin/ledger/ledgerentry/", "ledger-entries", ["Reason", "Created by"]),
    ],
)
def test_an_admin_list_shows_its_key_columns_whole_at_1280_px(page, live_server, busy_admin, path, name, headers):
    page.set_viewport_size({"width": WIDTH, "height": 800})
    log_in_to_admin(page, live_server, busy_admin)

    page.goto(f"{live_server.url}{path}")
    page.locator("#result_list").wait_for()
    shot(page, f"admin-{name}-1280", full_page=False)

    for text in headers:
        box = header_box(page, text)
        assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, f"{text!r} header at {box} is outside {WIDTH} px"
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH  # nothing to scroll sideways for
    results = page.locator("#changelist .results")
    assert results.evaluate("e => e.scrollWidth <= e.clientWidth"), "the list scrolls sideways in its box"
    spilling = page.eval_on_selector_all(
        "#result_list td, #result_list th",
        "cells => cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.className + ': ' + c.innerText)",
    )
    assert spilling == [], "cells whose text runs over the next column"
