"""POST /api/purchases/shopify/ end to end: Shopify-shaped bodies (tests/events/shopify/, written from
Shopify's documented Order and Refund resources), signed as Shopify signs them, real Postgres, the
mirror on a moto server over HTTP, the emails sent."""

import base64
import copy
import hashlib
import hmac
import json
import uuid
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import Customer
from ledger.models import Balance, LedgerEntry, MirrorOutbox, Purchase
from ledger.store.models import RefundLine, StoreRefund, StoreWebhook
from tests.concurrency import at_once

URL = "/api/purchases/shopify/"
EVENTS = Path(__file__).parent / "events" / "shopify"
BUYER = "bob.norman@mail.example.com"


def event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def headers(topic: str, body: bytes, *, secret: str | None = None, webhook_id: str | None = None, hmac_header=True):
    sent = {
        "HTTP_X_SHOPIFY_TOPIC": topic,
        "HTTP_X_SHOPIFY_WEBHOOK_ID": webhook_id or str(uuid.uuid4()),
        "HTTP_X_SHOPIFY_SHOP_DOMAIN": "creditportal-test.myshopify.com",
        "HTTP_X_SHOPIFY_API_VERSION": "2025-01",
    }
    if hmac_header:
        sent["HTTP_X_SHOPIFY_HMAC_SHA256"] = sign(body, secret or settings.SHOPIFY_WEBHOOK_SECRET.split()[-1])
    return sent


@pytest.fixture
def packs(products):
    """weather: SKU WTHR-100 and variant 39072856 sell 100 credits a unit; maps: variant 49148385, 500 a unit."""
    from ledger.services import product_upsert

    product_upsert(slug="weather", name="Weather API", skus=["WTHR-100:100"], variants=["39072856:100"])
    product_upsert(slug="maps", name="Maps API", skus=["MAPS-500:500"], variants=["49148385:500"])
    return products


@pytest.fixture
def shopify(client, django_capture_on_commit_callbacks):
    """`shopify(topic, payload)`: post it signed as Shopify does, running the after-commit work."""

    def post(topic: str, payload, **options):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(URL, body, content_type="application/json", **headers(topic, body, **options))

    return post


def balance(email: str, slug: str) -> Balance:
    return Balance.objects.get(customer__email=email, product__slug=slug)


def test_a_paid_order_grants_its_mapped_lines_once_and_keeps_the_others(shopify, packs, mirror, mailoutbox):
    response = shopify("orders/paid", event("orders_paid"))

    assert response.status_code == 200
    assert response.json()["lines"] == [
        {"line_id": "466157049", "status": "applied", "credits": 200, "recorded_before": False},
        {"line_id": "518995019", "status": "applied", "credits": 500, "recorded_before": False},
        {"line_id": "703073504", "status": "other", "credits": 0, "recorded_before": False},
    ]
    customer = Customer.objects.get()
    assert (customer.email, customer.name) == (BUYER, "Bob Norman")
    weather, maps = balance(BUYER, "weather"), balance(BUYER, "maps")
    assert (weather.granted, maps.granted) == (200, 500)
    lines = {p.line_id: p for p in Purchase.objects.all()}
    assert (lines["466157049"].quantity, lines["466157049"].credits_per_unit) == (2, 100)
    assert (lines["466157049"].price, lines["466157049"].currency) == (Decimal("19.00"), "USD")
    assert lines["518995019"].product_ref == "variant 49148385"  # its SKU is null: mapped by variant id
    shirt = lines["703073504"]
    assert (shirt.status, shirt.product, shirt.customer, shirt.price) == ("other", None, None, Decimal("359.00"))
    assert sorted(LedgerEntry.objects.values_list("amount", flat=True)) == [200, 500]
    assert mirror.balance(customer, packs["weather"])["granted"] == 200
    assert mirror.balance(customer, packs["maps"])["granted"] == 500
    [email] = mailoutbox  # one email for the order
    assert (email.to, email.subject) == (
        [BUYER],
        "Your CreditPortal API credentials and 200 Weather API, 500 Maps API credits",
    )
    assert "Weather API (weather): 200 credits remaining." in email.body
    assert "Maps API (maps): 500 credits remaining." in email.body
    assert "Order 450789469, lines 466157049, 518995019." in email.body
    assert set(Purchase.objects.filter(status="applied").values_list("email_status", flat=True)) == {"sent"}
    assert StoreWebhook.objects.get().topic == "orders/paid"


def test_a_redelivery_changes_nothing(shopify, packs, mirror, mailoutbox, app_rows):
    payload = event("orders_paid")
    webhook_id = str(uuid.uuid4())
    assert shopify("orders/paid", payload, webhook_id=webhook_id).status_code == 200
    before, sent = app_rows(), len(mailoutbox)

    again = shopify("orders/paid", payload, webhook_id=webhook_id)  # Shopify's retry: same webhook id
    other_id = shopify("orders/paid", payload)  # the same order under another webhook id

    assert (again.status_code, again.json()["redelivery"]) == (200, True)
    assert all(line["recorded_before"] for line in again.json()["lines"])
    assert (other_id.status_code, other_id.json()["redelivery"]) == (200, False)
    assert all(line["recorded_before"] for line in other_id.json()["lines"])
    assert StoreWebhook.objects.count() == 2
    after = app_rows()
    after.pop("ledger_storewebhook"), before.pop("ledger_storewebhook")
    assert after == before and len(mailoutbox) == sent


@pytest.mark.parametrize(
    "how",
    ["missing", "wrong secret", "another body", "not base64", "empty"],
)
def test_a_webhook_without_the_right_signature_is_a_401_and_writes_nothing(client, packs, app_rows, how):
    body = json.dumps(event("orders_paid")).encode()
    sent = headers("orders/paid", body, hmac_header=how != "missing")
    if how == "wrong secret":
        sent["HTTP_X_SHOPIFY_HMAC_SHA256"] = sign(body, "not-the-secret")
    elif how == "another body":
        sent["HTTP_X_SHOPIFY_HMAC_SHA256"] = sign(body + b" ", settings.SHOPIFY_WEBHOOK_SECRET)
    elif how == "not base64":
        sent["HTTP_X_SHOPIFY_HMAC_SHA256"] = "%%%"
    elif how == "empty":
        sent["HTTP_X_SHOPIFY_HMAC_SHA256"] = ""
    before = app_rows()

    response = client.post(URL, body, content_type="application/json", **sent)

    assert response.status_code == 401
    assert response.json() == {"detail": "Missing or wrong X-Shopify-Hmac-Sha256."}
    assert app_rows() == before


def test_during_a_rotation_both_secrets_are_accepted(shopify, packs, mirror, settings):
    settings.SHOPIFY_WEBHOOK_SECRET = "the-old-secret the-new-secret"
    order = event("orders_paid")

    assert shopify("orders/paid", order, secret="the-old-secret").status_code == 200
    assert shopify("orders/paid", {**order, "id": 450789470}, secret="the-new-secret").status_code == 200
    assert shopify("orders/paid", {**order, "id": 450789471}, secret="test-shopify-secret").status_code == 401
    assert Purchase.objects.filter(status="applied").count() == 4


def test_an_unhandled_topic_is_a_200_and_ignored(shopify, packs, app_rows):
    before = app_rows()
    response = shopify("orders/updated", event("orders_paid"))

    assert (response.status_code, response.json()) == (200, {"topic": "orders/updated", "ignored": True})
    after = app_rows()
    assert [json.loads(row)["outcome"] for row in after.pop("ledger_storewebhook")] == ["ignored"]
    before.pop("ledger_storewebhook")
    assert after == before


def test_an_order_without_any_email_is_stored_for_staff(shopify, packs, mirror, mailoutbox):
    order = event("orders_paid")
    order["email"] = order["contact_email"] = None
    order["customer"]["email"] = None

    assert shopify("orders/paid", order).status_code == 200

    assert not Customer.objects.exists() and not LedgerEntry.objects.exists() and not mailoutbox
    assert sorted(Purchase.objects.values_list("status", flat=True)) == ["no_email", "no_email", "other"]


def test_the_buyer_may_be_named_only_by_the_customer(shopify, packs, mirror):
    order = event("orders_paid")
    order["email"] = order["contact_email"] = None

    assert shopify("orders/paid", order).status_code == 200
    assert balance(BUYER, "weather").granted == 200


@pytest.mark.parametrize(
    "change, detail",
    [
        (lambda o: o.update(id="#1001"), "id must be the resource's numeric id, not '#1001'."),
        (lambda o: o.update(line_items=None), "line_items must be a list."),
        (lambda o: o["line_items"][0].update(quantity="2"), "line_items[0].quantity must be a whole number of units"),
        (lambda o: o["line_items"][1].update(price="lots"), "line_items[].price must be a decimal amount"),
        (lambda o: o["line_items"][2].update(id=None), "line_items[2].id must be the resource's numeric id"),
    ],
)
def test_an_order_not_shaped_as_shopify_documents_it_is_a_400_and_writes_nothing(
    shopify, packs, app_rows, change, detail
):
    order = event("orders_paid")
    change(order)
    before = app_rows()

    response = shopify("orders/paid", order)

    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert app_rows() == before


def test_a_refund_takes_back_the_refunded_units_of_the_line(shopify, packs, mirror, mailoutbox):
    shopify("orders/paid", event("orders_paid"))
    mailoutbox.clear()

    response = shopify("refunds/create", event("refunds_create"))

    assert response.status_code == 200
    answer = response.json()
    assert answer == {
        "topic": "refunds/create", "refund_id": "509562969", "order_id": "450789469", "duplicate": False,
        "credits_taken": 100, "credits_spent": 0, "webhook_id": answer["webhook_id"], "redelivery": False,
    }  # fmt: skip
    weather = balance(BUYER, "weather")
    assert (weather.granted, weather.remaining) == (100, 100)
    assert balance(BUYER, "maps").granted == 500  # another line: untouched
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.REFUND)
    assert (entry.amount, entry.purchase.line_id) == (-100, "466157049")
    line = RefundLine.objects.get()
    assert (line.quantity, line.credits_claimed, line.credits_taken, line.credits_spent) == (1, 100, 100, 0)
    assert line.entry == entry
    assert Purchase.objects.get(line_id="466157049").credits_refunded == 100
    assert mirror.balance(weather.customer, packs["weather"])["granted"] == 100
    [email] = mailoutbox
    assert email.subject == "Order 450789469 refunded: 100 credits taken back"
    assert "100 Weather API credits taken back" in email.body and "it broke during shipping" in email.body


def test_a_refund_after_partial_spending_takes_back_only_what_is_unspent(shopify, packs, mirror):
    shopify("orders/paid", event("orders_paid"))
    customer = Customer.objects.get()
    mirror.spend(customer, packs["weather"], used=150)  # the gate spent 150 of 200, not synced yet
    refund = event("refunds_create")
    refund["refund_line_items"][0]["quantity"] = 2  # both units: 200 credits

    response = shopify("refunds/create", refund)

    assert (response.json()["credits_taken"], response.json()["credits_spent"]) == (50, 150)
    weather = balance(BUYER, "weather")
    assert (weather.granted, weather.used, weather.remaining) == (150, 150, 0)  # never below 0
    line = RefundLine.objects.get()
    assert (line.credits_claimed, line.credits_taken, line.credits_spent) == (200, 50, 150)
    usage = LedgerEntry.objects.get(kind=LedgerEntry.Kind.USAGE)
    assert usage.amount == -150  # what the gate spent, recorded before taking back
    assert mirror.balance(customer, packs["weather"])["granted"] == 150


def test_two_partial_refunds_of_one_line_never_take_back_more_than_it_granted(shopify, packs, mirror):
    shopify("orders/paid", event("orders_paid"))
    first, second, third = event("refunds_create"), event("refunds_create"), event("refunds_create")
    second["id"], third["id"] = 509562970, 509562971
    third["refund_line_items"][0]["quantity"] = 2  # more than is left of the line

    answers = [shopify("refunds/create", refund).json()["credits_taken"] for refund in (first, second, third)]

    assert answers == [100, 100, 0]
    assert balance(BUYER, "weather").granted == 0
    assert list(RefundLine.objects.order_by("pk").values_list("credits_claimed", flat=True)) == [100, 100, 0]
    assert Purchase.objects.get(line_id="466157049").credits_refunded == 200


def test_a_refund_delivered_twice_takes_back_once(shopify, packs, mirror):
    shopify("orders/paid", event("orders_paid"))
    refund = event("refunds_create")

    shopify("refunds/create", refund)
    again = shopify("refunds/create", refund)  # another webhook id: Shopify's id of the refund decides

    assert again.json()["duplicate"] is True
    assert balance(BUYER, "weather").granted == 100
    assert StoreRefund.objects.count() == 1 and LedgerEntry.objects.filter(kind="refund").count() == 1


def test_a_cancellation_takes_back_every_unspent_credit_of_the_order_once(shopify, packs, mirror, mailoutbox):
    order = event("orders_paid")
    shopify("orders/paid", order)
    shopify("refunds/create", event("refunds_create"))  # 100 of weather's 200 back already
    customer = Customer.objects.get()
    mirror.spend(customer, packs["maps"], used=120)
    mailoutbox.clear()
    cancelled = {**order, "cancelled_at": "2008-01-10T12:00:00-05:00", "cancel_reason": "customer"}

    response = shopify("orders/cancelled", cancelled)
    again = shopify("orders/cancelled", cancelled)

    assert (response.json()["credits_taken"], response.json()["credits_spent"]) == (100 + 380, 120)
    assert again.json()["duplicate"] is True
    assert (balance(BUYER, "weather").granted, balance(BUYER, "maps").granted) == (0, 120)
    assert balance(BUYER, "maps").remaining == 0
    assert StoreRefund.objects.filter(kind="cancellation").count() == 1
    [email] = mailoutbox
    assert email.subject == "Order 450789469 cancelled: 480 credits taken back"
    assert "120 more had been used already" in email.body


def test_a_refund_waits_when_the_gate_cannot_be_read(shopify, packs, mirror, app_rows, settings):
    shopify("orders/paid", event("orders_paid"))
    settings.MIRROR_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens
    settings.MIRROR_WRITE_ATTEMPTS = 1
    before = app_rows()

    response = shopify("refunds/create", event("refunds_create"))

    assert response.status_code == 503  # Shopify retries later
    assert app_rows() == before


def _post_in_threads(deliveries: list[tuple[str, str, bytes]]) -> list:
    """Each (url, topic, body) posted by its own thread and connection, all released at once."""

    def delivery(url: str, topic: str, body: bytes):
        if url == URL:
            return partial(Client().post, url, body, content_type="application/json", **headers(topic, body))
        auth = f"Bearer {settings.ZAPIER_WEBHOOK_SECRET}"
        return partial(Client().post, url, body, content_type="application/json", HTTP_AUTHORIZATION=auth)

    return at_once([delivery(*d) for d in deliveries])


@pytest.mark.django_db(transaction=True)
def test_concurrent_redeliveries_grant_once(packs, mirror, mailoutbox):
    body = json.dumps(event("orders_paid")).encode()

    responses = _post_in_threads([(URL, "orders/paid", body)] * 8)

    assert [r.status_code for r in responses] == [200] * 8
    assert sum(not line["recorded_before"] for r in responses for line in r.json()["lines"]) == 3
    assert Purchase.objects.count() == 3 and LedgerEntry.objects.count() == 2
    assert (balance(BUYER, "weather").granted, balance(BUYER, "maps").granted) == (200, 500)
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_both_doors_at_once_for_the_same_order_grant_each_line_once(packs, mirror):
    order = event("orders_paid")
    body = json.dumps(order).encode()
    zap = {"order_id": "450789469", "line_id": "466157049,518995019", "email": BUYER, "name": "Bob Norman",
           "product": "WTHR-100,MAPS-500", "quantity": "2,1"}  # fmt: skip
    zap_body = json.dumps(zap).encode()

    responses = _post_in_threads([(URL, "orders/paid", body), ("/api/purchases/zapier/", "", zap_body)] * 3)

    assert (
        sorted(r.status_code for r in responses) == [200] * 5 + [201]
        or sorted(r.status_code for r in responses) == [200] * 6
    )
    assert (balance(BUYER, "weather").granted, balance(BUYER, "maps").granted) == (200, 500)
    assert LedgerEntry.objects.count() == 2


@contextmanager
def statements_counted():
    """Every statement sent to Postgres meanwhile (`.sql`), counted as bench/store_webhooks.py counts them: at
    the cursor (a server-side cursor's read too, which CaptureQueriesContext misses), transaction control
    aside (Django 5 logs BEGIN and COMMIT among the captured queries)."""
    sent: list[str] = []

    def count(execute, sql, params, many, context):
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        yield sent


@pytest.mark.django_db(transaction=True)  # committed for real, as in production: the after-commit work counts too
@pytest.mark.parametrize("door", ["zapier", "shopify"])
def test_a_repeat_one_line_purchase_costs_at_most_12_queries_on_either_door(door, packs, mirror, mailoutbox):
    from ledger.mirror.outbox import mirror_outbox_write

    mirror_outbox_write()  # the fixtures' routes, recorded before the table was made
    client = Client()
    zapier_auth = {"HTTP_AUTHORIZATION": f"Bearer {settings.ZAPIER_WEBHOOK_SECRET}"}
    first = {"order_id": "1", "email": BUYER, "product": "WTHR-100", "quantity": 1}
    assert (
        client.post("/api/purchases/zapier/", first, content_type="application/json", **zapier_auth).status_code == 201
    )
    customer = Customer.objects.get()
    order = event("orders_paid")
    order["id"], order["line_items"] = 2002, order["line_items"][:1]  # one line: 2 × WTHR-100
    body = json.dumps(order).encode()

    with statements_counted() as sent:  # every query of the request: the mirror write and the email's too
        if door == "zapier":
            data = {"order_id": "2002", "line_id": "1", "email": BUYER, "product": "WTHR-100", "quantity": 2}
            response = client.post("/api/purchases/zapier/", data, content_type="application/json", **zapier_auth)
        else:
            response = client.post(URL, body, content_type="application/json", **headers("orders/paid", body))

    assert response.status_code == (201 if door == "zapier" else 200), response.content
    assert len(sent) <= 12, "\n".join(sent)
    assert not any("SAVEPOINT" in sql for sql in sent)
    assert Customer.objects.get() == customer  # the known buyer, not a new one
    assert balance(BUYER, "weather").granted == 300
    assert mirror.balance(customer, packs["weather"])["granted"] == 300  # written within the count
    assert not MirrorOutbox.objects.exists()  # and its outbox row cleared
    purchase = Purchase.objects.get(order_id="2002")
    assert (purchase.credits, purchase.email_status) == (200, Purchase.EmailStatus.SENT)
    assert LedgerEntry.objects.filter(purchase=purchase, amount=200).count() == 1
    assert mailoutbox[-1].subject == "200 Weather API credits added to your CreditPortal account"
    assert StoreWebhook.objects.count() == (door == "shopify")


def test_a_line_first_seen_on_the_zapier_door_is_not_granted_again_by_shopify(shopify, zapier, packs, mirror):
    zap = {"order_id": "450789469", "line_id": "466157049", "email": BUYER, "product": "WTHR-100", "quantity": 2}
    assert zapier(zap).status_code == 201

    response = shopify("orders/paid", event("orders_paid"))

    assert [line["recorded_before"] for line in response.json()["lines"]] == [True, False, False]
    assert balance(BUYER, "weather").granted == 200


def test_a_one_line_zapier_order_without_a_line_id_is_the_same_line_as_shopifys(shopify, zapier, packs, mirror):
    order = event("orders_paid")
    order["line_items"] = order["line_items"][:1]
    assert zapier({"order_id": "450789469", "email": BUYER, "product": "WTHR-100", "quantity": 2}).status_code == 201

    response = shopify("orders/paid", order)

    assert response.json()["lines"][0]["recorded_before"] is True
    assert balance(BUYER, "weather").granted == 200 and Purchase.objects.count() == 1


def test_a_line_first_seen_on_shopify_is_a_200_on_the_zapier_door(shopify, zapier, packs, mirror):
    shopify("orders/paid", event("orders_paid"))
    zap = {"order_id": "450789469", "line_id": "518995019", "email": BUYER, "product": "MAPS-500", "quantity": 1}

    response = zapier(zap)

    assert (response.status_code, response.json()["credits"]) == (200, 500)
    assert balance(BUYER, "maps").granted == 500


def test_the_webhook_body_is_bounded(client, packs, settings, app_rows):
    settings.SHOPIFY_WEBHOOK_MAX_BYTES = 100
    body = json.dumps(event("orders_paid")).encode()
    before = app_rows()

    response = client.post(URL, body, content_type="application/json", **headers("orders/paid", body))

    assert response.status_code == 413 and app_rows() == before


def test_the_fixture_is_shaped_as_shopify_documents_an_order():
    """The fields we read, as the Order resource has them: a null SKU on one line, ids as numbers."""
    order = copy.deepcopy(event("orders_paid"))
    items = order["line_items"]
    assert isinstance(order["id"], int) and order["currency"] == "USD" and order["financial_status"] == "paid"
    assert [item["sku"] for item in items] == ["WTHR-100", None, "TSHIRT-M"]
    assert all(isinstance(item["id"], int) and isinstance(item["variant_id"], int) for item in items)
    refund = event("refunds_create")
    assert refund["order_id"] == order["id"]
    assert refund["refund_line_items"][0]["line_item_id"] == items[0]["id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_and_a_cancellation_never_take_back_more_than_the_lines_granted(packs, mirror, mailoutbox):
    from ledger.store.orders import order_record
    from ledger.store.shopify import order_parse

    order = event("orders_paid")
    order_record(order=order_parse(order))
    refund = event("refunds_create")
    refund["refund_line_items"][0]["quantity"] = 2
    other = {**refund, "id": 509562970}
    cancelled = {**order, "cancelled_at": "2008-01-10T12:00:00-05:00", "cancel_reason": "fraud"}
    deliveries = [(URL, "refunds/create", json.dumps(refund).encode())] * 3
    deliveries += [(URL, "refunds/create", json.dumps(other).encode())] * 2
    deliveries += [(URL, "orders/cancelled", json.dumps(cancelled).encode())] * 2

    responses = _post_in_threads(deliveries)

    assert [r.status_code for r in responses] == [200] * 7
    assert StoreRefund.objects.count() == 3  # two refund ids and one cancellation, however often delivered
    weather, maps = balance(BUYER, "weather"), balance(BUYER, "maps")
    assert (weather.granted, maps.granted) == (0, 0)
    taken = sum(RefundLine.objects.values_list("credits_taken", flat=True))
    assert taken == 700 and LedgerEntry.objects.filter(kind="refund").count() == 2
    assert {p.line_id: p.credits_refunded for p in Purchase.objects.filter(status="applied")} == {
        "466157049": 200, "518995019": 500,
    }  # fmt: skip


def test_a_refund_of_credits_all_spent_takes_nothing_and_leaves_the_gate_as_it_was(shopify, packs, mirror, mailoutbox):
    shopify("orders/paid", event("orders_paid"))
    customer = Customer.objects.get()
    mirror.spend(customer, packs["weather"], used=200)
    mailoutbox.clear()

    response = shopify("refunds/create", event("refunds_create"))

    assert (response.json()["credits_taken"], response.json()["credits_spent"]) == (0, 100)
    item = mirror.balance(customer, packs["weather"])
    assert (item["granted"], item["used"], item["ceiling"]) == (200, 200, 199)  # the freeze lifted
    assert balance(BUYER, "weather").remaining == 0
    assert not [e for e in mailoutbox if "taken back" in e.subject]  # (the usage recorded may warn it runs low)
    assert not LedgerEntry.objects.filter(kind="refund").exists()


def test_staff_give_an_order_without_an_email_its_buyer_and_its_lines_are_granted_once(
    client, staff, shopify, packs, mirror, mailoutbox, committed
):
    order = event("orders_paid")
    order["email"] = order["contact_email"] = None
    order["customer"]["email"] = None
    shopify("orders/paid", order)
    waiting = Purchase.objects.filter(status="no_email").order_by("pk")
    assert [p.product.slug for p in waiting] == ["weather", "maps"]  # what they were, kept for staff
    client.force_login(staff)
    url = reverse("admin:ledger_purchase_changelist")
    chosen = {"action": "set_buyer", "_selected_action": [waiting[0].pk]}

    page = client.post(url, chosen)
    assert page.status_code == 200 and "Set the buyer and grant" in page.content.decode()
    with committed():
        done = client.post(url, {**chosen, "set_buyer": "1", "email": BUYER})
    again = client.post(url, {**chosen, "set_buyer": "1", "email": BUYER})  # nothing waits any more

    assert done.status_code == again.status_code == 302
    assert (balance(BUYER, "weather").granted, balance(BUYER, "maps").granted) == (200, 500)
    assert sorted(Purchase.objects.values_list("status", flat=True)) == ["applied", "applied", "other"]
    assert LedgerEntry.objects.count() == 2 and len(mailoutbox) == 2  # a welcome email, then credits added
