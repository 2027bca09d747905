"""Staff's CSV downloads of the ledger entries and purchases lists: the list's filters apply, the
file is streamed, its header and rows are the ledger's, and only staff who may view get it."""

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from ledger.models import LedgerEntry, Purchase
from ledger.services import credits_adjust, usage_record

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

LEDGER_HEADER = ["id", "created", "customer", "customer email", "product", "kind", "amount", "reason",
                 "created by", "purchase order", "purchase line"]  # fmt: skip
PURCHASE_HEADER = ["id", "received", "source", "order", "line", "status", "email", "name", "product as sent",
                   "units", "credits per unit", "unit price", "currency", "product", "customer", "applied",
                   "email status"]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_mirror(settings):
    settings.MIRROR_ENABLED = False


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def books(alice, bob, staff, products, purchase):
    purchase(alice, products["weather"], 100, order_id="#1001")
    purchase(bob, products["maps"], 50, order_id="#1002")
    usage_record(customer=alice, product=products["weather"], amount=7)
    credits_adjust(customer=bob, product=products["maps"], amount=-3, reason='=HYPERLINK("x")', by=staff)
    return products


def download(client, url: str) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_ledger_downloads_as_filtered_with_a_header(staff_client, books, alice, bob):
    rows = download(staff_client, reverse("admin:ledger_ledgerentry_export") + "?kind__exact=usage")

    assert rows[0] == LEDGER_HEADER
    usage = LedgerEntry.objects.get(kind="usage")
    assert rows[1:] == [
        [str(usage.pk), usage.created.isoformat(), alice.public_id, alice.email, "weather", "usage", "-7",
         usage.reason, "", "", ""],
    ]  # fmt: skip


def test_the_whole_ledger_downloads_in_the_lists_order_and_a_formula_stays_text(staff_client, books, staff):
    rows = download(staff_client, reverse("admin:ledger_ledgerentry_export"))

    assert [int(r[0]) for r in rows[1:]] == list(
        LedgerEntry.objects.order_by("-created", "-id").values_list("pk", flat=True)
    )
    adjustment = next(r for r in rows if r[5] == "adjustment")
    assert adjustment[6] == "-3"  # a number stays a number
    assert adjustment[7] == '\'=HYPERLINK("x")'  # text that would run as a formula does not
    assert adjustment[8] == staff.email
    purchase_row = next(r for r in rows if r[9] == "#1002")
    assert purchase_row[5:7] == ["purchase", "50"]


def test_the_download_link_carries_the_lists_filters(staff_client, books):
    response = staff_client.get(reverse("admin:ledger_ledgerentry_changelist") + "?kind__exact=purchase")
    assert response.status_code == 200
    assert f'href="{reverse("admin:ledger_ledgerentry_export")}?kind__exact=purchase"' in response.content.decode()


def test_purchases_download_as_filtered(staff_client, books, alice, bob):
    rows = download(staff_client, reverse("admin:ledger_purchase_export") + f"?q={bob.email}")

    assert rows[0] == PURCHASE_HEADER
    row = Purchase.objects.get(customer=bob)
    row.price, row.currency = Decimal("12.5"), "EUR"
    row.save(update_fields=["price", "currency"])
    rows = download(staff_client, reverse("admin:ledger_purchase_export") + f"?q={bob.email}")
    assert rows[1:] == [
        [str(row.pk), row.received.isoformat(), "zapier", "#1002", "", "applied", bob.email, bob.name, "MAPS-500",
         "50", "1", "12.5000", "EUR", "maps", bob.public_id, row.applied.isoformat(), row.email_status],
    ]  # fmt: skip


def test_a_bad_filter_is_a_clear_400(staff_client, books):
    response = staff_client.get(reverse("admin:ledger_purchase_export") + "?nonsense__exact=1")
    assert response.status_code == 400
    assert b"These filters do not apply" in response.content


def test_a_customer_gets_no_export(client, alice, books):
    client.force_login(alice.user)
    for name in ["admin:ledger_ledgerentry_export", "admin:ledger_purchase_export"]:
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_who_may_not_view_the_ledger_get_403(client, books):
    from accounts.models import User

    user = User.objects.create_user("helper@creditportal.test", "pw", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:ledger_ledgerentry_export")).status_code == 403
