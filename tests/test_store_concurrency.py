"""The store doors under concurrency: signed Shopify deliveries (orders, refunds, cancellations) for several
customers of the same two products at once, with and without `sync_usage` recording the gate's spending
beside them, answer 200 and store each grant and take-back exactly once, with no deadlock."""

import json
import threading

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client

from ledger.models import Balance, LedgerEntry, Purchase
from ledger.store.models import RefundLine, StoreRefund
from ledger.usage import mirror_usage_pull
from tests.test_shopify_webhook import URL, headers

SKUS = {"weather": "WTHR-100", "maps": "MAPS-500"}  # 100 and 500 credits a unit
CREDITS = {"weather": 100, "maps": 500}


@pytest.fixture
def packs(products):
    from ledger.services import product_upsert

    product_upsert(slug="weather", name="Weather API", skus=["WTHR-100:100"])
    product_upsert(slug="maps", name="Maps API", skus=["MAPS-500:500"])
    return products


def order(order_id: int, email: str, slugs: list[str]) -> dict:
    """A Shopify order of one unit of each product, its lines in the order given."""
    lines = [{"id": order_id * 10 + i, "quantity": 1, "price": "9.00", "sku": SKUS[s]} for i, s in enumerate(slugs)]
    return {"id": order_id, "email": email, "currency": "USD", "line_items": lines,
            "customer": {"email": email, "first_name": "Load", "last_name": "Test"}}  # fmt: skip


def refund(refund_id: int, order_id: int) -> dict:
    """A Shopify refund of both lines of `order`."""
    items = [{"line_item_id": order_id * 10 + i, "quantity": 1} for i in range(2)]
    return {"id": refund_id, "order_id": order_id, "note": "load", "refund_line_items": items}


def post(topic: str, payload: dict, *, webhook_id: str | None = None):
    body = json.dumps(payload).encode()
    client = Client(raise_request_exception=False)  # a 500 is an answer here, in whichever thread
    return client.post(URL, body, content_type="application/json", **headers(topic, body, webhook_id=webhook_id))


def post_at_once(deliveries: list[tuple[str, dict]], *, beside=None) -> list[int]:
    """Each delivery by its own thread and connection, released together (and `beside()` in one more thread,
    told to stop by the event it is given once the deliveries are answered). Their status codes."""
    start = threading.Barrier(len(deliveries) + (beside is not None))
    answers: list = [None] * len(deliveries)
    done = threading.Event()
    failures: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            start.wait()
            answers[i] = post(*deliveries[i]).status_code
        finally:
            connection.close()

    def alongside() -> None:
        try:
            start.wait()
            beside(done)
        except BaseException as e:  # asserted below
            failures.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(deliveries))]
    if beside is not None:
        threads.append(threading.Thread(target=alongside))
    for t in threads:
        t.start()
    for t in threads[: len(deliveries)]:
        t.join()
    done.set()
    for t in threads[len(deliveries) :]:
        t.join()
    assert failures == []
    return answers


def granted(email: str, slug: str) -> int:
    return Balance.objects.get(customer__email=email, product__slug=slug).granted


def taken(email: str, slug: str) -> int:
    entries = LedgerEntry.objects.filter(customer__email=email, product__slug=slug, kind="refund")
    return -(entries.aggregate(s=Sum("amount"))["s"] or 0)


def used(email: str, slug: str) -> int:
    entries = LedgerEntry.objects.filter(customer__email=email, product__slug=slug, kind="usage")
    return -(entries.aggregate(s=Sum("amount"))["s"] or 0)


@pytest.mark.django_db(transaction=True)
def test_orders_refunds_and_cancellations_of_the_same_products_at_once_all_land(packs, mirror):
    """Each customer's orders list the two products in either order; a refund, a cancellation and a new
    order of the same customer run at once (three orders: three order locks, the same two balances)."""
    customers = [f"buyer{i}@load.test" for i in range(4)]
    for i, email in enumerate(customers):
        assert post("orders/paid", order(1000 + i, email, ["weather", "maps"])).status_code == 200
        assert post("orders/paid", order(2000 + i, email, ["maps", "weather"])).status_code == 200
    deliveries = []
    for i, email in enumerate(customers):
        deliveries += [
            ("orders/paid", order(3000 + i, email, ["maps", "weather"] if i % 2 else ["weather", "maps"])),
            ("refunds/create", refund(5000 + i, 1000 + i)),
            ("orders/cancelled", {**order(2000 + i, email, ["maps", "weather"]), "cancel_reason": "customer"}),
        ]

    answers = post_at_once(deliveries)

    assert answers == [200] * len(deliveries)
    for i, email in enumerate(customers):
        for slug, credits in CREDITS.items():  # three orders granted, two of them taken back, once each
            assert (granted(email, slug), taken(email, slug)) == (credits, 2 * credits)
            assert LedgerEntry.objects.filter(customer__email=email, product__slug=slug, kind="purchase").count() == 3
        for line in Purchase.objects.filter(email=email):
            assert line.credits_refunded == (0 if line.order_id == str(3000 + i) else line.credits)
    assert StoreRefund.objects.count() == 8 and RefundLine.objects.count() == 16


@pytest.mark.django_db(transaction=True)
def test_refunds_while_sync_usage_records_the_gate_s_spending_all_land(packs, mirror):
    """`sync_usage` records other customers' spending of both products while refunds and cancellations,
    each recording what the gate spent of its balances first, commit their rollups."""
    others = [f"other{i}@load.test" for i in range(14)]
    customers = [f"buyer{i}@load.test" for i in range(6)]
    for i, email in enumerate(others):  # first: the pull reaches their balances first
        assert post("orders/paid", order(9000 + i, email, ["weather", "maps"])).status_code == 200
    for i, email in enumerate(customers):
        assert post("orders/paid", order(1000 + i, email, ["weather", "maps"])).status_code == 200
        assert post("orders/paid", order(2000 + i, email, ["weather", "maps"])).status_code == 200
    for balance in Balance.objects.select_related("customer", "product"):
        mirror.spend(balance.customer, balance.product, 3)

    def sync_usage(done: threading.Event) -> None:
        while not done.is_set():
            mirror_usage_pull()

    deliveries = []
    for i, email in enumerate(customers):
        deliveries += [
            ("refunds/create", refund(5000 + i, 1000 + i)),
            ("orders/cancelled", {**order(2000 + i, email, ["weather", "maps"]), "cancel_reason": "customer"}),
        ]

    answers = post_at_once(deliveries, beside=sync_usage)
    mirror_usage_pull()

    assert answers == [200] * len(deliveries)
    for email in customers:  # the 3 spent recorded once (by the refund, or the pull), the rest taken back
        for slug, credits in CREDITS.items():
            assert (used(email, slug), taken(email, slug), granted(email, slug)) == (3, 2 * credits - 3, 3)
    for email in others:
        for slug, credits in CREDITS.items():
            assert (used(email, slug), granted(email, slug)) == (3, credits)
    assert StoreRefund.objects.count() == 12
