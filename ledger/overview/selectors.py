"""The overview's figures, read from the rollups (ledger/overview/models.py) and a few indexed
counts: a fixed number of queries whatever the number of customers, entries or purchases."""

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Customer
from ledger.models import Balance, LedgerEntry, MirrorOutbox, Product, Purchase
from ledger.overview.models import ActiveDay, DriftCheck, LedgerDay, PurchaseDay, SpendWeek
from ledger.store.models import RefundLine, StoreRefund

DAYS = 30  # the overview's period, today (UTC) included
TOP_CUSTOMERS = 10
LOW_PERCENT = 10  # "running out": this share of what was granted, or less, is left (index balance_running_low)

Kind = LedgerEntry.Kind


@dataclass(frozen=True)
class Series:
    """One figure of the overview: `sign` × the ledger's sum(amount) over entries of `kinds`."""

    key: str
    label: str
    kinds: tuple[str, ...]
    sign: int
    note: str = ""
    mark: str = ""  # the note's mark in the numbers' header


SERIES = (
    Series("sold", "Sold", (Kind.PURCHASE,), 1),
    Series("spent", "Spent", (Kind.USAGE,), -1),
    Series(
        "credited_back", "Credited back", (Kind.FAILED_CALL,), 1, note="failed calls (5xx after an Allow)", mark="*"
    ),
    Series("taken_back", "Taken back", (Kind.REFUND,), -1, note="store refunds", mark="†"),
    Series("adjusted", "Adjusted by staff", (Kind.ADJUSTMENT,), 1),
)
# Two charts per product, each on its own scale: what is sold comes in lumps (a purchase of 10,000
# credits), what is spent day by day; on one scale the calls would be a flat line at the bottom.
CHARTS = (
    ("sales", "Sold and taken back", ("sold", "taken_back")),
    ("use", "Spent and credited back", ("spent", "credited_back")),
)


@dataclass
class Figures:
    """One product's figures over the period (product None: all products together)."""

    product: Product | None
    days: list[datetime.date]
    daily: dict[str, list[int]] = field(default_factory=dict)  # series key -> one value per day, oldest first

    def __post_init__(self) -> None:
        for series in SERIES:
            self.daily.setdefault(series.key, [0] * len(self.days))

    @property
    def totals(self) -> dict[str, int]:
        return {key: sum(values) for key, values in self.daily.items()}

    @property
    def rows(self) -> list[tuple[Series, int]]:
        totals = self.totals
        return [(series, totals[series.key]) for series in SERIES]


@dataclass(frozen=True)
class TopCustomer:
    customer: Customer
    credits: int


@dataclass
class Overview:
    first: datetime.date
    today: datetime.date
    week: datetime.date  # this week's Monday
    total: Figures
    products: list[Figures]
    active_customers: int
    purchases_daily: list[tuple[datetime.date, int]]
    revenue: list[tuple[str, Decimal, int]]  # currency, revenue, lines; currencies with a price only
    unmatched_purchases: int
    failed_emails: int
    pending_mirror_writes: int
    failing_mirror_writes: int  # of those, the ones whose write was tried and failed
    running_low_customers: int
    refunds_found_spent: int  # refunds received in the period that found credits already spent
    drift_check: DriftCheck | None
    top_customers: list[TopCustomer]

    @property
    def purchases_total(self) -> int:
        return sum(lines for _, lines in self.purchases_daily)


def period(today: datetime.date | None = None, days: int = DAYS) -> tuple[datetime.date, datetime.date]:
    today = today or timezone.now().astimezone(datetime.UTC).date()
    return today - datetime.timedelta(days=days - 1), today


def utc_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)


def balances_running_low(queryset: QuerySet[Balance] | None = None) -> QuerySet[Balance]:
    """Balances with LOW_PERCENT % or less of what was granted left (used up included); read
    through the partial index balance_running_low, whose predicate this is, word for word."""
    queryset = Balance.objects.all() if queryset is None else queryset
    return queryset.alias(left_scaled=F("remaining") * (100 // LOW_PERCENT)).filter(
        granted__gt=0, left_scaled__lte=F("granted")
    )


def refunds_found_spent(queryset: QuerySet[StoreRefund] | None = None) -> QuerySet[StoreRefund]:
    """Refunds (and cancellations) a line of which found credits already spent: not taken back."""
    queryset = StoreRefund.objects.all() if queryset is None else queryset
    return queryset.filter(Exists(RefundLine.objects.filter(refund=OuterRef("pk"), credits_spent__gt=0)))


def overview_get(*, today: datetime.date | None = None) -> Overview:
    """Every figure of the overview, in 11 queries."""
    first, today = period(today)
    days = [first + datetime.timedelta(days=i) for i in range(DAYS)]
    index = {day: i for i, day in enumerate(days)}
    products = list(Product.objects.order_by("name", "slug"))  # 1
    by_product = {p.pk: Figures(product=p, days=days) for p in products}
    total = Figures(product=None, days=days)
    series_of_kind = {kind: series for series in SERIES for kind in series.kinds}
    rows = LedgerDay.objects.filter(day__gte=first, day__lte=today).values_list("day", "product_id", "kind", "credits")
    seen: set[int] = set()
    for day, product_id, kind, credits in rows:  # 2
        series = series_of_kind.get(kind)
        if series is None:
            continue
        value = series.sign * credits
        by_product[product_id].daily[series.key][index[day]] += value
        total.daily[series.key][index[day]] += value
        seen.add(product_id)
    # Products on sale, and any other with figures in the period.
    shown = [by_product[p.pk] for p in products if p.active or p.pk in seen]

    active = ActiveDay.objects.filter(day__gte=first).aggregate(n=Sum("customers"))["n"] or 0  # 3
    lines: dict[datetime.date, int] = defaultdict(int)
    revenue: dict[str, list] = {}
    for day, currency, n, money in PurchaseDay.objects.filter(day__gte=first, day__lte=today).values_list(  # 4
        "day", "currency", "lines", "revenue"
    ):
        lines[day] += n
        if currency:
            revenue.setdefault(currency, [Decimal(0), 0])
            revenue[currency][0] += money
            revenue[currency][1] += n
    outbox = MirrorOutbox.objects.aggregate(pending=Count("pk"), failing=Count("pk", filter=Q(attempts__gt=0)))  # 5
    week = today - datetime.timedelta(days=today.weekday())
    top = (
        SpendWeek.objects.filter(week=week, credits__gt=0)
        .select_related("customer")
        .order_by("-credits", "customer_id")[:TOP_CUSTOMERS]
    )
    return Overview(
        first=first,
        today=today,
        week=week,
        total=total,
        products=shown,
        active_customers=active,
        purchases_daily=[(day, lines.get(day, 0)) for day in days],
        revenue=[(currency, money, n) for currency, (money, n) in sorted(revenue.items())],
        unmatched_purchases=Purchase.objects.filter(status=Purchase.Status.UNMATCHED).count(),  # 6
        failed_emails=Purchase.objects.filter(email_status=Purchase.EmailStatus.FAILED).count(),  # 7
        pending_mirror_writes=outbox["pending"],
        failing_mirror_writes=outbox["failing"],
        running_low_customers=balances_running_low().values("customer_id").distinct().count(),  # 8
        refunds_found_spent=refunds_found_spent().filter(received__gte=utc_midnight(first)).count(),  # 11
        drift_check=DriftCheck.objects.order_by("-ran", "-id").first(),  # 9
        top_customers=[TopCustomer(customer=row.customer, credits=row.credits) for row in top],  # 10
    )
