"""Failed calls credited back per second from one full CloudWatch Logs batch, against `usage_record` per second.

A subscription delivery holds at most 10,000 log events. This builds one as CloudWatch does
(gzip, base64) with 10,000 failed calls of C customers (each with a balance), and runs it through
`failed_calls_event_record` (what the Lambda entry point and `record_failed_calls` run), on the
same Postgres and in the same process as:

  (a) `usage_record`, one call per recorded spend (the service every other credit change is
      shaped like: one transaction per entry, under the balance's lock), for U entries;
  (b) the batch credited back, the mirror on: one transaction per (customer, product), its
      entries inserted together, the balance moved once, its item rewritten after commit on a
      moto server (its own process);
  (c) the same batch delivered again (CloudWatch delivers at least once): nothing to credit;
  (d) the batch credited back with the mirror off: Postgres' share of (b).

Ratios: refunds per second / usage_record entries per second (b/a and d/a), and the redelivery's
lines per second / usage_record's (c/a). No goal: how much headroom a burst of failures has.

Run: .venv/bin/python bench/failed_call_refunds.py [--customers 200] [--usage 2000] [--database-url URL]
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from _gate import BASE_ENV, start_moto
from _postgres import database_create
from _report import Ratio, command, report
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/creditportal_bench_refunds"
TABLE = "creditportal-bench-refunds"
BATCH = 10_000  # log events in one CloudWatch Logs subscription delivery, at most


def django_setup(database_url: str, endpoint: str) -> None:
    os.environ.update(BASE_ENV | {"MIRROR_TABLE": TABLE, "AWS_ENDPOINT_URL": endpoint})
    os.environ.update({"DATABASE_URL": database_url, "MIRROR_ENABLED": "true", "DJANGO_DEBUG": "1"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditportal.settings")
    os.environ["DJANGO_LOG_LEVEL"] = "ERROR"  # the batch logs a line per balance
    sys.path.insert(0, str(ROOT))
    database_create(database_url)
    import django

    django.setup()


def prepare(customers: int):
    """A clean ledger: product weather, `customers` customers with 1,000,000 credits each, items mirrored."""
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    from accounts.models import Customer, User
    from ledger.services import credits_grant, product_upsert

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE ledger_ledgerentry, ledger_balance, ledger_mirroroutbox, accounts_credential, accounts_apikey,"
            " accounts_customer, accounts_user RESTART IDENTITY CASCADE"
        )
    call_command("create_mirror_table", stdout=StringIO())
    product, _ = product_upsert(slug="weather", name="Weather API", api_ids=["wthr000001"])
    made = []
    for i in tqdm(range(customers), desc="customers", unit="customer", file=sys.stderr, mininterval=2):
        user = User.objects.create_user(f"bench{i}@example.com", None, name=f"Bench {i}")
        customer = Customer.objects.create(user=user, email=user.email, name=user.name)
        credits_grant(customer=customer, product=product, amount=1_000_000)
        made.append(customer)
    return product, made


def batch_event(product, customers) -> dict:
    from ledger.access_logs import subscription_event_encode

    lines = [
        json.dumps(
            {
                "requestId": str(uuid.uuid4()),
                "requestTime": "03/Dec/2026:17:20:00 +0000",
                "status": "502",
                "route": "GET /hello",
                "customerId": customers[i % len(customers)].public_id,
                "product": product.slug,
                "cost": "1",
                "credentialId": "-",
            },
            separators=(",", ":"),
        )
        for i in range(BATCH)
    ]
    return subscription_event_encode(lines, log_group="/creditportal/bench/api-access")


def timed(what, *args):
    started = time.perf_counter()
    result = what(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=200, help="customers the batch's calls belong to")
    parser.add_argument("--usage", type=int, default=2000, help="usage_record calls timed")
    parser.add_argument("--database-url", default=DEFAULT_DB)
    args = parser.parse_args()
    moto, endpoint = start_moto()
    try:
        django_setup(args.database_url, endpoint)
        from django.test import override_settings

        from ledger.access_logs import failed_calls_event_record
        from ledger.models import Balance
        from ledger.services import usage_record

        product, customers = prepare(args.customers)

        def usage() -> None:
            for i in tqdm(range(args.usage), desc="usage_record", unit="entry", file=sys.stderr, mininterval=2):
                usage_record(customer=customers[i % len(customers)], product=product, amount=1)

        _, usage_seconds = timed(usage)
        print("refunds: one 10,000-line batch ...", file=sys.stderr, flush=True)
        event = batch_event(product, customers)
        counts, refund_seconds = timed(failed_calls_event_record, event)
        assert (counts.refunded, counts.credits) == (BATCH, BATCH), counts
        again, again_seconds = timed(failed_calls_event_record, event)
        assert (again.refunded, again.already_refunded) == (0, BATCH), again
        with override_settings(MIRROR_ENABLED=False):
            counts_off, off_seconds = timed(failed_calls_event_record, batch_event(product, customers))
        assert counts_off.refunded == BATCH, counts_off
        granted = sum(Balance.objects.values_list("granted", flat=True))
        assert granted == args.customers * 1_000_000 + 2 * BATCH
    finally:
        moto.terminate()
        moto.wait()

    usage_rate = args.usage / usage_seconds
    refund_rate, again_rate, off_rate = BATCH / refund_seconds, BATCH / again_seconds, BATCH / off_seconds
    report(
        "failed_call_refunds",
        title=f"Failed calls credited back: one {BATCH:,}-line CloudWatch Logs batch of {args.customers} customers",
        lines=[
            f"(a) usage_record, {args.usage:,} entries:                 {usage_rate:9.0f} entries/s",
            f"(b) the batch credited back, mirror on (moto):    {refund_rate:9.0f} refunds/s  ({refund_seconds:.2f} s,"
            f" {args.customers} balance items rewritten)",
            f"(c) the same batch delivered again:               {again_rate:9.0f} lines/s    ({again_seconds:.2f} s,"
            " nothing credited)",
            f"(d) the batch credited back, mirror off:          {off_rate:9.0f} refunds/s  ({off_seconds:.2f} s)",
        ],
        ratios=[
            Ratio("refunds/s (b) / usage_record entries/s (a)", refund_rate / usage_rate),
            Ratio("refunds/s, mirror off (d) / usage_record entries/s (a)", off_rate / usage_rate),
            Ratio("redelivered lines/s (c) / usage_record entries/s (a)", again_rate / usage_rate),
        ],
        reproduce=command(
            ".venv/bin/python",
            "bench/failed_call_refunds.py",
            "--customers",
            args.customers,
            "--usage",
            args.usage,
        ),
    )


if __name__ == "__main__":
    main()
