"""The store's webhooks: Postgres queries per call, and mirror writes per order.

Both doors, in this process, through Django's test client against a database of its own
(creditportal_bench_store, migrated, emptied each run) and a moto server in its own process
for the mirror; every call commits for real, so the after-commit work (the mirror write, the
email) is counted too: every query the request runs, from the first to the last.

* a repeat one-line purchase: a known customer buys again, one order line (Zapier: a SKU;
  Shopify: a signed `orders/paid` with one line item). Goal: at most 12 queries per call.
* a 10-line Shopify order whose lines are of 2 products: mirror writes (DynamoDB requests that
  write) per order. Goal: one per (customer, product), so 2.
* a redelivery of that order (the same webhook id, and under another webhook id).

Run: .venv/bin/python bench/store_webhooks.py [--repeat 20]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from _gate import BASE_ENV, start_moto
from _postgres import database_create
from _report import Ratio, command, report
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "postgres://postgres@127.0.0.1:5432/creditportal_bench_store"
TABLE = "creditportal-bench-store"
SHOPIFY_SECRET, ZAPIER_SECRET = "bench-shopify-secret", "bench-zapier-secret"
GOAL_QUERIES = 12
BUYER = "repeat.buyer@example.com"


def django_setup(endpoint: str) -> None:
    os.environ.update(BASE_ENV | {"MIRROR_TABLE": TABLE, "AWS_ENDPOINT_URL": endpoint, "MIRROR_ENABLED": "true"})
    os.environ.update({"DATABASE_URL": DATABASE, "DJANGO_DEBUG": "1", "DJANGO_LOG_LEVEL": "WARNING"})
    os.environ.update({"SHOPIFY_WEBHOOK_SECRET": SHOPIFY_SECRET, "ZAPIER_WEBHOOK_SECRET": ZAPIER_SECRET})
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditportal.settings")
    sys.path.insert(0, str(ROOT))
    database_create(DATABASE)
    import django

    django.setup()


def prepare() -> None:
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    from ledger.services import product_upsert

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables WHERE schemaname = 'public'"
            " AND (tablename LIKE 'ledger\\_%%' OR tablename LIKE 'accounts\\_%%')"
        )
        (tables,) = cursor.fetchone()
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    call_command("create_mirror_table", stdout=StringIO())
    product_upsert(slug="weather", name="Weather API", api_ids=["wthr000001"], skus=["WTHR-100:100"],
                   variants=["39072856:100"])  # fmt: skip
    product_upsert(slug="maps", name="Maps API", api_ids=["maps000001"], skus=["MAPS-500:500"],
                   variants=["49148385:500"])  # fmt: skip


class Counter:
    """Postgres queries (a connection execute wrapper) and mirror writes (botocore's before-call event)."""

    WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}

    def __init__(self) -> None:
        from django.db import connection

        from ledger.mirror.client import mirror_client

        self.queries = self.writes = 0
        connection.execute_wrappers.append(self._query)
        mirror_client().meta.events.register("before-call.dynamodb", self._call)

    def _query(self, execute, sql, params, many, context):
        self.queries += 1
        if os.getenv("BENCH_SQL"):
            print("   SQL", sql[:140])
        return execute(sql, params, many, context)

    def _call(self, model, **kwargs) -> None:
        if model.name in self.WRITES:
            self.writes += 1

    def measure(self, post) -> tuple[int, int, object]:
        self.queries = self.writes = 0
        response = post()
        return self.queries, self.writes, response


def shopify_post(client, order: dict, webhook_id: str | None = None):
    body = json.dumps(order).encode()
    signature = base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return client.post(
        "/api/purchases/shopify/", body, content_type="application/json",
        HTTP_X_SHOPIFY_TOPIC="orders/paid", HTTP_X_SHOPIFY_HMAC_SHA256=signature,
        HTTP_X_SHOPIFY_WEBHOOK_ID=webhook_id or str(uuid.uuid4()),
    )  # fmt: skip


def order(order_id: int, lines: list[tuple[str | None, int, int]]) -> dict:
    """A Shopify Order with these (sku, variant id, quantity) line items."""
    return {
        "id": order_id, "email": BUYER, "currency": "EUR", "financial_status": "paid",
        "customer": {"id": 207119551, "email": BUYER, "first_name": "Repeat", "last_name": "Buyer"},
        "line_items": [
            {"id": order_id * 100 + i, "sku": sku, "variant_id": variant, "quantity": quantity, "price": "9.00",
             "title": "Credits"}
            for i, (sku, variant, quantity) in enumerate(lines)
        ],
    }  # fmt: skip


def main(repeat: int) -> None:
    moto, url = start_moto()
    try:
        django_setup(url)
        from django.test import Client

        prepare()
        counter = Counter()
        zapier = Client(HTTP_AUTHORIZATION=f"Bearer {ZAPIER_SECRET}")
        shopify = Client()
        first = zapier.post("/api/purchases/zapier/", {"order_id": "1", "email": BUYER, "product": "WTHR-100",
                            "quantity": 1}, content_type="application/json")  # fmt: skip
        assert first.status_code == 201, first.content
        zap, shop, times = [], [], []
        for i in tqdm(range(repeat), desc="repeat one-line purchases (both doors)", unit="pair"):
            data = {"order_id": f"z{i}", "email": BUYER, "product": "WTHR-100", "quantity": 1}
            t0 = time.perf_counter()
            queries, _, response = counter.measure(
                lambda data=data: zapier.post("/api/purchases/zapier/", data, content_type="application/json")
            )
            times.append(time.perf_counter() - t0)
            assert response.status_code == 201, response.content
            zap.append(queries)
            queries, _, response = counter.measure(
                lambda i=i: shopify_post(shopify, order(9000 + i, [("WTHR-100", 1, 1)]))
            )
            assert response.status_code == 200 and response.json()["lines"][0]["status"] == "applied", response.content
            shop.append(queries)
        lines = [("WTHR-100", 39072856, 1) if i % 2 else (None, 49148385, 2) for i in range(10)]
        big = order(777001, lines)
        webhook_id = str(uuid.uuid4())
        big_queries, big_writes, response = counter.measure(lambda: shopify_post(shopify, big, webhook_id))
        assert (
            response.status_code == 200
            and sum(line["credits"] for line in response.json()["lines"]) == 5 * 100 + 5 * 1000
        )
        again_q, again_w, _ = counter.measure(lambda: shopify_post(shopify, big, webhook_id))
        other_q, other_w, response = counter.measure(lambda: shopify_post(shopify, big))
        assert all(line["recorded_before"] for line in response.json()["lines"])
    finally:
        moto.terminate()
    zap_q, shop_q = statistics.median(zap), statistics.median(shop)
    report(
        "store_webhooks",
        title="Store webhooks: Postgres queries per call, mirror writes per order (every query of the request, "
        "after-commit work included)",
        lines=[
            f"repeat one-line purchase, Zapier door:   {zap_q:g} queries per call (median of {repeat}; "
            f"min {min(zap)}, max {max(zap)}); {statistics.median(times) * 1000:.0f} ms",
            f"repeat one-line purchase, Shopify door:  {shop_q:g} queries per call (min {min(shop)}, max {max(shop)})",
            f"10-line Shopify order, 2 products:       {big_writes} mirror writes, {big_queries} queries",
            f"  the same delivery again (webhook id):  {again_w} mirror writes, {again_q} queries",
            f"  the same order, another webhook id:    {other_w} mirror writes, {other_q} queries",
        ],
        ratios=[
            Ratio("Zapier repeat purchase: queries per call / 12", zap_q / GOAL_QUERIES, 1.0),
            Ratio("Shopify repeat purchase: queries per call / 12", shop_q / GOAL_QUERIES, 1.0),
            Ratio("10-line order: mirror writes / (customer, product) pairs", big_writes / 2, 1.0),
        ],
        reproduce=command(".venv/bin/python", "bench/store_webhooks.py", "--repeat", repeat),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    main(parser.parse_args().repeat)
