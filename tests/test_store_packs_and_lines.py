"""Packs (SKU and Shopify variant → product, credits per unit) through upsert_product and admin; the Zapier
door without Looping (an order's lines as comma-separated fields) and with a price; what the customer
sees of a refund in the portal and staff see in admin."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from ledger.models import Balance, LedgerEntry, Product, ProductSku, ProductVariant, Purchase
from ledger.services import product_upsert
from tests.conftest import admin_form_data


def upsert(*args: str) -> str:
    out = StringIO()
    call_command("upsert_product", *args, stdout=out)
    return out.getvalue()


def packs_of(slug: str) -> tuple[dict, dict]:
    product = Product.objects.get(slug=slug)
    return (
        dict(product.skus.values_list("sku", "credits_per_unit")),
        dict(product.variants.values_list("variant_id", "credits_per_unit")),
    )


@pytest.mark.django_db
def test_upsert_product_declares_packs_and_running_it_twice_changes_nothing():
    args = [
        "--slug",
        "rb",
        "--name",
        "Robots API",
        "--sku",
        "RB-100:100",
        "--sku",
        "RB-1",
        "--variant-id",
        "990001:100",
    ]

    assert upsert(*args) == "product rb: saved\n"
    assert upsert(*args) == "product rb: unchanged\n"
    assert packs_of("rb") == ({"RB-100": 100, "RB-1": 1}, {"990001": 100})


@pytest.mark.django_db
def test_a_pack_size_can_change_and_the_old_flag_form_still_means_one_credit():
    upsert("--slug", "rb", "--name", "Robots API", "--sku", "RB-100:100")
    assert upsert("--slug", "rb", "--name", "Robots API", "--sku", "RB-100:50") == "product rb: saved\n"
    assert packs_of("rb")[0] == {"RB-100": 50}
    upsert("--slug", "rb", "--name", "Robots API", "--sku", "RB-100")
    assert packs_of("rb")[0] == {"RB-100": 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, error",
    [
        (["--sku", "RB-100:0"], "a pack holds at least 1 credit per unit"),
        (["--sku", "RB-100:1", "--sku", "RB-100:2"], "RB-100 is given twice with different pack sizes"),
        (["--variant-id", "v-1:100"], "The variant's numeric id, digits only."),
    ],
)
def test_a_bad_pack_is_refused_and_nothing_is_written(args, error):
    with pytest.raises(CommandError, match=error):
        upsert("--slug", "rb", "--name", "Robots API", *args)
    assert not Product.objects.exists() and not ProductSku.objects.exists() and not ProductVariant.objects.exists()


@pytest.mark.django_db
def test_a_variant_of_another_product_is_refused():
    upsert("--slug", "rb", "--name", "Robots API", "--variant-id", "990001:100")
    with pytest.raises(CommandError, match="variant_id 990001 already belongs to another product"):
        upsert("--slug", "maps", "--name", "Maps", "--variant-id", "990001")


def test_staff_edit_a_pack_size_in_admin(client, staff, products):
    client.force_login(staff)
    url = reverse("admin:ledger_product_change", args=[products["weather"].pk])
    data = admin_form_data(client, url)
    [prefix] = {k.rsplit("-", 1)[0] for k in data if k.endswith("-sku") and data[k] == "WTHR-100"}
    data[f"{prefix}-credits_per_unit"] = "250"
    variants = "variants-0"
    data |= {f"{variants}-variant_id": "990001", f"{variants}-credits_per_unit": "100"}

    response = client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert packs_of("weather") == ({"WTHR-100": 250}, {"990001": 100})


ZAP = {"order_id": "3001", "email": "nina@example.com", "name": "Nina"}


@pytest.fixture
def packed(products):
    product_upsert(slug="weather", name="Weather API", skus=["WTHR-100:100"])
    return products


def test_a_pack_sku_on_the_zapier_door_grants_quantity_times_its_size(zapier, packed, mailoutbox):
    response = zapier({**ZAP, "product": "WTHR-100", "quantity": 3, "price": "9.50", "currency": "eur"})

    assert (response.status_code, response.json()["credits"]) == (201, 300)
    purchase = Purchase.objects.get()
    assert (purchase.quantity, purchase.credits_per_unit, purchase.price, purchase.currency) == (
        3, 100, Decimal("9.50"), "EUR",
    )  # fmt: skip
    assert mailoutbox[0].subject == "Your CreditPortal API credentials and 300 Weather API credits"


def test_a_product_slug_still_means_credits(zapier, packed):
    assert zapier({**ZAP, "product": "weather", "quantity": 3}).json()["credits"] == 3


def test_an_orders_lines_as_comma_separated_fields_are_each_recorded_once(zapier, packed, mailoutbox):
    data = {**ZAP, "line_id": "11, 12,13", "product": "WTHR-100,MAPS-500,GIFT", "quantity": "2,1,1",
            "price": "19.00,5.00,20.00", "currency": "USD"}  # fmt: skip

    response = zapier(data, form=True)
    again = zapier(data, form=True)

    assert response.status_code == 201
    body = response.json()
    assert body["order_id"] == "3001"
    assert [(line["line_id"], line["status"], line["credits"]) for line in body["lines"]] == [
        ("11", "applied", 200), ("12", "applied", 1), ("13", "unmatched", 0),
    ]  # fmt: skip
    assert (again.status_code, again.json()) == (200, body)
    assert Balance.objects.get(product__slug="weather").granted == 200
    assert Balance.objects.get(product__slug="maps").granted == 1
    assert sorted(Purchase.objects.values_list("price", flat=True)) == [Decimal(5), Decimal(19), Decimal(20)]
    assert LedgerEntry.objects.count() == 2
    [email] = mailoutbox
    assert email.subject == "Your CreditPortal API credentials and 200 Weather API, 1 Maps API credits"


@pytest.mark.parametrize(
    "fields, said",
    [
        ({"line_id": "11,12", "product": "WTHR-100,MAPS-500", "quantity": "2"}, "line_id 2, product 2, quantity 1"),
        ({"line_id": "11", "product": "WTHR-100,MAPS-500", "quantity": "2,1"}, "line_id 1, product 2, quantity 2"),
        ({"product": "WTHR-100,MAPS-500", "quantity": "2,1"}, "line_id 0, product 2, quantity 2"),
        ({"line_id": "11,12", "product": "WTHR-100,MAPS-500", "quantity": "2,1", "price": "1.00"},
         "line_id 2, product 2, quantity 2, price 1"),
    ],
)  # fmt: skip
def test_unequal_counts_are_a_400_saying_so_and_write_nothing(zapier, packed, app_rows, fields, said):
    before = app_rows()

    response = zapier({**ZAP, **fields})

    assert response.status_code == 400
    [message] = response.json()["non_field_errors"]
    assert said in message and "nothing was recorded" in message
    assert app_rows() == before


def test_a_bad_value_in_one_line_names_the_line_and_writes_nothing(zapier, packed, app_rows):
    before = app_rows()
    response = zapier({**ZAP, "line_id": "11,12", "product": "WTHR-100,MAPS-500", "quantity": "2,0"})

    assert response.status_code == 400
    assert response.json() == {"line 2": {"quantity": ["Enter a positive number of credits (1 or more)."]}}
    assert app_rows() == before


def test_a_repeated_line_id_is_a_400(zapier, packed, app_rows):
    before = app_rows()
    response = zapier({**ZAP, "line_id": "11,11", "product": "WTHR-100,MAPS-500", "quantity": "2,1"})

    assert response.status_code == 400 and "line_id" in response.json()
    assert app_rows() == before


@pytest.mark.parametrize("price", ["-1", "free", "1.23456"])
def test_a_bad_price_is_a_400(zapier, packed, price):
    response = zapier({**ZAP, "product": "WTHR-100", "quantity": 1, "price": price})
    assert response.status_code == 400 and "price" in response.json()
    assert not Purchase.objects.exists()


def test_the_portal_shows_what_a_refund_took_back(client, zapier, packed, mirror):
    from ledger.store.refunds import refund_record

    zapier({**ZAP, "line_id": "11", "product": "WTHR-100", "quantity": 2})
    refund_record(refund_id="509562969", order_id="3001", lines={"11": 1}, note="it broke")
    purchase = Purchase.objects.get()
    client.force_login(purchase.customer.user)

    page = client.get(reverse("account_dashboard")).content.decode()

    assert 'data-taken-back="100"' in page and "100 taken back (refunded)" in page


def test_staff_see_each_purchases_refunds(client, staff, zapier, packed, mirror):
    from ledger.store.refunds import order_cancel, refund_record

    zapier({**ZAP, "line_id": "11", "product": "WTHR-100", "quantity": 2})
    refund_record(refund_id="509562969", order_id="3001", lines={"11": 1})
    order_cancel(order_id="3001", reason="fraud")
    client.force_login(staff)

    page = client.get(reverse("admin:ledger_purchase_change", args=[Purchase.objects.get().pk])).content.decode()

    assert "Refund 509562969 of order 3001" in page and "Cancellation cancelled:3001 of order 3001" in page
    refunds = client.get(reverse("admin:ledger_storerefund_changelist"))
    assert refunds.status_code == 200 and "cancelled:3001" in refunds.content.decode()
    assert sorted(LedgerEntry.objects.filter(kind="refund").values_list("amount", flat=True)) == [-100, -100]
