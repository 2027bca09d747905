"""Admin pages with many rows: queries per page and time, on a large database against a small one.

Builds two Postgres databases the same way (SQL `INSERT ... SELECT generate_series`,
never the ORM row by row): a large one (default 100,000 customers, 1,000,000 ledger
entries) and a small one (1,000 / 10,000). Each has a user per customer, a few
products, balances equal to the ledger's sums (as ledger/services.py keeps them),
purchases behind the grants, and one "heavy" customer holding the rest (10% of the entries at the default sizes).
A database whose row counts already match is reused.

Then, in this process, Django's test client logged in as a superuser asks each
admin page of both databases in turn (page by page, small then large, so drift on
this shared machine hits both alike), checks it answers 200 and shows the row it
should, and counts its queries and takes the median time of several requests.

Goal per page: time on the large database / time on the small one <= 3. The large
database has 100x the rows: a page whose work grows with its table (a COUNT(*) of
the whole table, a sequential scan for a search, a sort of every row, a query per
row) is 10x-100x slower there; a page that reads through indexes and fetches one
page of rows costs about the same (a B-tree one level deeper, colder caches).
3 leaves room for that and for noise, and still catches anything linear.

Run: .venv/bin/python bench/admin_pages.py [--customers 100000] [--entries 1000000] [--repeat 5] [--rebuild]
"""

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from _report import Ratio, command, report
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.getenv("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
LARGE_DB = "creditportal_bench_admin"
SMALL_DB = "creditportal_bench_admin_small"
STAFF_EMAIL = "bench.staff@example.com"
GOAL_LARGE_OVER_SMALL = 3.0
# Past ADMIN_EXACT_COUNT_BELOW rows a list swaps its exact count for Postgres' estimate:
# one EXPLAIN more for a filtered list (creditportal/paginator.py). Never one per row.
EXTRA_QUERIES_ALLOWED = 1
PRODUCTS = [  # slug, name, cost per call
    ("weather", "Weather API", 1),
    ("maps", "Maps API", 2),
    ("geocode", "Geocoding API", 1),
    ("translate", "Translation API", 5),
]
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
               "Radia", "John", "Sophie", "Tim", "Hedy", "Linus", "Katherine", "Niklaus", "Shafi", "Guido"]  # fmt: skip
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
              "Ritchie", "Perlman", "McCarthy", "Wilson", "Berners", "Lamarr", "Torvalds", "Johnson", "Wirth",
              "Goldwasser", "Rossum", "Backus", "Kay", "Cerf", "Kahn", "Hoare"]  # fmt: skip
LOADED_TABLES = ["accounts_user", "accounts_customer", "ledger_product", "ledger_purchase", "ledger_ledgerentry",
                 "ledger_balance"]  # fmt: skip
HEAVY_NAME = "Quentin Heavyweather"  # the customer with the longest ledger: no other name has these words


@dataclass
class Size:
    db: str
    customers: int
    entries: int

    @property
    def rounds(self) -> int:
        """Entries each customer gets (99% of the ledger or so, spread evenly)."""
        return max(1, (self.entries - self.entries // 100) // self.customers)

    @property
    def heavy_entries(self) -> int:
        """What is left goes to one customer: a customer with a long history."""
        return max(1, self.entries - self.customers * self.rounds)


def _sql_array(words: list[str]) -> str:
    return "(ARRAY[" + ",".join(f"'{w}'" for w in words) + "])"


def _build_steps(size: Size, staff_password: str) -> list[tuple[str, str]]:
    """The SQL that fills a freshly migrated database, step by step.

    Ids are chosen, not drawn from sequences, so rows can point at each other
    without joins: customer c (1..N) has user id c + 1 (user 1 is staff); the
    grant of round r of customer c is purchase (and entry) r * N + c.
    """
    n, rounds, heavy_n = size.customers, size.rounds, size.heavy_entries
    regular = n * rounds
    first, last = _sql_array(FIRST_NAMES), _sql_array(LAST_NAMES)
    name = f"{first}[1 + g % {len(FIRST_NAMES)}] || ' ' || {last}[1 + (g / {len(FIRST_NAMES)}) % {len(LAST_NAMES)}]"
    products = ",".join(
        f"({i}, 0, '{slug}', '{title}', true, {cost}, true, '500-599', '{{}}')"
        for i, (slug, title, cost) in enumerate(PRODUCTS, 1)
    )
    # Round 0: every customer buys weather (its purchase made the customer). Round 1:
    # every third customer also buys maps. Other rounds: usage of weather (1-3 credits),
    # and every 50th a staff adjustment of +10 with a reason. Grants of 100+ cover
    # any usage of the rounds (at most 3 per round).
    kind = """CASE WHEN r = 0 OR (r = 1 AND c % 3 = 0) THEN 'purchase'
                    WHEN c % 50 = r THEN 'adjustment' ELSE 'usage' END"""
    quantity = "(ARRAY[100, 500, 1000, 5000])[1 + c % 4] + 3 * " + str(rounds)
    return [
        (
            "staff user",
            f"""
            INSERT INTO accounts_user (id, password, is_superuser, email, name, is_staff, is_active, date_joined)
            VALUES (1, '{staff_password}', true, '{STAFF_EMAIL}', 'Bench Staff', true, true, now())""",
        ),
        (
            "products",
            "INSERT INTO ledger_product (id, version, slug, name, active, cost_per_call, refund_failed_calls,"
            f" refund_statuses, routes) VALUES {products}",
        ),
        (
            "users",
            f"""
            INSERT INTO accounts_user (id, password, is_superuser, email, name, is_staff, is_active, date_joined)
            SELECT g + 1, '!', false, 'customer' || g || '@example.com',
                   CASE WHEN g = 1 THEN '{HEAVY_NAME}' ELSE {name} END,
                   false, true, now() - g * interval '1 minute'
            FROM generate_series(1, {n}) g""",
        ),
        (
            "customers",
            """
            INSERT INTO accounts_customer (id, version, public_id, user_id, email, name, status, created)
            SELECT id - 1, 0, 'cus_' || substr(md5(id::text), 1, 20), id, email, name,
                   CASE WHEN (id - 1) % 10 = 0 THEN 'suspended' ELSE 'active' END, date_joined
            FROM accounts_user WHERE id > 1""",
        ),
        (
            "purchases",
            f"""
            INSERT INTO ledger_purchase (id, source, order_id, line_id, email, name, product_ref, quantity,
                product_id, customer_id, status, payload, received, applied, email_status, email_error, emailed,
                created_customer, remaining_after, credits_per_unit, credits_refunded, price, currency)
            SELECT r * {n} + c, 'zapier', 'order-' || (r * {n} + c), '', cu.email, cu.name, p.slug, {quantity},
                   p.id, c, 'applied', '{{}}'::jsonb, cu.created + r * interval '1 hour',
                   cu.created + r * interval '1 hour', 'sent', '', cu.created + r * interval '1 hour', r = 0, NULL,
                   1, 0, 0.01, CASE WHEN c % 5 = 0 THEN 'USD' ELSE 'EUR' END
            FROM generate_series(0, least(1, {rounds} - 1)) r
            CROSS JOIN generate_series(1, {n}) c
            JOIN accounts_customer cu ON cu.id = c
            JOIN ledger_product p ON p.id = r + 1
            WHERE r = 0 OR c % 3 = 0""",
        ),
        (
            "unmatched purchases",
            f"""
            INSERT INTO ledger_purchase (id, source, order_id, line_id, email, name, product_ref, quantity,
                status, payload, received, email_status, email_error, created_customer, credits_per_unit,
                credits_refunded, currency)
            SELECT 2 * {n} + g, 'zapier', 'order-unmatched-' || g, '', 'newbuyer' || g || '@example.com', '',
                   'UNKNOWN-SKU', 10, 'unmatched', '{{}}'::jsonb, now() - g * interval '1 hour', 'pending', '', false,
                   1, 0, ''
            FROM generate_series(1, 20) g""",
        ),
        (
            "ledger entries",
            f"""
            INSERT INTO ledger_ledgerentry (id, customer_id, product_id, amount, kind, reason, created_by_id,
                purchase_id, created)
            SELECT r * {n} + c, c,
                   CASE WHEN r = 1 AND c % 3 = 0 THEN 2 ELSE 1 END,
                   CASE k WHEN 'purchase' THEN {quantity} WHEN 'adjustment' THEN 10 ELSE -(1 + (r + c) % 3) END,
                   k,
                   CASE k WHEN 'adjustment' THEN 'Goodwill credit, ticket ' || (r * {n} + c) ELSE '' END,
                   CASE k WHEN 'adjustment' THEN 1 END,
                   CASE k WHEN 'purchase' THEN r * {n} + c END,
                   now() - interval '30 days' + ((r * {n} + c)::float / {regular} * interval '29 days')
            FROM generate_series(0, {rounds} - 1) r
            CROSS JOIN generate_series(1, {n}) c
            CROSS JOIN LATERAL (SELECT {kind} AS k) kinds""",
        ),
        (
            "heavy customer's entries",
            f"""
            INSERT INTO ledger_ledgerentry (id, customer_id, product_id, amount, kind, reason, purchase_id, created)
            SELECT {regular} + g, 1, 1, CASE WHEN g = 1 THEN 100000 ELSE -1 END,
                   CASE WHEN g = 1 THEN 'adjustment' ELSE 'usage' END,
                   CASE WHEN g = 1 THEN 'Enterprise deal' ELSE '' END, NULL,
                   now() - interval '1 day' + g * interval '1 second'
            FROM generate_series(1, {heavy_n}) g""",
        ),
        (
            "balances from the ledger",
            """
            INSERT INTO ledger_balance (customer_id, product_id, granted, used, updated, version)
            SELECT customer_id, product_id,
                   coalesce(sum(amount) FILTER (WHERE kind <> 'usage'), 0),
                   coalesce(-sum(amount) FILTER (WHERE kind = 'usage'), 0),
                   max(created), count(*)
            FROM ledger_ledgerentry GROUP BY customer_id, product_id""",
        ),
        *[
            (
                f"sequence of {table}",
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))",
            )
            for table in LOADED_TABLES
        ],
    ]


def _counts(conn) -> tuple[int, int] | None:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM accounts_customer), (SELECT count(*) FROM ledger_ledgerentry)")
            return cur.fetchone()
    except psycopg.Error:
        return None


def _expected_entries(size: Size) -> int:
    return size.customers * size.rounds + size.heavy_entries


def build(size: Size, *, rebuild: bool) -> None:
    """Create and fill `size.db`, unless it already holds the rows asked for."""
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connections

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [size.db]).fetchone()
        if exists and not rebuild:
            with psycopg.connect(f"{SERVER}/{size.db}") as conn:
                same = _counts(conn) == (size.customers, _expected_entries(size))
            if same:
                print(f"{size.db}: reusing ({size.customers} customers, {_expected_entries(size)} entries), migrating")
                _use(size.db)
                call_command("migrate", verbosity=0)  # new indexes land on the full tables, as in production
                connections["default"].close()
                with psycopg.connect(f"{SERVER}/{size.db}", autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
                return
        if exists:
            admin.execute(f'DROP DATABASE "{size.db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{size.db}"')

    print(f"{size.db}: building {size.customers} customers, {_expected_entries(size)} ledger entries")
    _use(size.db)
    call_command("migrate", verbosity=0)
    connections["default"].close()
    steps = _build_steps(size, make_password(None))
    started = time.perf_counter()
    with psycopg.connect(f"{SERVER}/{size.db}") as conn, conn.cursor() as cur:
        # Rows are consistent by construction (ids chosen above): skip the per-row
        # foreign-key triggers while loading, the usual bulk-load setting.
        cur.execute("SET session_replication_role = replica")
        cur.execute("SET maintenance_work_mem = '256MB'")
        cur.execute("SET synchronous_commit = off")
        # Indexes that back no constraint are dropped and built again after the load:
        # one sort per index instead of a million insertions into each (GIN above all).
        cur.execute(
            """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
               FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
               WHERE t.relname = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
            [LOADED_TABLES],
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")
        steps += [(f"index {name}", definition) for name, definition in indexes]
        for label, sql in (bar := tqdm(steps, unit="step", desc=size.db)):
            bar.set_postfix_str(label)
            cur.execute(sql)
        cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
        _check_balances(cur)
    # The load ran without triggers (replica role): the overview's rollups are built from what it loaded.
    _use(size.db)
    call_command("rebuild_overview", verbosity=0)
    connections["default"].close()
    with psycopg.connect(f"{SERVER}/{size.db}", autocommit=True) as conn:
        # What autovacuum does to a table in use: planner statistics, and the
        # visibility map that lets counts read only an index.
        conn.execute("VACUUM ANALYZE")
    print(f"{size.db}: built in {time.perf_counter() - started:.1f} s")


def _check_balances(cur) -> None:
    """Balances equal the ledger's sums, and nothing points nowhere (the load skipped FK checks)."""
    cur.execute("""
        SELECT count(*) FROM ledger_balance b LEFT JOIN (
            SELECT customer_id, product_id,
                   coalesce(sum(amount) FILTER (WHERE kind <> 'usage'), 0) AS granted,
                   coalesce(-sum(amount) FILTER (WHERE kind = 'usage'), 0) AS used
            FROM ledger_ledgerentry GROUP BY 1, 2) l USING (customer_id, product_id)
        WHERE l.granted IS DISTINCT FROM b.granted OR l.used IS DISTINCT FROM b.used OR b.remaining < 0""")
    assert cur.fetchone()[0] == 0, "a balance differs from its ledger"
    cur.execute("""
        SELECT (SELECT count(*) FROM ledger_ledgerentry e LEFT JOIN accounts_customer c ON c.id = e.customer_id
                WHERE c.id IS NULL)
             + (SELECT count(*) FROM ledger_ledgerentry e LEFT JOIN ledger_purchase p ON p.id = e.purchase_id
                WHERE e.purchase_id IS NOT NULL AND p.id IS NULL)
             + (SELECT count(*) FROM accounts_customer c LEFT JOIN accounts_user u ON u.id = c.user_id
                WHERE u.id IS NULL)""")
    assert cur.fetchone()[0] == 0, "a row points at nothing"


_wrappers = {}


def _use(db: str) -> None:
    """Point Django's default connection at `db`: one open connection per database, swapped in."""
    from django.db import connections

    if db not in _wrappers:
        default = connections["default"]
        _wrappers[db] = type(default)({**default.settings_dict, "NAME": db}, "default")
    connections["default"] = _wrappers[db]


@dataclass
class Page:
    label: str
    url: str
    expect: str  # text the page must show (the row asked for)
    queries: dict[str, int] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)


def pages() -> list[Page]:
    from django.urls import reverse

    from ledger.admin import BalanceAdmin
    from ledger.models import Product

    maps = Product.objects.get(slug="maps").pk
    customers = reverse("admin:accounts_customer_changelist")
    heavy = 1  # customer ids are the same in both databases (chosen by the build)
    return [
        Page("admin index", reverse("admin:index"), "Ledger entries"),
        Page("customers", customers, "customer"),
        Page("customers, search email", customers + "?q=customer42%40example", "customer42@example.com"),
        Page("customers, search name", customers + "?q=Heavyweather", "customer1@example.com"),
        Page("customers, status=suspended", customers + "?status__exact=suspended", "customer20@example.com"),
        Page("customers, product=maps", customers + "?product=maps", "customer3@example.com"),
        Page("customer page (heavy ledger)", reverse("admin:accounts_customer_change", args=[heavy]), HEAVY_NAME),
        Page("adjust credits (heavy)", reverse("admin:accounts_customer_adjust", args=[heavy]), "Record adjustment"),
        Page("balances", reverse("admin:ledger_balance_changelist"), "customer1"),
        Page(
            "balances, maps, by remaining",
            reverse("admin:ledger_balance_changelist")
            + f"?product__id__exact={maps}&o=-{BalanceAdmin.list_display.index('remaining')}",
            "maps",
        ),
        Page("ledger entries", reverse("admin:ledger_ledgerentry_changelist"), "Usage"),
        Page(
            "ledger entries, customer=heavy",
            reverse("admin:ledger_ledgerentry_changelist") + f"?customer__id__exact={heavy}",
            "customer1@example.com",
        ),
        Page("purchases", reverse("admin:ledger_purchase_changelist"), "order-"),
        Page(
            "purchases, unmatched",
            reverse("admin:ledger_purchase_changelist") + "?status__exact=unmatched",
            "newbuyer1@example.com",
        ),
    ]


def measure(page: Page, dbs: list[str], clients: dict, repeat: int) -> None:
    """Queries of one request, then `repeat` timed requests, small and large in turn."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def get(db: str) -> None:
        _use(db)
        response = clients[db].get(page.url)
        assert response.status_code == 200, (db, page.url, response.status_code)
        assert page.expect in response.content.decode(), (db, page.url, page.expect)

    for db in dbs:
        get(db)  # warm: the templates, Postgres' caches
        with CaptureQueriesContext(connection) as ctx:
            get(db)
        page.queries[db] = len(ctx.captured_queries)
    took = {db: [] for db in dbs}
    for _ in range(repeat):
        for db in dbs:
            _use(db)
            t0 = time.perf_counter()
            get(db)
            took[db].append(time.perf_counter() - t0)
    for db in dbs:
        page.times[db] = statistics.median(took[db])


def table(the_pages: list[Page], width: int) -> list[str]:
    """The pages' queries and median times, small and large, one row a page under a header."""
    rows = [f"{'page':{width}s} {'queries small/large':>20s} {'ms small':>9s} {'ms large':>9s}"]
    for page in the_pages:
        q = f"{page.queries[SMALL_DB]} / {page.queries[LARGE_DB]}"
        rows.append(
            f"{page.label:{width}s} {q:>20s} {page.times[SMALL_DB] * 1e3:9.1f} {page.times[LARGE_DB] * 1e3:9.1f}"
        )
    return rows


def reproduce(script: str, args: argparse.Namespace) -> str:
    """The command that measures this again: the sizes when they are not the defaults, and the repeat."""
    words = [".venv/bin/python", script]
    if (args.customers, args.entries) != (100_000, 1_000_000):
        words += ["--customers", args.customers, "--entries", args.entries]
    return command(*words, "--repeat", args.repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--small-customers", type=int, default=1_000)
    parser.add_argument("--small-entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7, help="requests timed per page and database (median)")
    parser.add_argument("--rebuild", action="store_true", help="build both databases afresh")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = f"{SERVER}/{SMALL_DB}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditportal.settings")
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    os.environ["DJANGO_DEBUG"] = "0"  # as in production: templates cached, no debug query log
    for name in ["DJANGO_SECRET_KEY", "CREDENTIAL_HASH_KEY", "ZAPIER_WEBHOOK_SECRET"]:
        os.environ.setdefault(name, f"bench-{name.lower()}")
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    from accounts.models import User

    small = Size(SMALL_DB, args.small_customers, args.small_entries)
    large = Size(LARGE_DB, args.customers, args.entries)
    for size in [small, large]:
        build(size, rebuild=args.rebuild)

    clients = {}
    for size in [small, large]:
        _use(size.db)
        clients[size.db] = Client(HTTP_X_FORWARDED_PROTO="https")  # as API Gateway tells production (HTTPS-only)
        clients[size.db].force_login(User.objects.get(email=STAFF_EMAIL))
    _use(SMALL_DB)
    the_pages = pages()
    for page in tqdm(the_pages, desc="pages", unit="page"):
        measure(page, [SMALL_DB, LARGE_DB], clients, args.repeat)

    index = next(p for p in the_pages if p.label == "admin index")
    lines = [
        f"small: {small.customers:,} customers, {_expected_entries(small):,} ledger entries; "
        + f"large: {large.customers:,} customers, {_expected_entries(large):,} ledger entries",
        f"heavy customer: {large.heavy_entries:,} entries (large), {small.heavy_entries:,} (small); "
        + f"median of {args.repeat} requests per page and database, interleaved, Django test client in-process",
        "",
        *table(the_pages, 34),
    ]
    ratios = []
    for page in the_pages:
        ratios.append(Ratio(f"time large / small: {page.label}", page.times[LARGE_DB] / page.times[SMALL_DB],
                            GOAL_LARGE_OVER_SMALL))  # fmt: skip
    for page in the_pages:
        extra = page.queries[LARGE_DB] - page.queries[SMALL_DB]
        ratios.append(Ratio(f"queries large - small: {page.label}", extra, EXTRA_QUERIES_ALLOWED))
    for page in the_pages[1:]:
        ratios.append(Ratio(f"large, time / index time: {page.label}", page.times[LARGE_DB] / index.times[LARGE_DB]))
    report(
        "admin_pages",
        title="Admin pages: 100x the rows, same queries and about the same time per page",
        lines=lines,
        ratios=ratios,
        reproduce=reproduce("bench/admin_pages.py", args),
    )


if __name__ == "__main__":
    main()
