"""manage.py seed_demo (local/demo.py): the demo data `make run` starts with."""

import datetime
import io
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from accounts.models import Credential, Customer, User
from accounts.tokens import credential_authenticate
from ledger.models import Balance, LedgerEntry, Product, Purchase


@pytest.fixture(autouse=True)
def debug(debug_settings):
    return debug_settings  # as under make run


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def printed(output: str, label: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(label)]
    return line.split(": ", 1)[1]


def test_it_makes_a_staff_login_a_routed_product_and_a_customer_with_credits_and_working_credentials(db, client):
    output = seed()

    staff = User.objects.get(email="staff@example.com")
    assert staff.is_staff and staff.is_superuser
    assert staff.check_password("creditportal-demo")

    product = Product.objects.get(slug="demo-api")
    assert list(product.apis.values_list("api_id", flat=True)) == ["demoapi01"]  # the stand-in's API id
    assert list(product.skus.values_list("sku", flat=True)) == ["DEMO-100"]

    customer = Customer.objects.get(email="demo.customer@example.com")
    login = {"username": "demo.customer@example.com", "password": "creditportal-demo"}
    assert client.post(reverse("account_login"), login).status_code == 302
    assert "Demo API" in client.get(reverse("account_dashboard")).content.decode()
    balance = Balance.objects.get(customer=customer, product=product)
    assert (balance.granted, balance.used) == (100, 54)

    client_id = printed(output, "demo customer's client id")
    secret = printed(output, "demo customer's client secret")
    credential = Credential.objects.get(customer=customer)
    assert credential.client_id == client_id
    assert credential_authenticate(client_id=client_id, client_secret=secret).pk == credential.pk
    assert secret not in credential.secret_hash


def test_the_demo_customer_bought_its_credits_in_the_store_and_used_them_for_two_weeks(db, client):
    seed()
    customer = Customer.objects.get(email="demo.customer@example.com")
    today = timezone.now().date()

    purchase = Purchase.objects.get()  # through purchase_record, as the Zapier webhook records one
    assert (purchase.order_id, purchase.product_ref, purchase.quantity) == ("DEMO-1001", "DEMO-100", 100)
    assert (purchase.status, purchase.customer, purchase.remaining_after) == (Purchase.Status.APPLIED, customer, 100)
    assert purchase.received.date() == today - datetime.timedelta(days=15)
    grant, *usage = LedgerEntry.objects.filter(customer=customer).order_by("created", "id")
    assert (grant.kind, grant.amount, grant.purchase, grant.created) == ("purchase", 100, purchase, purchase.received)
    used_on = {(today - e.created.date()).days: -e.amount for e in usage}
    assert {e.kind for e in usage} == {"usage"}
    assert used_on == {14: 3, 13: 5, 12: 2, 10: 6, 9: 4, 8: 7, 7: 1, 5: 5, 4: 8, 3: 3, 2: 4, 1: 6}  # two weeks
    assert customer.credentials.get().created == purchase.received  # the customer came with its purchase
    assert Balance.objects.get(customer=customer).low_balance_notified is None  # 46 left is not low

    client.force_login(customer.user)
    page = client.get(reverse("account_dashboard")).content.decode()
    assert "No purchases yet" not in page and "DEMO-1001" in page
    assert '<span data-testid="remaining">46</span>' in page
    assert len(re.findall(r'<rect class="bar"', page)) == 12  # the chart shows the twelve days with calls
    assert "54 credits used in total" in page


def test_running_it_again_adds_nothing_and_gives_the_same_client_id_a_new_secret(db):
    first = seed()
    entries = LedgerEntry.objects.count()
    second = seed()

    assert User.objects.filter(email__in=["staff@example.com", "demo.customer@example.com"]).count() == 2
    customer = Customer.objects.get(email="demo.customer@example.com")
    assert LedgerEntry.objects.count() == entries == 13  # bought once, 12 days of usage
    assert Purchase.objects.count() == 1
    assert Balance.objects.get(customer=customer).granted == 100
    credential = Credential.objects.get(customer=customer)
    assert printed(second, "demo customer's client id") == printed(first, "demo customer's client id")
    old, new = printed(first, "demo customer's client secret"), printed(second, "demo customer's client secret")
    assert old != new
    assert credential.check_secret(new)
    assert not credential.check_secret(old)  # the previous run's secret stops working


def test_a_demo_customer_whose_credentials_were_all_revoked_gets_a_new_one(db):
    from accounts.services import credential_revoke

    seed()
    customer = Customer.objects.get(email="demo.customer@example.com")
    revoked = credential_revoke(credential=customer.credentials.get())

    output = seed()

    live = Credential.objects.get(customer=customer, revoked_at__isnull=True)
    assert live.pk != revoked.pk
    assert printed(output, "demo customer's client id") == live.client_id
    assert live.check_secret(printed(output, "demo customer's client secret"))


def test_outside_debug_it_refuses_and_makes_nothing(db, settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="local demos only"):
        seed()

    assert not User.objects.filter(email="staff@example.com").exists()
    assert not Product.objects.filter(slug="demo-api").exists()
