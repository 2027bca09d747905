"""Purchases in Django admin: the list, unmatched ones applied to a product, emails resent."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Credential, Customer
from ledger.admin import RESEND_WELCOME_LABEL
from ledger.models import Balance, LedgerEntry, Purchase

CHANGELIST = "/admin/ledger/purchase/"


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def act(staff_client, django_capture_on_commit_callbacks):
    """Run an admin action on purchases like the changelist's action bar does."""

    def post(action: str, purchases, **extra):
        data = {"action": action, "_selected_action": [p.pk for p in purchases], "index": 0, **extra}
        with django_capture_on_commit_callbacks(execute=True):
            return staff_client.post(CHANGELIST, data, follow=True)

    return post


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_list_shows_each_purchase_and_filters_the_unmatched(staff_client, zapier, products):
    zapier({"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "100"})
    zapier({"order_id": "1002", "line_id": "7", "email": "omar@example.com", "product": "GIFT-CARD", "quantity": "5"})

    everything = staff_client.get(CHANGELIST).content.decode()
    unmatched = staff_client.get(CHANGELIST, {"status__exact": "unmatched"}).content.decode()

    for text in ["1001", "nina@example.com", "weather", "100", "Applied", "Sent", "1002", "omar@example.com",
                 "(no customer yet)", "Unmatched product", "Not sent yet"]:  # fmt: skip
        assert text in everything
    assert "1002" in unmatched and "omar@example.com" in unmatched
    assert "nina@example.com" not in unmatched
    assert re.search(r'<td class="field-order">1002<small title="line 7">line 7</small></td>', unmatched)


def test_the_list_costs_the_same_queries_for_3_or_30_purchases(staff_client, zapier, products):
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(CHANGELIST).status_code == 200
        return len(queries)

    for i in range(3):
        zapier({"order_id": f"A{i}", "email": f"buyer{i}@example.com", "product": "weather", "quantity": "1"})
    few = queries_for_the_list()
    for i in range(27):
        zapier({"order_id": f"B{i}", "email": f"buyer{i}@example.com", "product": "maps", "quantity": "1"})
    many = queries_for_the_list()

    assert few == many


def test_search_finds_a_purchase_by_order_id_or_email(staff_client, zapier, products):
    zapier({"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "1"})
    zapier({"order_id": "1002", "email": "omar@example.com", "product": "weather", "quantity": "1"})

    by_order = staff_client.get(CHANGELIST, {"q": "1002"}).content.decode()
    by_email = staff_client.get(CHANGELIST, {"q": "nina@"}).content.decode()

    assert "omar@example.com" in by_order and "nina@example.com" not in by_order
    assert "nina@example.com" in by_email and "omar@example.com" not in by_email


@pytest.mark.django_db(transaction=True)  # real commits: the email goes out inside the request
def test_staff_apply_an_unmatched_purchase_through_an_intermediate_page(
    staff_client, act, zapier, products, mailoutbox, staff
):
    zapier({"order_id": "1002", "email": "omar@example.com", "product": "GIFT-CARD", "quantity": "5", "name": "Omar"})
    purchase = Purchase.objects.get()

    page = act("apply_to_product", [purchase])

    html = page.content.decode()
    assert page.status_code == 200
    assert "Apply purchases to a product" in html and "GIFT-CARD" in html and "omar@example.com" in html
    assert f'name="_selected_action" value="{purchase.pk}"' in html
    assert not LedgerEntry.objects.exists()  # nothing happens until a product is picked

    missing = act("apply_to_product", [purchase], apply="Grant the credits")
    assert "This field is required." in missing.content.decode()
    assert not LedgerEntry.objects.exists()

    done = act("apply_to_product", [purchase], apply="Grant the credits", product=products["maps"].pk)

    assert done.redirect_chain[-1][0].endswith(CHANGELIST)
    purchase.refresh_from_db()
    customer = Customer.objects.get()
    assert (customer.email, customer.name) == ("omar@example.com", "Omar")
    assert (purchase.status, purchase.product, purchase.customer) == (
        Purchase.Status.APPLIED,
        products["maps"],
        customer,
    )
    assert purchase.created_customer and purchase.remaining_after == 5
    assert purchase.product_ref == "GIFT-CARD"  # what the store sent stays as it was
    assert Balance.objects.get(customer=customer, product=products["maps"]).granted == 5
    assert messages_of(done) == [f"Purchase {purchase}: 5 maps credits granted to omar@example.com; email sent."]
    [email] = mailoutbox
    assert email.subject == "Your CreditPortal API credentials and 5 Maps API credits"
    assert "Client secret: " in email.body
    history = staff_client.get(reverse("admin:ledger_purchase_history", args=[purchase.pk])).content.decode()
    assert "Applied to product maps." in history and staff.email in history

    # A second apply grants nothing and says why.
    again = act("apply_to_product", [purchase], apply="Grant the credits", product=products["weather"].pk)
    assert messages_of(again) == ["None of the selected purchases is unmatched: nothing to apply."]
    assert LedgerEntry.objects.count() == 1 and len(mailoutbox) == 1

    # A repeated delivery now answers with the applied purchase.
    retry = zapier({"order_id": "1002", "email": "omar@example.com", "product": "GIFT-CARD", "quantity": "5"})
    assert retry.status_code == 200
    assert (retry.json()["status"], retry.json()["credits"], retry.json()["remaining"]) == ("applied", 5, 5)


def test_applying_for_an_existing_customer_tops_up_and_sends_credits_added(act, zapier, alice, products, mailoutbox):
    zapier({"order_id": "1002", "email": "ALICE@example.com", "product": "weather-old", "quantity": "5"})
    purchase = Purchase.objects.get()

    act("apply_to_product", [purchase], apply="Grant the credits", product=products["weather"].pk)

    purchase.refresh_from_db()
    assert purchase.customer == alice and not purchase.created_customer
    assert Credential.objects.count() == 1 and alice.credential.check_secret(alice.secret)
    assert [e.subject for e in mailoutbox] == ["5 Weather API credits added to your CreditPortal account"]


@pytest.mark.django_db(transaction=True)  # real commits: the email goes out inside the request
def test_resending_the_welcome_email_issues_a_new_secret(act, staff_client, zapier, products, mailoutbox):
    zapier({"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "100"})
    purchase = Purchase.objects.get()
    credential = Credential.objects.get()
    first_secret = re.search(r"Client secret: (\S+)", mailoutbox[0].body).group(1)

    page = staff_client.get(reverse("admin:ledger_purchase_change", args=[purchase.pk])).content.decode()
    assert RESEND_WELCOME_LABEL in page  # the button says what it does
    response = act("resend_welcome_email", [purchase])

    assert messages_of(response) == [f"Purchase {purchase}: welcome email with a new secret sent to nina@example.com."]
    assert len(mailoutbox) == 2
    new_secret = re.search(r"Client secret: (\S+)", mailoutbox[1].body).group(1)
    assert f"Client ID: {credential.client_id}" in mailoutbox[1].body  # same client id
    assert "The secret" in mailoutbox[1].body and "no longer works" in mailoutbox[1].body
    credential.refresh_from_db()
    assert credential.check_secret(new_secret) and not credential.check_secret(first_secret)
    assert credential.secret_version == 2 and credential.rotated_at is not None
    assert Balance.objects.get().granted == 100 and LedgerEntry.objects.count() == 1


def test_resending_a_credits_added_email_changes_no_secret(act, staff_client, zapier, alice, products, mailoutbox):
    zapier({"order_id": "1001", "email": "alice@example.com", "product": "weather", "quantity": "10"})
    purchase = Purchase.objects.get()

    page = staff_client.get(reverse("admin:ledger_purchase_change", args=[purchase.pk])).content.decode()
    assert "Resend “credits added” email" in page and RESEND_WELCOME_LABEL not in page
    welcome = act("resend_welcome_email", [purchase])
    assert messages_of(welcome) == ["None of the selected purchases has a welcome email with a new secret to resend."]
    act("resend_credits_added_email", [purchase])

    assert [e.subject for e in mailoutbox] == ["10 Weather API credits added to your CreditPortal account"] * 2
    assert alice.credential.check_secret(alice.secret)
    alice.credential.refresh_from_db()
    assert alice.credential.secret_version == 1


def test_an_unmatched_purchase_has_no_email_to_resend(act, zapier, products, mailoutbox):
    zapier({"order_id": "1002", "email": "omar@example.com", "product": "GIFT-CARD", "quantity": "5"})

    response = act("resend_credits_added_email", Purchase.objects.all())

    assert "None of the selected purchases" in messages_of(response)[0]
    assert not mailoutbox


def test_the_change_page_is_read_only_and_offers_apply_for_unmatched(staff_client, zapier, products):
    zapier({"order_id": "1002", "email": "omar@example.com", "product": "GIFT-CARD", "quantity": "5"})
    purchase = Purchase.objects.get()
    url = reverse("admin:ledger_purchase_change", args=[purchase.pk])

    page = staff_client.get(url).content.decode()

    assert "Apply to a product…" in page
    assert 'name="_save"' not in page
    assert staff_client.post(url, {"quantity": 500}).status_code == 403
    assert staff_client.get(reverse("admin:ledger_purchase_add")).status_code == 403
    assert staff_client.get(reverse("admin:ledger_purchase_delete", args=[purchase.pk])).status_code == 403
    assert Purchase.objects.get().quantity == 5


def test_ledger_entries_link_to_their_purchase(staff_client, zapier, products):
    zapier({"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "10"})
    purchase = Purchase.objects.get()

    page = staff_client.get(reverse("admin:ledger_ledgerentry_changelist")).content.decode()
    entries = staff_client.get(reverse("admin:ledger_ledgerentry_changelist"), {"purchase__id__exact": purchase.pk})

    assert f'href="{reverse("admin:ledger_purchase_change", args=[purchase.pk])}"' in page
    assert entries.status_code == 200 and "zapier:1001" in entries.content.decode()


def test_a_customer_user_cannot_apply_or_resend(client, alice, zapier, products):
    zapier({"order_id": "1002", "email": "omar@example.com", "product": "GIFT-CARD", "quantity": "5"})
    purchase = Purchase.objects.get()
    client.force_login(alice.user)

    response = client.post(
        CHANGELIST,
        {"action": "apply_to_product", "_selected_action": [purchase.pk], "index": 0, "apply": "1",
         "product": products["weather"].pk},
    )  # fmt: skip

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.UNMATCHED and not LedgerEntry.objects.exists()
