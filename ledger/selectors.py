"""Reads that span tables, for ledger's own views and for accounts (which reads ledger only through here)."""

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Credential, Customer
from ledger.models import Balance, LedgerEntry, Product, Purchase
from ledger.store.models import RefundLine, StoreRefund

if TYPE_CHECKING:
    from django.db.backends.utils import _ExecuteParameters, _ExecuteQuery  # django-stubs' names


def product_by_ref(ref: str) -> Product | None:
    """The product a store names by its slug or by one of its SKUs (exact match), or None."""
    ref = ref.strip()
    if not ref:
        return None
    return Product.objects.filter(slug=ref).first() or Product.objects.filter(skus__sku=ref).first()


def product_slugs_owned(*, customer: Customer) -> list[str]:
    """The slugs of the products `customer` holds a balance for, sorted."""
    return sorted(Balance.objects.filter(customer=customer).values_list("product__slug", flat=True))


def credential_with_products(*, client_id: str) -> Credential | None:
    """The credential `client_id` names, with its customer and `credential.customer_products` (what
    `product_slugs_owned` gives for the customer), or None. One query, a token request's only one.

    On Postgres it is one call of `ledger_token_credential` (migration 0015), whose plan Postgres
    keeps for the session: the 4-table join sent as a statement costs more to plan than to run,
    and the ORM more to build than both. The call is a prepared statement where the connection
    allows them (DATABASE_PREPARED_STATEMENTS), so a session parses and plans even the call once.
    The models come back as the ORM's `.only()` would make them: the credential's fields but
    `secret_last4`, `created` and `rotated_at`, the customer's `public_id` and `status`; any
    other field, if read, is fetched then."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each attribute read through `connection` looks it up
    if db.vendor != "postgresql":
        return _credential_with_products_orm(client_id=client_id)
    with _server_bound_cursor(db) as cursor:
        cursor.execute(_TOKEN_CREDENTIAL, [client_id])
        row = cursor.fetchone()
    if row is None:
        return None
    pk, customer_id, secret_hash, secret_version, revoked_at, public_id, status, products = row
    customer = Customer.from_db(db.alias, _CUSTOMER_FIELDS, [customer_id, public_id, status])
    credential = Credential.from_db(
        db.alias, _CREDENTIAL_FIELDS, [pk, customer_id, client_id, secret_hash, secret_version, revoked_at]
    )
    credential.customer = customer
    credential.customer_products = products
    return credential


_TOKEN_CREDENTIAL = "SELECT * FROM ledger_token_credential(%s)"  # one fixed text: nothing to build per request
_CUSTOMER_FIELDS = ["id", "public_id", "status"]
_CREDENTIAL_FIELDS = ["id", "customer_id", "client_id", "secret_hash", "secret_version", "revoked_at"]


def _server_bound_cursor(db: BaseDatabaseWrapper) -> CursorWrapper:
    """What `db.cursor()` gives (the query counted, logged and wrapped like any other), over a
    psycopg cursor that sends the parameters apart from the text: the only kind psycopg prepares.
    Django's own cursors write the parameters into the text, so none of the ORM's statements is
    ever prepared. This one is, at its first run in a server session, when the connection's
    `prepare_threshold` is a number (settings: DATABASE_PREPARED_STATEMENTS), and sent
    unprepared when it is None."""
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    with db.wrap_database_errors:
        cursor = psycopg.Cursor(db.connection)
    return (_LoggedAsComposed if db.queries_logged else CursorWrapper)(cursor, db)


class _LoggedAsComposed(CursorDebugWrapper):
    """Django's query log (DEBUG, the tests' query captures) for a server-bound cursor: the statement
    with its parameters written in, as Django logs its own. Django asks psycopg for the last query
    sent, and psycopg keeps none of a prepared run."""

    def execute(self, sql: "_ExecuteQuery", params: "_ExecuteParameters" = None) -> Any:
        with self.debug_sql(self.db.ops.compose_sql(sql, params)):
            return CursorWrapper.execute(self, sql, params)


def _credential_with_products_orm(*, client_id: str) -> Credential | None:
    """credential_with_products for a database without the function (SQLite, for demos): the same
    join, planned each time. The tests compare the two on Postgres."""
    rows = list(
        Credential.objects.filter(client_id=client_id)
        .select_related("customer")
        .annotate(product_slug=F("customer__balances__product__slug"))
        .order_by()
    )
    if not rows:
        return None
    credential = rows[0]
    credential.customer_products = sorted(row.product_slug for row in rows if row.product_slug is not None)
    return credential


def _with_credited_back(balances: QuerySet[Balance]) -> QuerySet[Balance]:
    """Each balance with `credited_back_calls` and `credited_back` (credits): its failed calls credited
    back (ledger/failed_calls.py), read from the ledger through its (customer, product) index."""
    entries = (
        LedgerEntry.objects.filter(
            customer_id=OuterRef("customer_id"), product_id=OuterRef("product_id"), kind=LedgerEntry.Kind.FAILED_CALL
        )
        .order_by()
        .values("customer_id")
    )
    return balances.annotate(
        credited_back_calls=Coalesce(Subquery(entries.annotate(n=Count("id")).values("n")), 0),
        credited_back=Coalesce(Subquery(entries.annotate(credits=Sum("amount")).values("credits")), 0),
    )


def balance_list_in_scope(*, customer: Customer, products: list[str]) -> QuerySet[Balance]:
    """`customer`'s balances of the products named (a token's scope), with their products and
    their failed calls credited back, by slug."""
    return _with_credited_back(
        Balance.objects.filter(customer=customer, product__slug__in=products)
        .select_related("product")
        .order_by("product__slug")
    )


# --- The customer portal's reads (accounts.selectors names them for its views) ----------------


def balance_list(*, customer: Customer) -> QuerySet[Balance]:
    """`customer`'s balances with their products and their failed calls credited back, by product name."""
    return _with_credited_back(
        Balance.objects.filter(customer=customer).select_related("product").order_by("product__name", "product__slug")
    )


@dataclass(frozen=True)
class DailyUsage:
    product: Product
    days: list[tuple[datetime.date, int]]  # oldest first, one per day, zero where nothing was used

    @property
    def total(self) -> int:
        return sum(credits for _, credits in self.days)

    @property
    def busiest(self) -> tuple[datetime.date, int]:
        return max(reversed(self.days), key=lambda day: day[1])  # the latest day wins a tie


def usage_daily(
    *, customer: Customer, products: list[Product], days: int = 30, today: datetime.date | None = None
) -> list[DailyUsage]:
    """Credits used per product per day (UTC) over the `days` days up to `today` (the current UTC
    day unless given), `today` included: one query."""
    today = today or timezone.now().date()
    first = today - datetime.timedelta(days=days - 1)
    start = datetime.datetime.combine(first, datetime.time.min, tzinfo=datetime.UTC)
    end = datetime.datetime.combine(today + datetime.timedelta(days=1), datetime.time.min, tzinfo=datetime.UTC)
    rows = (
        LedgerEntry.objects.filter(customer=customer, kind=LedgerEntry.Kind.USAGE, created__gte=start, created__lt=end)
        .annotate(day=TruncDate("created", tzinfo=datetime.UTC))
        .values("product_id", "day")
        .annotate(amount=Sum("amount"))
        .order_by()
    )
    used = {(row["product_id"], row["day"]): -row["amount"] for row in rows}  # usage entries are negative
    dates = [first + datetime.timedelta(days=i) for i in range(days)]
    return [DailyUsage(product=p, days=[(d, used.get((p.pk, d), 0)) for d in dates]) for p in products]


def usage_month(*, customer: Customer, month: datetime.date) -> list[DailyUsage]:
    """`customer`'s credits used per day of `month` (UTC; any day of it names it), for every product
    they hold a balance of: two queries, only their own rows."""
    first = month.replace(day=1)
    last = (first + datetime.timedelta(days=32)).replace(day=1) - datetime.timedelta(days=1)
    products = [b.product for b in balance_list(customer=customer)]
    return usage_daily(customer=customer, products=products, days=last.day, today=last)


def purchase_list_recent(*, customer: Customer, limit: int = 10) -> QuerySet[Purchase]:
    """The customer's latest purchases, each with `taken_back` (credits refunds and a cancellation took
    back from it) and `cancelled` (its order was cancelled). One query."""
    lines = RefundLine.objects.filter(purchase=OuterRef("pk"))
    taken = lines.order_by().values("purchase").annotate(n=Sum("credits_taken")).values("n")
    cancelled = lines.filter(refund__kind=StoreRefund.Kind.CANCELLATION)
    return (
        Purchase.objects.filter(customer=customer)
        .select_related("product")
        .annotate(taken_back=Coalesce(Subquery(taken), 0), cancelled=Exists(cancelled))
        .order_by("-received", "-id")[:limit]
    )
