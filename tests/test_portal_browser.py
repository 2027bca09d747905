"""The customer portal and the admin's "Adjust credits" in Debian's Chromium,
driven by Playwright against pytest-django's live server (a real HTTP server
on a thread, with a real transactional Postgres database).

Screenshots land in test-output/screenshots/ for a person to look at."""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from accounts.models import Credential
from ledger.models import Balance, LedgerEntry
from ledger.services import usage_record

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(django_settings.BASE_DIR) / "test-output" / "screenshots"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does), or deselect with -m 'not browser'"
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an asyncio event loop in this thread (on a
    # greenlet). Django sees that running loop and refuses database calls from
    # this thread as "async-unsafe", though they are plain synchronous calls made
    # between browser steps. Our test code and the live server's thread never run
    # database calls concurrently here, so we allow them for this module only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def settled_content(page, timeout: float = 10.0) -> str:
    """The page's HTML once it has stopped navigating.

    Chromium commits its own error page in more than one step, and `page.content()` raises
    "page is navigating" while it does (seen on a loaded machine); ask again until it answers."""
    import time

    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    while True:
        try:
            page.wait_for_load_state()
            return page.content()
        except PlaywrightError as e:
            if "navigating" not in str(e) or time.monotonic() > deadline:
                raise
            page.wait_for_timeout(100)


# Every page reports what its Content-Security-Policy blocked (the browser's own event) to the test.
CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => window.cspViolation(
  {directive: e.effectiveDirective, blocked: e.blockedURI, page: document.location.href, line: e.lineNumber, sample: e.sample}));
"""


@pytest.fixture
def page(browser):
    """A browser tab whose pages must all be served with the CSP and raise no violation of it
    (checked when the test ends; `page.csp_violations` is the list so far)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(20_000)
    found: list[dict] = []
    context.expose_function("cspViolation", lambda violation: found.append(violation))
    context.add_init_script(CSP_VIOLATIONS)
    page = context.new_page()
    page.csp_violations = found
    seen, unprotected = [], []

    def on_response(response):
        if response.request.resource_type == "document":
            seen.append(response.url)
            if "default-src 'self'" not in (response.headers.get("content-security-policy") or ""):
                unprotected.append(response.url)

    page.on("response", on_response)
    yield page
    context.close()
    assert seen and unprotected == [], f"pages served without the CSP: {unprotected}"
    assert found == [], f"the pages' Content-Security-Policy blocked: {found}"


def shot(page, name: str, full_page: bool = True) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def log_in(page, live_server, email: str, password: str) -> None:
    page.goto(f"{live_server.url}/account/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():  # the answer's page, loaded, before anyone looks at it
        page.get_by_role("button", name="Log in").click()


def test_alice_logs_in_sees_her_balance_rotates_her_secret_once_and_logs_out(
    page, live_server, alice, products, purchase, past_usage
):
    purchase(alice, products["weather"], 100, order_id="#1001", days_ago=20)
    purchase(alice, products["maps"], 500, order_id="#1002", days_ago=6)
    past_usage(alice, products["weather"], {19: 4, 15: 9, 12: 3, 9: 12, 6: 7, 4: 15, 2: 6, 1: 10})
    past_usage(alice, products["maps"], {5: 40, 3: 22, 2: 64, 1: 30})
    usage_record(customer=alice, product=products["weather"], amount=2)
    old_secret = alice.secret

    page.goto(f"{live_server.url}/account/")  # anonymous: sent to log in
    assert page.url == f"{live_server.url}/account/login/?next=/account/"
    shot(page, "01-login")

    page.get_by_label("Email").fill("Alice@Example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.wait_for_url(f"{live_server.url}/account/")
    weather = page.locator("#product-weather")
    assert weather.get_by_test_id("remaining").inner_text() == "32"  # 100 - 66 - 2
    assert weather.get_by_test_id("granted").inner_text() == "100"
    assert page.locator("#product-maps").get_by_test_id("remaining").inner_text() == "344"
    assert page.get_by_role("img", name=re.compile("Weather API: credits used per day")).is_visible()
    assert old_secret not in page.content()
    assert f"…{old_secret[-4:]}" in page.content()
    shot(page, "02-dashboard-before-rotation")

    page.get_by_role("link", name=f"Rotate secret of {alice.credential.client_id}").click()
    page.get_by_role("heading", name="Rotate the secret?").wait_for()
    shot(page, "03-rotate-confirm")
    page.get_by_role("button", name="Rotate secret").click()

    # The POST's own answer shows the secret (it is stored nowhere, not even in the session).
    page.get_by_role("heading", name=re.compile("New secret for")).wait_for()
    new_secret = page.get_by_test_id("new-secret").inner_text().strip()
    credential = Credential.objects.get(pk=alice.credential.pk)
    assert credential.check_secret(new_secret)
    assert not credential.check_secret(old_secret)
    assert page.get_by_text("this is the only time it is shown").is_visible()
    shot(page, "04-new-secret-shown-once")

    page.get_by_role("link", name="back to my credits").click()  # shown once: gone on the next view
    page.wait_for_url(f"{live_server.url}/account/")
    assert page.get_by_test_id("new-secret").count() == 0
    assert new_secret not in page.content()
    assert f"…{new_secret[-4:]}" in page.content()
    from playwright.sync_api import Error as PlaywrightError

    with pytest.raises(PlaywrightError, match="ERR_CACHE_MISS"):
        page.go_back()  # the answer was no-store: Chromium has no copy of it to show again
    page.wait_for_url("chrome-error://chromewebdata/")  # its "Confirm form resubmission" page instead
    assert new_secret not in settled_content(page)
    page.goto(f"{live_server.url}/account/")

    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "05-dashboard-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{live_server.url}/account/login/")
    assert page.get_by_text("You are logged out.").is_visible()
    page.goto(f"{live_server.url}/account/")
    assert page.url.startswith(f"{live_server.url}/account/login/")


def test_five_wrong_passwords_show_the_lockout_message(page, live_server, alice):
    for attempt in range(4):
        log_in(page, live_server, alice.email, f"wrong {attempt}")
        assert page.get_by_text("That email and password do not match an account").is_visible()

    log_in(page, live_server, alice.email, "wrong again")

    assert page.get_by_role("heading", name="Too many failed logins").is_visible()
    assert page.get_by_text("for 15 minutes").is_visible()
    shot(page, "06-lockout")
    log_in(page, live_server, alice.email, PASSWORD)
    assert page.get_by_role("heading", name="Too many failed logins").is_visible()


def test_staff_adjusts_credits_in_the_admin(page, live_server, staff, alice, products, purchase):
    purchase(alice, products["weather"], 100)

    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill("staff password 123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Customers", exact=True).click()
    page.get_by_role("link", name=alice.email).click()
    page.get_by_role("link", name="Adjust credits").click()

    page.get_by_label("Product").select_option(label="weather")
    page.get_by_label("Credits").fill("25")
    page.get_by_label("Reason").fill("Goodwill after the outage")
    shot(page, "07-admin-adjust-form")
    page.get_by_role("button", name="Record adjustment").click()

    page.get_by_text("+25 credits of weather for alice@example.com").wait_for()
    assert page.locator(".field-remaining").first.inner_text().strip() == "125"
    history = page.locator(".field-ledger_history")
    assert history.get_by_text("Goodwill after the outage").is_visible()
    assert history.get_by_role("row", name=re.compile("Goodwill after the outage.*Sam Staff")).is_visible()
    shot(page, "08-admin-after-adjust")
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.ADJUSTMENT)
    assert (entry.amount, entry.created_by, entry.reason) == (25, staff, "Goodwill after the outage")
    assert Balance.objects.get(customer=alice, product=products["weather"]).remaining == 125


def test_the_csp_header_reaches_chromium_and_chromium_enforces_it(page, live_server, alice):
    """The detector the other tests rely on: an inline script is blocked and reported."""
    response = page.goto(f"{live_server.url}/account/login/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1'; document.body.append(s); }"
    )
    assert page.evaluate("window.ran") is None
    page.wait_for_timeout(200)  # the report comes back from the page on its own
    assert [v["directive"] for v in page.csp_violations] == ["script-src-elem"]
    page.csp_violations.clear()  # seen; the fixture's check is for the pages themselves
