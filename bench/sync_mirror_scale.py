"""`sync_mirror` over N balances against raw BatchWriteItem of the same N items, to the same moto server.

Postgres gets N balances (customers with users and credentials, two products),
inserted with SQL (INSERT ... SELECT generate_series) and reused when already
there. Then, on a fresh moto server in its own process:

  (a) raw BatchWriteItem of the N items balance_values builds (25 per request,
      MIRROR_WRITE_THREADS threads) into an empty table: the floor;
  (b) `sync_mirror` into an empty table (one conditional write per item, a
      PutItem that lands only where no item is: `used` belongs to the gate, so
      an unconditional batch put is not allowed);
  (c) `sync_mirror` again, over a table already current (one consistent scan,
      nothing to write);
  (d) `sync_mirror --check`.

Each run goes through the real management command (call_command), with the
mirror enabled and AWS_ENDPOINT_URL at moto.

Where the time goes (profiled): Postgres is read in a fixed number of queries
per 500 balances; moto's CPU is the bottleneck, ~30 ms to parse each
conditional UpdateItem, ~5 ms to serialise each item a scan returns. So the
default 100k run takes most of an hour on moto (see the per-item figures).

Run: .venv/bin/python bench/sync_mirror_scale.py [--items 100000] [--database-url URL]
"""

import argparse
import io
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _gate import BASE_ENV, start_moto
from _postgres import database_create
from _report import Ratio, command, report
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/creditportal_bench_sync"
TABLE = "creditportal-bench-sync"
PRODUCTS = [("weather", "wthr000001", 1), ("maps", "maps000001", 2)]  # slug, API id, cost per call

# Goals (at most), against (a), 25 items per unconditional BatchWriteItem:
# (b) every item needs a request of its own, because its write is conditional
#     (a batch cannot carry conditions, and an unconditional put could clobber
#     `used` or a newer state). On moto a conditional PutItem costs ~5-6x a
#     batched item (a conditional UpdateItem ~20x: moto parses the expression
#     for ~30 ms); so at most 8x.
# (c), (d) read every item once (one consistent scan). moto serialises each
#     item it returns attribute by attribute, ~5 ms of its CPU per item, about
#     4x what a batched put costs it: at most 6x. On DynamoDB a scan costs a
#     small fraction of the writes. (c)/(d): with nothing to change, a sync
#     costs about one read of the mirror (no writes): at most 1.3.
GOAL_FILL, GOAL_CURRENT, GOAL_CHECK, GOAL_CURRENT_VS_CHECK = 8.0, 6.0, 6.0, 1.3


def django_setup(database_url: str, endpoint: str) -> None:
    os.environ.update(BASE_ENV | {"MIRROR_TABLE": TABLE, "AWS_ENDPOINT_URL": endpoint})
    os.environ.update({"DATABASE_URL": database_url, "MIRROR_ENABLED": "true", "DJANGO_DEBUG": "1"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditportal.settings")
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    database_create(database_url)
    import django

    django.setup()


def populate(items: int) -> None:
    """N balances over ceil(N/2) customers (two products each), in SQL; reused when already there."""
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    from ledger.models import Balance
    from ledger.services import product_upsert

    call_command("migrate", verbosity=0)
    if Balance.objects.count() == items:
        print(f"Postgres: {items} balances already there, reused")
        return
    customers = (items + 1) // 2
    steps = [
        (
            "empty",
            """TRUNCATE ledger_mirroroutbox, ledger_balance, accounts_credential, accounts_customer, accounts_user
            RESTART IDENTITY CASCADE""",
            [],
        ),
        (
            "users",
            """INSERT INTO accounts_user (password, is_superuser, email, name, is_staff, is_active, date_joined)
            SELECT '!', false, 'bench' || i || '@example.com', 'Bench ' || i, false, true, now()
            FROM generate_series(1, %s) AS i""",
            [customers],
        ),
        (
            "customers",
            """INSERT INTO accounts_customer (version, public_id, user_id, email, name, status, created)
            SELECT 0, 'cus_bench' || lpad(u.id::text, 8, '0'), u.id, u.email, u.name,
                   CASE WHEN u.id %% 50 = 0 THEN 'suspended' ELSE 'active' END, now()
            FROM accounts_user u WHERE u.email LIKE 'bench%%@example.com'""",
            [],
        ),
        # One live credential each; every 10th a second live one, every 7th a revoked one.
        (
            "credentials",
            """INSERT INTO accounts_credential (customer_id, client_id, secret_hash, secret_last4,
                   secret_version, created, revoked_at)
            SELECT c.id, 'cli_bench' || lpad(c.id::text, 8, '0') || '_' || n, repeat('0', 64), 'xxxx', n, now(),
                   CASE WHEN n = 3 THEN now() END
            FROM accounts_customer c CROSS JOIN generate_series(1, 3) AS n
            WHERE n = 1 OR (n = 2 AND c.id %% 10 = 0) OR (n = 3 AND c.id %% 7 = 0)""",
            [],
        ),
        (
            "balances",
            """INSERT INTO ledger_balance (customer_id, product_id, granted, used, updated, version)
            SELECT c.id, p.id, 100 + c.id %% 1000, c.id %% 100, now(), c.id %% 3
            FROM accounts_customer c CROSS JOIN ledger_product p
            WHERE p.slug IN ('weather', 'maps')
            ORDER BY c.id, p.slug LIMIT %s""",
            [items],
        ),
    ]
    with override_settings(MIRROR_ENABLED=False):  # the products' routes are written by sync_mirror itself
        for slug, api_id, cost in PRODUCTS:
            product_upsert(slug=slug, name=slug.title(), api_ids=[api_id], cost_per_call=cost)
    with tqdm(total=len(steps), desc="populate Postgres", unit="step") as bar, connection.cursor() as cursor:
        for what, sql, params in steps:
            bar.set_postfix_str(what)
            cursor.execute(sql, params)
            bar.update(1)
        cursor.execute("ANALYZE")
    assert Balance.objects.count() == items


def expected_items() -> list[dict]:
    """The items sync_mirror would write: balance_values plus key and `used`, built the same way."""
    from ledger.mirror.items import balance_key, balance_values, balances_for_mirror

    return [
        balance_key(b) | balance_values(b) | {"used": {"N": str(b.used)}}
        for b in tqdm(balances_for_mirror().iterator(chunk_size=2000), desc="build items", unit="item", mininterval=1)
    ]


def raw_batch_write(client, table: str, items: list[dict], threads: int) -> float:
    batches = [items[i : i + 25] for i in range(0, len(items), 25)]
    bar = tqdm(total=len(items), desc="(a) raw BatchWriteItem", unit="item", mininterval=1)
    lock = threading.Lock()

    def write(batch: list[dict]) -> None:
        requests = {table: [{"PutRequest": {"Item": item}} for item in batch]}
        while requests:
            requests = client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or None
        with lock:
            bar.update(len(batch))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, batches))
    elapsed = time.perf_counter() - t0
    bar.close()
    return elapsed


def sync_mirror(*args: str) -> tuple[float, str]:
    from django.core.management import call_command

    out = io.StringIO()
    t0 = time.perf_counter()
    call_command("sync_mirror", *args, stdout=out, stderr=sys.stderr)
    return time.perf_counter() - t0, out.getvalue().strip()


def main(items: int, database_url: str) -> None:
    moto, url = start_moto()
    try:
        django_setup(database_url, url)
        from django.conf import settings

        from authorizer import mirror
        from ledger.mirror.client import mirror_client, mirror_reader, scan

        t0 = time.perf_counter()
        populate(items)
        populate_s = time.perf_counter() - t0
        threads = settings.MIRROR_WRITE_THREADS
        client = mirror_client()
        values = expected_items()

        client.create_table(TableName=f"raw-{TABLE}", **mirror.TABLE_DEFINITION)
        raw = raw_batch_write(client, f"raw-{TABLE}", values, threads)
        client.delete_table(TableName=f"raw-{TABLE}")  # (b) then starts from the same server state as (a)

        client.create_table(TableName=TABLE, **mirror.TABLE_DEFINITION)
        fill, fill_out = sync_mirror()
        current, current_out = sync_mirror()
        check, check_out = sync_mirror("--check")

        keys = scan(mirror_reader(), ConsistentRead=True, ProjectionExpression="pk")  # keys only: cheap to serialise
        balance_items = sum(1 for item in keys if item["pk"]["S"].startswith("CUSTOMER#"))
        assert balance_items == items, (balance_items, items)
        assert check_out == "no drift: the mirror matches Postgres", check_out

        def per_item(seconds: float) -> str:
            return f"{seconds / items * 1e3:7.3f} ms/item"

        report(
            "sync_mirror_scale",
            title=f"sync_mirror over {items} balances vs raw BatchWriteItem of the same items (moto, own process)",
            lines=[
                f"Postgres populate (or reuse): {populate_s:.1f} s; {threads} threads (MIRROR_WRITE_THREADS)",
                f"(a) raw BatchWriteItem, 25/request, empty table  {raw:8.1f} s  {per_item(raw)}",
                f"(b) sync_mirror, empty table                      {fill:8.1f} s  {per_item(fill)}   {fill_out}",
                f"(c) sync_mirror, table current                    {current:8.1f} s  {per_item(current)}   {current_out}",
                f"(d) sync_mirror --check                           {check:8.1f} s  {per_item(check)}   {check_out}",
                f"afterwards: {balance_items} balance items in the mirror, --check finds no drift",
            ],
            ratios=[
                Ratio("(b) sync_mirror into an empty table / (a) raw batch", fill / raw, GOAL_FILL),
                Ratio("(c) sync_mirror over a current table / (a) raw batch", current / raw, GOAL_CURRENT),
                Ratio("(d) sync_mirror --check / (a) raw batch", check / raw, GOAL_CHECK),
                Ratio("(c) sync_mirror over a current table / (d) --check", current / check, GOAL_CURRENT_VS_CHECK),
            ],
            reproduce=command(".venv/bin/python", "bench/sync_mirror_scale.py", "--items", items),
        )
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.getenv("BENCH_DATABASE_URL", DEFAULT_DB))
    args = parser.parse_args()
    main(args.items, args.database_url)
