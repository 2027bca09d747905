from typing import Any, NoReturn

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, transaction
from django.utils import timezone

from accounts.models import Customer
from creditportal.versioned import Versioned
from ledger.route_prices import route_table_check


def refund_statuses_parse(text: str) -> frozenset[int]:
    """`500-599`, `502,503,504`, `500, 502-504`: the statuses named, each within 500-599."""
    statuses: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValidationError(
                f"{part.strip() or 'An empty part'} is not a status or a range of statuses (e.g. 502-504).",
                code="invalid",
            ) from None
        if not 500 <= first <= last <= 599:
            raise ValidationError(
                f"{part.strip()}: only failed calls' statuses, 500-599, low to high, are credited back.",
                code="out_of_range",
            )
        statuses.update(range(first, last + 1))
    return frozenset(statuses)


def refund_statuses_validate(text: str) -> None:
    refund_statuses_parse(text)


class Product(Versioned):
    """An API we sell credits for. Served by one or more API Gateway APIs, sold as one or more SKUs."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    cost_per_call = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    # A call the gateway answered with one of these statuses after the gate allowed it is
    # credited back, once (ledger/failed_calls.py). Off, or fewer statuses, per product.
    refund_failed_calls = models.BooleanField(
        "credit back failed calls", default=True, help_text="Credit back calls the API failed (5xx) after an Allow."
    )
    refund_statuses = models.CharField(
        "statuses credited back",
        max_length=200,
        default="500-599",
        validators=[refund_statuses_validate],
        help_text="Statuses from 500-599: numbers and ranges, comma separated (e.g. 502-504 or 500,503).",
    )
    # {"METHOD /path": cost}: the routes priced otherwise than cost_per_call (ledger/route_prices.py).
    routes = models.JSONField("route prices", default=dict, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if not self._state.adding and (update_fields is None or "slug" in update_fields):
            with transaction.atomic():
                # FOR UPDATE waits for a first grant still inserting a balance of this product.
                stored = Product.objects.select_for_update().filter(pk=self.pk).values_list("slug", flat=True).first()
                self._slug_change_check(stored)
                super().save(*args, **kwargs)
            return
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if not isinstance(self.routes, dict):
            raise ValidationError({"routes": "The route prices are a table of METHOD /path: cost."})
        try:
            self.routes = route_table_check(self.routes)
        except ValidationError as e:
            raise ValidationError({"routes": e.messages}) from e
        if not self._state.adding:
            self._slug_change_check(Product.objects.filter(pk=self.pk).values_list("slug", flat=True).first())

    def _slug_change_check(self, stored: str | None) -> None:
        """The slug keys the gate's items (and tokens' scope): once a customer holds credits
        of the product it cannot change, or the gate would start a fresh item under the new
        slug from Postgres' older usage and sell the unsynced calls again."""
        if stored is not None and stored != self.slug and self.balances.exists():
            raise ValidationError(
                {
                    "slug": f"The slug of {stored} cannot change: customers hold credits of it and the gate "
                    f"keys their balances by it. Change the name instead, or make a new product."
                },
                code="slug_fixed",
            )


class ProductApi(models.Model):
    """An API Gateway API id that serves a product: how the gate routes a call to a product."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="apis")
    api_id = models.CharField(
        "API Gateway API id",
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Letters, digits, _ and - only.")],
    )

    class Meta:
        verbose_name = "API id"

    def __str__(self) -> str:
        return self.api_id


class ProductSku(models.Model):
    """A store SKU that sells credits of a product: a pack of `credits_per_unit` credits per unit sold."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="skus")
    sku = models.CharField("store SKU", max_length=128, unique=True)
    credits_per_unit = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Credits granted per unit of this SKU sold."
    )

    class Meta:
        verbose_name = "SKU"

    def __str__(self) -> str:
        return self.sku if self.credits_per_unit == 1 else f"{self.sku}:{self.credits_per_unit}"


class ProductVariant(models.Model):
    """A Shopify product variant (its numeric id) that sells credits of a product, `credits_per_unit` per unit.

    Shopify line items carry the variant id even when the variant has no SKU."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="variants")
    variant_id = models.CharField(
        "Shopify variant id",
        max_length=32,
        unique=True,
        validators=[RegexValidator(r"^[0-9]+$", "The variant's numeric id, digits only.")],
    )
    credits_per_unit = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Credits granted per unit of this variant sold."
    )

    class Meta:
        verbose_name = "Shopify variant"

    def __str__(self) -> str:
        return self.variant_id if self.credits_per_unit == 1 else f"{self.variant_id}:{self.credits_per_unit}"


class Purchase(models.Model):
    """One order line from the store, recorded once whatever the number of deliveries."""

    class Source(models.TextChoices):
        ZAPIER = "zapier", "Zapier"
        SHOPIFY = "shopify", "Shopify"

    class Status(models.TextChoices):
        APPLIED = "applied", "Applied"
        UNMATCHED = "unmatched", "Unmatched product"
        NO_EMAIL = "no_email", "No buyer email"  # a Shopify order without any email: staff find the buyer
        OTHER = "other", "Not a credits product"  # a Shopify line no SKU or variant maps (a T-shirt)

    class EmailStatus(models.TextChoices):
        PENDING = "pending", "Not sent yet"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    source = models.CharField(max_length=16, choices=Source.choices)
    order_id = models.CharField(max_length=128)
    line_id = models.CharField(max_length=128, blank=True, default="")
    email = models.EmailField(max_length=254, blank=True)  # blank only for status no_email
    name = models.CharField(max_length=200, blank=True)
    product_ref = models.CharField("product as sent", max_length=128)
    quantity = models.PositiveIntegerField("units", validators=[MinValueValidator(1)])
    # Credits granted = quantity × credits_per_unit (the SKU's or variant's pack size when the
    # line was recorded; 1 for a product slug). `credits_refunded`: how many of them refunds
    # and a cancellation have claimed so far (taken back, or found already spent): never more.
    credits_per_unit = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    credits_refunded = models.BigIntegerField(default=0, editable=False)
    # What the buyer paid per unit, as the store sent it (Shopify's line item `price`, the
    # order's `currency`): revenue per currency is quantity × price. None / "" when not sent.
    price = models.DecimalField("unit price", max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217 code, e.g. EUR.")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, null=True, blank=True, related_name="purchases")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="purchases")
    status = models.CharField(max_length=16, choices=Status.choices)
    payload = models.JSONField(default=dict, blank=True)
    received = models.DateTimeField(default=timezone.now)
    applied = models.DateTimeField(null=True, blank=True)
    # The email a purchase sends (welcome or credits added) goes out after the
    # transaction commits; if it fails the purchase stands and staff can resend.
    email_status = models.CharField(max_length=16, choices=EmailStatus.choices, default=EmailStatus.PENDING)
    email_error = models.TextField(blank=True)
    emailed = models.DateTimeField(null=True, blank=True)
    # Set when the purchase is applied. `created_customer`: this purchase made the
    # customer and its first credential, so its email is the welcome email (a resend
    # must issue a new secret). `remaining_after`: the product's remaining credits
    # right after the grant, what the webhook answered; a retried delivery gets the
    # same answer, whatever was spent since.
    created_customer = models.BooleanField(default=False, editable=False)
    remaining_after = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            # Whichever door (Zapier, Shopify) a line came through, it counts once: both send the
            # store's order id and line item id.
            models.UniqueConstraint(fields=["order_id", "line_id"], name="purchase_once_per_store_line"),
        ]
        indexes = [
            models.Index(fields=["status", "-received"]),
            models.Index(fields=["-received", "-id"], name="purchase_newest_first"),  # the admin's order
        ]

    def __str__(self) -> str:
        line = f"/{self.line_id}" if self.line_id else ""
        return f"{self.source}:{self.order_id}{line}"

    @property
    def credits(self) -> int:
        """The credits this line grants (or granted): units × credits per unit."""
        return self.quantity * self.credits_per_unit


class LedgerEntryQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("Ledger entries are append-only: they cannot be updated")

    def delete(self) -> NoReturn:
        raise TypeError("Ledger entries are append-only: they cannot be deleted")


class LedgerEntry(models.Model):
    """One change of credits. Append-only: corrections are new entries, never edits.

    Signs: purchases add to what is granted, adjustments add or take away,
    refunds take away from what is granted (a store refund or cancellation taking
    unspent credits back: `ledger/store/`, one entry per refunded line, linked to its
    purchase and its `RefundLine`), usage records what was spent.
    """

    class Kind(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        ADJUSTMENT = "adjustment", "Adjustment"
        USAGE = "usage", "Usage"
        REFUND = "refund", "Refund"
        FAILED_CALL = "failed_call", "Failed call credited back"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="ledger_entries")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="ledger_entries")
    amount = models.BigIntegerField(help_text="Signed number of credits.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, null=True, blank=True, related_name="entries")
    # A failed call credited back: the gateway's request id, unique, so a call is credited once.
    request_id = models.CharField(
        "API request id", max_length=128, blank=True, default="", db_default="", editable=False
    )
    created = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["customer", "product", "-created"])]
        constraints = [
            # However often CloudWatch delivers a log batch, and however many at once.
            models.UniqueConstraint(
                fields=["request_id"], condition=~models.Q(request_id=""), name="ledger_failed_call_once_per_request"
            ),
            models.CheckConstraint(
                condition=(models.Q(kind="failed_call", amount__gt=0) & ~models.Q(request_id=""))
                | (~models.Q(kind="failed_call") & models.Q(request_id="")),
                name="ledger_failed_call_has_request",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.product} ({self.kind})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("Ledger entries are append-only: they cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("Ledger entries are append-only: they cannot be deleted")


class Balance(models.Model):
    """What a customer has of one product: the ledger's sums, kept in the same transaction as each entry."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="balances")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="balances")
    granted = models.BigIntegerField(default=0)
    used = models.BigIntegerField(default=0)
    remaining = models.GeneratedField(
        expression=models.F("granted") - models.F("used"),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    updated = models.DateTimeField(auto_now=True)
    version = models.PositiveBigIntegerField(default=0, editable=False)
    # When the customer was told this balance is running low; cleared by the next grant.
    low_balance_notified = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "product"], name="balance_once_per_customer_product"),
            models.CheckConstraint(condition=models.Q(used__gte=0), name="balance_used_not_negative"),
        ]
        # The admin's list of one product's balances sorted by what remains, then by customer.
        indexes = [models.Index(fields=["product", "remaining", "customer"], name="balance_product_remaining")]

    def __str__(self) -> str:
        return f"{self.customer} · {self.product}"

    def clean(self) -> None:
        if self.granted < self.used:
            raise ValidationError("Granted credits cannot be below what is already used.")


class MirrorOutbox(models.Model):
    """A change the gate's mirror must hear of, recorded in the same transaction as the change.

    The services that change what the gate sees (and the admin's edits) add these rows
    (ledger/mirror/outbox.py); once the transaction commits, the items a row names are
    rewritten from Postgres and the row is deleted. A row still here was not written yet:
    its write failed (`error`), or the process ended between the commit and the write.
    Every `sync_usage` run (each minute) writes what is here, from Postgres as it is then.
    """

    class Scope(models.TextChoices):
        BALANCE = "balance", "Balance item"  # ref: the balance's id
        CUSTOMER = "customer", "Customer's balance items"  # ref: the customer's id
        PRODUCT = "product", "Product's balance items and routes"  # ref: the product's id
        ROUTE = "route", "Route item"  # ref: the API Gateway API id
        KEY = "key", "API key item"  # ref: the API key's id

    scope = models.CharField(max_length=16, choices=Scope.choices)
    ref = models.CharField(max_length=64)
    created = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0, help_text="Writes tried and failed.")
    error = models.TextField(blank=True, help_text="Why the last write failed.")

    class Meta:
        verbose_name = "pending mirror write"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.get_scope_display()} {self.ref}"


# Ledger models too: the overview's rollups and drift checks' record (ledger/overview/models.py),
# the store's refunds and webhook deliveries (ledger/store/models.py).
from ledger.overview.models import ActiveDay, CustomerActivity, DriftCheck, LedgerDay, PurchaseDay, SpendWeek  # noqa: E402, F401
from ledger.store.models import RefundLine, StoreRefund, StoreWebhook  # noqa: E402, F401
