"""Staff admin through real URLs: the adjust form, read-only ledger, access, and queries per page."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Customer, User
from ledger.models import Balance, LedgerEntry
from ledger.services import credits_grant


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_staff_adjusts_credits_through_the_admin_form(staff_client, staff, alice, products):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=100)
    url = reverse("admin:accounts_customer_adjust", args=[alice.pk])

    page = staff_client.get(url)
    assert page.status_code == 200
    assert b"Record adjustment" in page.content

    response = staff_client.post(url, {"product": weather.pk, "amount": "-15", "reason": "Refund of order 1001"})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accounts_customer_change", args=[alice.pk])
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.ADJUSTMENT)
    assert (entry.customer, entry.product, entry.amount) == (alice, weather, -15)
    assert (entry.reason, entry.created_by) == ("Refund of order 1001", staff)
    assert Balance.objects.get(customer=alice, product=weather).remaining == 85

    change_page = staff_client.get(response["Location"])
    html = change_page.content.decode()
    assert "Refund of order 1001" in html
    assert "Sam Staff" in html  # the entry shows who made it
    assert re.search(r'class="field-remaining">\s*<p>85</p>', html)  # the balance shown updates at once


@pytest.mark.parametrize(
    "data, error",
    [
        ({"amount": "10", "reason": ""}, "This field is required."),
        ({"amount": "10", "reason": "   "}, "This field is required."),
        ({"amount": "0", "reason": "nothing"}, "Enter a number of credits other than 0."),
        ({"amount": "1.5", "reason": "half"}, "Enter a whole number."),
        ({"amount": "-200", "reason": "too much"}, "below the 0 already used"),
    ],
)
def test_a_bad_adjustment_shows_why_and_writes_nothing(staff_client, alice, products, data, error):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=100)
    url = reverse("admin:accounts_customer_adjust", args=[alice.pk])

    response = staff_client.post(url, {"product": weather.pk, **data})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUSTMENT).exists()
    assert Balance.objects.get(customer=alice, product=weather).granted == 100


def form_row(html: str, field: str) -> str:
    """The adjust form's row of one field (label, input, help, errors): up to the next row or the fieldset's end."""
    start = html.index(f'<div class="form-row field-{field}')
    ends = [html.find('<div class="form-row', start + 1), html.find("</fieldset>", start)]
    return html[start : min(i for i in ends if i != -1)]


def test_the_adjust_form_marks_every_field_required(staff_client, alice, products):
    html = staff_client.get(reverse("admin:accounts_customer_adjust", args=[alice.pk])).content.decode()

    assert re.search(r"<select [^>]*name=\"product\"[^>]*\brequired\b", html)
    assert re.search(r'<option value="" selected>Pick a product</option>', html)  # no product chosen for you
    assert re.search(r"<input [^>]*name=\"amount\"[^>]*\brequired\b", html)
    assert re.search(r"<textarea [^>]*name=\"reason\"[^>]*\brequired\b", html)
    assert "novalidate" not in html.split('<div id="content-main">')[1]  # the browser checks them too


def test_each_adjustment_error_is_shown_under_its_own_field(staff_client, alice, products):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=100)
    url = reverse("admin:accounts_customer_adjust", args=[alice.pk])

    missing = staff_client.post(url, {"amount": "", "reason": ""}).content.decode()
    below = staff_client.post(url, {"product": weather.pk, "amount": "-200", "reason": "too much"}).content.decode()

    for field in ["product", "amount", "reason"]:
        row = form_row(missing, field)
        assert "form-row field-" + field + " errors" in row
        error = re.search(rf'<ul class="errorlist" id="id_{field}_error"><li>This field is required.</li></ul>', row)
        assert error and row.index(f'id="id_{field}"') < error.start()  # under the input, not above it
    amount = form_row(below, "amount")
    assert "below the 0 already used" in amount  # the service's refusal, under what it is about
    assert "below the 0 already used" not in form_row(below, "reason") + form_row(below, "product")
    assert '<p class="errornote">Please correct the error below.</p>' in below
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUSTMENT).exists()


def test_a_non_staff_user_cannot_reach_admin(client, alice):
    client.force_login(alice.user)
    for url in [reverse("admin:index"), reverse("admin:accounts_customer_adjust", args=[alice.pk])]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    response = client.post(
        reverse("admin:accounts_customer_adjust", args=[alice.pk]), {"amount": "1000", "reason": "free"}
    )
    assert response.status_code == 302
    assert not LedgerEntry.objects.exists()


def test_ledger_entries_offer_no_change_or_delete(staff_client, alice, products):
    entry = credits_grant(customer=alice, product=products["weather"], amount=10)

    change = staff_client.get(reverse("admin:ledger_ledgerentry_change", args=[entry.pk]))
    assert change.status_code == 200
    assert b'name="_save"' not in change.content  # a superuser sees it read-only
    assert (
        staff_client.post(reverse("admin:ledger_ledgerentry_change", args=[entry.pk]), {"amount": 99}).status_code
        == 403
    )
    assert staff_client.get(reverse("admin:ledger_ledgerentry_delete", args=[entry.pk])).status_code == 403
    assert staff_client.get(reverse("admin:ledger_ledgerentry_add")).status_code == 403
    changelist = staff_client.get(reverse("admin:ledger_ledgerentry_changelist"))
    assert b"delete_selected" not in changelist.content
    assert LedgerEntry.objects.get(pk=entry.pk).amount == 10


def test_staff_suspends_and_reactivates_a_customer_from_its_page(staff_client, alice):
    url = reverse("admin:accounts_customer_status", args=[alice.pk])
    version = alice.version

    assert staff_client.post(url, {"status": "suspended"}).status_code == 302
    alice.refresh_from_db()
    assert alice.status == Customer.Status.SUSPENDED
    assert alice.version > version

    assert staff_client.post(url, {"status": "active"}).status_code == 302
    alice.refresh_from_db()
    assert alice.status == Customer.Status.ACTIVE


def test_status_changes_only_by_post(staff_client, alice):
    assert staff_client.get(reverse("admin:accounts_customer_status", args=[alice.pk])).status_code == 405


def test_customers_are_searchable_by_email_and_name_and_filterable(staff_client, alice, bob, products):
    credits_grant(customer=bob, product=products["maps"], amount=5)
    url = reverse("admin:accounts_customer_changelist")

    by_name = staff_client.get(url, {"q": "Alice"}).content.decode()
    assert "alice@example.com" in by_name and "bob@example.com" not in by_name
    by_email = staff_client.get(url, {"q": "bob@exa"}).content.decode()
    assert "bob@example.com" in by_email and "alice@example.com" not in by_email
    by_product = staff_client.get(url, {"product": "maps"}).content.decode()
    assert "bob@example.com" in by_product and "alice@example.com" not in by_product


def test_the_customer_ledger_link_filters_the_ledger(staff_client, alice, bob, products):
    credits_grant(customer=alice, product=products["weather"], amount=11)
    credits_grant(customer=bob, product=products["weather"], amount=22)
    url = reverse("admin:ledger_ledgerentry_changelist") + f"?customer__id__exact={alice.pk}"
    html = staff_client.get(url).content.decode()
    assert "alice@example.com" in html and "bob@example.com" not in html


def _many_customers_with_balances(n: int, products) -> None:
    start = User.objects.count()
    users = User.objects.bulk_create([User(email=f"c{i}@example.com") for i in range(start, start + n)])
    customers = Customer.objects.bulk_create([Customer(user=u, email=u.email) for u in users])
    for customer in customers:
        for product in products.values():
            credits_grant(customer=customer, product=product, amount=10)


@pytest.mark.parametrize(
    "url_name, query",
    [
        ("admin:accounts_customer_changelist", ""),
        ("admin:accounts_customer_changelist", "?q=example.com"),
        ("admin:accounts_customer_changelist", "?product=maps"),
        ("admin:accounts_customer_changelist", "?status__exact=active"),
        ("admin:accounts_user_changelist", ""),
        ("admin:ledger_balance_changelist", ""),
        ("admin:ledger_balance_changelist", "?product__id__exact={maps}&o=-4"),  # sorted by what remains
        ("admin:ledger_ledgerentry_changelist", ""),
        ("admin:ledger_ledgerentry_changelist", "?kind__exact=purchase"),
        ("admin:ledger_purchase_changelist", ""),
    ],
)
def test_changelists_make_a_fixed_number_of_queries(staff_client, products, purchase, url_name, query):
    url = reverse(url_name) + query.format(maps=products["maps"].pk)

    def more_customers(n: int) -> None:  # each with a purchase too, for the purchase list
        start = Customer.objects.count()
        _many_customers_with_balances(n, products)
        for customer in Customer.objects.order_by("pk")[start:]:
            purchase(customer, products["weather"], 5)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    more_customers(3)
    few = queries()
    more_customers(30)
    assert queries() == few


def test_the_customer_page_makes_a_fixed_number_of_queries(staff_client, staff, products):
    _many_customers_with_balances(1, products)
    customer = Customer.objects.get()
    url = reverse("admin:accounts_customer_change", args=[customer.pk])

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    few = queries()
    from ledger.services import credits_adjust

    for i in range(20):
        credits_adjust(customer=customer, product=products["weather"], amount=1, reason=f"r{i}", by=staff)
    assert queries() == few


def test_staff_suspend_and_reactivate_customers_from_the_list(staff_client, alice, bob):
    changelist = reverse("admin:accounts_customer_changelist")

    suspended = staff_client.post(
        changelist, {"action": "suspend", "_selected_action": [alice.pk, bob.pk], "index": 0}, follow=True
    )

    assert [str(m) for m in suspended.context["messages"]] == ["Suspended."]
    assert set(Customer.objects.values_list("status", flat=True)) == {Customer.Status.SUSPENDED}

    staff_client.post(changelist, {"action": "reactivate", "_selected_action": [alice.pk], "index": 0})

    assert Customer.objects.get(pk=alice.pk).status == Customer.Status.ACTIVE
    assert Customer.objects.get(pk=bob.pk).status == Customer.Status.SUSPENDED


def test_staff_clean_up_expired_login_attempts(staff_client):
    """django-axes' own action failed with a 500 outside a login request (no `axes_attempt_time`)."""
    import datetime

    from axes.models import AccessAttempt
    from django.utils import timezone

    old = AccessAttempt.objects.create(username="a@example.com", ip_address="203.0.113.1", failures_since_start=5)
    AccessAttempt.objects.filter(pk=old.pk).update(attempt_time=timezone.now() - datetime.timedelta(hours=1))
    fresh = AccessAttempt.objects.create(username="b@example.com", ip_address="203.0.113.2", failures_since_start=5)

    response = staff_client.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "cleanup_expired_attempts", "_selected_action": [old.pk, fresh.pk], "index": 0},
        follow=True,
    )

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["Cleaned up 1 expired access attempts."]
    assert list(AccessAttempt.objects.values_list("pk", flat=True)) == [fresh.pk]
