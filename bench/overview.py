"""The admin's overview against Django's stock admin index, on the same databases.

Uses bench/admin_pages.py's two databases (built by it with `generate_series`, with a progress bar;
reused when their row counts match): a large one (default 100,000 customers, 1,000,000 ledger
entries, all of them in the last 30 days, the overview's period) and a small one (1,000 / 10,000).
After the load, which skips triggers, the overview's rollups are built from the ledger
(`rebuild_overview`) and then checked against it (`rebuild_overview --check`), so the figures the
page shows are the ledger's.

In this process, Django's test client logged in as a superuser asks for the stock index
(/admin/apps/: the app list and recent actions, what /admin/ was) and the overview (/admin/: the
figures, the app list beside them) on both databases in turn, counts each page's queries, and takes
the median time of several requests. The overview's own figures are checked against sums over the
large database's ledger.

Goals: the overview on the large database within 3 times the stock index's time there (it reads
rollups of a few hundred rows, never the million entries), within 3 times its own time on the
small database, and in the same number of queries on both.

Run: .venv/bin/python bench/overview.py [--customers 100000] [--entries 1000000] [--repeat 7] [--rebuild]
"""

import argparse
import os
import sys

import admin_pages as ap
from _report import Ratio, report

GOAL_OVER_STOCK = 3.0
GOAL_LARGE_OVER_SMALL = 3.0


def figures_match_the_ledger(client) -> str:
    """The overview's "all products" row against the large database's ledger over the same days."""
    import datetime
    import re

    from django.db import connection

    from ledger.overview.selectors import SERIES, period

    html = client.get("/admin/").content.decode()
    footer = html.split('<tr data-product="">', 1)[1].split("</tr>", 1)[0]
    shown = {k: int(v.replace(",", "")) for k, v in re.findall(r'data-series="(\w+)">(-?[\d,]+)<', footer)}
    first, _ = period()
    since = datetime.datetime.combine(first, datetime.time.min, tzinfo=datetime.UTC)
    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, sum(amount) FROM ledger_ledgerentry WHERE created >= %s GROUP BY 1", [since])
        by_kind = dict(cursor.fetchall())
    expected = {s.key: s.sign * sum(by_kind.get(k, 0) for k in s.kinds) for s in SERIES}
    assert shown == expected, (shown, expected)
    return ", ".join(f"{key} {value:,}" for key, value in shown.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--small-customers", type=int, default=1_000)
    parser.add_argument("--small-entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7, help="requests timed per page and database (median)")
    parser.add_argument("--rebuild", action="store_true", help="build both databases afresh")
    args = parser.parse_args()

    sys.path.insert(0, str(ap.ROOT))
    os.environ["DATABASE_URL"] = f"{ap.SERVER}/{ap.SMALL_DB}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditportal.settings")
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    os.environ["DJANGO_DEBUG"] = "0"
    for name in ["DJANGO_SECRET_KEY", "CREDENTIAL_HASH_KEY", "ZAPIER_WEBHOOK_SECRET"]:
        os.environ.setdefault(name, f"bench-{name.lower()}")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from tqdm import tqdm

    settings.ALLOWED_HOSTS = ["*"]
    from accounts.models import User

    small = ap.Size(ap.SMALL_DB, args.small_customers, args.small_entries)
    large = ap.Size(ap.LARGE_DB, args.customers, args.entries)
    clients = {}
    for size in [small, large]:
        ap.build(size, rebuild=args.rebuild)
        ap._use(size.db)
        call_command("rebuild_overview", "--check")  # the rollups are the ledger's, or this stops here
        clients[size.db] = Client(HTTP_X_FORWARDED_PROTO="https")  # as API Gateway tells production (HTTPS-only)
        clients[size.db].force_login(User.objects.get(email=ap.STAFF_EMAIL))

    ap._use(ap.LARGE_DB)
    matched = figures_match_the_ledger(clients[ap.LARGE_DB])
    stock = ap.Page("stock index (/admin/apps/)", "/admin/apps/", "Ledger entries")
    overview = ap.Page("overview (/admin/)", "/admin/", "Needs a hand")
    for page in tqdm([stock, overview], desc="pages", unit="page"):
        ap.measure(page, [ap.SMALL_DB, ap.LARGE_DB], clients, args.repeat)

    lines = [
        f"small: {small.customers:,} customers, {ap._expected_entries(small):,} ledger entries; "
        + f"large: {large.customers:,} customers, {ap._expected_entries(large):,} ledger entries (all in the period)",
        f"the overview's 30 days on the large database, checked against the ledger's sums: {matched}",
        f"median of {args.repeat} requests per page and database, interleaved, Django test client in-process",
        "",
        *ap.table([stock, overview], 30),
    ]
    ratios = [
        Ratio("large: overview time / stock index time", overview.times[ap.LARGE_DB] / stock.times[ap.LARGE_DB],
              GOAL_OVER_STOCK),
        Ratio("overview time, large / small", overview.times[ap.LARGE_DB] / overview.times[ap.SMALL_DB],
              GOAL_LARGE_OVER_SMALL),
        Ratio("overview queries, large - small", overview.queries[ap.LARGE_DB] - overview.queries[ap.SMALL_DB], 0),
        Ratio("queries: overview / stock index (large)", overview.queries[ap.LARGE_DB] / stock.queries[ap.LARGE_DB]),
        Ratio("stock index time, large / small", stock.times[ap.LARGE_DB] / stock.times[ap.SMALL_DB]),
    ]  # fmt: skip
    report(
        "overview",
        title="Admin overview against the stock admin index at 1M ledger entries: as fast with 100x the rows, within 3x the stock index",
        lines=lines,
        ratios=ratios,
        reproduce=ap.reproduce("bench/overview.py", args),
    )


if __name__ == "__main__":
    main()
