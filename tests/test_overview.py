"""The admin's overview (issue 17): every figure is the ledger's (compared with sums over
LedgerEntry and Purchase), the page's queries do not grow with rows, and "needs a hand" links
to lists that hold what it counts."""

import datetime
import re
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer, User
from ledger.models import (
    ActiveDay,
    Balance,
    CustomerActivity,
    DriftCheck,
    LedgerDay,
    LedgerEntry,
    MirrorOutbox,
    Purchase,
    PurchaseDay,
    SpendWeek,
)
from ledger.overview.selectors import SERIES, period
from ledger.services import credits_adjust, usage_record

pytestmark = pytest.mark.usefixtures("fast_password_hashing")
Kind = LedgerEntry.Kind


@pytest.fixture(autouse=True)
def _no_mirror(settings):
    settings.MIRROR_ENABLED = False  # not under test here


@pytest.fixture(autouse=True)
def rollups_at_each_statement(db):
    """The rollups are applied when a transaction commits, and a test's transaction never does: here
    they are applied after each statement instead. Real commits: tests/test_overview_rollups.py."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ledger_entry_rollup_apply, ledger_purchase_rollup_apply IMMEDIATE")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def entry(customer, product, kind, amount, *, days_ago=0, hours=0, request_id=""):
    """A ledger entry written as of `days_ago` (the rollups take its day from `created`)."""
    created = timezone.now() - datetime.timedelta(days=days_ago, hours=hours)
    return LedgerEntry.objects.create(
        customer=customer, product=product, kind=kind, amount=amount, created=created, request_id=request_id
    )


def customers(n: int, start: int = 0) -> list[Customer]:
    made = []
    for i in range(start, start + n):
        user = User.objects.create_user(f"c{i}@example.com", "pw", name=f"Customer {i}")
        made.append(Customer.objects.create(user=user, email=user.email, name=user.name))
    return made


@pytest.fixture
def history(alice, bob, staff, products, purchase):
    """Forty days of a small business: purchases, calls, refunds and staff corrections,
    some before the period (they must not count), some today."""
    weather, maps = products["weather"], products["maps"]
    purchase(alice, weather, 1000, days_ago=3)
    purchase(bob, maps, 500, days_ago=35)  # received before the period (its grant entry is of today)
    purchase(bob, weather, 200)
    usage_record(customer=alice, product=weather, amount=40)
    usage_record(customer=bob, product=maps, amount=6)
    entry(alice, weather, Kind.USAGE, -7, days_ago=2)
    entry(bob, maps, Kind.USAGE, -9, days_ago=31)  # before the period: bob's last call inside is today's
    entry(alice, maps, Kind.PURCHASE, 300, days_ago=45)
    entry(alice, maps, Kind.USAGE, -11, days_ago=45)
    entry(bob, weather, Kind.REFUND, -50, days_ago=1)
    entry(alice, weather, Kind.FAILED_CALL, 1, days_ago=2, request_id="req-1")  # credited back
    entry(bob, maps, Kind.FAILED_CALL, 2, request_id="req-2")
    entry(bob, maps, Kind.FAILED_CALL, 2, days_ago=33, request_id="req-3")  # before the period
    credits_adjust(customer=alice, product=weather, amount=-25, reason="outage", by=staff)
    credits_adjust(customer=bob, product=weather, amount=10, reason="goodwill", by=staff)
    return products


class Cells(HTMLParser):
    """The numbers table: {product slug ("" = all): {series key: int}}, and the elements by id."""

    def __init__(self):
        super().__init__()
        self.table, self.by_id = {}, {}
        self._product = self._series = self._id = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-product" in a:
            self._product = a["data-product"]
            self.table[self._product] = {}
        if tag == "td" and "data-series" in a and self._product is not None:
            self._series = a["data-series"]
        if "id" in a:
            self._id = a["id"]

    def handle_data(self, data):
        if self._series:
            self.table[self._product][self._series] = int(data.replace(",", ""))
            self._series = None
        elif self._id and data.strip():
            self.by_id.setdefault(self._id, data.strip())
            self._id = None


def page(client) -> tuple[str, Cells]:
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    html = response.content.decode()
    cells = Cells()
    cells.feed(html)
    return html, cells


def ledger_sums(since: datetime.datetime, product=None) -> dict[str, int]:
    entries = LedgerEntry.objects.filter(created__gte=since)
    if product is not None:
        entries = entries.filter(product=product)
    by_kind = dict(entries.values_list("kind").annotate(s=Sum("amount")).order_by())
    return {s.key: s.sign * sum(by_kind.get(k, 0) for k in s.kinds) for s in SERIES}


def period_start() -> datetime.datetime:
    first, _ = period()
    return datetime.datetime.combine(first, datetime.time.min, tzinfo=datetime.UTC)


def test_every_figure_is_the_ledgers_sum_over_the_last_30_days(staff_client, history, alice, bob):
    _, cells = page(staff_client)
    since = period_start()

    assert cells.table[""] == ledger_sums(since)
    for slug, product in history.items():
        assert cells.table[slug] == ledger_sums(since, product)
    # The figures are not empty by accident: each kind happened in the period.
    assert cells.table[""] == {"sold": 1700, "spent": 53, "credited_back": 3, "taken_back": 50, "adjusted": -15}
    active = LedgerEntry.objects.filter(kind=Kind.USAGE, created__gte=since).values("customer").distinct().count()
    assert int(cells.by_id["figure-active-customers"]) == active == 2
    assert int(cells.by_id["figure-purchases"]) == Purchase.objects.filter(received__gte=since).count() == 2


def test_active_customers_counts_a_customer_once_at_their_latest_call(staff_client, products):
    weather, maps = products["weather"], products["maps"]
    old, moving, new = customers(3)
    entry(old, weather, Kind.USAGE, -1, days_ago=40)  # last call before the period: not active
    entry(moving, weather, Kind.USAGE, -1, days_ago=40)
    entry(moving, maps, Kind.USAGE, -1, days_ago=10)
    entry(moving, weather, Kind.USAGE, -1, days_ago=20)  # older than its latest: moves nothing
    LedgerEntry.objects.bulk_create(  # one statement, many rows of one customer
        [LedgerEntry(customer=new, product=weather, kind=Kind.USAGE, amount=-1) for _ in range(5)]
    )

    _, cells = page(staff_client)

    assert int(cells.by_id["figure-active-customers"]) == 2
    assert dict(CustomerActivity.objects.values_list("customer_id", "last_call")) == {
        c.pk: LedgerEntry.objects.filter(customer=c, kind=Kind.USAGE).latest("created").created.date()
        for c in (old, moving, new)
    }
    by_day = dict(ActiveDay.objects.filter(customers__gt=0).values_list("day", "customers"))
    assert sum(by_day.values()) == 3  # each customer on one day only


def test_the_rollups_equal_the_ledgers_group_by_after_every_kind_of_write(history, alice, products):
    LedgerEntry.objects.bulk_create(
        [LedgerEntry(customer=alice, product=products["maps"], kind=Kind.USAGE, amount=-1) for _ in range(30)]
    )
    utc_day = "(created AT TIME ZONE 'UTC')::date"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {utc_day}, product_id, kind, sum(amount), count(*) FROM ledger_ledgerentry GROUP BY 1, 2, 3"
        )
        expected = {(d, p, k): (s, n) for d, p, k, s, n in cursor.fetchall()}
        cursor.execute(
            "SELECT date_trunc('week', created AT TIME ZONE 'UTC')::date, customer_id, -sum(amount)"
            " FROM ledger_ledgerentry WHERE kind = 'usage' GROUP BY 1, 2"
        )
        spent = {(w, c): s for w, c, s in cursor.fetchall()}
        cursor.execute(
            "SELECT (received AT TIME ZONE 'UTC')::date, CASE WHEN price IS NULL THEN '' ELSE currency END,"
            " count(*), coalesce(sum(quantity * price), 0) FROM ledger_purchase GROUP BY 1, 2"
        )
        lines = {(d, c): (n, money) for d, c, n, money in cursor.fetchall()}

    assert {(r.day, r.product_id, r.kind): (r.credits, r.entries) for r in LedgerDay.objects.all()} == expected
    assert {(r.week, r.customer_id): r.credits for r in SpendWeek.objects.all()} == spent
    assert {(r.day, r.currency): (r.lines, r.revenue) for r in PurchaseDay.objects.filter(lines__gt=0)} == lines


def test_revenue_per_currency_is_units_times_price_of_the_periods_lines(staff_client, alice, products, purchase):
    from decimal import Decimal

    for days_ago, quantity, price, currency in [
        (0, 2, "19.99", "EUR"), (3, 1, "5.00", "EUR"), (1, 3, "10.50", "USD"), (40, 9, "99.00", "EUR"),
        (2, 1, None, ""),  # no price sent (the Zapier door without one): counted as a purchase, no revenue
    ]:  # fmt: skip
        row = purchase(alice, products["weather"], quantity, days_ago=days_ago)
        row.price, row.currency = (Decimal(price) if price else None), currency
        row.save(update_fields=["price", "currency"])

    html, cells = page(staff_client)

    shown = dict(re.findall(r'class="figure-revenue" data-currency="(\w+)">([\d,.]+) \w+<', html))
    since = period_start()
    expected = {}
    for p in Purchase.objects.filter(received__gte=since, price__isnull=False):
        expected[p.currency] = expected.get(p.currency, 0) + p.quantity * p.price
    assert {c: Decimal(v.replace(",", "")) for c, v in shown.items()} == expected
    assert expected == {"EUR": Decimal("44.98"), "USD": Decimal("31.50")}
    assert int(cells.by_id["figure-purchases"]) == 4


def test_a_moved_purchase_and_a_deleted_one_move_their_day(history, alice, products):
    moved = Purchase.objects.filter(customer=alice).first()
    day = (moved.received.astimezone(datetime.UTC)).date()
    before = PurchaseDay.objects.get(day=day).lines
    moved.received -= datetime.timedelta(days=100)
    moved.save(update_fields=["received"])

    assert PurchaseDay.objects.get(day=day).lines == before - 1
    assert PurchaseDay.objects.get(day=moved.received.astimezone(datetime.UTC).date()).lines == 1
    unmatched = Purchase.objects.create(
        source="zapier", order_id="x1", email="x@example.com", product_ref="?", quantity=1, status="unmatched"
    )
    unmatched.delete()
    assert sum(PurchaseDay.objects.values_list("lines", flat=True)) == Purchase.objects.count()


def test_top_customers_this_week_are_the_ledgers_biggest_spenders(staff_client, products):
    weather, maps = products["weather"], products["maps"]
    week_start = timezone.now().astimezone(datetime.UTC).date()
    week_start -= datetime.timedelta(days=week_start.weekday())
    people = customers(12)
    for i, customer in enumerate(people):
        entry(customer, weather, Kind.USAGE, -(i + 1))
        entry(customer, maps, Kind.USAGE, -2)
        entry(customer, weather, Kind.USAGE, -1000, days_ago=8)  # last week (or before): not this week
    html, _ = page(staff_client)

    since = datetime.datetime.combine(week_start, datetime.time.min, tzinfo=datetime.UTC)
    expected = (
        LedgerEntry.objects.filter(kind=Kind.USAGE, created__gte=since)
        .values("customer__email")
        .annotate(spent=-Sum("amount"))
        .order_by("-spent")[:10]
    )
    table = html.split('id="top-customers"', 1)[1].split("</table>", 1)[0]
    shown = re.findall(r">([^<>]+@example\.com)[^<]*</a></td><td class=\"num\">([\d,]+)<", table)
    assert [(email, int(n.replace(",", ""))) for email, n in shown] == [
        (row["customer__email"], row["spent"]) for row in expected
    ]
    assert len(shown) == 10


def test_the_overview_makes_a_fixed_number_of_queries_whatever_the_rows(staff_client, staff, products, purchase):
    def more(n: int, start: int) -> None:
        for customer in customers(n, start):
            purchase(customer, products["weather"], 50)
            usage_record(customer=customer, product=products["weather"], amount=46)  # running low
            entry(customer, products["maps"], Kind.USAGE, -1, days_ago=5)
            credits_adjust(customer=customer, product=products["weather"], amount=1, reason="r", by=staff)
        Purchase.objects.create(
            source="zapier", order_id=f"u{start}", email="u@example.com", product_ref="?", quantity=1,
            status="unmatched", email_status="failed",
        )  # fmt: skip
        MirrorOutbox.objects.create(scope="route", ref=f"r{start}", attempts=1, error="timeout")
        DriftCheck.objects.create(result="drift", differences=start)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            page(staff_client)
        return len(ctx.captured_queries)

    more(2, 0)
    few = queries()
    more(25, 100)
    assert queries() == few
    assert few <= 16  # session and user (3 more: the idle timeout saves the session), the overview's 11


def test_needs_a_hand_counts_what_its_links_list(staff_client, alice, bob, products, purchase, zapier):
    weather = products["weather"]
    purchase(alice, weather, 100)
    usage_record(customer=alice, product=weather, amount=95)  # 5 of 100 left: within 10%
    purchase(bob, weather, 100)
    usage_record(customer=bob, product=weather, amount=80)  # 20 left: not
    zapier({"order_id": "9001", "email": "nina@example.com", "product": "GIFT-CARD", "quantity": "5"})
    Purchase.objects.filter(customer=bob).update(email_status="failed", email_error="SES said no")
    MirrorOutbox.objects.create(scope="route", ref="gone00001", attempts=2, error="timeout")
    MirrorOutbox.objects.create(scope="route", ref="gone00002")

    html, _ = page(staff_client)
    needs = html.split('id="overview-needs"', 1)[1].split("</section>", 1)[0]
    items = re.findall(r'<strong class="cp-count">([\d,?]+)</strong>\s*<a href="([^"]+)">([^<]+)</a>', needs)
    found = {label: (int(n), url.replace("&amp;", "&")) for n, url, label in items}

    def listed(url: str) -> int:
        response = staff_client.get(url)
        assert response.status_code == 200
        return response.context["cl"].result_count

    assert found["unmatched purchases"][0] == listed(found["unmatched purchases"][1]) == 1
    assert found["failed emails"][0] == listed(found["failed emails"][1]) == 1
    assert found["pending mirror writes"][0] == listed(found["pending mirror writes"][1]) == 2
    low_label = "customers within 10% of running out"
    assert found[low_label][0] == 1
    low = staff_client.get(found[low_label][1]).context["cl"].queryset
    assert [(b.customer_id, b.remaining) for b in low] == [(alice.pk, 5)]
    assert "1 failed at least once" in needs


def test_refunds_that_found_credits_spent_count_in_the_period_and_link_to_them(staff_client, alice, products, purchase):
    from ledger.store.models import RefundLine, StoreRefund

    bought = purchase(alice, products["weather"], 100)

    def refund(refund_id: str, spent: int, days_ago: int = 0) -> StoreRefund:
        row = StoreRefund.objects.create(
            refund_id=refund_id, order_id=bought.order_id, kind="refund",
            received=timezone.now() - datetime.timedelta(days=days_ago),
        )  # fmt: skip
        RefundLine.objects.create(
            refund=row, purchase=bought, quantity=1, credits_claimed=10, credits_taken=10 - spent, credits_spent=spent
        )
        return row

    found = refund("r1", spent=4)
    refund("r2", spent=0)  # took back all it claimed: nothing to see
    refund("r3", spent=10, days_ago=45)  # before the period

    html, _ = page(staff_client)
    needs = html.split('id="overview-needs"', 1)[1].split("</section>", 1)[0]
    count, url = re.search(
        r'<strong class="cp-count">(\d+)</strong>\s*<a href="([^"]+)">refunds that found credits already spent', needs
    ).groups()
    assert int(count) == 1
    listed = staff_client.get(url.replace("&amp;", "&"))
    assert listed.status_code == 200
    assert [r.pk for r in listed.context["cl"].queryset] == [found.pk]


def test_the_last_drift_check_shows_with_its_time(staff_client):
    html, _ = page(staff_client)
    assert "mirror drift: never checked" in html
    DriftCheck.objects.create(result="ok", ran=timezone.now() - datetime.timedelta(days=3))
    DriftCheck.objects.create(result="drift", differences=4, detail="CUSTOMER#x PRODUCT#y: missing")

    html, _ = page(staff_client)
    drift = html.split('id="drift-check"', 1)[1].split("</li>", 1)[0]
    assert '<strong class="cp-count">4</strong>' in drift
    assert "drift found, last checked" in drift


def test_staff_without_the_ledger_see_the_apps_but_no_figures(client, products):
    user = User.objects.create_user("helper@creditportal.test", "pw", is_staff=True)
    client.force_login(user)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert "overview" not in response.context
    assert "Needs a hand" not in response.content.decode()


def test_djangos_own_index_stays_at_admin_apps(staff_client):
    response = staff_client.get(reverse("admin:apps"))
    assert response.status_code == 200
    assert response.templates[0].name == "admin/index.html"
    assert "Recent actions" in response.content.decode()
    assert "overview" not in response.context


def test_a_customer_cannot_see_the_overview(client, alice, history):
    client.force_login(alice.user)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Balance.objects.exists()  # the business has figures; alice saw none


def test_rebuild_overview_checks_and_rebuilds_the_rollups(history, alice, products):
    import io

    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command("rebuild_overview", "--check", stdout=out)  # the triggers kept them
    assert "equal the ledger's sums" in out.getvalue()
    with connection.cursor() as cursor:  # a load that bypassed the triggers
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "INSERT INTO ledger_ledgerentry (customer_id, product_id, amount, kind, reason, created)"
            " VALUES (%s, %s, -3, 'usage', '', now() - interval '3 days')",
            [alice.pk, products["maps"].pk],
        )
        cursor.execute("SET session_replication_role = DEFAULT")
    out = io.StringIO()
    with pytest.raises(CommandError, match="differ from the ledger"):
        call_command("rebuild_overview", "--check", stdout=out)
    assert "ledger_ledgerday: 1 row(s) differ" in out.getvalue()  # a day the rollup has no row of
    assert "ledger_spendweek: 2 row(s) differ" in out.getvalue()  # alice's week, as it is and as it should be

    call_command("rebuild_overview", stdout=io.StringIO())
    call_command("rebuild_overview", "--check", stdout=io.StringIO())
