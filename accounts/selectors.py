"""Reads for the customer portal. Every one takes the customer and filters by
it: nothing here can reach another customer's rows. No caching: a page shows
what Postgres holds now (usage itself reaches Postgres from the gate by the
`sync_usage` command, about once a minute)."""

import datetime
from dataclasses import dataclass

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.ids import CLIENT_ID_FORMAT
from accounts.models import Credential, Customer, User
from ledger.models import Balance, LedgerEntry, Product, Purchase


def customer_for_user(*, user: User) -> Customer | None:
    return Customer.objects.filter(user=user).first()


def credential_by_client_id(*, client_id: str) -> Credential | None:
    """The credential a (verified) access token names, with its customer: the balance API's one check."""
    return Credential.objects.select_related("customer").filter(client_id=client_id).first()


def credential_list(*, customer: Customer) -> QuerySet[Credential]:
    """Active credentials first, then revoked ones, oldest first within each."""
    return Credential.objects.filter(customer=customer).order_by("revoked_at", "created", "id")


def credential_get(*, customer: Customer, client_id: str) -> Credential | None:
    """The customer's credential with this client id, or None (also when it is another customer's,
    or when `client_id`, which comes from a URL, cannot be one: a NUL in it would fail the query)."""
    if not CLIENT_ID_FORMAT.fullmatch(client_id):
        return None
    return Credential.objects.filter(customer=customer, client_id=client_id).first()


def balance_list(*, customer: Customer) -> QuerySet[Balance]:
    return (
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
    """Credits used per product per day (UTC) over the last `days` days, today included: one query."""
    today = today or timezone.now().date()
    first = today - datetime.timedelta(days=days - 1)
    start = datetime.datetime.combine(first, datetime.time.min, tzinfo=datetime.UTC)
    rows = (
        LedgerEntry.objects.filter(customer=customer, kind=LedgerEntry.Kind.USAGE, created__gte=start)
        .annotate(day=TruncDate("created", tzinfo=datetime.UTC))
        .values("product_id", "day")
        .annotate(amount=Sum("amount"))
        .order_by()
    )
    used = {(row["product_id"], row["day"]): -row["amount"] for row in rows}  # usage entries are negative
    dates = [first + datetime.timedelta(days=i) for i in range(days)]
    return [DailyUsage(product=p, days=[(d, used.get((p.pk, d), 0)) for d in dates]) for p in products]


def purchase_list_recent(*, customer: Customer, limit: int = 10) -> QuerySet[Purchase]:
    return Purchase.objects.filter(customer=customer).select_related("product").order_by("-received", "-id")[:limit]
