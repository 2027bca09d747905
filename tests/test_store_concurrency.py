"""The store doors under concurrency: signed Shopify deliveries (orders, refunds, cancellations) for several
customers of the same two products at once, with and without `sync_usage` recording the gate's spending
beside them, answer 200 and store each grant and take-back exactly once, with no deadlock and no retry.
A transaction Postgres breaks off for another reason (a lock held by someone else) is run once more;
broken off twice, the door answers 503 and writes nothing (ledger/store/retry.py)."""

import json
import logging
import threading
import time
import uuid

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.test import Client

from accounts.models import Customer
from ledger.models import Balance, LedgerEntry, Purchase
from ledger.store.models import RefundLine, StoreRefund
from ledger.usage import mirror_usage_pull
from tests.test_shopify_webhook import URL, headers

SKUS = {"weather": "WTHR-100", "maps": "MAPS-500"}  # 100 and 500 credits a unit
CREDITS = {"weather": 100, "maps": 500}
RETRIED = "running it once more"


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
def test_orders_refunds_and_cancellations_of_the_same_products_at_once_all_land(packs, mirror, caplog):
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

    with caplog.at_level(logging.WARNING, logger="ledger.store.retry"):
        answers = post_at_once(deliveries)

    assert answers == [200] * len(deliveries)
    assert [r.message for r in caplog.records if RETRIED in r.message] == []  # no deadlock, not even retried
    for i, email in enumerate(customers):
        for slug, credits in CREDITS.items():  # three orders granted, two of them taken back, once each
            assert (granted(email, slug), taken(email, slug)) == (credits, 2 * credits)
            assert LedgerEntry.objects.filter(customer__email=email, product__slug=slug, kind="purchase").count() == 3
        for line in Purchase.objects.filter(email=email):
            assert line.credits_refunded == (0 if line.order_id == str(3000 + i) else line.credits)
    assert StoreRefund.objects.count() == 8 and RefundLine.objects.count() == 16


@pytest.mark.django_db(transaction=True)
def test_refunds_while_sync_usage_records_the_gate_s_spending_all_land(packs, mirror, caplog):
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

    with caplog.at_level(logging.WARNING, logger="ledger.store.retry"):
        answers = post_at_once(deliveries, beside=sync_usage)
        mirror_usage_pull()

    assert answers == [200] * len(deliveries)
    assert [r.message for r in caplog.records if RETRIED in r.message] == []
    for email in customers:  # the 3 spent recorded once (by the refund, or the pull), the rest taken back
        for slug, credits in CREDITS.items():
            assert (used(email, slug), taken(email, slug), granted(email, slug)) == (3, 2 * credits - 3, 3)
    for email in others:
        for slug, credits in CREDITS.items():
            assert (used(email, slug), granted(email, slug)) == (3, credits)
    assert StoreRefund.objects.count() == 12


# --- broken off by someone else's lock ----------------------------------------------------------


class Holder:
    """Another client of the database (a script, a staff session) holding row locks in its own transaction."""

    def __init__(self) -> None:
        db = settings.DATABASES["default"]
        self.conn = psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"])
        self.conn.execute("SET deadlock_timeout = '30s'")  # the door's transaction is the one Postgres breaks off

    def lock(self, sql: str, params: list) -> None:
        self.conn.execute(sql, params)

    def balance(self, email: str, slug: str) -> None:
        pk = Balance.objects.get(customer__email=email, product__slug=slug).pk
        self.lock("SELECT 1 FROM ledger_balance WHERE id = %s FOR UPDATE", [pk])

    def order(self, order_id: int) -> None:
        self.lock("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"store-order:{order_id}"])

    def until_someone_waits(self) -> None:
        for _ in range(200):
            self.conn.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
            waiting = self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.02)
        raise AssertionError("nobody waits for the holder's locks")

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


@pytest.fixture
def holder():
    held = Holder()
    yield held
    held.close()


def in_thread(run) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def go() -> None:
        try:
            result["response"] = run()
        finally:
            connection.close()

    thread = threading.Thread(target=go)
    thread.start()
    return thread, result


BUYER = "buyer@load.test"


@pytest.mark.django_db(transaction=True)
def test_a_cancellation_broken_off_by_a_deadlock_is_run_once_more(packs, mirror, holder, caplog):
    assert post("orders/paid", order(1000, BUYER, ["weather", "maps"])).status_code == 200
    holder.balance(BUYER, "maps")
    with caplog.at_level(logging.WARNING, logger="ledger.store.retry"):
        cancel, result = in_thread(lambda: post("orders/cancelled", order(1000, BUYER, ["weather", "maps"])))
        holder.until_someone_waits()  # the cancellation holds the weather balance and waits for maps
        holder.balance(BUYER, "weather")  # a cycle: Postgres breaks the cancellation off
        holder.until_someone_waits()  # its second run waits for the holder
        holder.close()
        cancel.join()

    response = result["response"]
    assert response.status_code == 200, response.content
    assert (response.json()["credits_taken"], response.json()["duplicate"]) == (600, False)
    assert [r.message.split(":")[0] for r in caplog.records if RETRIED in r.message] == [
        "Shopify webhook " + response.json()["webhook_id"] + " (orders/cancelled)"
    ]
    assert (granted(BUYER, "weather"), granted(BUYER, "maps")) == (0, 0)
    assert (taken(BUYER, "weather"), taken(BUYER, "maps")) == (100, 500)  # once
    assert StoreRefund.objects.count() == 1 and RefundLine.objects.count() == 2
    assert mirror.balance(Customer.objects.get(), packs["maps"])["granted"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_refund_broken_off_twice_is_a_503_that_writes_nothing_and_shopify_s_retry_lands_once(
    packs, mirror, holder, app_rows
):
    assert post("orders/paid", order(1000, BUYER, ["weather", "maps"])).status_code == 200
    before = app_rows()
    maps_item = mirror.balance(Customer.objects.get(), packs["maps"])
    webhook_id = str(uuid.uuid4())
    holder.balance(BUYER, "maps")
    delivery, result = in_thread(lambda: post("refunds/create", refund(5000, 1000), webhook_id=webhook_id))
    holder.until_someone_waits()  # the refund holds the order and the weather balance, waits for maps
    holder.balance(BUYER, "weather")  # broken off; its second run holds the order, waits for weather
    holder.until_someone_waits()
    holder.order(1000)  # broken off again
    holder.close()
    delivery.join()

    response = result["response"]
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert "deadlock" in response.json()["detail"]
    assert app_rows() == before  # not even the delivery is recorded
    assert mirror.balance(Customer.objects.get(), packs["maps"]) == maps_item  # the gate's freeze undone

    again = post("refunds/create", refund(5000, 1000), webhook_id=webhook_id)  # Shopify's retry

    assert (again.status_code, again.json()["credits_taken"], again.json()["redelivery"]) == (200, 600, False)
    assert (taken(BUYER, "weather"), taken(BUYER, "maps")) == (100, 500)


@pytest.mark.django_db(transaction=True)
def test_a_zapier_order_broken_off_by_a_deadlock_is_run_once_more(packs, mirror, holder, caplog):
    assert post("orders/paid", order(1000, BUYER, ["weather", "maps"])).status_code == 200
    zap = {"order_id": "z1", "line_id": "1,2", "email": BUYER, "product": "WTHR-100,MAPS-500", "quantity": "1,1"}

    def deliver():
        auth = f"Bearer {settings.ZAPIER_WEBHOOK_SECRET}"
        return Client(raise_request_exception=False).post(
            "/api/purchases/zapier/", json.dumps(zap), content_type="application/json", HTTP_AUTHORIZATION=auth
        )

    holder.balance(BUYER, "maps")
    with caplog.at_level(logging.WARNING, logger="ledger.store.retry"):
        zapier, result = in_thread(deliver)
        holder.until_someone_waits()  # the order holds the weather balance and waits for maps
        holder.balance(BUYER, "weather")
        holder.until_someone_waits()
        holder.close()
        zapier.join()

    response = result["response"]
    assert response.status_code == 201, response.content
    assert [r.message.split(":")[0] for r in caplog.records if RETRIED in r.message] == ["Zapier order z1"]
    assert (granted(BUYER, "weather"), granted(BUYER, "maps")) == (200, 1000)
    assert Purchase.objects.filter(order_id="z1").count() == 2
    assert LedgerEntry.objects.filter(purchase__order_id="z1").count() == 2
