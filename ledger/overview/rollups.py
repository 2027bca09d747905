"""The rollups' own SQL: build them again from the ledger and the purchases, or check that they
equal what the ledger says. The triggers of migration 0013 keep them in step at every commit; this
is for a load that bypassed triggers (`session_replication_role = replica`, as the benchmarks' bulk
load does, or a restore) and for proof (`rebuild_overview --check`)."""

from django.db import connection, transaction

UTC_DAY = "(created AT TIME ZONE 'UTC')::date"
UTC_WEEK = "date_trunc('week', created AT TIME ZONE 'UTC')::date"
LINE_CURRENCY = "CASE WHEN price IS NULL THEN '' ELSE currency END"

# (rollup, what the ledger or the purchases say it holds, what it holds): the same columns in the same order.
EXPECTED = [
    (
        "ledger_ledgerday",
        f"SELECT {UTC_DAY}, product_id, kind, sum(amount), count(*) FROM ledger_ledgerentry GROUP BY 1, 2, 3",
        "SELECT day, product_id, kind, credits, entries FROM ledger_ledgerday WHERE entries <> 0",
    ),
    (
        "ledger_spendweek",
        f"SELECT {UTC_WEEK}, customer_id, -sum(amount) FROM ledger_ledgerentry WHERE kind = 'usage' GROUP BY 1, 2",
        "SELECT week, customer_id, credits FROM ledger_spendweek",
    ),
    (
        "ledger_customeractivity",
        f"SELECT customer_id, max({UTC_DAY}) FROM ledger_ledgerentry WHERE kind = 'usage' GROUP BY 1",
        "SELECT customer_id, last_call FROM ledger_customeractivity",
    ),
    (
        "ledger_activeday",
        f"SELECT day, count(*) FROM (SELECT max({UTC_DAY}) AS day FROM ledger_ledgerentry WHERE kind = 'usage'"
        " GROUP BY customer_id) last GROUP BY 1",
        "SELECT day, customers FROM ledger_activeday WHERE customers <> 0",
    ),
    (
        "ledger_purchaseday",
        "SELECT (received AT TIME ZONE 'UTC')::date, " + LINE_CURRENCY + ", count(*),"
        " coalesce(sum(quantity * price), 0) FROM ledger_purchase GROUP BY 1, 2",
        "SELECT day, currency, lines, revenue FROM ledger_purchaseday WHERE lines <> 0",
    ),
]
INSERT_COLUMNS = {
    "ledger_ledgerday": "day, product_id, kind, credits, entries",
    "ledger_spendweek": "week, customer_id, credits",
    "ledger_customeractivity": "customer_id, last_call",
    "ledger_activeday": "day, customers",
    "ledger_purchaseday": "day, currency, lines, revenue",
}


STAGED = ["ledger_rollup_staged_entry", "ledger_rollup_staged_purchase"]


def rollups_differences() -> dict[str, int]:
    """Rows each rollup has that the ledger does not say, and the other way round (0 everywhere: equal);
    and rows the staging tables kept of a committed transaction (its commit applies and deletes them)."""
    found = {}
    with connection.cursor() as cursor:
        for table in STAGED:
            cursor.execute(f"SELECT count(*) FROM {table} WHERE tx <> txid_current()")
            found[table] = cursor.fetchone()[0]
        for table, expected, held in EXPECTED:
            cursor.execute(
                f"SELECT count(*) FROM (({expected}) EXCEPT ({held})) a"
                f" UNION ALL SELECT count(*) FROM (({held}) EXCEPT ({expected})) b"
            )
            found[table] = sum(n for (n,) in cursor.fetchall())
    return found


@transaction.atomic
def rollups_rebuild() -> None:
    """Every rollup built afresh. SHARE locks hold off inserts (reads go on) until the rebuild commits."""
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE ledger_ledgerentry, ledger_purchase IN SHARE MODE")
        for table in STAGED:  # this transaction's own: what is rebuilt below holds them already
            cursor.execute(f"DELETE FROM {table} WHERE tx = txid_current()")
        for table, expected, _ in EXPECTED:
            cursor.execute(f"DELETE FROM {table}")  # not TRUNCATE: it refuses tables with deferred FK checks pending
            cursor.execute(f"INSERT INTO {table} ({INSERT_COLUMNS[table]}) {expected}")
